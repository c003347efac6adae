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

use crate::sync::{Condvar, Mutex};

#[derive(Debug)]
// Public in name only (the module is private): it appears in the sealed `Watch` trait.
pub struct Collector {
    ready: Mutex<Ready>,
    cv: Condvar,
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
        }
    }

    /// Called by the completing thread, after the future's own lock is released.
    pub(crate) fn notify(&self, key: usize) {
        let mut ready = self.ready.lock();
        ready.keys.push_back(key);
        let waker = ready.waker.take();
        drop(ready);
        self.cv.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Pops the next completed key without blocking.
    pub(crate) fn try_pop(&self) -> Option<usize> {
        self.ready.lock().keys.pop_front()
    }

    /// Pops the next completed key, blocking until one arrives or `deadline` passes.
    pub(crate) fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut ready = self.ready.lock();
        loop {
            if let Some(key) = ready.keys.pop_front() {
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
        match ready.keys.pop_front() {
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
