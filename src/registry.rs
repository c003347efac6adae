//! The worker registry under both local pools: the queue, the worker threads that take from
//! it (a thread pool's workers, a process pool's managers), and the rules by which they
//! start, idle, retire, break and stop (rayon-core's `registry.rs` role).
//!
//! A pool owns one [`Registry`] of its messages and says how to start a worker thread
//! ([`Pool::spawn_thread`]); the registry decides when.
//!
//! # How messages reach workers
//!
//! One unbounded crossbeam channel carries `Some(message)`, and one `None` (stop) per worker
//! at shutdown. Threads start lazily. One signed counter, `surplus`, is idle workers minus
//! queued messages: a push subtracts one, a worker adds one when it becomes idle (when it is
//! started, and after each message just before it publishes the result, so the caller's next
//! push finds it idle), and receiving a message changes nothing (one fewer idle worker, one
//! fewer queued message). The rules the code cites:
//!
//! 1. A push that takes `surplus` below zero has no idle worker to count on and starts a
//!    thread, unless `max_workers` are running. Idle workers are reused first.
//! 2. A worker whose idle timeout runs out retires by subtracting one; if that takes
//!    `surplus` below zero, a message needs it after all and it stays. Both sides use one
//!    read-modify-write on the same atomic, and the retiring worker stops being counted in
//!    the same critical section (under `control`, where a push's spawn checks the count),
//!    so no message is ever left without a worker.
//! 3. After pushing, a push re-reads the status; if a shutdown (or breakage) raced with it,
//!    the pool takes its message back if no worker took it first ([`Pushed::Raced`]).
//!    Either way nothing is lost.
//! 4. Once `max_workers` run and none can retire (no idle timeout), `surplus` is no longer
//!    kept: no push needs to start a thread any more (`saturated`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, AtomicIsize, AtomicU8, AtomicUsize, Condvar, Mutex};

const RUNNING: u8 = 0;
const SHUTDOWN: u8 = 1;
const BROKEN: u8 = 2;

/// A pool over a [`Registry`]: what it queues and how it starts a worker thread.
pub(crate) trait Pool: Send + Sync + Sized + 'static {
    /// What the queue carries.
    type Message: Send + 'static;

    fn registry(&self) -> &Registry<Self::Message>;

    /// Starts worker thread number `n` (for its name): its body takes messages with
    /// [`Registry::next`] and calls [`Registry::exit`] when it stops.
    ///
    /// # Errors
    ///
    /// The OS refused the thread.
    fn spawn_thread(self: &Arc<Self>, n: usize) -> io::Result<JoinHandle<()>>;
}

/// Why the pool refuses a message.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    Shutdown,
    Broken(Arc<str>),
}

/// What [`Registry::push`] did.
#[derive(Debug)]
pub(crate) enum Pushed<M> {
    /// Queued, with a worker to take it.
    Queued,
    /// Refused before anything was queued: the message comes back.
    Refused(Refusal, M),
    /// Queued, but a shutdown or breakage raced with the push (rule 3): the pool takes the
    /// message back unless a worker already took it, in which case it runs.
    Raced(Refusal),
    /// Queued, but no idle worker was counted and none could be started. `alone`: the pool
    /// has no worker at all, so nothing will take the message unless the pool acts.
    NoWorker { error: io::Error, alone: bool },
}

/// What a worker gets from [`Registry::next`].
#[derive(Debug)]
pub(crate) enum Next<M> {
    /// A message to handle; mark idle after it ([`Registry::mark_idle`]).
    Message(M),
    /// Stop: the pool shut down. Call [`Registry::exit`].
    Stop,
    /// Retired after the idle timeout (rule 2); already uncounted, do not call `exit`.
    Retire,
}

