//! `Future`, `SharedFuture` and `Promise`: states, results, callbacks, cancellation, `.await`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::{HANG, capture_logs, logged};
use concurrent_futures::{
    InvalidStateError, Promise, ResultTimeoutError, State, TaskError, ThreadPoolExecutor,
    TryResultError,
};

#[test]
fn states_follow_pending_running_finished() {
    let (promise, future) = Promise::new();
    assert_eq!(future.state(), State::Pending);
    assert!(!future.running() && !future.done() && !future.cancelled());
    assert!(promise.set_running_or_notify_cancel());
    assert_eq!(future.state(), State::Running);
    assert!(future.running());
    promise.set_result(1).unwrap();
    assert_eq!(future.state(), State::Finished);
    assert!(future.done() && !future.running());
    assert_eq!(future.result(), Ok(1));
}

#[test]
fn cancel_is_true_while_pending_and_when_already_cancelled() {
    let (promise, future) = Promise::<u8>::new();
    assert!(future.cancel());
    assert!(
        future.cancel(),
        "Python returns True for an already cancelled future"
    );
    assert!(future.cancelled() && future.done());
    assert!(promise.cancelled());
    assert!(!promise.set_running_or_notify_cancel());
    assert_eq!(future.result(), Err(TaskError::Cancelled));
}

#[test]
fn cancel_is_false_once_running_or_finished() {
    let (promise, future) = Promise::<u8>::new();
    assert!(promise.set_running_or_notify_cancel());
    assert!(!future.cancel());
    promise.set_result(3).unwrap();
    assert!(!future.cancel());
    assert_eq!(future.result(), Ok(3));
}

#[test]
fn result_moves_a_value_that_is_not_clone() {
    struct NotClone(Vec<u8>);
    let pool = ThreadPoolExecutor::new();
    let fut = pool.submit(|| NotClone(vec![1, 2])).unwrap();
    let value = fut.result().unwrap();
    assert_eq!(value.0, [1, 2]);
}

#[test]
fn result_timeout_hands_the_future_back_and_does_not_cancel() {
    let (promise, future) = Promise::new();
    let future = match future.result_timeout(Duration::from_millis(5)) {
        Err(ResultTimeoutError::Timeout(f)) => f,
        other => panic!("expected a timeout, got {other:?}"),
    };
    assert_eq!(future.state(), State::Pending);
    promise.set_result("late").unwrap();
    assert_eq!(future.result_timeout(HANG).unwrap(), "late");
}

#[test]
fn result_timeout_reports_a_failed_task() {
    let (promise, future) = Promise::<u8>::new();
    promise.set_exception("bad").unwrap();
    match future.result_timeout(HANG) {
        Err(ResultTimeoutError::Failed(TaskError::Failed(e))) => assert_eq!(e.to_string(), "bad"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn try_result_does_not_block() {
    let (promise, future) = Promise::new();
    let future = match future.try_result() {
        Err(TryResultError::NotDone(f)) => f,
        other => panic!("unexpected {other:?}"),
    };
    promise.set_result(5).unwrap();
    assert_eq!(future.try_result().unwrap(), 5);
}

#[test]
fn exception_gives_the_error_without_the_value() {
    let pool = ThreadPoolExecutor::new();
    let ok = pool.submit(|| 1).unwrap();
    assert_eq!(ok.exception(), None);
    assert_eq!(ok.result(), Ok(1), "exception() leaves the value in place");

    let bad = pool.submit(|| -> u8 { panic!("kaput") }).unwrap();
    let err = bad.exception().unwrap();
    assert_eq!(err.panic_message(), Some("kaput"));
    assert_eq!(
        bad.exception(),
        Some(err.clone()),
        "the error stays readable"
    );
    assert_eq!(bad.result(), Err(err));

    let (_p, cancelled) = Promise::<u8>::new();
    cancelled.cancel();
    assert_eq!(cancelled.exception(), Some(TaskError::Cancelled));

    let (_q, pending) = Promise::<u8>::new();
    assert!(pending.exception_timeout(Duration::from_millis(1)).is_err());
}

#[test]
fn panic_message_is_kept_for_str_string_and_other_payloads() {
    let pool = ThreadPoolExecutor::new();
    let s = pool.submit(|| -> () { panic!("static str") }).unwrap();
    let n = 7;
    let f = pool
        .submit(move || -> () { panic!("formatted {n}") })
        .unwrap();
    let a = pool
        .submit(|| -> () { std::panic::panic_any(42_u32) })
        .unwrap();
    assert_eq!(s.result().unwrap_err().panic_message(), Some("static str"));
    assert_eq!(f.result().unwrap_err().panic_message(), Some("formatted 7"));
    assert_eq!(
        a.result().unwrap_err().panic_message(),
        Some("Box<dyn Any>")
    );
}

#[test]
fn callback_on_a_done_future_runs_at_once_in_the_caller() {
    let (promise, future) = Promise::new();
    promise.set_result(1).unwrap();
    let me = thread::current().id();
    let ran_in = Arc::new(Mutex::new(None));
    let r = ran_in.clone();
    future.add_done_callback(move |_| *r.lock().unwrap() = Some(thread::current().id()));
    assert_eq!(*ran_in.lock().unwrap(), Some(me));
}

#[test]
fn callbacks_run_once_in_order_in_the_completing_thread() {
    let (promise, future) = Promise::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let order = order.clone();
        future.add_done_callback(move |f| {
            assert!(f.done(), "callbacks see the final state");
            order.lock().unwrap().push((i, thread::current().id()));
        });
    }
    let completer = thread::spawn(move || {
        promise.set_result(()).unwrap();
        thread::current().id()
    });
    let completer = completer.join().unwrap();
    let order = order.lock().unwrap();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(order.iter().all(|(_, t)| *t == completer));
}

#[test]
fn callbacks_run_on_cancel_too() {
    let (_promise, future) = Promise::<u8>::new();
    let (tx, rx) = mpsc::channel();
    future.add_done_callback(move |f| tx.send(f.state()).unwrap());
    future.cancel();
    assert_eq!(rx.recv_timeout(HANG).unwrap(), State::Cancelled);
}

#[test]
fn a_panicking_callback_is_logged_and_the_others_still_run() {
    capture_logs();
    let (promise, future) = Promise::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    future.add_done_callback(|_| panic!("callback-boom-1234"));
    future.add_done_callback(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    promise.set_result(()).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let records = logged("callback-boom-1234");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0].starts_with("ERROR concurrent_futures"),
        "{records:?}"
    );
    assert_eq!(
        future.result(),
        Ok(()),
        "the future's own result is untouched"
    );
}

#[test]
fn cancel_wakes_a_blocked_wait_and_result() {
    let (_promise, future) = Promise::<u8>::new();
    let shared = future.share();
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (s, tx) = (shared.clone(), tx.clone());
            thread::spawn(move || {
                tx.send(()).unwrap();
                s.result().copied()
            })
        })
        .collect();
    for _ in 0..3 {
        rx.recv().unwrap();
    }
    assert!(shared.cancel());
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err(TaskError::Cancelled));
    }
}

