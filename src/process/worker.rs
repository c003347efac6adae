//! The worker process: [`init`] turns a re-executed copy of the program into a server of
//! tasks, before `main` does anything else. This is the worker's side of the trust boundary
//! (see SECURITY.md): it acts only on its inherited connection, which only its parent holds.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::frame::{self, FrameError, Link};
use super::report::{self, panic_report, truncate};
use super::shipping;
use crate::error::TaskError;

/// Marks a process started by a pool. Useless without the inherited connection, and removed
/// from the environment before anything else runs.
pub(crate) const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";
/// The test that `worker_test!` defines, which test binaries' workers run.
pub(crate) const WORKER_TEST: &str = "concurrent_futures_worker";
/// The version of the frames both sides speak; checked in HELLO.
pub(crate) const PROTOCOL: u32 = 2;
/// The exit code of a process that was marked as a worker but could not serve as one.
pub(crate) const NOT_A_WORKER: i32 = 70;
/// The exit code of a worker whose initializer failed.
pub(crate) const INIT_FAILED: i32 = 71;

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
/// A process is a worker only if it was started by a pool *and* holds the connection that
/// the pool handed it: its standard input must be a socket whose peer is its parent
/// process. A process that has the pool's marker in its environment but no such connection,
/// or that runs set-user-ID or set-group-ID, runs nothing: it prints why and exits with
/// code 70. The marker is removed from the environment first, so programs that tasks start
/// never see it.
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
///     let pool = ProcessPoolExecutor::new();
///     assert_eq!(pool.submit(square, 7)?.result()?, 49);
///     Ok(())
/// }
/// ```
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "process"))))]
pub fn init() {
    INITIALIZED.store(true, Ordering::Release);
    let Some(marker) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // Before any other code of ours runs (and before any thread exists): tasks and the
    // programs they start must not inherit the marker.
    #[allow(unsafe_code)]
    // SAFETY: only a worker process gets here (the pool's process returned above, finding
    // no marker), and a worker runs this first: `init()` is the first line of `main` (its
    // documented contract), or in a test binary the one test a worker runs, after the
    // harness has read its own settings. No thread of this process reads or writes the
    // environment meanwhile, which is what `remove_var` requires.
    unsafe {
        std::env::remove_var(WORKER_ENV);
    }
    // The marker names the pool's process, so that a worker whose pool exited while it was
    // starting (it now has another parent) leaves quietly instead of reporting an attack.
    let starter = marker.to_str().and_then(|m| m.parse::<u32>().ok());
    let code = match claim_connection(starter) {
        Ok(connection) => serve(connection),
        Err(None) => NOT_A_WORKER, // the pool is gone: nobody to serve, nothing to report
        Err(Some(why)) => {
            eprintln!(
                "concurrent_futures: this process was marked as a pool worker but {why}; \
                 it runs nothing"
            );
            NOT_A_WORKER
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
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
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "process"))))]
macro_rules! worker_test {
    () => {
        #[test]
        fn concurrent_futures_worker() {
            $crate::init();
        }
    };
}

/// Takes the connection the pool handed down as standard input, after checking that it is
/// one: not in a privileged program, a socket, and (where the system tells) one whose peer
/// is our parent. Standard input becomes `/dev/null`. `Err(None)`: the pool that started
/// this worker (`starter`, from the marker) has exited meanwhile, which is no attack.
fn claim_connection(starter: Option<u32>) -> Result<UnixStream, Option<String>> {
    if privileged() {
        return Err(Some(
            "it runs set-user-ID or set-group-ID, which pools never start".into(),
        ));
    }
    let stdin = std::io::stdin();
    check_peer(stdin.as_fd(), starter)?;
    let connection = stdin
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("its connection cannot be duplicated: {e}"))?;
    let null =
        std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null cannot be opened: {e}"))?;
    replace_stdin(&null)?;
    Ok(UnixStream::from(connection))
}

/// Whether this program runs with privileges its caller does not have.
#[allow(unsafe_code)]
fn privileged() -> bool {
    // SAFETY: these calls take no arguments and cannot fail.
    let (uid, euid, gid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: `getauxval` reads the auxiliary vector; an unknown type returns 0.
        // AT_SECURE also covers file capabilities and other secure-execution modes.
        if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
            return true;
        }
    }
    uid != euid || gid != egid
}

