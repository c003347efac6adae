//! `ProcessPoolExecutor`: results, panics, real crashes, time limits, recycling, shutdown,
//! and no orphans. Crashes are real: a null write, `abort`, `exit`, SIGKILL.
#![cfg(all(unix, feature = "process"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{HANG, alive, alone, eventually, pool};
use concurrent_futures::{
    Executor, MapError, ProcessPoolExecutor, ReturnWhen, SubmitError, TaskError, TaskOptions,
    ThreadPoolExecutor, as_completed, wait,
};
use serde::{Deserialize, Serialize};

concurrent_futures::worker_test!();

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Image {
    name: String,
    pixels: Vec<u8>,
}

fn brightness(img: Image) -> (String, u64) {
    (img.name, img.pixels.iter().map(|&p| u64::from(p)).sum())
}

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn boom(msg: String) -> u8 {
    panic!("{msg}")
}

#[allow(unsafe_code)]
fn segfault(_: ()) -> u8 {
    // SAFETY: none; this deliberately writes through a null pointer to crash the worker
    // with SIGSEGV, which is exactly what the test checks the pool survives.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    0
}

fn abort(_: ()) -> u8 {
    std::process::abort()
}

fn exit3(_: ()) -> u8 {
    std::process::exit(3)
}

fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn big(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[test]
fn runs_functions_over_serde_data() {
    let pool = pool(2);
    let img = Image {
        name: "a.png".into(),
        pixels: vec![1, 2, 3],
    };
    assert_eq!(
        pool.submit(brightness, img).unwrap().result(),
        Ok(("a.png".into(), 6))
    );
    assert_eq!(pool.apply(square, 12).unwrap().result(), Ok(144));
    let closure: fn(i32) -> i32 = |x| x - 1; // non-capturing closures work too
    assert_eq!(pool.submit(closure, 1).unwrap().result(), Ok(0));
    assert_ne!(
        pool.submit(pid, ()).unwrap().result().unwrap(),
        std::process::id()
    );
}

#[test]
fn a_panic_is_a_value_and_the_worker_lives_on() {
    let pool = pool(1);
    let before = pool.submit(pid, ()).unwrap().result().unwrap();
    let err = pool
        .submit(boom, "bad pixel".to_string())
        .unwrap()
        .result()
        .unwrap_err();
    // The panic's own message; where it happened, in the worker, is shown after it.
    assert_eq!(err.panic_message(), Some("bad pixel"));
    let shown = err.to_string();
    assert!(
        shown.contains("bad pixel (worker process ")
            && shown.contains(", thread '")
            && shown.contains("tests/process_pool.rs:"),
        "{shown}"
    );
    assert_eq!(
        pool.submit(pid, ()).unwrap().result().unwrap(),
        before,
        "same worker"
    );
}

fn crash_fails_only_that_task(task: fn(()) -> u8, expected: &str) {
    let pool = pool(2);
    let others: Vec<_> = (0..20u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    let crash = pool.submit(task, ()).unwrap();
    let more: Vec<_> = (20..40u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    match crash.result() {
        Err(TaskError::WorkerDied(how)) => assert!(how.contains(expected), "{how}"),
        other => panic!("expected a dead worker, got {other:?}"),
    }
    for (i, f) in others.into_iter().chain(more).enumerate() {
        assert_eq!(
            f.result(),
            Ok((i as u64) * (i as u64)),
            "every other task completes"
        );
    }
    assert!(!pool.is_broken());
    assert_eq!(
        pool.submit(square, 9).unwrap().result(),
        Ok(81),
        "the pool keeps serving"
    );
}

#[test]
fn a_segfault_fails_only_its_task() {
    crash_fails_only_that_task(segfault, "SIGSEGV");
}

#[test]
fn an_abort_fails_only_its_task() {
    crash_fails_only_that_task(abort, "SIGABRT");
}

#[test]
fn an_exit_fails_only_its_task() {
    crash_fails_only_that_task(exit3, "exited with code 3");
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_task() {
    let pool = pool(1);
    let victim = pool.submit(pid, ()).unwrap().result().unwrap();
    let running = pool.submit(sleep_ms, 60_000).unwrap();
    while !running.running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    let status = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match running.result_timeout(HANG) {
        Err(concurrent_futures::ResultTimeoutError::Failed(TaskError::WorkerDied(how))) => {
            assert!(how.contains("SIGKILL"), "{how}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let replacement = pool.submit(pid, ()).unwrap().result().unwrap();
    assert_ne!(replacement, victim);
}

#[test]
fn a_hung_task_is_killed_at_its_time_limit() {
    let pool = pool(1);
    let hung = pool
        .submit_with_time_limit(sleep_ms, 60_000, Duration::from_millis(200))
        .unwrap();
    assert_eq!(
        hung.result_timeout(HANG).unwrap_err().to_string(),
        "task timed out"
    );
    assert_eq!(
        pool.submit(square, 3).unwrap().result(),
        Ok(9),
        "a new worker took its place"
    );
}

#[test]
fn builder_time_limit_applies_to_every_task() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(
        pool.submit(sleep_ms, 60_000).unwrap().result(),
        Err(TaskError::TimedOut)
    );
    assert!(pool.submit(sleep_ms, 1).unwrap().result().is_ok());
}

#[test]
fn map_keeps_order_and_chunks() {
    let pool = pool(2);
    for chunk in [1, 7, 1000] {
        let out: Vec<u64> = pool
            .map(square, 0..500u64)
            .chunk_size(chunk)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            out,
            (0..500u64).map(|x| x * x).collect::<Vec<_>>(),
            "chunk {chunk}"
        );
    }
    let mut un: Vec<u64> = pool
        .map_unordered(square, 0..100u64)
        .map(Result::unwrap)
        .collect();
    un.sort_unstable();
    assert_eq!(un, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn map_reports_a_panicking_item_and_keeps_going() {
    let pool = pool(2);
    let msgs = ["ok".to_string(), "fail".to_string(), "ok".to_string()];
    fn check(s: String) -> usize {
        assert_ne!(s, "fail", "item failed");
        s.len()
    }
    let out: Vec<_> = pool.map(check, msgs).chunk_size(2).collect();
    assert_eq!(out[0], Ok(2));
    assert!(
        matches!(&out[1], Err(MapError::Task(TaskError::Panicked(m))) if m.contains("item failed"))
    );
    assert_eq!(out[2], Ok(2));
}

#[test]
fn as_completed_and_wait_work_on_process_futures() {
    let pool = pool(2);
    let futs: Vec<_> = [300u64, 10, 100]
        .iter()
        .map(|&ms| pool.submit(sleep_ms, ms).unwrap())
        .collect();
    let (done, not_done) = wait(&futs, Some(HANG), ReturnWhen::FirstCompleted);
    assert!(!done.is_empty() && done.len() + not_done.len() == 3);
    assert_eq!(as_completed(futs).count(), 3);
}

#[test]
fn a_queued_task_can_be_cancelled() {
    let pool = pool(1);
    let busy = pool.submit(sleep_ms, 2_000).unwrap(); // one worker: `queued` waits behind it
    let queued = pool.submit(square, 5).unwrap();
    assert!(queued.cancel());
    assert_eq!(queued.result(), Err(TaskError::Cancelled));
    assert!(busy.result().is_ok());
}

#[test]
fn workers_are_recycled_after_max_tasks_per_child() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..9)
        .map(|_| pool.submit(pid, ()).unwrap().result().unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<_> = pids.iter().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
}

#[test]
fn oversized_arguments_and_results_fail_only_their_task() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_frame_bytes(1 << 16)
        .build()
        .unwrap();
    assert!(matches!(
        pool.submit(big, 1 << 20).unwrap().result(),
        Err(TaskError::Transport(_))
    ));
    let arg = vec![0u8; 1 << 20];
    fn len(v: Vec<u8>) -> usize {
        v.len()
    }
    assert!(matches!(
        pool.submit(len, arg).unwrap().result(),
        Err(TaskError::Transport(_))
    ));
    assert_eq!(pool.submit(big, 10).unwrap().result().unwrap().len(), 10);
}

#[test]
fn shutdown_leaves_no_worker_behind_and_hands_tasks_back() {
    let pool = pool(2);
    let futs: Vec<_> = (0..10u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    let pids = pool.worker_pids();
    pool.shutdown();
    assert!(futs.iter().all(|f| f.done()));
    assert!(pool.worker_pids().is_empty());
    for p in pids {
        assert!(!alive(p), "worker {p} is still there");
    }
    match pool.submit(square, 4) {
        Err(SubmitError::Shutdown((f, arg))) => assert_eq!(f(arg), 16),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn terminate_kills_running_work() {
    let pool = pool(1);
    let running = pool.submit(sleep_ms, 60_000).unwrap();
    while !running.running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let queued = pool.submit(square, 2).unwrap();
    let pids = pool.worker_pids();
    pool.terminate();
    assert!(matches!(running.result(), Err(TaskError::WorkerDied(_))));
    assert_eq!(queued.result(), Err(TaskError::Cancelled));
    for p in pids {
        assert!(!alive(p));
    }
}

/// Run by `no_orphans_when_the_parent_is_killed` in a child process of its own.
#[test]
fn orphan_helper() {
    if std::env::var_os("CF_ORPHAN_HELPER").is_none() {
        return;
    }
    let pool = pool(2);
    fn shout(_: ()) {
        println!("HELLO FROM WORKER {}", std::process::id());
    }
    pool.submit(shout, ()).unwrap().result().unwrap();
    let _busy = pool.submit(sleep_ms, 60_000).unwrap(); // keep one worker busy
    std::thread::sleep(Duration::from_millis(100));
    println!("PIDS {:?}", pool.worker_pids());
    std::thread::sleep(Duration::from_secs(60));
}

/// Also checks that a task's stdout reaches the parent's stdout.
#[test]
fn no_orphans_when_the_parent_is_killed() {
    use std::io::{BufRead, BufReader};
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args([
            "orphan_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CF_ORPHAN_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    let mut worker_spoke = false;
    for line in BufReader::new(parent.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        worker_spoke |= line.contains("HELLO FROM WORKER");
        if let Some(list) = line.strip_prefix("PIDS ") {
            pids = list
                .trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .filter_map(|p| p.parse::<u32>().ok())
                .collect();
            break;
        }
    }
    assert!(!pids.is_empty(), "the helper reported its workers");
    assert!(
        worker_spoke,
        "a task's println! reached the parent's stdout"
    );
    parent.kill().unwrap(); // SIGKILL: no destructor, no shutdown runs in the parent
    parent.wait().unwrap();
    for p in pids {
        eventually(|| !alive(p));
    }
}

fn total_len<E: concurrent_futures::Executor>(pool: &E) -> usize {
    fn len(s: String) -> usize {
        s.len()
    }
    let words = vec!["a".to_string(), "bb".to_string(), "ccc".to_string()];
    let mapped: usize = pool.map_fn(len, words.clone()).map(Result::unwrap).sum();
    let applied: usize = words
        .into_iter()
        .map(|w| pool.apply(len, w).unwrap().result().unwrap())
        .sum();
    mapped + applied
}

#[test]
fn the_same_generic_code_runs_on_threads_and_on_processes() {
    let processes = pool(2);
    let threads = concurrent_futures::ThreadPoolExecutor::new();
    assert_eq!(total_len(&processes), 12);
    assert_eq!(total_len(&threads), 12);
}

static LOADED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn load() {
    LOADED.store(42, std::sync::atomic::Ordering::SeqCst);
}

fn loaded(_: ()) -> u64 {
    LOADED.load(std::sync::atomic::Ordering::SeqCst)
}

fn failing_init() {
    panic!("no model file");
}

#[test]
fn the_initializer_runs_in_every_worker_before_tasks() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(load)
        .build()
        .unwrap();
    let got: Vec<u64> = (0..6)
        .map(|_| pool.submit(loaded, ()).unwrap().result().unwrap())
        .collect();
    assert!(got.iter().all(|&v| v == 42), "{got:?}");
    assert_eq!(
        LOADED.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "not in the parent"
    );
}

#[test]
fn a_failing_initializer_is_a_clear_build_error() {
    concurrent_futures::init();
    let err = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(failing_init)
        .build()
        .unwrap_err();
    // The panic message itself comes back over the connection.
    assert!(
        err.to_string()
            .contains("the initializer failed: panicked: no model file"),
        "{err}"
    );
}

/// Builds a pool and panics a task in it; run as a child process by the next test, which
/// reads its stderr.
#[test]
fn panic_report_helper() {
    if std::env::var_os("CF_PANIC_REPORT").is_none() {
        return;
    }
    let pool = pool(1);
    let err = pool.submit(boom, "bad pixel".into()).unwrap().result();
    println!("RESULT {err:?}");
}

#[test]
fn a_task_panic_is_not_printed_as_the_parents_own_unless_asked() {
    let run = |backtrace: &str| {
        let out = alone("panic_report_helper")
            .env("CF_PANIC_REPORT", "1")
            .env("RUST_BACKTRACE", backtrace)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            stdout.contains("RESULT Err(Panicked(Panic { message: \"bad pixel\", pid: "),
            "{stdout}"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = run("0");
    assert!(!quiet.contains("panicked at"), "{quiet}");
    let asked = run("1");
    assert!(
        asked.contains("panicked at") && asked.contains("bad pixel"),
        "{asked}"
    );
}

fn hang_forever(_: ()) -> u8 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn kill_task_stops_a_running_task_and_touches_nothing_else() {
    let pool = pool(2);
    let other = pool.submit(sleep_ms, 300).unwrap();
    let stuck = pool.submit(hang_forever, ()).unwrap();
    eventually(|| stuck.running() && other.running());
    let pids = pool.worker_pids();
    assert!(pool.kill_task(&stuck));
    assert_eq!(stuck.result(), Err(TaskError::Cancelled));
    assert!(other.result().is_ok(), "the other task is untouched");
    // The killed worker was replaced; the pool serves on.
    assert_eq!(pool.submit(square, 7).unwrap().result(), Ok(49));
    eventually(|| pids.iter().filter(|p| alive(**p)).count() == 1);
    assert_eq!(pool.worker_pids().len(), 2);
}

#[test]
fn kill_task_cancels_a_queued_task_and_ignores_a_finished_one() {
    let pool = pool(1);
    let busy = pool.submit(sleep_ms, 300).unwrap();
    let queued = pool.submit(square, 3).unwrap();
    assert!(pool.kill_task(&queued));
    assert!(queued.cancelled());
    let before = busy.result().unwrap();
    let done = pool.submit(square, 2).unwrap();
    while !done.done() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!pool.kill_task(&done));
    assert_eq!(done.result(), Ok(4));
    assert_eq!(
        pool.submit(pid, ()).unwrap().result(),
        Ok(before),
        "no worker was killed"
    );
}

/// Touches and leaks `mib` MiB, as a leaking library would.
fn leak(mib: usize) -> u32 {
    let v = vec![1u8; mib << 20];
    std::hint::black_box(&v);
    std::mem::forget(v);
    std::process::id()
}

#[test]
fn a_worker_over_its_memory_limit_is_replaced_after_its_task() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_memory_per_child(64 << 20)
        .build()
        .unwrap();
    let small = pool.submit(leak, 1).unwrap().result().unwrap();
    assert_eq!(
        pool.submit(pid, ()).unwrap().result(),
        Ok(small),
        "under the limit: the same worker"
    );
    let big = pool.submit(leak, 128).unwrap().result().unwrap();
    assert_eq!(
        big, small,
        "the task that crossed the limit completed on that worker"
    );
    let next = pool.submit(pid, ()).unwrap().result().unwrap();
    assert_ne!(next, big, "over the limit: replaced after its task");
    eventually(|| !alive(big));
}

#[test]
fn an_idle_worker_waits_for_work_as_long_as_it_takes() {
    // Reads wake every second to look at their deadline; an idle worker must not take
    // that for its parent going away.
    let pool = pool(1);
    let before = pool.submit(pid, ()).unwrap().result().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(pool.submit(pid, ()).unwrap().result(), Ok(before));
}

fn say_hi(n: u32) -> u32 {
    println!("TASK-SAYS-HI {n}");
    n
}

/// Runs tasks that print, in a child process whose stdout the next test reads.
#[test]
fn worker_stdout_helper() {
    if std::env::var_os("CF_STDOUT_HELPER").is_none() {
        return;
    }
    let pool = pool(2);
    let n: u32 = pool.map(say_hi, 0..4).map(Result::unwrap).sum();
    assert_eq!(n, 6);
}

#[test]
fn tasks_print_to_the_parents_stdout_and_workers_add_no_harness_banner() {
    let out = alone("worker_stdout_helper")
        .env("CF_STDOUT_HELPER", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for n in 0..4 {
        assert!(stdout.contains(&format!("TASK-SAYS-HI {n}")), "{stdout}");
    }
    // The helper's own harness prints its banner once; its workers (re-runs of this test
    // binary) used to print one each.
    assert_eq!(stdout.matches("running 1 test").count(), 1, "{stdout}");
}

#[test]
fn the_executor_trait_runs_the_same_capture_free_closures_on_threads_and_processes() {
    // A closure that captures data does not compile through the trait, on any executor
    // (the compile_fail example on `Executor`); the data goes as the argument instead.
    use concurrent_futures::Executor;
    fn generic(ex: &impl Executor, k: u32) -> (u32, Vec<u32>) {
        let one = ex.apply(|(x, k): (u32, u32)| x + k, (1, k)).unwrap();
        let many = ex
            .map_fn(|(x, k): (u32, u32)| x * k, [(1, k), (2, k), (3, k)])
            .map(Result::unwrap)
            .collect();
        (one.result().unwrap(), many)
    }
    let processes = pool(1);
    let threads = concurrent_futures::ThreadPoolExecutor::new();
    assert_eq!(generic(&processes, 5), (6, vec![5, 10, 15]));
    assert_eq!(generic(&threads, 5), (6, vec![5, 10, 15]));
}

/// Exits its worker process for every 50th input (from 7), else doubles it.
fn exit_some(i: u32) -> u32 {
    if i % 50 == 7 {
        std::process::exit(3);
    }
    i * 2
}

/// Sleeps a minute for input 123 (a hung task), else returns at once.
fn hang_one(i: u32) -> u32 {
    if i == 123 {
        std::thread::sleep(Duration::from_secs(60));
    }
    i
}

#[test]
fn tasks_sent_ahead_fail_alone_when_a_worker_dies_and_the_rest_run_on_a_new_one() {
    // 500 quick tasks queued at once: managers send them ahead in batches. Every 50th
    // exits its worker while the tasks after it wait in that worker's socket: only the
    // crashing ones may fail.
    let pool = pool(2);
    let futs: Vec<_> = (0..500)
        .map(|i| pool.submit(exit_some, i).unwrap())
        .collect();
    for (i, fut) in (0u32..).zip(futs) {
        match fut.result() {
            Ok(v) => assert_eq!(v, i * 2),
            Err(TaskError::WorkerDied(how)) => {
                assert_eq!(i % 50, 7, "task {i} failed with its worker: {how}");
            }
            Err(e) => panic!("task {i}: {e}"),
        }
    }
}

#[test]
fn a_hung_task_among_tasks_sent_ahead_times_out_alone() {
    let pool = pool(2);
    let limit = Duration::from_millis(300);
    let futs: Vec<_> = (0..400)
        .map(|i| pool.submit_with_time_limit(hang_one, i, limit).unwrap())
        .collect();
    for (i, fut) in (0u32..).zip(futs) {
        match fut.result() {
            Ok(v) => assert_eq!(v, i),
            Err(TaskError::TimedOut) => assert_eq!(i, 123, "task {i} timed out"),
            Err(e) => panic!("task {i}: {e}"),
        }
    }
}

#[test]
fn a_panic_message_is_the_same_on_threads_and_processes_and_the_origin_is_kept_apart() {
    // Hardening round 2, finding 11: on processes `panic_message()` carried the worker's pid
    // and location, so code that switched pools or matched on the message broke.
    let procs = pool(1);
    let worker = procs
        .submit(|()| std::process::id(), ())
        .unwrap()
        .result()
        .unwrap();
    let on_process = procs
        .submit(boom, "bad input".into())
        .unwrap()
        .result()
        .unwrap_err();
    let threads = concurrent_futures::ThreadPoolExecutor::new();
    let on_thread = threads
        .submit(|| boom("bad input".into()))
        .unwrap()
        .result()
        .unwrap_err();
    assert_eq!(on_process.panic_message(), Some("bad input"));
    assert_eq!(on_thread.panic_message(), Some("bad input"));
    assert_eq!(on_process, on_thread);
    let TaskError::Panicked(panic) = &on_process else {
        panic!("{on_process:?}")
    };
    assert_eq!(panic.pid(), Some(worker));
    assert!(
        panic
            .location()
            .is_some_and(|l| l.contains("process_pool.rs")),
        "{panic:?}"
    );
    assert!(panic.thread().is_some());
    let shown = on_process.to_string();
    assert!(
        shown.starts_with("task panicked: bad input (worker process "),
        "{shown}"
    );
    assert!(shown.contains("process_pool.rs:"), "{shown}");
}

fn word_len(w: String) -> usize {
    w.len()
}

/// The README's one-line switch: the same chain compiles and gives the same answer on
/// either pool, `new()` included (it returns the pool itself on both).
#[test]
fn the_one_line_switch_holds_from_new_to_map() {
    concurrent_futures::init();
    let words = || vec!["a".to_string(), "bcd".to_string(), "ef".to_string()];
    let threads: Vec<usize> = concurrent_futures::ThreadPoolExecutor::new()
        .map(word_len, words())
        .collect::<Result<_, _>>()
        .unwrap();
    let processes: Vec<usize> = ProcessPoolExecutor::new()
        .map(word_len, words())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(threads, [1, 3, 2]);
    assert_eq!(processes, threads);
}

#[test]
fn submit_with_takes_the_same_options_on_threads_and_processes() {
    // One generic function, both pools: the per-task time limit means the same on each.
    fn limited(ex: &impl Executor) -> (Result<u32, TaskError>, Result<u64, TaskError>) {
        let opts = TaskOptions::new().time_limit(Duration::from_millis(100));
        // Long enough to pass the limit, short enough that the thread pool's drop, which
        // waits for its still-sleeping thread, does not hold the test up.
        let hung = ex.apply_with(sleep_ms, 1_500, opts.clone()).unwrap();
        let quick = ex.apply_with(square, 4, opts).unwrap();
        (hung.result(), quick.result())
    }
    let threads = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    assert_eq!(limited(&threads), (Err(TaskError::TimedOut), Ok(16)));
    let processes = pool(2);
    assert_eq!(limited(&processes), (Err(TaskError::TimedOut), Ok(16)));
    // The process pool killed the hung worker; the thread pool's thread sleeps on. Both
    // take more work.
    assert_eq!(processes.submit(square, 3).unwrap().result(), Ok(9));
    assert_eq!(threads.apply(square, 3).unwrap().result(), Ok(9));
}

#[cfg(feature = "redis")]
#[test]
fn a_process_pool_refuses_a_setting_only_a_queue_honours() {
    let pool = pool(1);
    let later = TaskOptions::new().delay(Duration::from_secs(1));
    let err = pool.submit_with(square, 5, later).unwrap_err();
    assert!(
        matches!(
            err,
            SubmitError::Unsupported {
                option: "delay",
                ..
            }
        ),
        "{err:?}"
    );
    let (f, arg) = err.into_inner();
    assert_eq!(f(arg), 25);
}
