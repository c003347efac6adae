//! The process pool against hostile processes and bad data: no rendezvous to squat, no code
//! run from the environment or from forged offsets, nothing a worker sends can crash or
//! hang the parent, and one result per item from `map` whatever the workers do.
#![cfg(all(target_os = "linux", feature = "process"))]

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{HANG, alive, alone, eventually, pool};
use concurrent_futures::{
    BuildError, MIN_FRAME_BYTES, MapError, ProcessPoolExecutor, SubmitError, TaskError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

concurrent_futures::worker_test!();

const MARKER: &str = "CONCURRENT_FUTURES_WORKER";

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

// ---------------------------------------------------------------------------------------
// The wire format, written out here so that the tests can play a fake parent. It pins the
// format too: a change to it must change these lines.

const HELLO: u8 = 1;
const SETUP: u8 = 2;
const READY: u8 = 3;
const TASK: u8 = 5;
const REFUSED: u8 = 10;

fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn send(s: &mut UnixStream, kind: u8, payload: &[u8]) {
    let mut f = b"CFP2".to_vec();
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&fnv(payload).to_le_bytes());
    f.extend_from_slice(payload);
    s.write_all(&f).unwrap();
}

fn recv(s: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 13];
    s.read_exact(&mut header).unwrap();
    assert_eq!(&header[..4], b"CFP2");
    let len = u32::from_le_bytes(header[5..9].try_into().unwrap()) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).unwrap();
    (header[4], payload)
}

/// Starts this test binary as a worker whose standard input is `stdin`, with the marker.
fn worker_command(stdin: Stdio) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "concurrent_futures_worker",
        "--exact",
        "--nocapture",
        "-q",
        "--test-threads=1",
    ])
    .env(MARKER, "1")
    .stdin(stdin)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

// ---------------------------------------------------------------------------------------
// 1. No rendezvous: nothing to connect to or squat, and the connection cannot be reached.

/// The attacker: run as a separate process (this binary, re-run), it looks for every way in
/// that the old design offered and any socket it can reach, and reports what worked.
#[test]
fn attacker_helper() {
    let Ok(victim) = std::env::var("CF_ATTACK_PID") else {
        return; // an ordinary test run: nothing to attack
    };
    let mut got_in = Vec::new();
    // Spin for a bounded while: workers are being started all along (the old design's
    // window was between a socket's bind and the worker's connect).
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end && got_in.is_empty() {
        attack_once(&victim, &mut got_in);
    }
    println!("ATTACK-RESULT {}", got_in.join("; "));
}

fn attack_once(victim: &str, got_in: &mut Vec<String>) {
    // Named sockets or files of ours in the temporary directory: connect to each.
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("concurrent-futures") {
            if UnixStream::connect(entry.path()).is_ok() {
                got_in.push(format!("connected to {name}"));
            }
            got_in.push(format!("found {name}"));
        }
    }
    // Every named Unix socket on the machine that the victim or its workers bound.
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    for line in unix.lines().skip(1) {
        if let Some(path) = line.split_whitespace().nth(7) {
            if path.contains("concurrent") {
                if UnixStream::connect(path).is_ok() {
                    got_in.push(format!("connected to {path}"));
                }
                got_in.push(format!("named socket {path}"));
            }
        }
    }
    // The victim's and its children's descriptors: open any socket through /proc.
    let mut pids = vec![victim.to_owned()];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{victim}/task/{victim}/children"))
    {
        pids.extend(children.split_whitespace().map(str::to_owned));
    }
    for pid in pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if target.to_string_lossy().starts_with("socket:") {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(fd.path()) {
                    // The number may have been reused since the link was read (for a pipe,
                    // which a process of the same user can always open): only a socket
                    // opened counts as a way in.
                    use std::os::unix::fs::FileTypeExt;
                    if f.metadata().is_ok_and(|m| m.file_type().is_socket()) {
                        let _ = f.write_all(b"CFP2");
                        got_in.push(format!("opened {}", fd.path().display()));
                    }
                }
            }
        }
    }
}