/// Checks that `fd` is a Unix socket whose peer is our parent process. `Err(None)` when the
/// peer is `starter`, the pool that started us, but it is no longer our parent: it exited.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn check_peer(fd: std::os::fd::BorrowedFd<'_>, starter: Option<u32>) -> Result<(), Option<String>> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the kernel writes at
    // most `len` bytes. A descriptor that is not a socket makes the call fail, not misbehave.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Some(format!(
            "its standard input is not a local socket ({})",
            std::io::Error::last_os_error()
        )));
    }
    let parent = std::os::unix::process::parent_id();
    // SAFETY: no arguments, cannot fail.
    let uid = unsafe { libc::getuid() };
    let peer = u32::try_from(cred.pid).ok();
    if peer != Some(parent) || cred.uid != uid {
        if peer.is_some() && peer == starter && cred.uid == uid {
            return Err(None);
        }
        return Err(Some(format!(
            "its standard input is a socket of process {} (uid {}), not of its parent {parent}",
            cred.pid, cred.uid
        )));
    }
    Ok(())
}

/// Checks that `fd` is a socket (this system does not say who its peer is).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn check_peer(fd: std::os::fd::BorrowedFd<'_>, _: Option<u32>) -> Result<(), Option<String>> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(
        fd.try_clone_to_owned()
            .map_err(|e| format!("its standard input cannot be examined: {e}"))?,
    );
    match file.metadata() {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        _ => Err(Some("its standard input is not a socket".into())),
    }
}

