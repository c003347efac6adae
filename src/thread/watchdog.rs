//! The thread pool's time limits ([`ThreadPoolBuilder::time_limit`](super::ThreadPoolBuilder::time_limit)
//! for every task, [`TaskOptions::time_limit`](crate::TaskOptions::time_limit) for one): one
//! watchdog thread per pool, started with the pool or at the first limited submit, fails the
//! future of a task that runs past its limit with [`TaskError::TimedOut`](crate::TaskError::TimedOut).
//!
//! A thread cannot be killed. The closure runs on to its end, its result is dropped, and its
//! worker is busy until then: the limit bounds how long a caller waits, not how long the work
//! takes. To stop the work itself, run it on the process pool, whose time limit kills the
//! worker process.
//!
//! Each worker that ran a limited task has a slot holding the deadline and a weak handle of
//! the task it runs. The watchdog sleeps until the earliest deadline, or until a task starts
//! if none runs; a start wakes it only when it had nothing to wait for or the new deadline
//! comes before the one it sleeps towards. A task that finished before its deadline has left
//! its slot, and one whose slot holds another task by then is not touched: the watchdog times
//! out only what the slot holds when the deadline passes.
//!
//! A task with its own limit is queued inside a [`Limited`], which tells the worker the
//! limit; every other task costs the worker one virtual call that answers `None`.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::future::Runnable;

/// What one worker runs now, and until when.
struct Timed {
    deadline: Instant,
    task: Weak<dyn Runnable>,
}

#[derive(Default)]
struct State {
    /// One slot per worker, by the index `enter` gave it.
    slots: Vec<Option<Timed>>,
    /// Slots of workers that left, to reuse.
    free: Vec<usize>,
    /// The watchdog is waiting for a task to start (nothing to time).
    idle: bool,
    /// The deadline the watchdog sleeps towards, if it sleeps.
    until: Option<Instant>,
    stop: bool,
}

/// The watchdog of one pool.
pub(super) struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

impl Watchdog {
    /// A watchdog, with its thread (named `name`) started.
    pub(super) fn start(name: String) -> std::io::Result<(Arc<Watchdog>, JoinHandle<()>)> {
        let watchdog = Arc::new(Watchdog {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let w = watchdog.clone();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || w.watch())?;
        Ok((watchdog, handle))
    }

    /// A worker arrives: its slot.
    pub(super) fn enter(&self) -> usize {
        let mut state = self.state.lock();
        match state.free.pop() {
            Some(slot) => slot,
            None => {
                state.slots.push(None);
                state.slots.len() - 1
            }
        }
    }

    /// A worker leaves.
    pub(super) fn leave(&self, slot: usize) {
        let mut state = self.state.lock();
        state.slots[slot] = None;
        state.free.push(slot);
    }

    /// The worker of `slot` starts `task`, limited to `limit`: its time counts from now.
    pub(super) fn begin(&self, slot: usize, task: &Arc<dyn Runnable>, limit: Duration) {
        let deadline = crate::future::deadline_after(limit);
        let mut state = self.state.lock();
        state.slots[slot] = Some(Timed {
            deadline,
            task: Arc::downgrade(task),
        });
        if state.idle || state.until.is_some_and(|until| deadline < until) {
            state.idle = false;
            state.until = None;
            self.wake.notify_one();
        }
    }

    /// The worker of `slot` is done with its task.
    pub(super) fn end(&self, slot: usize) {
        self.state.lock().slots[slot] = None;
    }

    /// Ends the watchdog's thread (the pool is gone).
    pub(super) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_one();
    }

    /// The watchdog thread's body.
    fn watch(&self) {
        let mut state = self.state.lock();
        loop {
            if state.stop {
                return;
            }
            let now = Instant::now();
            let mut expired = Vec::new();
            for slot in &mut state.slots {
                if slot.as_ref().is_some_and(|t| t.deadline <= now) {
                    expired.extend(slot.take().map(|t| t.task));
                }
            }
            if !expired.is_empty() {
                // Outside the lock: the futures' callbacks run here.
                drop(state);
                for task in expired {
                    if let Some(task) = task.upgrade() {
                        task.time_out();
                    }
                }
                state = self.state.lock();
                continue;
            }
            let next = state.slots.iter().flatten().map(|t| t.deadline).min();
            match next {
                Some(deadline) => {
                    state.until = Some(deadline);
                    let _ = self.wake.wait_until(&mut state, deadline);
                    state.until = None;
                }
                None => {
                    state.idle = true;
                    self.wake.wait(&mut state);
                }
            }
        }
    }
}

/// A task submitted with its own time limit, as the queue carries it.
pub(super) struct Limited {
    pub(super) task: Arc<dyn Runnable>,
    pub(super) limit: Duration,
}

impl Runnable for Limited {
    fn run(self: Arc<Self>, ctx: &crate::context::RunCtx<'_>) -> bool {
        self.task.clone().run(ctx)
    }

    fn cancel(self: Arc<Self>) -> bool {
        self.task.clone().cancel()
    }

    fn fail(self: Arc<Self>, err: crate::error::TaskError) -> bool {
        self.task.clone().fail(err)
    }

    fn time_out(self: Arc<Self>) -> bool {
        self.task.clone().time_out()
    }

    fn time_limit(&self) -> Option<Duration> {
        Some(self.limit)
    }
}