#[test]
fn an_attacker_process_finds_no_way_in_and_results_stay_genuine() {
    let before: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("concurrent-futures"))
        .collect();
    concurrent_futures::init();
    // A new worker for every task: worker starts go on throughout the attack.
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let attack = alone("attacker_helper")
        .env("CF_ATTACK_PID", std::process::id().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut futs = Vec::new();
    let mut x = 0u64;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let fut = pool.submit(square, x).unwrap();
        futs.push((x, fut));
        x += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let attack = attack.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&attack.stdout);
    let line = report
        .lines()
        .find(|l| l.starts_with("ATTACK-RESULT"))
        .unwrap_or_else(|| panic!("the attacker did not report: {report}"));
    assert_eq!(
        line.trim_end(),
        "ATTACK-RESULT",
        "the attacker got somewhere"
    );
    assert!(futs.len() > 10);
    for (x, fut) in futs {
        assert_eq!(fut.result(), Ok(x * x));
    }
    let after: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("concurrent-futures"))
        .collect();
    assert_eq!(
        before, after,
        "the pool created files in the temporary directory"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Nothing in the environment, and nothing but the parent, can make a worker run code.

#[test]
fn a_marked_process_without_its_connection_runs_nothing() {
    for stdin in [Stdio::null(), Stdio::piped()] {
        // The old design's variables, an initializer among them, are not read at all.
        let out = worker_command(stdin)
            .env("CONCURRENT_FUTURES_INITIALIZER", "4096")
            .env("CONCURRENT_FUTURES_FRAME_LIMIT", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(70), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a local socket"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("test result"));
    }
}

/// Connects to the socket named by CF_CONNECT_TO and holds it open: a process other than
/// the worker's parent, for the next test.
#[test]
fn connect_helper() {
    if let Ok(path) = std::env::var("CF_CONNECT_TO") {
        let _s = UnixStream::connect(path).unwrap();
        std::thread::sleep(Duration::from_secs(5));
    }
}

#[test]
fn a_socket_whose_peer_is_not_the_parent_is_refused() {
    let dir = std::env::temp_dir().join(format!("cf-peer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("s");
    let listener = UnixListener::bind(&path).unwrap();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["connect_helper", "--exact", "-q"])
        .env("CF_CONNECT_TO", &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (accepted, _) = listener.accept().unwrap();
    // The worker's stdin is a socket, but its peer is the helper, not the worker's parent.
    let out = worker_command(Stdio::from(OwnedFd::from(accepted)))
        .output()
        .unwrap();
    let _ = helper.kill();
    let _ = helper.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not of its parent"), "{stderr}");
}

/// Plays the parent of a real worker: the handshake, then whatever frames the test sends.
fn fake_parent(initializer: i64) -> (std::process::Child, UnixStream, Result<(), Vec<u8>>) {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(HANG)).unwrap();
    let child = worker_command(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    let (kind, hello) = recv(&mut ours);
    assert_eq!((kind, hello.len()), (HELLO, 20));
    let mut setup = (1u64 << 20).to_le_bytes().to_vec();
    setup.extend_from_slice(&initializer.to_le_bytes());
    setup.extend_from_slice(&(-1i32).to_le_bytes()); // no stdout to restore
    send(&mut ours, SETUP, &setup);
    let (kind, why) = recv(&mut ours);
    let ready = if kind == READY { Ok(()) } else { Err(why) };
    (child, ours, ready)
}

#[test]
fn forged_offsets_get_typed_refusals_and_nothing_runs() {
    let (mut child, mut conn, ready) = fake_parent(0);
    ready.unwrap();
    let anchor_relative = [
        (0i64, 0i64),                   // the anchor itself
        (0x1234_5678_9abc, 16),         // garbage far away
        (i64::MIN, i64::MAX),           // overflow
        (-(1i64 << 46), -(1i64 << 46)), // below any mapping
    ];
    for (trampoline, function) in anchor_relative {
        let mut task = trampoline.to_le_bytes().to_vec();
        task.extend_from_slice(&function.to_le_bytes());
        task.extend_from_slice(&0u16.to_le_bytes()); // no trace context
        task.push(0);
        send(&mut conn, TASK, &task);
        let (kind, why) = recv(&mut conn);
        assert_eq!(kind, REFUSED, "{}", String::from_utf8_lossy(&why));
        assert!(
            String::from_utf8_lossy(&why).contains("not inside this program's code"),
            "{}",
            String::from_utf8_lossy(&why)
        );
    }
    drop(conn); // the worker leaves when its parent lets go
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_trace_context_longer_than_its_frame_makes_the_worker_leave_without_a_call() {
    let (mut child, mut conn, ready) = fake_parent(0);
    ready.unwrap();
    let mut task = 0i64.to_le_bytes().to_vec();
    task.extend_from_slice(&0i64.to_le_bytes());
    task.extend_from_slice(&600u16.to_le_bytes()); // 600 bytes said, 3 sent
    task.extend_from_slice(b"abc");
    send(&mut conn, TASK, &task);
    // It answers nothing and leaves: a parent that sends this is not ours.
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_forged_initializer_offset_is_refused_before_any_call() {
    let (mut child, conn, ready) = fake_parent(0x7777_7777_7777);
    let why = String::from_utf8_lossy(&ready.unwrap_err()).into_owned();
    assert!(
        why.contains("initializer") && why.contains("not inside"),
        "{why}"
    );
    drop(conn);
    assert_eq!(child.wait().unwrap().code(), Some(71));
}

fn env_and_stdin(_: ()) -> (bool, bool, usize) {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let child_env = Command::new("env")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    (
        std::env::var_os(MARKER).is_none(),
        !String::from_utf8_lossy(&child_env).contains("CONCURRENT_FUTURES"),
        stdin.len(),
    )
}

#[test]
fn tasks_see_no_marker_and_an_empty_stdin() {
    let pool = pool(1);
    let (no_marker, child_no_marker, stdin) =
        pool.submit(env_and_stdin, ()).unwrap().result().unwrap();
    assert!(no_marker, "the worker's environment still has the marker");
    assert!(
        child_no_marker,
        "a program a task starts inherits the marker"
    );
    assert_eq!(stdin, 0, "a task can read the connection through stdin");
}

// ---------------------------------------------------------------------------------------
// 3. Nothing a worker sends can crash or hang the parent.

/// Serializes as 50,000 nested `Node`s, flat (as a tuple of variant tags), so the worker
/// can send it without recursing; deserializes as the recursive list it claims to be.
#[derive(Debug)]
struct Deep(#[allow(dead_code)] List);

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum List {
    Nil,
    Node(Box<List>),
}

impl Serialize for Deep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(50_001)?;
        for _ in 0..50_000 {
            t.serialize_element(&1u8)?;
        }
        t.serialize_element(&0u8)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Deep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        List::deserialize(d).map(Deep)
    }
}

fn deep(_: ()) -> Deep {
    Deep(List::Nil)
}

#[test]
fn a_deeply_nested_result_fails_its_task_and_the_parent_lives() {
    let pool = pool(1);
    let err = pool.submit(deep, ()).unwrap().result().unwrap_err();
    assert!(
        matches!(&err, TaskError::Transport(m) if m.contains("nested deeper than")),
        "{err}"
    );
    assert_eq!(pool.submit(square, 9).unwrap().result(), Ok(81));
}

#[derive(Debug, Serialize)]
struct Grenade;

impl<'de> Deserialize<'de> for Grenade {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("Deserialize went off")
    }
}

fn grenade(_: ()) -> Grenade {
    Grenade
}

#[test]
fn a_panicking_deserialize_fails_its_task_and_the_slot_serves_on() {
    let pool = pool(1); // one slot: a lost slot would hang the next task
    let err = pool.submit(grenade, ()).unwrap().result().unwrap_err();
    assert!(
        matches!(&err, TaskError::Transport(m) if m.contains("Deserialize went off")),
        "{err}"
    );
    assert_eq!(pool.submit(square, 4).unwrap().result(), Ok(16));
}

fn raw_fds_write_a_stalled_header(_: ()) -> u8 {
    // Find our own connection among the worker's descriptors and promise 4,096 bytes on it.
    let mut header = b"CFP2".to_vec();
    header.push(7); // DONE
    header.extend_from_slice(&4096u32.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:") {
            let n: i32 = fd.file_name().to_string_lossy().parse().unwrap();
            // SAFETY: `n` is open in this process for the duration of the borrow.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
            if let Ok(owned) = borrowed.try_clone_to_owned() {
                let _ = std::fs::File::from(owned).write_all(&header);
            }
        }
    }
    1
}

#[test]
fn a_frame_that_stalls_after_its_header_fails_its_task_and_the_pool_serves_on() {
    let pool = pool(1);
    let err = pool
        .submit(raw_fds_write_a_stalled_header, ())
        .unwrap()
        .result()
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::Transport(m) if m.contains("stalled") || m.contains("checksum")),
        "{err}"
    );
    assert_eq!(pool.submit(square, 5).unwrap().result(), Ok(25));
}

// ---------------------------------------------------------------------------------------
// 4. Durations at the edges.

fn hang(_: ()) -> u8 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn kill_grace_of_duration_max_neither_panics_nor_hangs() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .kill_grace(Duration::MAX)
        .build()
        .unwrap();
    let fut = pool
        .submit_with_time_limit(hang, (), Duration::from_millis(100))
        .unwrap();
    assert_eq!(fut.result(), Err(TaskError::TimedOut));
    assert_eq!(pool.submit(square, 6).unwrap().result(), Ok(36));
}

