//! Loom models of the future's state machine: every interleaving of the races named below.
//!
//! Run with `RUSTFLAGS="--cfg concurrent_futures_loom" cargo test --release --test loom` (the CI does).
#![cfg(concurrent_futures_loom)]

use std::sync::Arc;

use concurrent_futures::{Promise, ReturnWhen, State, TaskError, as_completed, wait};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// PENDING -> RUNNING (claim) against PENDING -> CANCELLED: exactly one wins, and the
/// loser sees it.
#[test]
fn claim_vs_cancel() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let future = Arc::new(future);
        let f = future.clone();
        let canceller = thread::spawn(move || f.cancel());
        let claimed = promise.set_running_or_notify_cancel();
        if claimed {
            promise.set_result(1).unwrap();
        }
        let cancelled = canceller.join().unwrap();
        assert_ne!(claimed, cancelled);
        let state = future.state();
        assert_eq!(
            state,
            if claimed {
                State::Finished
            } else {
                State::Cancelled
            }
        );
    });
}

/// finish against cancel on a pending future: exactly one takes effect.
#[test]
fn finish_vs_cancel() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let future = Arc::new(future);
        let f = future.clone();
        let canceller = thread::spawn(move || f.cancel());
        let set = promise.set_result(3).is_ok();
        let cancelled = canceller.join().unwrap();
        assert_ne!(set, cancelled);
        drop(promise);
        let future = Arc::try_unwrap(future).unwrap();
        assert_eq!(
            future.result(),
            if set {
                Ok(3)
            } else {
                Err(TaskError::Cancelled)
            }
        );
    });
}

/// A blocked `result()` against completion: the wake-up is never lost.
#[test]
fn waiter_vs_finish() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let setter = thread::spawn(move || promise.set_result(7).unwrap());
        assert_eq!(future.result(), Ok(7));
        setter.join().unwrap();
    });
}

/// A blocked `result()` against cancel from another handle: woken at once.
#[test]
fn waiter_vs_cancel() {
    loom::model(|| {
        let (_promise, future) = Promise::<u8>::new();
        let shared = future.share();
        let s = shared.clone();
        let canceller = thread::spawn(move || s.cancel());
        assert_eq!(shared.result(), Err(TaskError::Cancelled));
        assert!(canceller.join().unwrap());
    });
}

