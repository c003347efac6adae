//! `ThreadPoolExecutor::scope`: tasks that borrow from the stack, and the guarantee that
//! every one has finished or been dropped before `scope` returns, whatever happens.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::{Gate, HANG};
use concurrent_futures::{
    ReturnWhen, SubmitError, TaskError, ThreadPoolExecutor, as_completed, wait,
};

#[test]
fn tasks_borrow_from_the_stack_and_have_run_when_scope_returns() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .build()
        .unwrap();
    let data: Vec<u64> = (1..=1000).collect();
    let total = AtomicUsize::new(0);
    let sums: Vec<u64> = pool.scope(|s| {
        let futs: Vec<_> = data
            .chunks(100)
            .map(|chunk| {
                s.submit(|| {
                    total.fetch_add(chunk.len(), Ordering::Relaxed);
                    chunk.iter().sum::<u64>()
                })
                .unwrap()
            })
            .collect();
        // The pool's own tools work on scoped futures.
        let (done, _) = wait(futs.iter(), Some(HANG), ReturnWhen::AllCompleted);
        assert_eq!(done.len(), 10);
        as_completed(futs).map(|f| f.result().unwrap()).collect()
    });
    assert_eq!(sums.iter().sum::<u64>(), 500_500);
    assert_eq!(total.load(Ordering::Relaxed), 1000);
}

#[test]
fn a_leaked_future_does_not_let_scope_return_early() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let mut written = vec![0u8; 4];
    pool.scope(|s| {
        for (i, slot) in written.iter_mut().enumerate() {
            let fut = s
                .submit(move || {
                    thread::sleep(Duration::from_millis(20));
                    *slot = i as u8 + 1;
                })
                .unwrap();
            std::mem::forget(fut); // nobody will ever wait on it
        }
    });
    assert_eq!(
        written,
        [1, 2, 3, 4],
        "every task ran before scope returned"
    );
}

#[test]
fn a_panic_in_the_body_waits_for_the_tasks_then_resumes() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let finished = AtomicUsize::new(0);
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            for _ in 0..4 {
                let _detached = s
                    .submit(|| {
                        thread::sleep(Duration::from_millis(30));
                        finished.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
            }
            panic!("the body gives up");
        })
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the body gives up"));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        4,
        "tasks finished before the unwind"
    );
}

#[test]
fn a_panicking_task_is_its_futures_error_and_the_scope_returns() {
    let pool = ThreadPoolExecutor::new();
    let name = String::from("bad input");
    let err = pool.scope(|s| {
        s.submit(|| -> u8 { panic!("{name}") })
            .unwrap()
            .result()
            .unwrap_err()
    });
    assert_eq!(err, TaskError::Panicked("bad input".into()));
}

#[test]
fn nested_scopes_and_tasks_that_submit_into_their_scope() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let count = AtomicUsize::new(0);
    pool.scope(|outer| {
        for _ in 0..3 {
            let _detached = outer
                .submit(|| {
                    // A task opens a scope of its own on the same pool...
                    pool.scope(|inner| {
                        for _ in 0..3 {
                            let _detached = inner
                                .submit(|| count.fetch_add(1, Ordering::SeqCst))
                                .unwrap();
                        }
                    });
                    // ...and submits more work into the outer one.
                    let _detached = outer
                        .submit(|| count.fetch_add(100, Ordering::SeqCst))
                        .unwrap();
                })
                .unwrap();
        }
    });
    assert_eq!(count.load(Ordering::SeqCst), 3 * 3 + 3 * 100);
}

