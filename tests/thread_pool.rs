//! `ThreadPoolExecutor`: builder, lazy threads, panics, shutdown, broken pools, nesting.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::{Gate, HANG, eventually};
use concurrent_futures::lock::Barrier;
use concurrent_futures::{
    BuildError, ReturnWhen, SubmitError, TaskError, TaskOptions, ThreadPoolExecutor, as_completed,
    wait,
};

#[test]
fn builder_rejects_zero_workers_and_nul_names() {
    assert_eq!(
        ThreadPoolExecutor::builder()
            .max_workers(0)
            .build()
            .unwrap_err(),
        BuildError::ZeroWorkers
    );
    assert_eq!(
        ThreadPoolExecutor::builder()
            .thread_name_prefix("x\0")
            .build()
            .unwrap_err(),
        BuildError::InvalidThreadName
    );
}

#[test]
fn default_max_workers_is_pythons() {
    let cpus = thread::available_parallelism().unwrap().get();
    assert_eq!(ThreadPoolExecutor::new().max_workers(), (cpus + 4).min(32));
}

#[test]
fn threads_are_named_with_the_prefix() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("fetch")
        .build()
        .unwrap();
    let name = pool
        .submit(|| thread::current().name().unwrap().to_owned())
        .unwrap();
    assert_eq!(name.result().unwrap(), "fetch_0");
}

#[test]
fn default_thread_names_follow_python() {
    let pool = ThreadPoolExecutor::new();
    let name = pool
        .submit(|| thread::current().name().unwrap().to_owned())
        .unwrap();
    let name = name.result().unwrap();
    assert!(
        name.starts_with("ThreadPoolExecutor-") && name.ends_with("_0"),
        "{name}"
    );
}

#[test]
fn threads_start_lazily_and_idle_ones_are_reused() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(8)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 0);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let id = pool
            .submit(|| thread::current().id())
            .unwrap()
            .result()
            .unwrap();
        seen.insert(id);
    }
    assert_eq!(seen.len(), 1, "one task at a time needs one thread");
    assert_eq!(pool.threads(), 1);
}

#[test]
fn runs_max_workers_tasks_at_once_and_never_more() {
    let workers = 4;
    let pool = ThreadPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(workers).with_timeout(HANG));
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..workers * 5)
        .map(|_| {
            let (barrier, live, peak) = (barrier.clone(), live.clone(), peak.clone());
            pool.submit(move || {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // All `workers` tasks of a round must be running at once to pass.
                let passed = barrier.wait().is_ok();
                live.fetch_sub(1, Ordering::SeqCst);
                passed
            })
            .unwrap()
        })
        .collect();
    for f in futs {
        assert!(f.result().unwrap(), "a round did not get {workers} threads");
    }
    assert_eq!(peak.load(Ordering::SeqCst), workers);
    assert_eq!(pool.threads(), workers);
}

#[test]
fn a_panicking_task_leaves_its_worker_alive() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let first_thread = pool
        .submit(|| thread::current().id())
        .unwrap()
        .result()
        .unwrap();
    let bad = pool.submit(|| -> () { panic!("task failed") }).unwrap();
    assert_eq!(bad.result(), Err(TaskError::Panicked("task failed".into())));
    let after = pool
        .submit(|| thread::current().id())
        .unwrap()
        .result()
        .unwrap();
    assert_eq!(after, first_thread, "the same worker carries on");
    assert_eq!(pool.threads(), 1);
}

#[test]
fn submit_after_shutdown_hands_the_closure_back() {
    let pool = ThreadPoolExecutor::new();
    pool.shutdown();
    let payload = String::from("abc");
    let err = pool.submit(move || payload.len()).unwrap_err();
    assert!(matches!(err, SubmitError::Shutdown(_)));
    assert_eq!(err.to_string(), "cannot schedule new tasks after shutdown");
    assert_eq!((err.into_inner())(), 3);
}