/// The queue and the worker accounting of one pool.
pub(crate) struct Registry<M> {
    queue: Queue<Option<M>>,
    /// Idle workers minus queued messages (see the module docs).
    surplus: CachePadded<AtomicIsize>,
    /// Rule 4: `surplus` is no longer kept.
    saturated: AtomicBool,
    /// Stop messages sent and not yet received, so `queued()` does not count them.
    stops: AtomicUsize,
    status: AtomicU8,
    control: Mutex<Control>,
    /// Signalled when a worker exits.
    exited: Condvar,
    max_workers: usize,
    idle_timeout: Option<Duration>,
    /// Look for the next message briefly before sleeping (a caller that waits on its result
    /// and pushes again is back within microseconds).
    spin: bool,
    /// The `executor` label of its gauges (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    executor: &'static str,
}

/// Moves one of the registry's gauges (feature `metrics`; nothing without it).
macro_rules! gauge {
    ($registry:expr, $name:literal, $delta:expr) => {
        #[cfg(feature = "metrics")]
        metrics::gauge!($name, "executor" => $registry.executor).increment($delta as f64);
    };
}

struct Control {
    threads: usize,
    spawned: usize,
    shutdown: bool,
    broken: Option<Arc<str>>,
    /// Every worker thread not yet joined; retired ones are joined at the next spawn or at
    /// shutdown, so that `join` returns only after their thread-locals are destroyed.
    handles: Vec<JoinHandle<()>>,
    /// Handles taken out by a `join` and being joined right now.
    joining: usize,
}