#[test]
fn a_zero_time_limit_expires_at_once_without_killing_a_worker() {
    let pool = pool(1);
    let before = pool.submit(pid, ()).unwrap().result().unwrap();
    let fut = pool
        .submit_with_time_limit(square, 3, Duration::ZERO)
        .unwrap();
    assert_eq!(fut.result(), Err(TaskError::TimedOut));
    // The same worker serves on: nothing was sent to it, nothing was killed.
    assert_eq!(pool.submit(pid, ()).unwrap().result(), Ok(before));
    // And a huge limit is no limit, not an overflow.
    let fut = pool
        .submit_with_time_limit(square, 3, Duration::MAX)
        .unwrap();
    assert_eq!(fut.result(), Ok(9));

    concurrent_futures::init();
    let zero = ProcessPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(
        zero.submit(square, 2).unwrap().result(),
        Err(TaskError::TimedOut)
    );
    let items: Vec<_> = zero.map(square, 0..5).chunk_size(2).collect();
    assert_eq!(items.len(), 5);
    assert!(
        items
            .iter()
            .all(|r| *r == Err(MapError::Task(TaskError::TimedOut)))
    );
}

#[test]
fn idle_timeouts_of_zero_and_duration_max_serve_every_task() {
    for idle in [Duration::ZERO, Duration::from_millis(1), Duration::MAX] {
        concurrent_futures::init();
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .idle_timeout(idle)
            .build()
            .unwrap();
        for x in 0..30u64 {
            let got = pool.submit(square, x).unwrap().result_timeout(HANG);
            assert_eq!(got.ok(), Some(x * x), "idle {idle:?}, task {x}");
        }
        let all: Vec<_> = pool.map(square, 0..50u64).collect();
        assert_eq!(all.len(), 50);
        assert!(all.iter().all(Result::is_ok));
    }
}

