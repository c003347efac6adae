//! The process pool's races, each named and run many times: cancel against start, a time
//! limit against the task finishing, shutdown against submit, `kill_task` against the task
//! finishing, and `kill_task` against a worker running ahead of its manager through tasks
//! sent ahead (at most once: nothing runs twice, a killed task never has a value). Every
//! outcome must be one of the allowed ones, and nothing may hang.
#![cfg(all(unix, feature = "process"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{HANG, pool};
use concurrent_futures::{ResultTimeoutError, SubmitError, TaskError};

concurrent_futures::worker_test!();

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_us(us: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(us));
    us
}

#[test]
fn cancel_races_with_the_start_of_the_task() {
    let pool = pool(2);
    let (mut cancelled, mut ran) = (0, 0);
    for x in 0..300u64 {
        let fut = pool.submit(square, x).unwrap();
        // 0..150 us: around the time a manager takes the job and marks it running.
        let until = std::time::Instant::now() + Duration::from_micros((x * 37) % 150);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        if fut.cancel() {
            assert!(matches!(
                fut.result_timeout(HANG),
                Err(ResultTimeoutError::Failed(TaskError::Cancelled))
            ));
            cancelled += 1;
        } else {
            // Too late to cancel: it runs to completion, with its own result.
            assert_eq!(fut.result_timeout(HANG).ok(), Some(x * x));
            ran += 1;
        }
    }
    assert_eq!(cancelled + ran, 300);
    eprintln!("cancel vs start: {cancelled} cancelled, {ran} ran");
    // The pool is whole afterwards.
    assert_eq!(pool.submit(square, 12).unwrap().result(), Ok(144));
}

#[test]
fn a_time_limit_races_with_the_task_finishing() {
    let pool = pool(2);
    let (mut finished, mut timed_out) = (0, 0);
    for i in 0..60u64 {
        // Tasks of 0..60 ms against a 30 ms limit (well above the kernel's timer tick, which
        // rounds socket timeouts up by a few milliseconds): some finish, some are killed.
        let us = (i % 7) * 10_000;
        let fut = pool
            .submit_with_time_limit(sleep_us, us, Duration::from_millis(30))
            .unwrap();
        match fut.result_timeout(HANG) {
            Ok(v) => {
                assert_eq!(v, us);
                finished += 1;
            }
            Err(ResultTimeoutError::Failed(TaskError::TimedOut)) => timed_out += 1,
            Err(other) => panic!("task {i} ({us} us): {other:?}"),
        }
    }
    eprintln!("time limit vs finish: {finished} finished, {timed_out} timed out");
    assert_eq!(pool.submit(square, 3).unwrap().result(), Ok(9));
}