impl<M: Send + 'static> Registry<M> {
    /// A registry of at most `max_workers` threads; `idle_timeout` retires idle ones.
    pub(crate) fn new(
        executor: &'static str,
        max_workers: usize,
        idle_timeout: Option<Duration>,
        spin: bool,
    ) -> Self {
        Registry {
            queue: Queue::new(),
            surplus: CachePadded::new(AtomicIsize::new(0)),
            saturated: AtomicBool::new(false),
            stops: AtomicUsize::new(0),
            status: AtomicU8::new(RUNNING),
            control: Mutex::new(Control {
                threads: 0,
                spawned: 0,
                shutdown: false,
                broken: None,
                handles: Vec::new(),
                joining: 0,
            }),
            exited: Condvar::new(),
            max_workers,
            idle_timeout,
            spin,
            executor,
        }
    }

    /// Why a message would be refused now.
    pub(crate) fn refusal(&self) -> Refusal {
        match &self.control.lock().broken {
            Some(reason) => Refusal::Broken(reason.clone()),
            None => Refusal::Shutdown,
        }
    }

    /// Queues `message` and makes sure a worker will take it (rules 1 and 3).
    pub(crate) fn push<P: Pool<Message = M>>(pool: &Arc<P>, message: M) -> Pushed<M> {
        let this = pool.registry();
        // ORDERING: a fast refusal only; the check that decides is the SeqCst re-read below.
        if this.status.load(Ordering::Acquire) != RUNNING {
            return Pushed::Refused(this.refusal(), message);
        }
        this.queue.send(Some(message));
        gauge!(this, "concurrent_futures_queue_depth", 1);
        // Rule 3: re-read the status after the push; a concurrent shutdown's stop messages
        // may be ahead of ours.
        // ORDERING: SeqCst, with the SeqCst stores of `shutdown` and `break_with`: if this
        // read does not see their store, it comes first in the single total order, so our
        // push (before this read) precedes their stop messages (sent after the store) in the
        // channel, and a worker takes our message before it stops.
        if this.status.load(Ordering::SeqCst) != RUNNING {
            return Pushed::Raced(this.refusal());
        }
        // ORDERING: as in `mark_idle`.
        if !this.saturated.load(Ordering::Relaxed)
            && this.surplus.fetch_sub(1, Ordering::AcqRel) < 1
        {
            // Rule 1: no idle worker to count on.
            if let Err(error) = Registry::spawn(pool) {
                let alone = this.control.lock().threads == 0;
                return Pushed::NoWorker { error, alone };
            }
        }
        Pushed::Queued
    }

    /// Starts a worker unless `max_workers` are running or the pool is broken; it counts as
    /// idle from now, so that a push right after finds it rather than start another.
    ///
    /// A push whose message was queued before a racing shutdown still needs a worker (rule
    /// 3 lets it run), so this starts one after shutdown too, with a stop message for it
    /// behind that message.
    ///
    /// # Errors
    ///
    /// The OS refused the thread.
    pub(crate) fn spawn<P: Pool<Message = M>>(pool: &Arc<P>) -> io::Result<()> {
        let this = pool.registry();
        let mut control = this.control.lock();
        if control.broken.is_some() || control.threads >= this.max_workers {
            return Ok(());
        }
        let handle = pool.spawn_thread(control.spawned)?;
        this.mark_idle();
        // Retired threads have returned; join them (outside the lock) so they do not pile up.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut control.handles)
            .into_iter()
            .partition(JoinHandle::is_finished);
        control.handles = live;
        control.handles.push(handle);
        control.threads += 1;
        control.spawned += 1;
        gauge!(this, "concurrent_futures_workers", 1);
        if control.threads == this.max_workers && this.idle_timeout.is_none() {
            // ORDERING: set once, under `control`; every reader tolerates a stale false (see
            // `mark_idle`), so Relaxed.
            this.saturated.store(true, Ordering::Relaxed);
        }
        if control.shutdown {
            this.send_stop();
        }
        drop(control);
        for handle in done {
            let _ = handle.join();
        }
        Ok(())
    }

    /// A worker is idle (rule 1's other half), unless `surplus` is no longer kept.
    pub(crate) fn mark_idle(&self) {
        // ORDERING: `saturated` only ever goes from false to true, once, under `control`; a
        // stale false costs an update of a count that is no longer read, so Relaxed. Rules 1
        // and 2 rest on every change of `surplus` being a read-modify-write of this one
        // atomic (one modification order), and on this mark happening before the message's
        // result is published (Release there, Acquire in the caller who then pushes again),
        // so the caller's decrement comes after it. Relaxed would do for that; AcqRel costs
        // the same locked instruction on x86 and spares the reader that argument.
        if !self.saturated.load(Ordering::Relaxed) {
            self.surplus.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The next message for a worker, waiting for one. With an idle timeout, a worker that
    /// waited that long retires (rule 2) unless a message needs it; `on_retire` runs under
    /// the lock that uncounts it, so that whatever it folds into the pool's totals is never
    /// seen missing.
    pub(crate) fn next(&self, on_retire: impl Fn()) -> Next<M> {
        if self.spin {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                if let Some(message) = self.queue.try_recv() {
                    return self.received(message);
                }
                backoff.snooze();
            }
        }
        let Some(idle) = self.idle_timeout else {
            return self.received(self.queue.recv());
        };
        loop {
            match self.queue.recv_timeout(idle) {
                Some(message) => return self.received(message),
                None => {
                    if self.try_retire(&on_retire) {
                        return Next::Retire;
                    }
                }
            }
        }
    }

    /// A worker that waited out the idle timeout retires (rule 2), unless that would leave a
    /// queued message without a worker; true if it retired (it is no longer counted).
    /// Decided under the lock that `spawn` counts threads under, so a push that finds no
    /// idle worker never finds this one still counted either.
    pub(crate) fn try_retire(&self, on_retire: &impl Fn()) -> bool {
        let mut control = self.control.lock();
        // ORDERING: rule 2 needs only that this decrement and a push's are read-modify-writes
        // of the one atomic, so that exactly one of them sees the other; the lock orders it
        // against `spawn`.
        if self.surplus.fetch_sub(1, Ordering::AcqRel) < 1 {
            self.surplus.fetch_add(1, Ordering::AcqRel);
            return false;
        }
        on_retire();
        control.threads -= 1;
        gauge!(self, "concurrent_futures_workers", -1);
        drop(control);
        self.exited.notify_all();
        true
    }

    /// The next message if one is queued now, without waiting.
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))] // managers only
    pub(crate) fn try_next(&self) -> Option<Next<M>> {
        self.queue.try_recv().map(|message| self.received(message))
    }

    fn received(&self, message: Option<M>) -> Next<M> {
        match message {
            Some(message) => {
                gauge!(self, "concurrent_futures_queue_depth", -1);
                Next::Message(message)
            }
            None => {
                // ORDERING: as in `send_stop` and `mark_idle`: a stopping worker is no longer
                // idle, and the statistic no longer counts its message.
                self.stops.fetch_sub(1, Ordering::AcqRel);
                if !self.saturated.load(Ordering::Relaxed) {
                    self.surplus.fetch_sub(1, Ordering::AcqRel);
                }
                Next::Stop
            }
        }
    }

    /// A worker leaves (after [`Next::Stop`], or when it cannot work at all); `on_exit` runs
    /// under the lock that uncounts it.
    pub(crate) fn exit(&self, on_exit: impl FnOnce()) {
        let mut control = self.control.lock();
        on_exit();
        control.threads -= 1;
        gauge!(self, "concurrent_futures_workers", -1);
        drop(control);
        self.exited.notify_all();
    }

    fn send_stop(&self) {
        // ORDERING: `stops` only feeds `queued()`; counted before the message is sent, so the
        // statistic never counts a stop message as a queued message.
        self.stops.fetch_add(1, Ordering::AcqRel);
        self.queue.send(None);
    }

    /// Messages queued and not taken (stop messages excluded).
    pub(crate) fn queued(&self) -> usize {
        // ORDERING: a statistic; pairs with `send_stop`'s count before its send.
        let stops = self.stops.load(Ordering::Acquire);
        self.queue.len().saturating_sub(stops)
    }

    /// Live worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.control.lock().threads
    }

    /// Whether the pool broke.
    pub(crate) fn is_broken(&self) -> bool {
        // ORDERING: pairs with the SeqCst store in `break_with` (a Release at least): who sees
        // BROKEN sees the reason set before it under `control`.
        self.status.load(Ordering::Acquire) == BROKEN
    }

    /// Why the pool broke, if it did.
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))] // managers only
    pub(crate) fn broken(&self) -> Option<Arc<str>> {
        if !self.is_broken() {
            return None; // the common case, without the lock
        }
        self.control.lock().broken.clone()
    }

    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))] // managers only
    pub(crate) fn is_shutdown(&self) -> bool {
        self.control.lock().shutdown
    }

    /// The pool cannot work: refuse new messages and hand back every queued one, for the
    /// pool to fail outside any lock. The first reason stays.
    pub(crate) fn break_with(&self, reason: &Arc<str>) -> Vec<M> {
        {
            let mut control = self.control.lock();
            control.broken.get_or_insert_with(|| reason.clone());
            // ORDERING: SeqCst, the store side of rule 3 (see `push`).
            self.status.store(BROKEN, Ordering::SeqCst);
        }
        self.drain()
    }

    /// Takes every queued message out, putting back the stop messages.
    fn drain(&self) -> Vec<M> {
        let mut messages = Vec::new();
        let mut stops = 0;
        while let Some(message) = self.queue.try_recv() {
            match message {
                Some(message) => messages.push(message),
                None => stops += 1,
            }
        }
        for _ in 0..stops {
            self.queue.send(None);
        }
        gauge!(
            self,
            "concurrent_futures_queue_depth",
            -(messages.len() as i64)
        );
        messages
    }

    /// Stops accepting messages and tells every worker to stop once the queue before its
    /// stop message is done. With `cancel_queued`, first takes every queued message out and
    /// hands them back, for the pool to cancel outside any lock. Calling it again is
    /// harmless.
    pub(crate) fn shutdown(&self, cancel_queued: bool) -> Vec<M> {
        let mut control = self.control.lock();
        let cancelled = if cancel_queued {
            self.drain()
        } else {
            Vec::new()
        };
        if !control.shutdown {
            control.shutdown = true;
            if control.broken.is_none() {
                // ORDERING: SeqCst, the store side of rule 3 (see `push`); the stop messages
                // are sent after it.
                self.status.store(SHUTDOWN, Ordering::SeqCst);
            }
            for _ in 0..control.threads {
                self.send_stop();
            }
        }
        drop(control);
        cancelled
    }

    /// Waits until every worker has exited and joins their threads (but the caller's own,
    /// when a worker shuts its own pool down), so that their thread-locals are destroyed
    /// before it returns, as CPython joins its threads.
    pub(crate) fn join(&self) {
        let mut control = self.control.lock();
        let current = std::thread::current().id();
        // A worker of this pool still counts itself while it waits for the others.
        let me = usize::from(control.handles.iter().any(|h| h.thread().id() == current));
        while control.threads > me {
            control = self.exited.wait(control);
        }
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut control.handles)
            .into_iter()
            .partition(|h| h.thread().id() == current);
        control.handles = mine;
        control.joining += others.len();
        drop(control);
        let joined = others.len();
        for handle in others {
            let _ = handle.join();
        }
        let mut control = self.control.lock();
        control.joining -= joined;
        if control.joining == 0 {
            self.exited.notify_all();
        }
        // A concurrent `join` may be joining the rest.
        while control.joining > 0 {
            control = self.exited.wait(control);
        }
    }
}

