//! The synchronisation primitives the crate is built on, switched to loom's under
//! `cfg(concurrent_futures_loom)` (a crate-specific name, so that tokio and other crates that
//! react to a plain `cfg(loom)` are left alone).
//!
//! Everything that the loom models exercise (the future's state machine, its waiter list and
//! the completion collector behind `wait` and `as_completed`) takes its atomics, mutex,
//! condition variable, `UnsafeCell` and thread parking from here. Outside loom these are `std`'s atomics and cell
//! and `parking_lot`'s mutex and condition variable. Task cells are shared with
//! `std::sync::Arc` in both flavours: loom's `Arc` cannot be coerced to a trait object, and
//! reference counting is not what the models check. Both flavours expose the same small
//! API: `Mutex::lock` returns a guard directly and `Condvar::wait` takes and returns the guard.
//!
//! Loom has no clock, so the timed waits below are untimed under loom: models only exercise
//! the untimed paths.

#[cfg(not(concurrent_futures_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicUsize};
    pub(crate) use std::thread::{current, park, park_timeout, Thread};

    use std::time::Instant;

    /// Waits a moment in a spin loop: crossbeam's backoff, spinning, then yielding.
    #[inline]
    pub(crate) fn snooze(backoff: &crossbeam_utils::Backoff) {
        backoff.snooze();
    }

    /// `std`'s `UnsafeCell` behind loom's closure-based API, so that the models check every
    /// access to the cell (loom's version records each one and reports overlapping ones).
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a pointer for reading; the caller vouches that nobody writes now.
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a pointer for writing; the caller vouches that nobody else accesses
        /// the cell now.
        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// A mutex whose `lock` cannot fail: `parking_lot` has no poisoning.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Mutex(parking_lot::const_mutex(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) const fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut guard);
            guard
        }

        /// Waits until notified or until `deadline`; the caller re-checks its condition.
        pub(crate) fn wait_until<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            deadline: Instant,
        ) -> MutexGuard<'a, T> {
            let _ = self.0.wait_until(&mut guard, deadline);
            guard
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

#[cfg(concurrent_futures_loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicUsize};
    pub(crate) use loom::thread::{current, park, Thread};

    use std::time::{Duration, Instant};

    /// Lets loom run another thread: a spin loop must yield for the model to make progress.
    pub(crate) fn snooze(_: &crossbeam_utils::Backoff) {
        loom::thread::yield_now();
    }

    /// Loom has no clock: a timed park is a plain park (models use untimed waits only).
    pub(crate) fn park_timeout(_: Duration) {
        park();
    }

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }

    #[derive(Debug)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap()
        }

        pub(crate) fn wait_until<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            _deadline: Instant,
        ) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap()
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

pub(crate) use imp::*;
