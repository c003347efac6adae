//! A manager thread: owns one worker at a time and runs the jobs it takes from the queue on
//! it, one by one, so it always knows which task its worker holds.
//!
//! A manager never fails silently. Whatever goes wrong while it runs a job (a worker that
//! dies, overruns, or sends garbage; a panic in our own code) fails that job with a reason,
//! kills and reaps the worker, and the manager goes on with a new one. The futures it
//! completes run their callbacks elsewhere ([`Shared::callback_sink`]), so a callback that
//! waits on the pool cannot block the thread that would complete what it waits for.
//!
//! The pool's [`Registry`] decides when a manager starts, idles, retires and stops; this
//! module says how one starts ([`Pool`] for [`Shared`]) and what it runs ([`run`]).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::codec;
use super::connection::{Connection, Lost, Reply};
use super::job::{Job, Target};
use super::pool::Shared;
use crate::error::TaskError;
use crate::registry::{Next, Pool, Registry};

impl Pool for Shared {
    type Message = Job;

    fn registry(&self) -> &Registry<Job> {
        &self.registry
    }

    fn spawn_thread(self: &Arc<Self>, n: usize) -> std::io::Result<JoinHandle<()>> {
        let shared = self.clone();
        std::thread::Builder::new()
            .name(format!("ProcessPoolExecutor-{}_{n}", self.id))
            // Results are decoded here: room for the deepest value the codec accepts.
            .stack_size(codec::DECODE_STACK)
            .spawn(move || run(shared))
    }
}

/// What became of a job, before it is delivered to its future.
enum Answer {
    Done(Vec<u8>),
    /// A chunk run again item by item.
    Items(Vec<Result<Vec<u8>, TaskError>>),
    Failed(TaskError),
}

struct Manager {
    shared: Arc<Shared>,
    worker: Option<Connection>,
    /// How long the last task took from send to reply: only quick tasks are sent ahead.
    last_call: Duration,
    /// Workers given up on (timed out, killed) and not yet reaped: they are reaped after
    /// their task's future has its error, so that a time limit is reported when it fires,
    /// not after the worker's grace period.
    dying: Vec<Connection>,
}

/// The most tasks sent to a worker ahead of their turn.
const AHEAD: usize = 32;
/// The most argument bytes sent ahead: well inside a socket's buffer, so that sending never
/// waits for a worker busy with an earlier task.
const AHEAD_BYTES: usize = 32 * 1024;
/// Tasks are sent ahead only while the last one took less than this: for long tasks the
/// round trip costs nothing, and spreading them over the workers matters more.
const QUICK: Duration = Duration::from_micros(500);

/// The body of a manager thread; the first takes the worker `build` started.
fn run(shared: Arc<Shared>) {
    crate::context::defer_callbacks(shared.callback_sink());
    let worker = shared.take_first();
    let mut manager = Manager {
        shared,
        worker,
        last_call: Duration::MAX,
        dying: Vec::new(),
    };
    // A message taken off the queue while gathering a batch, to handle next.
    let mut next: Option<Next<Job>> = None;
    loop {
        let message = match next.take() {
            Some(message) => message,
            None => manager.shared.registry.next(|| {}),
        };
        match message {
            Next::Message(job) => {
                let batch = manager.gather(job, &mut next);
                if batch.len() == 1 {
                    let job = batch.into_iter().next().expect("one job");
                    manager.handle(job, false);
                } else {
                    manager.handle_batch(batch);
                }
            }
            Next::Stop => {
                manager.shared.registry.exit(|| {});
                break;
            }
            Next::Retire => break, // after `idle_timeout`, already uncounted
        }
        // Nothing of this worker's runs between jobs: `kill_task` requests that came too
        // late to find their task get their answer.
        if let Some(worker) = &manager.worker {
            worker.answer_requests();
        }
    }
    if let Some(worker) = manager.worker.take() {
        worker.stop();
    }
}