#[test]
fn a_scope_on_the_pools_only_worker_runs_its_tasks_inline() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let outer = pool
        .submit(move || {
            let local = vec![1u32, 2, 3];
            let seen = AtomicUsize::new(0);
            p.scope(|s| {
                for x in &local {
                    // Tasks of the scope submit more tasks into it, all on the one worker
                    // that is busy waiting here.
                    let _detached = s
                        .submit(|| {
                            seen.fetch_add(*x as usize, Ordering::SeqCst);
                            let _detached =
                                s.submit(|| seen.fetch_add(10, Ordering::SeqCst)).unwrap();
                        })
                        .unwrap();
                }
            });
            seen.load(Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(outer.result_timeout(HANG).ok(), Some(36));
}

#[test]
fn a_refused_task_comes_back_callable_and_cancelled_ones_are_dropped() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let ran = AtomicUsize::new(0);
    pool.scope(|s| {
        let g = gate.clone();
        let blocker = pool.submit(move || g.pass()).unwrap();
        let queued = s.submit(|| ran.fetch_add(1, Ordering::SeqCst)).unwrap();
        assert!(queued.cancel(), "still queued behind the blocker");
        pool.shutdown_with(false, false);
        match s.submit(|| ran.fetch_add(10, Ordering::SeqCst)) {
            Err(SubmitError::Shutdown(task)) => {
                task(); // the closure, handed back
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        gate.open();
        blocker.result().unwrap();
    });
    assert_eq!(ran.load(Ordering::SeqCst), 10);
}

#[test]
fn many_scopes_with_many_tasks_count_exactly() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(4)
        .build()
        .unwrap();
    for round in 0..200 {
        let counter = AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..50 {
                let _detached = s
                    .submit(|| counter.fetch_add(1, Ordering::Relaxed))
                    .unwrap();
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 50, "round {round}");
    }
}

/// A value of `WIDTH` bytes that counts how many of its kind are alive.
struct Counted(#[allow(dead_code)] Vec<u8>);

static LIVE: AtomicUsize = AtomicUsize::new(0);

impl Counted {
    fn new() -> Counted {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted(vec![0; 4096])
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_scope_inside_a_pool_task_keeps_no_finished_result_alive() {
    // Hardening round 2, finding 6: a scope on a worker thread kept every task's future (and
    // with it every finished result) until its body returned: 100,000 results of 4 KiB grew
    // the process by 400 MiB. The results themselves are counted here.
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap(),
    );
    let inner = pool.clone();
    let most = pool
        .submit(move || {
            let mut most = 0;
            inner.scope(|s| {
                for i in 0..100_000 {
                    drop(s.submit(Counted::new).unwrap()); // futures dropped at once
                    if i % 64 == 0 {
                        most = most.max(LIVE.load(Ordering::SeqCst));
                    }
                }
            });
            most
        })
        .unwrap()
        .result()
        .unwrap();
    // What is alive is what is in flight: a few per worker, not the 100,000 of before.
    assert!(most < 1_000, "{most} finished results were alive at once");
    // The last ones go when their workers let go of their tasks, just after the closures
    // that `scope` waits for.
    let end = std::time::Instant::now() + HANG;
    while LIVE.load(Ordering::SeqCst) != 0 {
        assert!(std::time::Instant::now() < end, "results never freed");
        thread::sleep(Duration::from_millis(1));
    }
}

struct DropBomb;

impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("bomb in drop");
    }
}

#[test]
fn a_panic_dropping_a_cancelled_closure_surfaces_from_scope_and_does_not_hang_it() {
    // Hardening round 2, finding 7: the panic skipped the count `scope` waits on, so `scope`
    // never returned.
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let pool = ThreadPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap();
        let gate = Gate::new();
        let g = gate.clone();
        let busy = pool.submit(move || g.pass()).unwrap();
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                let bomb = DropBomb;
                let fut = s.submit(move || drop(bomb)).unwrap();
                assert!(fut.cancel()); // the closure, and the bomb, are dropped here
                gate.open();
                "body finished"
            })
        }));
        busy.result().unwrap();
        let _ = tx.send(caught.map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .unwrap_or_default()
        }));
    });
    let outcome = rx.recv_timeout(HANG).expect("scope never returned");
    assert_eq!(outcome, Err("bomb in drop".to_string()));
}