#[test]
fn abandoning_a_promise_wakes_a_blocked_result() {
    let (promise, future) = Promise::<u8>::new();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        tx.send(()).unwrap();
        future.result()
    });
    rx.recv().unwrap();
    drop(promise);
    assert_eq!(waiter.join().unwrap(), Err(TaskError::Abandoned));
}

#[test]
fn cancel_wakes_an_await() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (gate, started) = (common::Gate::new(), common::Gate::new());
    let (g, st) = (gate.clone(), started.clone());
    let blocker = pool
        .submit(move || {
            st.open();
            g.pass()
        })
        .unwrap();
    started.pass(); // the only worker is busy: the next task stays queued
    let queued = pool.submit(|| 1).unwrap();
    let (tx, rx) = mpsc::channel();
    let awaiting = thread::spawn(move || {
        tx.send(()).unwrap();
        futures::executor::block_on(queued)
    });
    rx.recv().unwrap();
    pool.shutdown_with(false, true); // cancels every queued task
    assert_eq!(awaiting.join().unwrap(), Err(TaskError::Cancelled));
    gate.open();
    blocker.result().unwrap();
}

#[test]
fn await_resolves_when_a_worker_finishes() {
    let pool = ThreadPoolExecutor::new();
    let gate = common::Gate::new();
    let g = gate.clone();
    let fut = pool
        .submit(move || {
            g.pass();
            "done"
        })
        .unwrap();
    let opener = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        gate.open();
    });
    assert_eq!(futures::executor::block_on(fut), Ok("done"));
    opener.join().unwrap();
}

#[test]
fn promise_completed_twice_is_an_invalid_state_error_with_the_value_back() {
    let (promise, future) = Promise::new();
    promise.set_result(String::from("first")).unwrap();
    let err: InvalidStateError<String> = promise.set_result(String::from("second")).unwrap_err();
    assert_eq!(err.state(), State::Finished);
    assert_eq!(err.to_string(), "future is already finished");
    assert_eq!(err.into_inner(), "second");
    assert!(promise.set_exception("x").is_err());
    assert_eq!(future.result().unwrap(), "first");
}

#[test]
fn promise_completed_after_cancel_is_an_invalid_state_error() {
    let (promise, future) = Promise::new();
    future.cancel();
    let err = promise.set_result(1).unwrap_err();
    assert_eq!(err.state(), State::Cancelled);
}

#[test]
fn dropped_promise_abandons_its_future() {
    let (promise, future) = Promise::<u8>::new();
    drop(promise);
    assert_eq!(future.result(), Err(TaskError::Abandoned));
}

#[test]
fn futures_hash_and_compare_by_identity() {
    let pool = ThreadPoolExecutor::new();
    let mut names = HashMap::new();
    let futs: Vec<_> = (0..10).map(|i| pool.submit(move || i).unwrap()).collect();
    for (i, f) in futs.iter().enumerate() {
        names.insert(f.id(), i);
    }
    assert_eq!(names.len(), 10);
    assert_eq!(futs[3], futs[3]);
    assert_ne!(futs[3], futs[4]);
    let set: std::collections::HashSet<_> = futs.into_iter().collect();
    assert_eq!(set.len(), 10);
}