impl Manager {
    /// `job`, and when the queue is deep and tasks are quick, more single tasks to send to
    /// the warm worker at once, up to a fair share of the queue. What ends the gathering (a
    /// chunk, or the stop message) is left in `next`.
    fn gather(&mut self, job: Job, next: &mut Option<Next<Job>>) -> Vec<Job> {
        let mut batch = vec![job];
        let Some(worker) = &self.worker else {
            return batch;
        };
        if batch[0].items.is_some() || self.last_call >= QUICK {
            return batch;
        }
        let config = &self.shared.config;
        let allowance = config
            .max_tasks_per_child
            .map_or(usize::MAX, |max| max.saturating_sub(worker.tasks));
        let share = self.shared.registry.queued() / config.max_workers.max(1);
        let want = share.min(AHEAD - 1).min(allowance.saturating_sub(1));
        let mut bytes = batch[0].args.len();
        while batch.len() <= want && bytes < AHEAD_BYTES {
            match self.shared.registry.try_next() {
                Some(Next::Message(job)) if job.items.is_none() => {
                    bytes += job.args.len();
                    batch.push(job);
                }
                Some(other) => {
                    *next = Some(other);
                    break;
                }
                None => break,
            }
        }
        batch
    }

    /// Sends several single tasks to the warm worker at once, then takes their replies in
    /// order, as each finishes: the worker never waits for this thread between tasks. Every
    /// task sent is `running()` for its future (as in CPython's call queue) and reachable by
    /// `kill_task`, which kills only the one the worker is really running. The time limit
    /// of the task awaited counts from the previous reply. If the worker dies, the replies
    /// it sent first are delivered, the task it was running fails, and the tasks after it,
    /// which never started, run on a new worker (see `connection`'s "At most once").
    fn handle_batch(&mut self, jobs: Vec<Job>) {
        let mut ready = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.sink.cancelled() || !job.sink.start() {
                self.shared.registry.mark_idle();
                continue;
            }
            if job.timeout == Some(Duration::ZERO) {
                self.shared.registry.mark_idle();
                job.sink.fail(TaskError::TimedOut);
                continue;
            }
            ready.push(job);
        }
        self.drop_if_gone();
        let Some(worker) = self.worker.as_mut() else {
            for job in ready {
                self.handle(job, true);
            }
            return;
        };
        let control = worker.control().clone();
        let mut sent = Vec::with_capacity(ready.len());
        let mut unsent = Vec::new();
        for job in ready {
            if !unsent.is_empty()
                || job.args.len() + job.call.header_len() > self.shared.config.frame_limit
                || worker.send(&job.call, &job.args).is_err()
            {
                unsent.push(job); // never reached the worker: runs below
                continue;
            }
            self.shared.running(job.sink.id(), &control);
            sent.push(job);
        }
        let ids: Vec<usize> = sent.iter().map(|job| job.sink.id()).collect();
        let mut since = Instant::now();
        let mut jobs = sent.into_iter().enumerate();
        let mut doubtful = false;
        for (i, job) in jobs.by_ref() {
            let deadline = job.timeout.and_then(|t| since.checked_add(t));
            let Some(worker) = self.worker.as_mut() else {
                break;
            };
            let reply = worker.receive(deadline, &ids[i..]);
            let now = Instant::now();
            self.last_call = now - since;
            since = now;
            self.shared.finished(ids[i]);
            self.shared.registry.mark_idle();
            match reply {
                Ok(reply) => deliver(job, reply),
                Err(lost) => {
                    // The stream was out of step: whether the tasks after this one ran
                    // cannot be known, so they are not run again.
                    doubtful = matches!(lost, Lost::Corrupt(_));
                    self.dying.extend(self.worker.take());
                    job.sink.fail(lost.into());
                    self.dying.clear(); // reaped now that the future has its error
                    break;
                }
            }
        }
        for (_, job) in jobs {
            self.shared.finished(job.sink.id());
            if doubtful {
                self.shared.registry.mark_idle();
                job.sink.fail(TaskError::Transport(
                    "the worker's connection was corrupted while this task was queued on it; \
                     it may have run, so it is not run again"
                        .into(),
                ));
            } else {
                unsent.push(job); // provably never started
            }
        }
        for job in unsent {
            self.handle(job, true);
        }
        self.recycle();
    }

    /// Drops the worker if it died while idle (the OOM killer, a stray SIGKILL): the next
    /// task must not be sent to it, and must not fail for it.
    fn drop_if_gone(&mut self) {
        if self.worker.as_ref().is_some_and(Connection::is_gone) {
            if let Some(worker) = self.worker.take() {
                let how = worker
                    .process()
                    .reap_within(Some(Duration::ZERO))
                    .describe();
                log::warn!(
                    target: "concurrent_futures",
                    "a process pool worker {how} while idle; starting another"
                );
            }
        }
    }

    /// Runs one job. `started`: its future was marked running already (a task sent ahead
    /// to a worker that died before reaching it).
    fn handle(&mut self, job: Job, started: bool) {
        let Job {
            call,
            args,
            items,
            timeout,
            sink,
        } = job;
        if !started && sink.cancelled() {
            self.shared.registry.mark_idle();
            return;
        }
        if let Some(reason) = self.shared.broken() {
            self.shared.registry.mark_idle();
            sink.fail(TaskError::BrokenExecutor(reason));
            return;
        }
        self.drop_if_gone();
        // A worker holds the task before its future says it is running.
        if self.worker.is_none() {
            match self.shared.start_worker(true) {
                Ok(worker) => self.worker = Some(worker),
                Err(TaskError::Cancelled) => {
                    self.shared.registry.mark_idle();
                    sink.cancel();
                    return;
                }
                Err(err) => {
                    self.shared.registry.mark_idle();
                    sink.fail(err);
                    return;
                }
            }
        }
        let id = sink.id();
        if let Some(worker) = &self.worker {
            self.shared.running(id, worker.control()); // from here `kill_task` reaches it
        }
        if !started && !sink.start() {
            self.shared.finished(id);
            self.shared.registry.mark_idle();
            return; // cancelled meanwhile
        }
        let begun = Instant::now();
        let job = Run {
            id,
            call: &call,
            args: &args,
            items: items.as_deref(),
            timeout,
        };
        let answer = match panic::catch_unwind(AssertUnwindSafe(|| self.execute(&job))) {
            Ok(answer) => answer,
            Err(payload) => {
                // Our own bug: the worker's state is unknown, so it goes; the task fails
                // with the reason and the pool goes on.
                let why = crate::error::panic_message(&*payload).to_owned();
                log::error!(target: "concurrent_futures", "process pool manager failed: {why}");
                self.worker = None;
                Answer::Failed(TaskError::Transport(
                    format!("the pool's manager failed: {why}").into(),
                ))
            }
        };
        drop(args);
        self.last_call = begun.elapsed();
        self.shared.finished(id);
        // Idle before the result is published, so the caller's next submit finds us.
        self.shared.registry.mark_idle();
        match answer {
            Answer::Done(bytes) => sink.done(&bytes),
            Answer::Items(outcomes) => sink.items(outcomes),
            Answer::Failed(err) => sink.fail(err),
        }
        self.dying.clear(); // reaped now that the future has its error
        self.recycle();
    }

    /// Replaces a worker that is gone or has run its share of tasks, at once, so that the
    /// next job finds a warm one (as Python's pool does). Not after shutdown.
    fn recycle(&mut self) {
        let config = &self.shared.config;
        let spent = self.worker.as_ref().is_some_and(|w| {
            config.max_tasks_per_child.is_some_and(|max| w.tasks >= max)
                || config
                    .max_memory_per_child
                    .is_some_and(|max| w.process().resident_bytes().is_some_and(|rss| rss > max))
        });
        if spent {
            if let Some(worker) = self.worker.take() {
                worker.stop();
            }
        }
        if self.worker.is_none() && !self.shared.is_shutdown() {
            match self.shared.start_worker(false) {
                Ok(worker) => self.worker = Some(worker),
                Err(err) => {
                    log::warn!(target: "concurrent_futures", "could not replace a worker: {err}")
                }
            }
        }
    }

    fn execute(&mut self, job: &Run<'_>) -> Answer {
        let limit = self.shared.config.frame_limit;
        if job.args.len() + 16 > limit {
            return Answer::Failed(TaskError::Transport(
                format!(
                    "argument too large: {} bytes over the frame limit of {limit}",
                    job.args.len()
                )
                .into(),
            ));
        }
        let count = job.items.map_or(1, <[_]>::len);
        let timeout = job
            .timeout
            .map(|t| t.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX)));
        let outcome = self.call(job.id, job.call, job.args, timeout);
        let Some(items) = job.items.filter(|items| items.len() > 1) else {
            return match outcome {
                Ok(bytes) => Answer::Done(bytes),
                Err(err) => Answer::Failed(err),
            };
        };
        match outcome {
            Ok(bytes) => Answer::Done(bytes),
            // Killed on request: the whole chunk is cancelled.
            Err(TaskError::Cancelled) => Answer::Failed(TaskError::Cancelled),
            // The chunk failed as a whole (a crash, a hang, a result too large): run its
            // items again one by one, so that only the item at fault fails.
            Err(_) => {
                let mut killed = false;
                Answer::Items(
                    items
                        .iter()
                        .map(|range| {
                            if killed {
                                return Err(TaskError::Cancelled);
                            }
                            let mut one = codec_len(1);
                            one.extend_from_slice(&job.args[range.clone()]);
                            let outcome = self.call(job.id, job.call, &one, job.timeout);
                            killed = matches!(outcome, Err(TaskError::Cancelled));
                            outcome
                        })
                        .collect(),
                )
            }
        }
    }

    /// Runs one call on this manager's worker (starting one if needed) with a time limit.
    /// A task that could not be handed to its worker (it had died) goes to a new one; a
    /// task killed by `kill_task` fails as cancelled.
    fn call(
        &mut self,
        id: usize,
        call: &Target,
        args: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, TaskError> {
        if timeout == Some(Duration::ZERO) {
            return Err(TaskError::TimedOut); // expired before it could start
        }
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            let worker = match &mut self.worker {
                // `handle` registered this worker for the job already.
                Some(worker) => worker,
                None => {
                    // A replacement, while a chunk's items run again or after a send that
                    // never arrived: `kill_task` must reach it.
                    let worker = self.worker.insert(self.shared.start_worker(true)?);
                    self.shared.running(id, worker.control());
                    worker
                }
            };
            let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            match worker.call(id, call, args, deadline) {
                Err(Lost::NotSent(how)) if attempts < 2 => {
                    self.worker = None; // reaped; the task never reached it
                    log::warn!(
                        target: "concurrent_futures",
                        "a process pool worker {how} before its task arrived; sending it to another"
                    );
                }
                other => break other,
            }
        };
        match reply {
            Ok(outcome) => outcome,
            Err(lost) => {
                // Reaped once the future has its error (`dying`).
                self.dying.extend(self.worker.take());
                Err(lost.into())
            }
        }
    }
}

/// Completes a job's future with its worker's reply.
fn deliver(job: Job, reply: Reply) {
    match reply {
        Ok(bytes) => job.sink.done(&bytes),
        Err(err) => job.sink.fail(err),
    }
}

/// The parts of a job a run needs, borrowed.
struct Run<'a> {
    /// The future's identity, for `kill_task`.
    id: usize,
    call: &'a Target,
    args: &'a [u8],
    items: Option<&'a [std::ops::Range<usize>]>,
    timeout: Option<Duration>,
}

/// The encoding of a sequence's length, as postcard writes it before the items.
pub(super) fn codec_len(n: usize) -> Vec<u8> {
    super::codec::encode(&n).expect("a usize always encodes")
}
