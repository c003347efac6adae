//! The worker process: [`init`] turns a re-executed copy of the program into a server of
//! tasks, before `main` does anything else.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::frame;
use super::shipping::{self, Outcome};

/// Names the socket a worker connects to; set only in worker processes.
pub(crate) const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";
/// The parent's process id, so an orphaned worker can notice and exit.
pub(crate) const PARENT_ENV: &str = "CONCURRENT_FUTURES_PARENT";
/// The frame size limit the parent chose.
pub(crate) const LIMIT_ENV: &str = "CONCURRENT_FUTURES_FRAME_LIMIT";
/// The distance of the pool's initializer from the anchor, when it has one.
pub(crate) const INIT_ENV: &str = "CONCURRENT_FUTURES_INITIALIZER";
/// The test that `worker_test!` defines, which test binaries' workers run.
pub(crate) const WORKER_TEST: &str = "concurrent_futures_worker";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::Acquire)
}

/// The start-up hook of programs that use a [`ProcessPoolExecutor`](crate::ProcessPoolExecutor):
/// call it first thing in `main`.
///
/// In the program itself it only records that it ran, and returns at once. In a worker
/// process (the program re-executed by the pool) it serves tasks until the pool lets it go,
/// then exits the process: it never returns, so the rest of `main` never runs twice.
/// Building a process pool without calling it is an error
/// ([`BuildError::NotInitialized`](crate::BuildError::NotInitialized)), never a fork bomb.
///
/// In test binaries (whose `main` belongs to the test harness), call
/// [`worker_test!`](crate::worker_test) once at the root of the test crate, and `init()`
/// at the top of each test that builds a pool.
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::ProcessPoolExecutor;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     concurrent_futures::init(); // workers start here, and never get further
///     let pool = ProcessPoolExecutor::new()?;
///     assert_eq!(pool.submit(square, 7)?.result()?, 49);
///     Ok(())
/// }
/// ```
pub fn init() {
    INITIALIZED.store(true, Ordering::Release);
    if let Some(path) = std::env::var_os(WORKER_ENV) {
        let code = serve(&path);
        std::process::exit(code);
    }
}

/// Defines the test that a test binary's worker processes run: put
/// `concurrent_futures::worker_test!();` once at the root of each test crate that uses a
/// [`ProcessPoolExecutor`](crate::ProcessPoolExecutor). Run as an ordinary test it does
/// nothing and passes.
///
/// # Examples
///
/// ```
/// // tests/my_pool_tests.rs
/// concurrent_futures::worker_test!();
/// ```
#[macro_export]
macro_rules! worker_test {
    () => {
        #[test]
        fn concurrent_futures_worker() {
            $crate::init();
        }
    };
}

/// Connects, says hello, and runs tasks until told to stop or the parent goes away.
fn serve(path: &std::ffi::OsStr) -> i32 {
    let limit = std::env::var(LIMIT_ENV)
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(super::DEFAULT_FRAME_LIMIT);
    let mut socket = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("concurrent_futures worker: cannot reach the pool: {e}");
            return 70;
        }
    };
    watch_parent();
    if let Some(offset) = std::env::var(INIT_ENV).ok().and_then(|o| o.parse().ok()) {
        let init = shipping::initializer_at(offset);
        if let Err(p) = std::panic::catch_unwind(init) {
            eprintln!(
                "concurrent_futures worker: initializer panicked: {}",
                crate::error::panic_message(&*p)
            );
            return 71; // no HELLO: the parent counts a failed start
        }
    }
    let hello = [
        shipping::fingerprint().to_le_bytes(),
        shipping::layout().to_le_bytes(),
    ];
    if frame::write(&mut socket, frame::HELLO, &[&hello[0], &hello[1]], limit).is_err() {
        return 70;
    }
    loop {
        let (kind, payload) = match frame::read_polled(&mut socket, limit) {
            Ok(f) => f,
            Err(_) => return 0, // the parent is gone or let go of us
        };
        if kind != frame::TASK || payload.len() < 16 {
            return 0; // STOP, or nothing we understand: leave
        }
        let word = |i: usize| i64::from_le_bytes(payload[i..i + 8].try_into().expect("8 bytes"));
        let trampoline = shipping::trampoline_at(word(0));
        let function = shipping::function_at(word(8));
        let (kind, body) = match trampoline(function, &payload[16..]) {
            Outcome::Done(bytes) => (frame::DONE, bytes),
            Outcome::Panicked(msg) => (frame::PANICKED, msg.into_bytes()),
            Outcome::Broken(msg) => (frame::BROKEN, msg.into_bytes()),
        };
        let sent = match frame::write(&mut socket, kind, &[&body], limit) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let msg = format!("result too large: {e}");
                frame::write(&mut socket, frame::BROKEN, &[msg.as_bytes()], limit)
            }
            other => other,
        };
        if sent.is_err() {
            return 0;
        }
    }
}

/// Exits this worker if its parent dies (no orphans): a task may run for a long time without
/// touching the socket, so a thread watches the parent's process id.
fn watch_parent() {
    let expected: Option<u32> = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
    let Some(expected) = expected else { return };
    let _ = std::thread::Builder::new()
        .name("concurrent-futures-watchdog".into())
        .spawn(move || loop {
            if std::os::unix::process::parent_id() != expected {
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(100));
        });
}