/// `add_done_callback` against completion: the callback runs exactly once, whichever
/// thread runs it.
#[test]
fn callback_registration_vs_finish() {
    loom::model(|| {
        let calls = Arc::new(AtomicUsize::new(0));
        let (promise, future) = Promise::<u8>::new();
        let setter = thread::spawn(move || promise.set_result(1).unwrap());
        let c = calls.clone();
        future.add_done_callback(move |f| {
            assert!(f.done());
            c.fetch_add(1, Ordering::SeqCst);
        });
        setter.join().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

/// `as_completed` registration against completions in two threads: each future is yielded
/// once and the iterator never blocks forever.
#[test]
fn as_completed_vs_finishes() {
    loom::model(|| {
        let (p1, f1) = Promise::<u8>::new();
        let (p2, f2) = Promise::<u8>::new();
        let t1 = thread::spawn(move || p1.set_result(1).unwrap());
        let t2 = thread::spawn(move || p2.set_result(2).unwrap());
        let mut got: Vec<u8> = as_completed([f1, f2])
            .map(|f| f.result().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// `wait(FIRST_COMPLETED)` against a cancel: cancellation wakes it.
#[test]
fn wait_vs_cancel() {
    loom::model(|| {
        let (_p, future) = Promise::<u8>::new();
        let shared = future.share();
        let s = shared.clone();
        let canceller = thread::spawn(move || {
            s.cancel();
        });
        let (done, not_done) = wait([shared], None, ReturnWhen::FirstCompleted);
        assert_eq!((done.len(), not_done.len()), (1, 0));
        canceller.join().unwrap();
    });
}

/// Dropping an unfinished promise against a blocked waiter: abandoned, woken.
#[test]
fn promise_drop_vs_waiter() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let dropper = thread::spawn(move || drop(promise));
        assert_eq!(future.result(), Err(TaskError::Abandoned));
        dropper.join().unwrap();
    });
}

/// Two threads finish the same promise: one wins, the other is told the state the winner
/// left (never a torn or doubled write of the outcome).
#[test]
fn finish_vs_finish() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let promise = Arc::new(promise);
        let p = promise.clone();
        let other = thread::spawn(move || p.set_result(2).map_err(|e| e.state()));
        let mine = promise.set_result(1).map_err(|e| e.state());
        let theirs = other.join().unwrap();
        assert!(mine.is_ok() != theirs.is_ok());
        assert_eq!(mine.err().or(theirs.err()), Some(State::Finished));
        let value = future.result().unwrap();
        assert_eq!(value, if mine.is_ok() { 1 } else { 2 });
    });
}

/// `exception()` in two threads while the future completes with an error: the reads of
/// the error overlap, nothing writes under them, and the owner then takes it.
#[test]
fn exception_reads_vs_completion() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let future = Arc::new(future);
        let f = future.clone();
        let reader = thread::spawn(move || f.exception().map(|e| e.to_string()));
        let setter = thread::spawn(move || promise.set_exception("bad").unwrap());
        let mine = future.exception().map(|e| e.to_string());
        assert_eq!(reader.join().unwrap().as_deref(), Some("bad"));
        assert_eq!(mine.as_deref(), Some("bad"));
        setter.join().unwrap();
        let future = Arc::try_unwrap(future).unwrap();
        assert_eq!(future.result().unwrap_err().to_string(), "bad");
    });
}

/// A pool task run by a worker (claim, then the lock-free completion) against a cancel and a
/// blocked waiter: exactly one of run and cancel wins, and the waiter sees that outcome.
#[test]
fn run_vs_cancel_vs_waiter() {
    loom::model(|| {
        let (queued, future) = concurrent_futures::__loom::task(|| 5u8);
        let shared = future.share();
        let s = shared.clone();
        let worker = thread::spawn(move || queued.run());
        let cancelled = s.cancel();
        let result = shared.result().copied();
        let ran = worker.join().unwrap();
        assert!(ran != cancelled);
        assert_eq!(
            result,
            if ran {
                Ok(5)
            } else {
                Err(TaskError::Cancelled)
            }
        );
    });
}

/// A worker running a task (as a waiting worker runs its own pool's queued task inline)
/// against a broken pool failing the same task from the queue: exactly one takes effect, and
/// a callback registered meanwhile fires once.
#[test]
fn run_vs_fail_vs_callback() {
    loom::model(|| {
        let calls = Arc::new(AtomicUsize::new(0));
        let (queued, future) = concurrent_futures::__loom::task(|| 5u8);
        let q = queued.clone();
        let worker = thread::spawn(move || q.run());
        let c = calls.clone();
        future.add_done_callback(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let failed = queued.fail();
        let ran = worker.join().unwrap();
        assert!(ran != failed);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        match future.result() {
            Ok(5) => assert!(ran),
            Err(TaskError::BrokenExecutor(_)) => assert!(failed),
            other => panic!("unexpected outcome {other:?}"),
        }
    });
}

/// Two clones of a shared future read its result for the first time at once, while the
/// promise completes it: the value is moved out of the task exactly once, and both readers
/// see it by reference.
#[test]
fn shared_first_reads_vs_finish() {
    loom::model(|| {
        let (promise, future) = Promise::<u8>::new();
        let shared = future.share();
        let s = shared.clone();
        let reader = thread::spawn(move || s.result().copied());
        let finisher = thread::spawn(move || promise.set_result(7).unwrap());
        assert_eq!(shared.result().copied(), Ok(7));
        assert_eq!(reader.join().unwrap(), Ok(7));
        finisher.join().unwrap();
    });
}