#[test]
fn shutdown_waits_for_queued_tasks_and_is_idempotent() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..50)
        .map(|_| {
            let ran = ran.clone();
            pool.submit(move || {
                thread::sleep(Duration::from_micros(100));
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    pool.shutdown();
    assert_eq!(ran.load(Ordering::SeqCst), 50);
    assert!(futs.iter().all(|f| f.done()));
    assert_eq!(pool.threads(), 0, "every worker has exited");
    pool.shutdown();
    pool.shutdown_with(true, true);
}

#[test]
fn drop_is_shutdown_wait() {
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let pool = ThreadPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap();
        for _ in 0..20 {
            let ran = ran.clone();
            let _ = pool.submit(move || {
                thread::sleep(Duration::from_millis(1));
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
    assert_eq!(ran.load(Ordering::SeqCst), 20);
}

#[test]
fn shutdown_with_cancel_futures_cancels_only_what_has_not_started() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (gate, started) = (Gate::new(), Gate::new());
    let (g, s) = (gate.clone(), started.clone());
    let running = pool
        .submit(move || {
            s.open();
            g.pass();
            "finished"
        })
        .unwrap();
    started.pass();
    let queued: Vec<_> = (0..10).map(|i| pool.submit(move || i).unwrap()).collect();
    assert_eq!(pool.queued(), 10);
    pool.shutdown_with(false, true);
    assert!(queued.iter().all(|f| f.cancelled()));
    assert_eq!(pool.queued(), 0);
    gate.open();
    assert_eq!(running.result(), Ok("finished"));
}

#[test]
fn shutdown_without_wait_returns_while_tasks_run() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let fut = pool.submit(move || g.pass()).unwrap();
    pool.shutdown_with(false, false);
    assert!(!fut.done(), "shutdown(wait=false) did not wait");
    gate.open();
    fut.result().unwrap();
    pool.shutdown(); // now waits for the worker to leave
    assert_eq!(pool.threads(), 0);
}

#[test]
fn shutdown_from_inside_a_task_does_not_deadlock() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let fut = pool.submit(move || p.shutdown()).unwrap();
    fut.result().unwrap();
    assert!(pool.submit(|| ()).is_err());
}

#[test]
fn initializer_runs_once_per_thread_before_tasks() {
    thread_local!(static READY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let inits = Arc::new(AtomicUsize::new(0));
    let i = inits.clone();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .initializer(move || {
            i.fetch_add(1, Ordering::SeqCst);
            READY.with(|r| r.set(true));
        })
        .build()
        .unwrap();
    let futs: Vec<_> = (0..30)
        .map(|_| pool.submit(|| READY.with(|r| r.get())).unwrap())
        .collect();
    assert!(futs.into_iter().all(|f| f.result().unwrap()));
    pool.shutdown();
    assert_eq!(inits.load(Ordering::SeqCst), pool_threads_spawned(&inits));
}

/// Every thread ran the initializer once: the count equals the threads that were started,
/// which is between 1 and max_workers.
fn pool_threads_spawned(inits: &AtomicUsize) -> usize {
    let n = inits.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&n),
        "{n} initializer runs for at most 3 threads"
    );
    n
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .try_initializer(|| Err::<(), _>("cannot connect"))
        .build()
        .unwrap();
    let futs: Vec<_> = (0..5)
        .map(|i| {
            pool.submit(move || i)
                .unwrap_or_else(|_| unreachable_submit())
        })
        .collect();
    for f in futs {
        match f.result() {
            Err(TaskError::BrokenExecutor(reason)) => assert_eq!(&*reason, "cannot connect"),
            other => panic!("expected a broken executor, got {other:?}"),
        }
    }
    assert!(pool.is_broken());
    match pool.submit(|| 9) {
        Err(SubmitError::Broken { task, reason }) => {
            assert_eq!(&*reason, "cannot connect");
            assert_eq!(task(), 9);
        }
        other => panic!("expected Broken, got {other:?}"),
    }
}

fn unreachable_submit() -> concurrent_futures::Future<i32> {
    // Submits can race the breakage; a refused one is also a correct outcome.
    let (promise, future) = concurrent_futures::Promise::new();
    promise
        .set_error(TaskError::BrokenExecutor("cannot connect".into()))
        .unwrap();
    future
}

#[test]
fn a_panicking_initializer_breaks_the_pool() {
    let pool = ThreadPoolExecutor::builder()
        .initializer(|| panic!("init exploded")) // no `-> ()` needed
        .build()
        .unwrap();
    let f = pool.submit(|| 1).unwrap();
    match f.result() {
        Err(TaskError::BrokenExecutor(reason)) => {
            assert!(reason.contains("init exploded"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn idle_threads_retire_after_keep_alive_and_come_back() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(4)
        .idle_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let futs: Vec<_> = (0..8).map(|i| pool.submit(move || i).unwrap()).collect();
    for f in futs {
        f.result().unwrap();
    }
    eventually(|| pool.threads() == 0);
    assert_eq!(pool.submit(|| 5).unwrap().result(), Ok(5));
}

#[test]
fn keep_alive_races_with_submit_without_losing_tasks() {
    // A keep-alive of zero makes every idle moment a retirement race with the next submit.
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap();
    for i in 0..2000 {
        assert_eq!(
            pool.submit(move || i)
                .unwrap()
                .result_timeout(HANG)
                .unwrap(),
            i
        );
    }
}

#[test]
fn a_single_worker_retiring_as_a_task_arrives_leaves_no_task_behind() {
    // One worker: if it decides to retire just as a submit finds the pool full (the worker
    // still counted), nobody would be left to run the task.
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let n: usize = std::env::var("CF_RACE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    for i in 0..n {
        let got = pool.submit(move || i).unwrap().result_timeout(HANG);
        assert_eq!(got.ok(), Some(i), "task {i} was left without a worker");
    }
}

#[test]
fn a_worker_waiting_on_its_own_queued_task_runs_it_inline() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let outer = pool
        .submit(move || {
            let inner = p.submit(|| 21).unwrap();
            inner.result().unwrap() * 2 // Python deadlocks here with max_workers=1
        })
        .unwrap();
    assert_eq!(outer.result_timeout(HANG).unwrap(), 42);
}

#[test]
fn a_worker_can_wait_and_as_completed_on_its_own_pool() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let outer = pool
        .submit(move || {
            let futs: Vec<_> = (0..5).map(|i| p.submit(move || i).unwrap()).collect();
            let (done, not_done) = wait(futs, None, ReturnWhen::AllCompleted);
            assert!(not_done.is_empty());
            let more: Vec<_> = (5..10).map(|i| p.submit(move || i).unwrap()).collect();
            let b: i32 = as_completed(more).map(|f| f.result().unwrap()).sum();
            done.into_iter().map(|f| f.result().unwrap()).sum::<i32>() + b
        })
        .unwrap();
    assert_eq!(outer.result_timeout(HANG).unwrap(), 45);
}

#[test]
fn map_inside_a_task_on_a_one_worker_pool() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let outer = pool
        .submit(move || {
            p.map(|x: u32| x + 1, 0..10)
                .map(Result::unwrap)
                .sum::<u32>()
        })
        .unwrap();
    assert_eq!(outer.result_timeout(HANG).unwrap(), 55);
}

#[test]
fn counters_track_queued_running_and_completed() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let started = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..5)
        .map(|_| {
            let (g, s) = (gate.clone(), started.clone());
            pool.submit(move || {
                s.fetch_add(1, Ordering::SeqCst);
                g.pass();
            })
            .unwrap()
        })
        .collect();
    eventually(|| started.load(Ordering::SeqCst) == 2);
    assert_eq!(pool.running(), 2);
    assert_eq!(pool.queued(), 3);
    assert_eq!(pool.completed(), 0);
    gate.open();
    for f in futs {
        f.result().unwrap();
    }
    eventually(|| pool.completed() == 5);
    assert_eq!((pool.queued(), pool.running()), (0, 0));
}

#[test]
fn cancelled_queued_tasks_leave_the_queued_count() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (gate, started) = (Gate::new(), Gate::new());
    let (g, s) = (gate.clone(), started.clone());
    let blocker = pool
        .submit(move || {
            s.open();
            g.pass()
        })
        .unwrap();
    started.pass();
    let queued = pool.submit(|| ()).unwrap();
    assert!(queued.cancel());
    gate.open();
    blocker.result().unwrap();
    eventually(|| pool.queued() == 0);
    assert_eq!(pool.completed(), 1);
}

