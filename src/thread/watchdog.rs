//! The thread pool's time limit ([`ThreadPoolBuilder::time_limit`](super::ThreadPoolBuilder::time_limit)):
//! one watchdog thread per pool fails the future of a task that runs past the limit with
//! [`TaskError::TimedOut`](crate::TaskError::TimedOut).
//!
//! A thread cannot be killed. The closure runs on to its end, its result is dropped, and its
//! worker is busy until then: the limit bounds how long a caller waits, not how long the work
//! takes. To stop the work itself, run it on the process pool, whose time limit kills the
//! worker process.
//!
//! Each worker has a slot holding the deadline and a weak handle of the task it runs. The
//! watchdog sleeps until the earliest deadline, or until a task starts if none runs; with one
//! limit for every task, a task that starts later never has an earlier deadline, so a start
//! wakes the watchdog only when it had nothing to wait for. A task that finished before its
//! deadline has left its slot, and one whose slot holds another task by then is not touched:
//! the watchdog times out only what the slot holds when the deadline passes.

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
    stop: bool,
}

/// The watchdog of one pool.
pub(super) struct Watchdog {
    limit: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

impl Watchdog {
    /// A watchdog for tasks limited to `limit`, with its thread (named `name`) started.
    pub(super) fn start(
        limit: Duration,
        name: String,
    ) -> std::io::Result<(Arc<Watchdog>, JoinHandle<()>)> {
        let watchdog = Arc::new(Watchdog {
            limit,
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

    /// The worker of `slot` starts `task`: its time counts from now.
    pub(super) fn begin(&self, slot: usize, task: &Arc<dyn Runnable>) {
        let deadline = crate::future::deadline_after(self.limit);
        let mut state = self.state.lock();
        state.slots[slot] = Some(Timed {
            deadline,
            task: Arc::downgrade(task),
        });
        if state.idle {
            state.idle = false;
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
                    let _ = self.wake.wait_until(&mut state, deadline);
                }
                None => {
                    state.idle = true;
                    self.wake.wait(&mut state);
                }
            }
        }
    }
}
