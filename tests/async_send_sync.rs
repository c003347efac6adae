//! Which public types are `Send` and `Sync`: a compile-time check of the promises in the docs.

use concurrent_futures::lock::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, RwLock, Semaphore,
};
use concurrent_futures::*;

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_cross_threads() {
    send_sync::<ThreadPoolExecutor>();
    send_sync::<Future<Vec<u8>>>();
    send_sync::<SharedFuture<Vec<u8>>>();
    send_sync::<Promise<Vec<u8>>>();
    send_sync::<TaskError>();
    send_sync::<SubmitError<fn()>>();
    send::<Map<'static, u8>>();
    send::<MapUnordered<'static, u8>>();
    send::<AsCompleted<Future<u8>>>();
    send::<AsCompletedTimeout<Future<u8>>>();
    send_sync::<Lock<u8>>();
    send_sync::<RLock<u8>>();
    sync::<RwLock<u8>>();
    send_sync::<Condition<u8>>();
    send_sync::<Semaphore>();
    send_sync::<BoundedSemaphore>();
    send_sync::<Event>();
    send_sync::<Barrier>();
    #[cfg(all(unix, feature = "process"))]
    {
        send_sync::<ProcessPoolExecutor>();
        send_sync::<ProcessPoolBuilder>();
    }
}

/// A future of a `Send` but not `Sync` value is still `Sync`: only its owner moves the value.
#[test]
fn future_of_a_cell_is_sync() {
    send_sync::<Future<std::cell::Cell<u8>>>();
}

/// A closure that uses a future can go to `catch_unwind`, as one that uses tokio's
/// `JoinHandle` can.
#[test]
fn futures_are_unwind_safe() {
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    unwind_safe::<Future<Vec<u8>>>();
    unwind_safe::<Future<std::cell::Cell<u8>>>();
    let pool = ThreadPoolExecutor::new();
    let fut = pool.submit(|| 7u8).unwrap();
    let caught = std::panic::catch_unwind(|| {
        fut.wait();
        panic!("after the wait");
    });
    assert!(caught.is_err());
    assert_eq!(fut.result(), Ok(7), "the future is whole after the panic");
}