#[test]
fn large_stack_size_is_applied() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .stack_size(64 << 20)
        .build()
        .unwrap();
    // 16 MiB on the stack would overflow the 2 MiB default.
    let fut = pool
        .submit(|| {
            let big = [1u8; 16 << 20];
            std::hint::black_box(&big)
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>()
        })
        .unwrap();
    assert_eq!(fut.result().unwrap(), 16 << 20);
}

#[test]
fn results_reach_the_caller_from_many_submitting_threads() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(4)
            .build()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let submitters: Vec<_> = (0..8)
        .map(|t| {
            let (pool, tx) = (pool.clone(), tx.clone());
            thread::spawn(move || {
                for i in 0..500u64 {
                    tx.send((t * 1000 + i, pool.submit(move || t * 1000 + i).unwrap()))
                        .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for s in submitters {
        s.join().unwrap();
    }
    let seen = Mutex::new(0);
    for (want, fut) in rx {
        assert_eq!(fut.result().unwrap(), want);
        *seen.lock().unwrap() += 1;
    }
    assert_eq!(*seen.lock().unwrap(), 4000);
}

#[test]
fn apply_after_shutdown_hands_the_function_and_argument_back() {
    fn len(s: String) -> usize {
        s.len()
    }
    let pool = ThreadPoolExecutor::new();
    assert_eq!(pool.apply(len, "abc".to_string()).unwrap().result(), Ok(3));
    pool.shutdown();
    match pool.apply(len, "abcd".to_string()) {
        Err(SubmitError::Shutdown((f, arg))) => assert_eq!(f(arg), 4),
        other => panic!("expected Shutdown, got {other:?}"),
    }
}

#[test]
fn shutdown_returns_after_worker_thread_locals_are_destroyed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DESTROYED: AtomicUsize = AtomicUsize::new(0);
    struct CountsDrop;
    impl Drop for CountsDrop {
        fn drop(&mut self) {
            // Slow enough that a shutdown which does not join would return first.
            std::thread::sleep(std::time::Duration::from_millis(50));
            DESTROYED.fetch_add(1, Ordering::SeqCst);
        }
    }
    thread_local!(static GUARD: CountsDrop = const { CountsDrop });

    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .build()
        .unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let futs: Vec<_> = (0..3)
        .map(|_| {
            let barrier = barrier.clone();
            pool.submit(move || {
                GUARD.with(|_| ());
                barrier.wait(); // three distinct threads
            })
            .unwrap()
        })
        .collect();
    for f in futs {
        f.result().unwrap();
    }
    pool.shutdown();
    assert_eq!(DESTROYED.load(Ordering::SeqCst), 3);
}

#[test]
fn a_task_past_its_time_limit_fails_with_timed_out_while_it_still_runs() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::from_millis(50))
        .build()
        .unwrap();
    let (release, stuck) = mpsc::channel::<()>();
    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let fut = pool
        .submit(move || {
            let _ = stuck.recv();
            e.fetch_add(1, Ordering::SeqCst);
            "too late"
        })
        .unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    fut.add_done_callback(move |f| {
        assert_eq!(f.exception(), Some(TaskError::TimedOut));
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(fut.result(), Err(TaskError::TimedOut));
    // The future failed while the closure still waits: a thread is not killed.
    assert_eq!(ended.load(Ordering::SeqCst), 0);
    release.send(()).unwrap();
    // Its worker is free again once the closure returns; the result was dropped.
    assert_eq!(pool.submit(|| 7).unwrap().result(), Ok(7));
    assert_eq!(ended.load(Ordering::SeqCst), 1);
    // Callbacks run after the waiters wake (invariant 2), on the watchdog's thread, which a
    // busy machine may not have scheduled yet: wait for it, then make sure it ran once.
    eventually(|| called.load(Ordering::SeqCst) >= 1);
    assert_eq!(called.load(Ordering::SeqCst), 1, "the callback ran once");
}

#[test]
fn the_time_limit_counts_from_the_start_not_from_the_submit() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::from_millis(100))
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let first = pool.submit(move || g.pass()).unwrap();
    // Queued behind the first, for longer than the limit.
    let second = pool.submit(|| "ran in time").unwrap();
    assert_eq!(first.result(), Err(TaskError::TimedOut));
    assert!(!second.done(), "still queued: the only worker is busy");
    gate.open();
    assert_eq!(second.result(), Ok("ran in time"));
    // Quick tasks under a limit keep their values.
    let futs: Vec<_> = (0..1_000u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(f.result(), Ok(i as u32));
    }
}

#[test]
fn a_task_with_its_own_time_limit_times_out_and_the_others_do_not() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let limited = TaskOptions::new().time_limit(Duration::from_millis(30));
    let stuck = pool.submit_with(move || g.pass(), limited.clone()).unwrap();
    let free = pool
        .submit(|| thread::sleep(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(stuck.result(), Err(TaskError::TimedOut));
    assert_eq!(
        free.result(),
        Ok(()),
        "an unlimited task is never timed out"
    );
    gate.open();
    // Quick limited tasks keep their values.
    let futs: Vec<_> = (0..500u32)
        .map(|i| pool.submit_with(move || i, limited.clone()).unwrap())
        .collect();
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(f.result(), Ok(i as u32));
    }
}

#[test]
fn a_shorter_limit_wakes_a_watchdog_that_sleeps_towards_a_later_one() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (g, started) = (gate.clone(), Arc::new(AtomicUsize::new(0)));
    let s = started.clone();
    // The watchdog sleeps towards an hour from now...
    let long = pool
        .submit_with(
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                g.pass()
            },
            TaskOptions::new().time_limit(Duration::from_secs(3600)),
        )
        .unwrap();
    eventually(|| started.load(Ordering::SeqCst) == 1);
    // ...and a task with a 20 ms limit must still time out at 20 ms, not in an hour.
    let g = gate.clone();
    let short = pool
        .submit_with(
            move || g.pass(),
            TaskOptions::new().time_limit(Duration::from_millis(20)),
        )
        .unwrap();
    assert_eq!(
        short.result_timeout(HANG).map_err(|e| e.to_string()),
        Err("task timed out".to_owned())
    );
    gate.open();
    assert_eq!(long.result(), Ok(()));
}

