//! The completion queue behind `wait`, `as_completed` and unordered `map`.
//!
//! A collector is registered on each watched future with a key (the future's index in the
//! caller's set). The thread that completes or cancels a future pushes its key; the consumer
//! pops keys in completion order, blocking on a condition variable or registering a waker.
//! Each completion costs one push, so watching `n` futures costs O(n) in all: no polling, no
//! rescanning.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicUsize, Condvar, Mutex, Spun, spin_until};

#[derive(Debug)]
// Public in name only (the module is private): it appears in the sealed `Watch` trait.
pub struct Collector {
    ready: Mutex<Ready>,
    cv: Condvar,
    /// Keys in `ready`, readable without the lock, so a spinning consumer does not contend
    /// with the completing threads. Written only with `ready` locked, so a plain store of
    /// the new length does (no read-modify-write on a line that every completion touches).
    /// On its own cache line: a consumer polling it while it spins must not pull the lock's
    /// line away from a completing thread in the middle of `notify`.
    len: CachePadded<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Ready {
    keys: VecDeque<usize>,
    waker: Option<Waker>,
}

impl Collector {
    pub(crate) fn new() -> Collector {
        Collector {
            ready: Mutex::new(Ready::default()),
            cv: Condvar::new(),
            len: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Called by the completing thread, after the future's own lock is released.
    pub(crate) fn notify(&self, key: usize) {
        let mut ready = self.ready.lock();
        ready.keys.push_back(key);
        self.len.store(ready.keys.len(), Ordering::Release);
        let waker = ready.waker.take();
        drop(ready);
        self.cv.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Pops the next completed key without blocking.
    pub(crate) fn try_pop(&self) -> Option<usize> {
        // ORDERING: Acquire pairs with the Release store in `notify`; a zero may be stale,
        // which only means one more look later.
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.take(&mut self.ready.lock())
    }

    fn take(&self, ready: &mut Ready) -> Option<usize> {
        let key = ready.keys.pop_front()?;
        self.len.store(ready.keys.len(), Ordering::Relaxed);
        Some(key)
    }

    /// Pops the next completed key, blocking until one arrives or `deadline` passes.
    pub(crate) fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        if let Some(key) = self.try_pop() {
            return Some(key);
        }
        // Spin and yield briefly before sleeping, as `block_until` does: when completions
        // come every few microseconds, a consumer that stays awake spares every completing
        // thread a wake-up call.
        match spin_until(deadline, || self.try_pop()) {
            Spun::Ready(key) => return Some(key),
            Spun::TimedOut => return None,
            Spun::GaveUp => {}
        }
        let mut ready = self.ready.lock();
        loop {
            if let Some(key) = self.take(&mut ready) {
                return Some(key);
            }
            match deadline {
                None => ready = self.cv.wait(ready),
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    ready = self.cv.wait_until(ready, deadline);
                }
            }
        }
    }

    /// Pops the next completed key, or registers the task's waker and returns `Pending`.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<usize> {
        let mut ready = self.ready.lock();
        match self.take(&mut ready) {
            Some(key) => Poll::Ready(key),
            None => {
                match &mut ready.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}