#[test]
fn a_frame_limit_below_the_minimum_is_a_build_error() {
    concurrent_futures::init();
    for bytes in [0, 1, MIN_FRAME_BYTES - 1] {
        let err = ProcessPoolExecutor::builder()
            .max_frame_bytes(bytes)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::FrameLimit {
                bytes,
                minimum: MIN_FRAME_BYTES
            }
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Callbacks run where waiting on the pool and shutting it down are safe.

#[test]
fn a_callback_can_wait_on_its_own_pool() {
    let pool = Arc::new(pool(1));
    let (tx, rx) = mpsc::channel();
    let inner = pool.clone();
    let first = pool.submit(square, 2).unwrap();
    first.add_done_callback(move |_| {
        // With one worker, this needs the manager that completed `first`.
        let nested = inner.submit(square, 3).unwrap().result();
        tx.send(nested).unwrap();
    });
    assert_eq!(rx.recv_timeout(HANG), Ok(Ok(9)));
}

#[test]
fn shutdown_inside_a_callback_neither_panics_nor_deadlocks() {
    let pool = Arc::new(pool(1));
    let pids_before = pool.worker_pids();
    let (tx, rx) = mpsc::channel();
    let inner = pool.clone();
    let fut = pool.submit(square, 2).unwrap();
    fut.add_done_callback(move |_| {
        inner.shutdown();
        tx.send(inner.submit(square, 1).is_err()).unwrap();
    });
    assert_eq!(rx.recv_timeout(HANG), Ok(true));
    drop(pool); // the last handle may be dropped on the callback thread or here
    for pid in pids_before {
        eventually(|| !alive(pid));
    }
}

// ---------------------------------------------------------------------------------------
// 6. One result per item from `map`, whatever the workers do.

fn fragile(x: u64) -> u64 {
    if x % 50 == 7 {
        std::process::exit(3); // a crash, 2 % of the items
    }
    x * 2
}

fn touchy(x: u64) -> u64 {
    assert!(x % 50 != 7, "item {x} panicked");
    x * 2
}

#[test]
fn chunked_map_under_a_crash_storm_keeps_one_result_per_item() {
    let pool = pool(2);
    let out: Vec<_> = pool.map(fragile, 0..2000u64).chunk_size(25).collect();
    assert_eq!(out.len(), 2000);
    for (x, r) in (0..2000u64).zip(&out) {
        if x % 50 == 7 {
            assert!(
                matches!(r, Err(MapError::Task(TaskError::WorkerDied(how))) if how.contains("code 3")),
                "item {x}: {r:?}"
            );
        } else {
            assert_eq!(r, &Ok(x * 2), "item {x}");
        }
    }
    // Unordered, too: every index once, each with its own result.
    let mut seen: Vec<_> = pool
        .map_unordered(fragile, 0..500u64)
        .chunk_size(25)
        .with_index()
        .collect();
    seen.sort_by_key(|(i, _)| *i);
    assert_eq!(seen.len(), 500);
    for (i, r) in seen {
        assert_eq!(r.is_ok(), i % 50 != 7, "item {i}: {r:?}");
    }
}

#[test]
fn chunked_map_with_panics_fails_only_the_panicking_items() {
    let pool = pool(2);
    let out: Vec<_> = pool.map(touchy, 0..2000u64).chunk_size(25).collect();
    assert_eq!(out.len(), 2000);
    for (x, r) in (0..2000u64).zip(&out) {
        if x % 50 == 7 {
            assert!(
                matches!(r, Err(MapError::Task(e)) if e.is_panic()),
                "item {x}: {r:?}"
            );
        } else {
            assert_eq!(r, &Ok(x * 2), "item {x}");
        }
    }
}

fn slow_item(x: u64) -> u64 {
    if x == 3 {
        std::thread::sleep(Duration::from_secs(60));
    }
    x
}

#[test]
fn a_hung_item_in_a_chunk_times_out_alone() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::from_millis(500))
        .kill_grace(Duration::ZERO)
        .build()
        .unwrap();
    let out: Vec<_> = pool.map(slow_item, 0..6u64).chunk_size(6).collect();
    assert_eq!(out.len(), 6);
    for (x, r) in (0..6u64).zip(&out) {
        if x == 3 {
            assert_eq!(r, &Err(MapError::Task(TaskError::TimedOut)));
        } else {
            assert_eq!(r, &Ok(x));
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. Lazy workers, warm ones first; terminate reaches workers that are still starting.

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Counts this process's threads around a build: run alone in a process of its own, since
/// other tests' pools would count too.
#[test]
fn lazy_threads_helper() {
    if std::env::var_os("CF_COUNT_THREADS").is_none() {
        return;
    }
    concurrent_futures::init();
    let before = threads();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(10_000)
        .build()
        .unwrap();
    let after = threads();
    drop(pool);
    println!("THREADS-STARTED {}", after - before);
}

#[test]
fn a_huge_max_workers_starts_threads_lazily_and_reuses_a_warm_worker() {
    let out = alone("lazy_threads_helper")
        .env("CF_COUNT_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let started: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("THREADS-STARTED "))
        .unwrap_or_else(|| panic!("no count: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    // One manager (and its worker's process, not a thread here): not 10,000.
    assert!(started <= 2, "{started} threads at build");

    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(10_000)
        .build()
        .unwrap();
    let pids: std::collections::HashSet<u32> = (0..200)
        .map(|_| pool.submit(pid, ()).unwrap().result().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "sequential tasks went to {} workers",
        pids.len()
    );
}

fn marker_file(parent: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cf-slow-start-{parent}"))
}

/// Sleeps for a minute when the test has asked for slow starts: a worker that is still
/// starting when `terminate` comes.
fn slow_start() {
    if marker_file(std::os::unix::process::parent_id()).exists() {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn terminate_kills_a_worker_that_is_still_starting() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(slow_start)
        .build()
        .unwrap();
    let mark = marker_file(std::process::id());
    std::fs::write(&mark, b"").unwrap();
    let busy = pool.submit(sleep_ms, 60_000).unwrap(); // the warm worker
    eventually(|| busy.running());
    let starting = pool.submit(square, 2).unwrap(); // needs a second worker: slow to start
    eventually(|| pool.worker_pids().len() == 2);
    let pids = pool.worker_pids();
    assert!(!starting.running(), "running before a worker holds it");
    pool.terminate();
    std::fs::remove_file(&mark).unwrap();
    assert!(pool.worker_pids().is_empty());
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived terminate");
    }
    assert!(matches!(busy.result(), Err(TaskError::WorkerDied(_))));
    assert!(matches!(
        starting.result(),
        Err(TaskError::Cancelled | TaskError::WorkerDied(_))
    ));
    assert!(matches!(
        pool.submit(square, 1),
        Err(SubmitError::Shutdown(_))
    ));
}

/// Sleeps in the initializer of workers started while the marker exists.
fn slow_start_for_count() {
    if std::env::var_os("CF_COUNT_SOCKETS").is_some()
        && marker_file(std::os::unix::process::parent_id()).exists()
    {
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Counts this process's sockets while one worker runs a task and a second is still in its
/// initializer: alone in a process, so that no other test's pool counts.
#[test]
fn socket_count_helper() {
    if std::env::var_os("CF_COUNT_SOCKETS").is_none() {
        return;
    }
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(slow_start_for_count)
        .build()
        .unwrap();
    let mark = marker_file(std::process::id());
    std::fs::write(&mark, b"").unwrap();
    let busy = pool.submit(sleep_ms, 1_000).unwrap();
    eventually(|| busy.running());
    let starting = pool.submit(square, 2).unwrap();
    eventually(|| pool.worker_pids().len() == 2);
    std::thread::sleep(Duration::from_millis(100)); // well into the handshake
    let sockets = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .map(|t| t.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .count();
    println!("SOCKETS {sockets} WORKERS {}", pool.worker_pids().len());
    std::fs::remove_file(&mark).unwrap();
    let _ = (busy.result(), starting.result());
}

#[test]
fn the_parent_holds_only_its_own_end_of_each_connection() {
    // A worker's end left open in the parent would keep a dead worker's connection from
    // ever reading as closed (a killed worker would be noticed only at a time limit).
    let out = alone("socket_count_helper")
        .env("CF_COUNT_SOCKETS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("SOCKETS "))
        .unwrap_or_else(|| panic!("no count: {stdout}"));
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // Per worker: our end of its connection, and both ends of the pair on which
    // `kill_task` wakes its manager. Its own end of the connection is not among them.
    assert_eq!(nums[0], 3 * nums[1], "three sockets per worker: {line}");
}

fn crash(_: ()) -> u8 {
    std::process::exit(3)
}

/// Crashes a task, so that the pool starts a replacement worker, and exits at once.
#[test]
fn exit_while_replacing_helper() {
    if std::env::var_os("CF_EXIT_WHILE_REPLACING").is_none() {
        return;
    }
    let pool = pool(1);
    let _ = pool.submit(crash, ()).unwrap().result();
    std::process::exit(0); // the replacement is starting now
}

#[test]
fn a_worker_whose_pool_exited_while_it_started_leaves_quietly() {
    // Hardening round 2, finding 10: the half-started worker found a stranger at the other
    // end of its connection (its parent had exited, so its parent was now 1) and printed an
    // attack warning after the program had ended.
    for _ in 0..4 {
        let out = alone("exit_while_replacing_helper")
            .env("CF_EXIT_WHILE_REPLACING", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("marked as a pool worker"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// Hardening, round 2: descriptors, deaths the connection does not show, process groups.

fn shout(i: u32) -> u32 {
    println!("task {i} prints");
    i
}

/// Builds a pool in a process whose stdout is closed and runs tasks that print.
#[test]
fn closed_stdout_helper() {
    if std::env::var_os("CF_CLOSED_STDOUT").is_none() {
        return;
    }
    // Rust's runtime puts /dev/null on a standard stream closed at start (`prog >&-`); a
    // daemon closes its stdout later, as this one does.
    use std::os::fd::{FromRawFd, OwnedFd};
    #[allow(unsafe_code)]
    // SAFETY: descriptor 1 is open (the runtime made sure) and nothing else will use it as an
    // owned descriptor: `println!` writes to the number, and fails with EBADF from now on.
    drop(unsafe { OwnedFd::from_raw_fd(1) });
    let pool = pool(1);
    let futures: Vec<_> = (0..20).map(|i| pool.submit(shout, i).unwrap()).collect();
    let ok = futures
        .into_iter()
        .map(|f| f.result())
        .filter(Result::is_ok)
        .count();
    println!("the parent prints too"); // a no-op sink, never a panic
    eprintln!("RESULT {ok} of 20");
}

#[test]
fn a_parent_with_stdout_closed_keeps_its_connections_off_descriptor_1() {
    // Hardening round 2, finding 2: the socket pair took descriptor 1, so workers printed
    // into their own connection and the parent's println! panicked on a broken pipe.
    let out = alone("closed_stdout_helper")
        .env("CF_CLOSED_STDOUT", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(stderr.contains("RESULT 20 of 20"), "{stderr}");
}

#[test]
fn a_task_after_its_idle_worker_was_killed_runs_on_a_new_one() {
    // Hardening round 2, finding 3: the send to the dead worker failed, and the task that
    // never reached it failed with WorkerDied("killed by signal 9").
    let pool = pool(1);
    let first = pool.submit(pid, ()).unwrap().result().unwrap();
    let status = Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Dead: a zombie until the pool reaps it, with every thread gone (the leader turns
    // zombie while its other threads are still exiting, and a task sent in that instant
    // may yet be read by a dying worker).
    eventually(|| {
        let status = std::fs::read_to_string(format!("/proc/{first}/status")).unwrap_or_default();
        !alive(first)
            && status
                .lines()
                .any(|l| l.split_whitespace().eq(["Threads:", "1"]))
    });
    let second = pool.submit(pid, ()).unwrap().result();
    assert!(matches!(second, Ok(p) if p != first), "{second:?}");
}

/// Where a worker writes the pid of a helper it started, for the test that made its pool.
fn pid_file(tag: &str, pool: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cf-{tag}-{pool}"))
}

/// In a worker: the pid file for its pool's test.
fn my_pid_file(tag: &str) -> std::path::PathBuf {
    pid_file(tag, std::os::unix::process::parent_id())
}

/// Starts `sleep 120` holding this worker's end of its connection as its stdin, writes its
/// pid down, then crashes.
#[allow(unsafe_code)]
fn fork_then_crash(_: ()) -> u8 {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let socket = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (n > 2 && target.to_string_lossy().starts_with("socket:")).then_some(n)
        })
        .next()
        .expect("the worker's connection");
    // SAFETY: `socket` is an open descriptor of this process, borrowed only to duplicate it.
    let held = unsafe { BorrowedFd::borrow_raw(socket) }
        .try_clone_to_owned()
        .unwrap();
    assert!(held.as_raw_fd() > 2);
    let child = Command::new("sleep")
        .arg("120")
        .stdin(Stdio::from(held))
        .spawn()
        .unwrap();
    std::fs::write(my_pid_file("fork"), child.id().to_string()).unwrap();
    std::process::abort()
}

#[test]
fn a_worker_that_dies_while_a_child_holds_its_connection_fails_its_task_at_once() {
    // Hardening round 2, finding 4: no end-of-file came while the child lived, and the read
    // loop never looked at the worker itself: the future hung for two minutes.
    let pool = pool(1);
    let fut = pool.submit(fork_then_crash, ()).unwrap();
    let got = fut.result_timeout(HANG);
    assert!(
        matches!(&got, Err(concurrent_futures::ResultTimeoutError::Failed(TaskError::WorkerDied(how))) if how.contains("SIGABRT")),
        "{got:?}"
    );
    let helper = helper_pid("fork");
    eventually(|| !alive(helper)); // its process group went with it
    assert_eq!(pool.submit(square, 3).unwrap().result(), Ok(9));
}

/// Starts `sleep 40`, writes its pid down, and hangs.
fn helper_then_hang(tag: String) -> u8 {
    // Off the test's pipes: a test that waits for a helper process's output must not wait
    // for this one too.
    let mut child = Command::new("sleep")
        .arg("40")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(my_pid_file(&tag), child.id().to_string()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let _ = child.try_wait(); // never reached in time: the task is killed first
    }
}

fn helper_pid(tag: &str) -> u32 {
    let mut pid = None;
    eventually(|| {
        pid = std::fs::read_to_string(pid_file(tag, std::process::id()))
            .ok()
            .and_then(|s| s.parse().ok());
        pid.is_some()
    });
    let _ = std::fs::remove_file(pid_file(tag, std::process::id()));
    pid.unwrap()
}

#[test]
fn time_limits_kill_task_and_terminate_reach_the_helpers_a_task_started() {
    // Hardening round 2, finding 5: the worker was killed by pid, its process group was
    // not, and `sleep 40` outlived the task.
    concurrent_futures::init();
    let timed = ProcessPoolExecutor::builder()
        .max_workers(1)
        .time_limit(Duration::from_millis(700))
        .build()
        .unwrap();
    let fut = timed.submit(helper_then_hang, "limit".into()).unwrap();
    let sleeper = helper_pid("limit");
    assert_eq!(fut.result(), Err(TaskError::TimedOut));
    eventually(|| !alive(sleeper));

    let pool = pool(1);
    let fut = pool.submit(helper_then_hang, "kill".into()).unwrap();
    let sleeper = helper_pid("kill");
    assert!(pool.kill_task(&fut));
    assert_eq!(fut.result(), Err(TaskError::Cancelled));
    eventually(|| !alive(sleeper));

    let fut = pool.submit(helper_then_hang, "terminate".into()).unwrap();
    let sleeper = helper_pid("terminate");
    pool.terminate();
    assert!(fut.result().is_err());
    eventually(|| !alive(sleeper));
}

/// Crashes a task in a process that ignores SIGCHLD, and prints the error.
#[test]
fn sigchld_ignored_helper() {
    if std::env::var_os("CF_SIGCHLD_IGNORED").is_none() {
        return;
    }
    let pool = pool(1);
    let err = pool.submit(crash, ()).unwrap().result().unwrap_err();
    println!("RESULT {err}");
    assert_eq!(pool.submit(square, 4).unwrap().result(), Ok(16));
    println!("SERVED ON");
}

#[test]
fn with_sigchld_ignored_a_crash_says_its_status_is_unknown_and_why() {
    // Hardening round 2, finding 8: the crash read as "killed by signal 9 (SIGKILL)", and
    // SIGKILL was sent to a pid the system had already reaped. An ignored SIGCHLD survives
    // exec, so bash's `trap '' CHLD` hands it to the helper.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("bash")
        .args([
            "-c",
            r#"trap '' CHLD; exec "$0" sigchld_ignored_helper --exact --nocapture -q"#,
        ])
        .arg(exe)
        .env("CF_SIGCHLD_IGNORED", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("SERVED ON"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("RESULT")).unwrap();
    assert!(line.contains("SIGCHLD is ignored"), "{line}");
    assert!(!line.contains("signal 9"), "{line}");
}

/// Starts a task that starts `sleep 40`, then exits while it runs: the pool's parent dies.
#[test]
fn parent_death_helper() {
    if std::env::var_os("CF_PARENT_DEATH").is_none() {
        return;
    }
    let pool = pool(1);
    let _running = pool.submit(helper_then_hang, "orphan".into()).unwrap();
    let sleeper = helper_pid("orphan");
    println!("SLEEPER {sleeper}");
    std::process::exit(0);
}

#[test]
fn the_helpers_of_a_task_end_when_the_pool_process_dies() {
    // Hardening round 2, finding 5 (parent death): the worker's watchdog exited the worker
    // alone, and `sleep 40` lived on.
    let out = alone("parent_death_helper")
        .env("CF_PARENT_DEATH", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sleeper: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SLEEPER "))
        .unwrap_or_else(|| panic!("no pid: {stdout}"))
        .parse()
        .unwrap();
    eventually(|| !alive(sleeper));
}