#[test]
fn a_task_limit_overrides_the_pool_limit() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .time_limit(Duration::from_millis(30))
        .build()
        .unwrap();
    let gate = Gate::new();
    let (g, started) = (gate.clone(), Arc::new(AtomicUsize::new(0)));
    let s = started.clone();
    let patient = pool
        .submit_with(
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                g.pass();
                "kept"
            },
            TaskOptions::new().time_limit(Duration::from_secs(3600)),
        )
        .unwrap();
    eventually(|| started.load(Ordering::SeqCst) == 1);
    let g = gate.clone();
    // Started after `patient`: under the pool's limit it times out, and `patient` would
    // have timed out no later, had the pool's limit applied to it.
    let plain = pool.submit(move || g.pass()).unwrap();
    assert_eq!(plain.result(), Err(TaskError::TimedOut));
    gate.open();
    assert_eq!(patient.result(), Ok("kept"));
}

#[cfg(feature = "redis")]
#[test]
fn a_setting_only_a_queue_honours_is_refused_with_the_closure_back() {
    let pool = ThreadPoolExecutor::new();
    let opts = TaskOptions::new().retries(2, Duration::from_millis(10));
    let err = pool.submit_with(|| "back", opts).unwrap_err();
    assert!(
        matches!(
            err,
            SubmitError::Unsupported {
                option: "retries",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("`retries`"), "{err}");
    assert_eq!(err.into_inner()(), "back");
    let later = TaskOptions::new().delay(Duration::from_secs(1));
    let err = pool.submit_with(|| (), later).unwrap_err();
    assert!(matches!(
        err,
        SubmitError::Unsupported {
            option: "delay",
            ..
        }
    ));
}