/// Makes descriptor `to` a copy of `from` (closing what `to` was).
#[allow(unsafe_code)]
fn dup_onto(from: std::os::fd::RawFd, to: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: `dup2` touches no memory of ours; both numbers are descriptors of this
    // process (callers say which), and it replaces `to` atomically.
    if unsafe { libc::dup2(from, to) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Points standard input at `null`.
fn replace_stdin(null: &std::fs::File) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    dup_onto(null.as_raw_fd(), 0).map_err(|e| format!("its standard input cannot be replaced: {e}"))
}

/// Moves the parent's stdout, handed down at descriptor `relay`, back to stdout (the worker
/// started with stdout on `/dev/null`, so a test harness's banner went nowhere).
fn restore_stdout(relay: i32) {
    use std::os::fd::{FromRawFd, OwnedFd};
    if relay <= 2 {
        return; // stdout was inherited as it is
    }
    let _ = std::io::stdout().flush();
    match dup_onto(relay, 1) {
        Ok(()) => {
            #[allow(unsafe_code)]
            // SAFETY: `relay` is open (dup2 just copied it) and is ours alone: the parent
            // placed it for us before exec, and nothing else here knows its number.
            drop(unsafe { OwnedFd::from_raw_fd(relay) });
        }
        // Not a descriptor of ours after all: leave it, stdout stays on /dev/null.
        Err(e) => eprintln!("concurrent_futures worker: its stdout could not be restored: {e}"),
    }
}

/// Says hello, takes the setup, runs the initializer, then runs tasks until told to stop or
/// the parent goes away. Returns the exit code.
fn serve(socket: UnixStream) -> i32 {
    let mut socket = Link::new(socket);
    watch_parent(std::os::unix::process::parent_id());
    let mut hello = Vec::with_capacity(20);
    hello.extend_from_slice(&PROTOCOL.to_le_bytes());
    hello.extend_from_slice(&shipping::fingerprint().to_le_bytes());
    hello.extend_from_slice(&shipping::layout().to_le_bytes());
    if frame::write(&mut socket, frame::HELLO, &[&hello], frame::HANDSHAKE_LIMIT).is_err() {
        return NOT_A_WORKER;
    }
    quiet_panics();
    let (limit, initializer, relay) = match frame::read(&mut socket, frame::HANDSHAKE_LIMIT, None) {
        Ok((frame::SETUP, setup)) if setup.len() == 20 => {
            let limit = u64::from_le_bytes(setup[..8].try_into().expect("8 bytes"));
            let init = i64::from_le_bytes(setup[8..16].try_into().expect("8 bytes"));
            let relay = i32::from_le_bytes(setup[16..].try_into().expect("4 bytes"));
            (usize::try_from(limit).unwrap_or(usize::MAX), init, relay)
        }
        _ => return NOT_A_WORKER, // the parent went away, or is not a pool
    };
    report::set_frame_limit(limit);
    restore_stdout(relay);
    if initializer != 0 {
        let outcome = shipping::initializer_at(initializer).and_then(|init| {
            std::panic::catch_unwind(init).map_err(|p| {
                let (message, pid, thread, location) = panic_report(&*p, limit);
                let panic = crate::error::Panic::in_process(&message, pid, &thread, &location);
                format!("panicked: {panic}")
            })
        });
        if let Err(why) = outcome {
            let why = truncate(format!("the initializer failed: {why}"), limit);
            let _ = frame::write(&mut socket, frame::INIT_FAILED, &[why.as_bytes()], limit);
            return INIT_FAILED;
        }
    }
    if frame::write(&mut socket, frame::READY, &[], limit).is_err() {
        return 0;
    }
    loop {
        let (kind, payload) = match frame::read_polled(&mut socket, limit, None) {
            Ok(f) => f,
            Err(FrameError::Closed) => return 0, // the parent let go of us
            Err(_) => return NOT_A_WORKER,
        };
        if kind != frame::TASK || payload.len() < 18 {
            return 0; // STOP, or nothing we understand: leave
        }
        let word = |i: usize| i64::from_le_bytes(payload[i..i + 8].try_into().expect("8 bytes"));
        let trace_len = usize::from(u16::from_le_bytes([payload[16], payload[17]]));
        let Some(args) = payload.get(18 + trace_len..) else {
            return 0; // a length past the frame: nothing we understand
        };
        // The span of the task in this process, continuing the submitter's trace when the
        // program set a propagator (in the pool's initializer) and the context came along.
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(target: "concurrent_futures", "worker_task", pid = std::process::id());
        #[cfg(feature = "tracing")]
        if let Ok(context) = std::str::from_utf8(&payload[18..18 + trace_len]) {
            crate::propagate::extract(&span, context, crate::propagate::Relation::Parent);
        }
        #[cfg(feature = "tracing")]
        let _in = span.enter();
        let target = shipping::trampoline_at(word(0))
            .and_then(|t| shipping::function_at(word(8)).map(|f| (t, f)));
        let (kind, body) = match target {
            Err(why) => (frame::REFUSED, why.into_bytes()),
            Ok((trampoline, function)) => match trampoline(function, args) {
                Ok(bytes) => (frame::DONE, bytes),
                Err(TaskError::Panicked(panic)) => {
                    match super::codec::encode(&super::report::report_of(&panic)) {
                        Ok(bytes) => (frame::PANICKED, bytes),
                        Err(e) => (
                            frame::BROKEN,
                            format!("cannot encode a panic: {e}").into_bytes(),
                        ),
                    }
                }
                // The parent reads BROKEN as `Transport` with this text.
                Err(TaskError::Transport(msg)) => {
                    (frame::BROKEN, truncate(msg.to_string(), limit).into_bytes())
                }
                Err(other) => (
                    frame::BROKEN,
                    truncate(other.to_string(), limit).into_bytes(),
                ),
            },
        };
        drop(payload);
        let sent = match frame::write(&mut socket, kind, &[&body], limit) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let msg = truncate(format!("result too large: {e}"), limit);
                frame::write(&mut socket, frame::BROKEN, &[msg.as_bytes()], limit)
            }
            other => other,
        };
        if sent.is_err() {
            return 0;
        }
    }
}

/// A task's panic is its future's error in the parent, so the worker does not print it as
/// `thread 'main' panicked at ...` on the parent's stderr (where it would read as if the
/// parent had crashed). It records where the panic happened, for the error message, and
/// prints the standard report only when `RUST_BACKTRACE` asks for a backtrace.
fn quiet_panics() {
    let report = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let context = (thread.name().unwrap_or("<unnamed>").to_owned(), at);
        report::record_context(context);
        if report {
            standard(info);
        }
    }));
}

/// Ends this worker if its parent dies (no orphans): a task may run for a long time without
/// touching the connection, so a thread watches the parent's process id. The helpers the
/// worker's tasks started, in its process group, end with it.
fn watch_parent(expected: u32) {
    let _ = std::thread::Builder::new()
        .name("concurrent-futures-watchdog".into())
        .spawn(move || {
            loop {
                if std::os::unix::process::parent_id() != expected {
                    kill_own_group();
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
}

/// SIGKILL to this worker's process group, itself included (the pool made it the leader of
/// a group of its own).
#[allow(unsafe_code)]
fn kill_own_group() {
    // SAFETY: `kill` has no memory-safety preconditions; pid 0 names our own process group,
    // which cannot be anyone else's.
    unsafe {
        libc::kill(0, libc::SIGKILL);
    }
}