#[test]
fn shutdown_races_with_submits_from_many_threads() {
    for round in 0..5u64 {
        let pool = Arc::new(pool(2));
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..3)
            .map(|t| {
                let (pool, accepted, refused) = (pool.clone(), accepted.clone(), refused.clone());
                std::thread::spawn(move || {
                    let mut futs = Vec::new();
                    for i in 0..200u64 {
                        let x = t * 1000 + i;
                        // Paced, so that the shutdown lands in the middle of the stream.
                        let until = std::time::Instant::now() + Duration::from_micros(20);
                        while std::time::Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        match pool.submit(square, x) {
                            Ok(fut) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                futs.push((x, fut));
                            }
                            Err(SubmitError::Shutdown((f, arg))) => {
                                // What was refused comes back whole.
                                assert_eq!((f(arg), arg), (x * x, x));
                                refused.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                    for (x, fut) in futs {
                        // Accepted before the shutdown: it runs (shutdown waits for the
                        // queue) or, with cancel_futures, is cancelled; never lost.
                        match fut.result_timeout(HANG) {
                            Ok(v) => assert_eq!(v, x * x),
                            Err(e) => panic!("round {round}, task {x}: {e:?}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(500 + 700 * round));
        pool.shutdown();
        for s in submitters {
            s.join().unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst),
            600
        );
        assert!(pool.worker_pids().is_empty(), "every worker reaped");
        eprintln!(
            "shutdown vs submit, round {round}: {} accepted, {} refused",
            accepted.load(Ordering::SeqCst),
            refused.load(Ordering::SeqCst)
        );
    }
}

#[test]
fn kill_task_races_with_the_task_finishing() {
    let pool = pool(2);
    let (mut kept, mut killed_n) = (0, 0);
    for i in 0..40u64 {
        let us = (i % 5) * 300;
        let fut = pool.submit(sleep_us, us).unwrap();
        std::thread::sleep(Duration::from_micros(400));
        let killed = pool.kill_task(&fut);
        match fut.result_timeout(HANG) {
            Ok(v) => {
                assert_eq!(v, us, "a task that finished keeps its result");
                kept += 1;
            }
            Err(ResultTimeoutError::Failed(TaskError::Cancelled)) => {
                assert!(killed, "cancelled only when kill_task said so");
                killed_n += 1;
            }
            Err(other) => panic!("task {i}: {other:?}"),
        }
        // Whatever happened, the next task runs on a healthy worker.
        assert_eq!(pool.submit(square, i).unwrap().result(), Ok(i * i));
    }
    eprintln!("kill vs finish: {kept} finished, {killed_n} killed");
}

/// Appends `i` to a file named after the pool's process, so that each run is counted; one
/// task in eight then takes 300 us, long enough to be caught running, short enough to be
/// sent ahead.
fn log_index(i: u64) -> u64 {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!(
        "cf-kill-ahead-{}",
        std::os::unix::process::parent_id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{i}\n").as_bytes()).unwrap();
    // Quick enough to be sent ahead (under 500 us), slow enough to be caught running.
    if i % 8 == 0 {
        std::thread::sleep(Duration::from_micros(300));
    }
    i
}

#[test]
fn kill_task_against_tasks_sent_ahead_runs_nothing_twice_and_kills_only_what_runs() {
    // Hardening round 2, finding 1: with quick tasks sent ahead, the task the manager called
    // running had often finished; the kill landed on a later task, the killed future got a
    // value, and finished tasks whose replies were thrown away ran again.
    let log = std::env::temp_dir().join(format!("cf-kill-ahead-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let pool = Arc::new(pool(1));
    const N: u64 = 4_000;
    let futures: Arc<Vec<_>> =
        Arc::new((0..N).map(|i| pool.submit(log_index, i).unwrap()).collect());
    let killer = {
        let (pool, futures) = (pool.clone(), futures.clone());
        std::thread::spawn(move || {
            // Every fifth future: tried again and again while it reads as running, until
            // a kill lands or it is done.
            let mut killed = Vec::new();
            for (i, fut) in futures.iter().enumerate().step_by(5) {
                while !fut.done() {
                    if fut.running() && pool.kill_task(fut) {
                        killed.push(i);
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            killed
        })
    };
    let killed = killer.join().unwrap();
    let futures = Arc::try_unwrap(futures).unwrap();
    let mut values = 0;
    let mut cancelled = Vec::new();
    for (i, fut) in futures.into_iter().enumerate() {
        match fut.result_timeout(HANG) {
            Ok(v) => {
                assert_eq!(v, i as u64);
                assert!(
                    !killed.contains(&i),
                    "kill_task said it killed task {i}, which returned"
                );
                values += 1;
            }
            Err(ResultTimeoutError::Failed(TaskError::Cancelled)) => cancelled.push(i),
            Err(other) => panic!("task {i}: {other:?}"),
        }
    }
    // Every kill that said true cancelled its task, and only those were cancelled.
    assert_eq!(cancelled, killed);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let mut runs = vec![0u32; N as usize];
    for line in text.lines() {
        runs[line.parse::<usize>().unwrap()] += 1;
    }
    for (i, n) in runs.iter().enumerate() {
        assert!(*n <= 1, "task {i} ran {n} times");
        if !cancelled.contains(&i) {
            assert_eq!(*n, 1, "task {i} returned a value without running once");
        }
    }
    assert_eq!(values + cancelled.len(), N as usize);
}