/// The registry's queue: crossbeam's unbounded channel; under loom, a mutex and a condition
/// variable that the model checker sees.
#[cfg(not(concurrent_futures_loom))]
struct Queue<T> {
    tx: crossbeam_channel::Sender<T>,
    rx: crossbeam_channel::Receiver<T>,
}

#[cfg(not(concurrent_futures_loom))]
impl<T> Queue<T> {
    fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Queue { tx, rx }
    }

    fn send(&self, item: T) {
        // Never disconnected: the queue owns both ends.
        let _ = self.tx.send(item);
    }

    fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    fn recv(&self) -> T {
        self.rx.recv().expect("the queue owns both ends")
    }

    fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        self.rx.recv_timeout(timeout).ok()
    }

    fn len(&self) -> usize {
        self.rx.len()
    }
}

#[cfg(concurrent_futures_loom)]
struct Queue<T> {
    items: Mutex<std::collections::VecDeque<T>>,
    ready: Condvar,
}

#[cfg(concurrent_futures_loom)]
impl<T> Queue<T> {
    fn new() -> Self {
        Queue {
            items: Mutex::new(std::collections::VecDeque::new()),
            ready: Condvar::new(),
        }
    }

    fn send(&self, item: T) {
        self.items.lock().push_back(item);
        self.ready.notify_one();
    }

