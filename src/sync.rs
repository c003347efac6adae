//! The synchronisation primitives the crate is built on, switched to loom's under
//! `cfg(concurrent_futures_loom)` (a crate-specific name, so that tokio and other crates that
//! react to a plain `cfg(loom)` are left alone).
//!
//! Everything that the loom models exercise (the future's state machine, its waiter list and
//! the completion collector behind `wait` and `as_completed`) takes its atomics, mutex,
//! condition variable and thread parking from here. Outside loom these are `std`'s atomics
//! and `parking_lot`'s mutex and condition variable. Task cells are shared with
//! `std::sync::Arc` in both flavours: loom's `Arc` cannot be coerced to a trait object, and
//! reference counting is not what the models check. Both flavours expose the same small
//! API: `Mutex::lock` returns a guard directly and `Condvar::wait` takes and returns the guard.
//!
//! Loom has no clock, so the timed waits below are untimed under loom: models only exercise
//! the untimed paths.

#[cfg(not(concurrent_futures_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU8, AtomicU32, AtomicUsize};
    pub(crate) use std::thread::{Thread, current, park, park_timeout};

    use std::time::Instant;

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

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(concurrent_futures_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicIsize, AtomicU8, AtomicU32, AtomicUsize,
    };
    pub(crate) use loom::thread::{Thread, current, park};

    use std::time::{Duration, Instant};

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

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

pub(crate) use imp::*;

/// What [`spin_until`] found.
// Under loom only `GaveUp` is ever made: the spin is compiled out.
#[cfg_attr(concurrent_futures_loom, allow(dead_code))]
pub(crate) enum Spun<R> {
    /// `poll` succeeded.
    Ready(R),
    /// The deadline passed first.
    TimedOut,
    /// Nothing yet: time to block.
    GaveUp,
}

/// Looks for `poll` to succeed for a few microseconds before the caller blocks: a result that
/// is that close is cheaper to catch awake than to be woken for (waking a parked thread can
/// cost tens of microseconds on a virtual machine).
///
/// The spin budget is crossbeam's `Backoff`'s (127 spin hints, about 3 µs here, then four
/// yields), but `poll` runs after every hint rather than after exponentially longer runs of
/// them: with `Backoff` a result that arrives at 0.37 µs was only seen at 0.74, so a round
/// trip's latency moved in steps with timing details as small as code layout. Polling a line
/// that only the completing thread writes costs nothing but that line's one transfer.
///
/// Under loom there is no clock and nothing to gain: it gives up at once.
#[inline]
pub(crate) fn spin_until<R>(
    deadline: Option<std::time::Instant>,
    mut poll: impl FnMut() -> Option<R>,
) -> Spun<R> {
    #[cfg(not(concurrent_futures_loom))]
    {
        const SPINS: u32 = 127;
        const YIELDS: u32 = 4;
        let timed_out = || deadline.is_some_and(|d| std::time::Instant::now() >= d);
        for i in 1..=SPINS + YIELDS {
            if i <= SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            if let Some(r) = poll() {
                return Spun::Ready(r);
            }
            // The clock is read every 16 hints and after every yield (as often as `Backoff`
            // did), not on every hint.
            if (i % 16 == 0 || i > SPINS) && timed_out() {
                return Spun::TimedOut;
            }
        }
    }
    #[cfg(concurrent_futures_loom)]
    let _ = (deadline, &mut poll);
    Spun::GaveUp
}