#[test]
fn shared_future_hands_every_clone_the_same_value() {
    let pool = ThreadPoolExecutor::new();
    let shared = pool.submit(|| vec![1u8; 1000]).unwrap().share();
    let clones: Vec<_> = (0..4).map(|_| shared.clone()).collect();
    let first: *const Vec<u8> = shared.result().unwrap();
    for c in &clones {
        assert!(
            std::ptr::eq(first, c.result().unwrap()),
            "no clone of the value"
        );
    }
    let readers: Vec<_> = clones
        .into_iter()
        .map(|c| thread::spawn(move || c.result().unwrap().len()))
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), 1000);
    }
}

#[test]
fn shared_future_callbacks_read_the_value() {
    let (promise, future) = Promise::new();
    let shared = future.share();
    let (tx, rx) = mpsc::channel();
    shared.add_done_callback(move |f| tx.send(f.result().copied()).unwrap());
    promise.set_result(11).unwrap();
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Ok(11));
    assert_eq!(shared.result(), Ok(&11));
}

#[test]
fn shared_future_errors_and_timeouts() {
    let (promise, future) = Promise::<u8>::new();
    let shared = future.share();
    assert!(shared.try_result().is_none());
    assert!(shared.result_timeout(Duration::from_millis(1)).is_none());
    promise.set_exception("nope").unwrap();
    assert!(matches!(shared.result(), Err(TaskError::Failed(_))));
    assert!(shared.exception().is_some());
    assert_eq!(shared.state(), State::Finished);
}

#[test]
#[allow(clippy::mutable_key_type)] // hashing is by identity; the lint cannot see that
fn shared_futures_are_map_keys() {
    let pool = ThreadPoolExecutor::new();
    let mut urls = HashMap::new();
    for url in ["a", "bb", "ccc"] {
        urls.insert(pool.submit(move || url.len()).unwrap().share(), url);
    }
    for (fut, url) in &urls {
        assert_eq!(*fut.result().unwrap(), url.len());
    }
}

#[test]
fn a_tasks_own_error_keeps_its_source_chain_through_result_flat() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("could not load the model")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let pool = concurrent_futures::ThreadPoolExecutor::new();
    let fut = pool
        .submit(|| -> Result<u8, Outer> { Err(Outer(std::io::ErrorKind::NotFound.into())) })
        .unwrap();
    let err = fut.result_flat().unwrap_err();
    use std::error::Error as _;
    assert_eq!(err.to_string(), "could not load the model");
    let cause = err.source().expect("the task's error's own cause");
    assert_eq!(
        cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
    assert!(err.failure().unwrap().downcast_ref::<Outer>().is_some());
    // A boxed error takes it with one `?`.
    let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
    assert_eq!(boxed.to_string(), "could not load the model");
}

#[test]
fn on_result_hands_the_outcome_to_the_callback() {
    use std::sync::mpsc;
    let pool = concurrent_futures::ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    // Not Clone, not shared: the value itself moves into the callback.
    struct Page(String);
    let t = tx.clone();
    pool.submit(|| Page("body".into()))
        .unwrap()
        .on_result(move |r| t.send(r.map(|p| p.0)).unwrap());
    assert_eq!(rx.recv().unwrap(), Ok("body".to_string()));
    // Already done: it runs at once, here.
    let done = pool.submit(|| 1).unwrap();
    while !done.done() {
        std::thread::yield_now();
    }
    let here = std::thread::current().id();
    let t = tx.clone();
    done.on_result(move |r| {
        assert_eq!(std::thread::current().id(), here);
        t.send(r.map(|v| v.to_string())).unwrap();
    });
    assert_eq!(rx.try_recv().unwrap(), Ok("1".to_string()));
    // Cancelled: the callback sees it.
    let (blocker_tx, blocker_rx) = mpsc::channel::<()>();
    let blocker = pool.submit(move || blocker_rx.recv().unwrap()).unwrap();
    let queued = pool.submit(|| String::from("never")).unwrap();
    assert!(queued.cancel());
    queued.on_result(move |r| tx.send(r).unwrap());
    assert_eq!(rx.recv().unwrap(), Err(TaskError::Cancelled));
    blocker_tx.send(()).unwrap();
    blocker.result().unwrap();
}

#[test]
fn result_after_polling_to_completion_by_reference_is_a_typed_error() {
    // Hardening round 2, finding 9: this panicked with "entered unreachable code (rule 5)".
    let pool = ThreadPoolExecutor::new();
    let mut fut = pool.submit(|| String::from("value")).unwrap();
    assert_eq!(futures::executor::block_on(&mut fut).unwrap(), "value");
    // A second poll and `result()` both say where the value went.
    assert_eq!(futures::executor::block_on(&mut fut), Err(TaskError::Taken));
    let err = fut.result().unwrap_err();
    assert_eq!(err, TaskError::Taken);
    assert!(err.to_string().contains("polled to completion"), "{err}");
}
