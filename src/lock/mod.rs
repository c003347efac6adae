//! Scoped guards over shared state: Python's `threading` locks, with the data inside.
//!
//! Each type mirrors one of Python's and is built on `parking_lot` (wrapped, not rewritten).
//! In Rust the lock owns the state it protects, so the Python idiom
//!
//! ```python
//! with lock:
//!     counter += 1
//! ```
//!
//! is a guard or a closure:
//!
//! ```
//! use concurrent_futures::lock::Lock;
//!
//! let counter = Lock::new(0);
//! *counter.lock() += 1;                // the guard unlocks at the end of the statement
//! counter.with(|n| *n += 1);           // or scope it in a closure
//! assert_eq!(counter.into_inner(), 2);
//! ```
//!
//! | Python `threading` | here |
//! | --- | --- |
//! | `Lock`, `acquire(timeout=t)` | [`Lock<T>`], [`Lock::lock_timeout`] |
//! | `RLock` | [`RLock<T>`] (re-entrant; shared access) |
//! | — | [`RwLock<T>`] (many readers or one writer) |
//! | `Condition`, `wait_for(pred, timeout)` | [`Condition<T>`], [`ConditionGuard::wait_for`] |
//! | `Semaphore`, `BoundedSemaphore` | [`Semaphore`], [`BoundedSemaphore`] (permits are guards) |
//! | `Event` | [`Event`] |
//! | `Barrier`, `BrokenBarrierError` | [`Barrier`], [`BrokenBarrierError`] |
//!
//! Timed acquires return `Result<Guard, TimeoutError>` where Python returns `False`.
//! Unlike `std`'s locks there is no poisoning: a panic while a guard is held unlocks it.

mod barrier;
mod condition;
mod event;
mod mutex;
mod rwlock;
mod semaphore;

pub use self::barrier::{Barrier, BrokenBarrierError};
pub use self::condition::{Condition, ConditionGuard};
pub use self::event::Event;
pub use self::mutex::{Lock, LockGuard, RLock, RLockGuard};
pub use self::rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use self::semaphore::{BoundedSemaphore, OverReleaseError, Semaphore, SemaphorePermit};
pub use crate::error::TimeoutError;
