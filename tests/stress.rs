//! Stress tests, each named after the race it chases. They assert outcomes, never timings.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use common::HANG;
use concurrent_futures::{
    Promise, ResultTimeoutError, ReturnWhen, State, SubmitError, TaskError, ThreadPoolExecutor,
    as_completed, wait,
};

#[test]
fn race_cancel_vs_start() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<concurrent_futures::SharedFuture<usize>>();
    let canceller = thread::spawn(move || {
        let mut won = 0;
        for fut in rx {
            won += usize::from(fut.cancel());
        }
        won
    });
    let mut all = Vec::new();
    for i in 0..5000 {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let fut = pool
            .submit(move || {
                r.store(true, Ordering::SeqCst);
                i
            })
            .unwrap()
            .share();
        tx.send(fut.clone()).unwrap();
        all.push((i, fut, ran));
    }
    drop(tx);
    let won = canceller.join().unwrap();
    pool.shutdown();
    let mut cancelled = 0;
    for (i, fut, ran) in all {
        match fut.result() {
            Err(TaskError::Cancelled) => {
                cancelled += 1;
                assert!(
                    !ran.load(Ordering::SeqCst),
                    "task {i} ran although cancelled"
                );
                assert_eq!(fut.state(), State::Cancelled);
            }
            Ok(v) => {
                assert_eq!(*v, i);
                assert!(ran.load(Ordering::SeqCst));
            }
            Err(e) => panic!("task {i}: {e}"),
        }
    }
    assert_eq!(
        cancelled, won,
        "cancel() returned true exactly for the cancelled ones"
    );
}

#[test]
fn race_timeout_vs_finish() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    for i in 0..2000u64 {
        let mut fut = pool.submit(move || i * 3).unwrap();
        let mut tries = 0u64;
        let value = loop {
            // Timeouts from 0 to a few microseconds land on both sides of the finish.
            match fut.result_timeout(Duration::from_nanos((tries * 997 + i) % 5000)) {
                Ok(v) => break v,
                Err(ResultTimeoutError::Timeout(f)) => fut = f,
                Err(ResultTimeoutError::Failed(e)) => panic!("{e}"),
            }
            tries += 1;
        };
        assert_eq!(value, i * 3);
    }
}

#[test]
fn race_shutdown_vs_submit() {
    for _ in 0..20 {
        let pool = Arc::new(
            ThreadPoolExecutor::builder()
                .max_workers(2)
                .build()
                .unwrap(),
        );
        let ran = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let (pool, ran) = (pool.clone(), ran.clone());
                thread::spawn(move || {
                    let (mut accepted, mut refused) = (Vec::new(), 0);
                    for _ in 0..500 {
                        let r = ran.clone();
                        match pool.submit(move || {
                            r.fetch_add(1, Ordering::SeqCst);
                        }) {
                            Ok(fut) => accepted.push(fut),
                            Err(SubmitError::Shutdown(task)) => {
                                refused += 1;
                                drop(task); // handed back, never run
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (accepted, refused)
                })
            })
            .collect();
        thread::sleep(Duration::from_micros(200));
        pool.shutdown();
        let mut accepted = 0;
        for s in submitters {
            let (futs, _refused) = s.join().unwrap();
            for f in futs {
                // An accepted task always runs: never cancelled, never stranded.
                assert_eq!(f.result_timeout(HANG).unwrap(), ());
                accepted += 1;
            }
        }
        pool.shutdown();
        assert_eq!(ran.load(Ordering::SeqCst), accepted);
    }
}

#[test]
fn race_callback_registration_vs_completion() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..5000)
        .map(|i| pool.submit(move || i).unwrap().share())
        .collect();
    let registrar = {
        let (futs, calls) = (futs.clone(), calls.clone());
        thread::spawn(move || {
            for f in &futs {
                let calls = calls.clone();
                f.future().add_done_callback(move |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    };
    registrar.join().unwrap();
    pool.shutdown();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5000,
        "every callback ran exactly once"
    );
}

#[test]
fn race_set_result_vs_cancel() {
    let mut set_won = 0;
    for i in 0..2000 {
        let (promise, future) = Promise::new();
        let shared = future.share();
        let s = shared.clone();
        let canceller = thread::spawn(move || s.cancel());
        let set = promise.set_result(i).is_ok();
        let cancelled = canceller.join().unwrap();
        assert!(
            set != cancelled,
            "exactly one of set_result and cancel wins"
        );
        match shared.result() {
            Ok(v) => {
                assert!(set);
                assert_eq!(*v, i);
                set_won += 1;
            }
            Err(TaskError::Cancelled) => assert!(cancelled),
            Err(e) => panic!("{e}"),
        }
    }
    let _ = set_won;
}

#[test]
fn race_set_result_vs_set_exception_vs_readers() {
    // Two threads complete the same promise while two more read its error and a waiter
    // blocks: one completion wins, the loser is told "finished", every reader agrees.
    for i in 0..1000u32 {
        let (promise, future) = Promise::new();
        let promise = Arc::new(promise);
        let shared = future.share();
        let p = promise.clone();
        let setter = thread::spawn(move || p.set_result(i).is_ok());
        let p = promise.clone();
        let failer = thread::spawn(move || p.set_exception("lost").is_ok());
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let s = shared.clone();
                thread::spawn(move || s.exception().map(|e| e.to_string()))
            })
            .collect();
        let set = setter.join().unwrap();
        let failed = failer.join().unwrap();
        assert!(set != failed, "exactly one completion wins");
        let seen: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        let expected = if set { None } else { Some("lost".to_string()) };
        assert!(seen.iter().all(|s| *s == expected));
        match shared.result() {
            Ok(v) => assert!(set && *v == i),
            Err(e) => assert!(failed && e.to_string() == "lost"),
        }
        let loser = if set {
            promise.set_exception("late").unwrap_err().state()
        } else {
            promise.set_result(0).unwrap_err().state()
        };
        assert_eq!(loser, State::Finished);
    }
}

#[test]
fn race_many_waiters_on_the_same_futures() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap(),
    );
    for _ in 0..50 {
        let futs: Vec<_> = (0..20u64)
            .map(|i| pool.submit(move || i).unwrap().share())
            .collect();
        let waiters: Vec<_> = (0..4)
            .map(|k| {
                let futs = futs.clone();
                thread::spawn(move || match k {
                    0 => wait(futs, None, ReturnWhen::AllCompleted).0.len(),
                    1 => as_completed(futs).count(),
                    2 => futs.iter().filter(|f| f.result().is_ok()).count(),
                    _ => wait(futs, Some(HANG), ReturnWhen::FirstCompleted)
                        .0
                        .len()
                        .min(20),
                })
            })
            .collect();
        let counts: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(&counts[..3], &[20, 20, 20]);
        assert!(counts[3] >= 1);
    }
}

#[test]
fn race_map_drop_vs_workers() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    for n in 0..200 {
        let it = pool.map(|x: u32| x, 0..100).buffer_size(16);
        let taken: Vec<_> = it.take(n % 17).collect();
        assert!(taken.iter().all(Result::is_ok));
    }
    pool.shutdown();
    assert_eq!(pool.queued(), 0);
}