    fn try_recv(&self) -> Option<T> {
        self.items.lock().pop_front()
    }

    fn recv(&self) -> T {
        let mut items = self.items.lock();
        loop {
            if let Some(item) = items.pop_front() {
                return item;
            }
            items = self.ready.wait(items);
        }
    }

    /// Loom has no clock: the models call `try_retire` rather than wait out a timeout.
    fn recv_timeout(&self, _: Duration) -> Option<T> {
        Some(self.recv())
    }

    fn len(&self) -> usize {
        self.items.lock().len()
    }
}

/// Loom models of the registry's rules 1-3: a push racing a worker's retirement and a
/// shutdown never leaves a queued message without a worker, and a message the push reports
/// queued always runs. Run with
/// `RUSTFLAGS="--cfg concurrent_futures_loom" cargo test --release --lib registry::model`.
#[cfg(all(test, concurrent_futures_loom))]
mod model {
    use super::*;

    /// A pool whose worker threads the model runs itself: `spawn_thread` only counts.
    struct ModelPool {
        registry: Registry<u32>,
        spawns: AtomicUsize,
    }

    impl Pool for ModelPool {
        type Message = u32;

        fn registry(&self) -> &Registry<u32> {
            &self.registry
        }

        fn spawn_thread(self: &Arc<Self>, _n: usize) -> io::Result<JoinHandle<()>> {
            self.spawns.fetch_add(1, Ordering::SeqCst);
            Ok(std::thread::spawn(|| {}))
        }
    }

    fn pool(idle_timeout: Option<Duration>) -> Arc<ModelPool> {
        let pool = Arc::new(ModelPool {
            registry: Registry::new("model", 1, idle_timeout, false),
            spawns: AtomicUsize::new(0),
        });
        Registry::spawn(&pool).unwrap(); // one idle worker to start with
        pool
    }

    /// A counted worker takes what is queued until its stop message; true if it stopped.
    fn drain(pool: &ModelPool, ran: &AtomicUsize) -> bool {
        while let Some(next) = pool.registry.try_next() {
            match next {
                Next::Message(_) => {
                    ran.fetch_add(1, Ordering::SeqCst);
                    pool.registry.mark_idle();
                }
                Next::Stop => {
                    pool.registry.exit(|| {});
                    return true;
                }
                Next::Retire => unreachable!("try_next never retires"),
            }
        }
        false
    }

    /// After the race: every worker still counted (the first one, one the push started)
    /// takes what is queued, as it would from its blocking wait. Then a message the push
    /// reported queued has run, and one reported raced has run or is still queued (for the
    /// pool to take back).
    fn settle(pool: &ModelPool, pushed: &Pushed<u32>, ran: &AtomicUsize) {
        for _ in 0..pool.registry.threads() {
            drain(pool, ran);
        }
        let ran = ran.load(Ordering::SeqCst);
        match pushed {
            Pushed::Queued => assert_eq!(ran, 1, "a queued message was stranded"),
            Pushed::Raced(_) => assert!(ran == 1 || pool.registry.queued() == 1),
            Pushed::Refused(..) => assert_eq!(ran, 0),
            Pushed::NoWorker { .. } => unreachable!("the model's spawns never fail"),
        }
    }

    /// The first worker, which has waited out its idle timeout: it retires, or stays (a
    /// message needs it) and takes what is queued.
    fn idle_worker(pool: &Arc<ModelPool>, ran: &Arc<AtomicUsize>) -> loom::thread::JoinHandle<()> {
        let (p, r) = (pool.clone(), ran.clone());
        loom::thread::spawn(move || {
            if !p.registry.try_retire(&|| {}) {
                drain(&p, &r);
            }
        })
    }

    #[test]
    fn a_push_racing_a_retirement_is_never_stranded() {
        loom::model(|| {
            let pool = pool(Some(Duration::from_secs(1)));
            let ran = Arc::new(AtomicUsize::new(0));
            let worker = idle_worker(&pool, &ran);
            let pushed = Registry::push(&pool, 7);
            worker.join().unwrap();
            settle(&pool, &pushed, &ran);
        });
    }

    #[test]
    fn a_push_racing_a_retirement_and_a_shutdown_runs_or_is_handed_back() {
        loom::model(|| {
            let pool = pool(Some(Duration::from_secs(1)));
            let ran = Arc::new(AtomicUsize::new(0));
            let worker = idle_worker(&pool, &ran);
            let p = pool.clone();
            let shutdown = loom::thread::spawn(move || {
                assert!(p.registry.shutdown(false).is_empty());
            });
            let pushed = Registry::push(&pool, 7);
            worker.join().unwrap();
            shutdown.join().unwrap();
            settle(&pool, &pushed, &ran);
        });
    }

    #[test]
    fn a_push_racing_a_shutdown_with_a_busy_worker_runs_or_is_handed_back() {
        loom::model(|| {
            // No idle timeout: the one worker is saturated and `surplus` is not kept.
            let pool = pool(None);
            let ran = Arc::new(AtomicUsize::new(0));
            let (p, r) = (pool.clone(), ran.clone());
            let worker = loom::thread::spawn(move || {
                loop {
                    match p.registry.next(|| {}) {
                        Next::Message(_) => {
                            r.fetch_add(1, Ordering::SeqCst);
                            p.registry.mark_idle();
                        }
                        Next::Stop => {
                            p.registry.exit(|| {});
                            return;
                        }
                        Next::Retire => unreachable!("no idle timeout"),
                    }
                }
            });
            let p = pool.clone();
            let shutdown = loom::thread::spawn(move || {
                p.registry.shutdown(false);
            });
            let pushed = Registry::push(&pool, 7);
            shutdown.join().unwrap();
            worker.join().unwrap();
            settle(&pool, &pushed, &ran);
        });
    }
}
