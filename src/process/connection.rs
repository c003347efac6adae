//! The parent's end of one worker: starting it over a private connection, the handshake,
//! and one call at a time with a time limit. This is the parent's side of the trust
//! boundary: everything a worker sends is read here, bounded, and checked.
//!
//! The connection is one end of a socket pair made for this worker alone; the other end
//! becomes the worker's standard input (std's `Stdio` puts it there, in the child only), so
//! no name exists anywhere for another process to reach, squat or race.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::frame::{self, FrameError, Link};
use super::pool::Shared;
use super::shipping;
use super::worker;
use crate::error::TaskError;

/// A worker process, shared with the pool's list of workers so that `terminate` can kill
/// it while it starts or runs.
pub(super) struct Process {
    child: Mutex<Child>,
    pid: u32,
}

impl Process {
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// The resident memory of the process, from `/proc` (Linux); `None` where it cannot be
    /// read.
    pub(super) fn resident_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// Sends SIGKILL unless the process has been reaped already.
    pub(super) fn kill(&self) {
        let _ = self.child.lock().kill();
    }

    /// Asks the process to stop (SIGTERM), waits up to `grace`, then kills it (SIGKILL).
    #[allow(unsafe_code)]
    fn terminate_then_kill(&self, grace: Duration) -> ExitStatus {
        {
            let mut child = self.child.lock();
            if let (Ok(pid), Ok(None)) = (libc::pid_t::try_from(self.pid), child.try_wait()) {
                // SAFETY: `kill` has no memory-safety preconditions. The pid is our own
                // child's and it has not been reaped (we hold its `Child` locked and it has
                // not exited), so the pid cannot have been reused by another process.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        self.reap_within(Some(grace))
    }

    /// Waits up to `grace` (`None`: as long as it takes) for the process to exit by itself,
    /// then kills it; returns how it ended.
    fn reap_within(&self, grace: Option<Duration>) -> ExitStatus {
        let deadline = grace.and_then(|g| Instant::now().checked_add(g));
        loop {
            let mut child = self.child.lock();
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if deadline.is_none_or(|d| Instant::now() < d) => {
                    drop(child);
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => {
                    let _ = child.kill();
                    // If even waiting fails, report the kill we just sent.
                    return child.wait().unwrap_or_else(|_| ExitStatus::from_raw(9));
                }
            }
        }
    }
}

/// What a worker answered.
pub(super) enum Reply {
    Done(Vec<u8>),
    /// The task panicked: [`TaskError::Panicked`], or `Transport` if the report was garbled.
    Panicked(TaskError),
    /// The argument could not be decoded or the result encoded, in the worker.
    Broken(String),
    /// The worker refused to call what the task named.
    Refused(String),
}

/// Why a worker can no longer be used; it has been reaped.
pub(super) enum Lost {
    Died(String),
    TimedOut,
    Corrupt(String),
}

impl From<Lost> for TaskError {
    fn from(lost: Lost) -> TaskError {
        match lost {
            Lost::Died(how) => TaskError::WorkerDied(how.into()),
            Lost::TimedOut => TaskError::TimedOut,
            Lost::Corrupt(why) => TaskError::Transport(why.into()),
        }
    }
}

/// A live worker and its connection. Dropping it kills and reaps the worker unless it was
/// stopped; either way it leaves the pool's list.
pub(super) struct Connection {
    socket: Link,
    /// The descriptor number at which the worker finds the parent's stdout (-1: none).
    relay: i32,
    process: Arc<Process>,
    shared: Arc<Shared>,
    limit: usize,
    /// Tasks run, for `max_tasks_per_child`.
    pub(super) tasks: usize,
}

impl Connection {
    /// Starts a worker and completes the handshake by the pool's start timeout.
    pub(super) fn start(shared: &Arc<Shared>) -> Result<Connection, String> {
        let config = &shared.config;
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot make a socket pair: {e}"))?;
        let exe = shipping::worker_executable()
            .map_err(|e| format!("cannot find this executable: {e}"))?;
        let mut command = Command::new(exe);
        command
            // In a test binary these arguments run only the worker test; in a program they
            // are never looked at, because `init()` runs first and does not return.
            .args([
                worker::WORKER_TEST,
                "--exact",
                "--nocapture",
                "-q",
                "--test-threads=1",
            ])
            .env(worker::WORKER_ENV, std::process::id().to_string())
            // Its own process group: Ctrl-C in a terminal reaches the parent, which decides.
            .process_group(0);
        let relay = relay_stdout(&mut command, theirs.as_raw_fd());
        let spawned = command.stdin(Stdio::from(OwnedFd::from(theirs))).spawn();
        // The command holds the worker's end of the socket pair: close it now, or a worker
        // that dies would never read as gone (its end would still be open here).
        drop(command);
        let child = spawned.map_err(|e| format!("cannot start a worker process: {e}"))?;
        let relay_fd = relay.as_ref().map_or(-1, |r| r.target);
        drop(relay);
        // The child holds the other end now; ours was closed with the `Command`.
        let process = Arc::new(Process {
            pid: child.id(),
            child: Mutex::new(child),
        });
        let mut conn = Connection {
            relay: relay_fd,
            socket: Link::new(ours),
            process: process.clone(),
            shared: shared.clone(),
            limit: config.frame_limit,
            tasks: 0,
        };
        if !shared.register(process) {
            return Err("the pool was terminated".into());
        }
        let deadline = Instant::now().checked_add(config.start_timeout);
        conn.handshake(deadline)?;
        // A worker that stops reading must not hang a write either: time enough for the
        // largest frame, set once.
        conn.socket
            .stream()
            .set_write_timeout(Some(frame::body_time(conn.limit)))
            .map_err(|e| format!("cannot set up the worker's connection: {e}"))?;
        Ok(conn)
    }

    fn handshake(&mut self, deadline: Option<Instant>) -> Result<(), String> {
        match frame::read(&mut self.socket, frame::HANDSHAKE_LIMIT, deadline) {
            Ok((frame::HELLO, hello)) if hello.len() == 20 => {
                let version = u32::from_le_bytes(hello[..4].try_into().expect("4 bytes"));
                let fingerprint = u64::from_le_bytes(hello[4..12].try_into().expect("8 bytes"));
                let layout = i64::from_le_bytes(hello[12..].try_into().expect("8 bytes"));
                if version != worker::PROTOCOL
                    || fingerprint != shipping::fingerprint()
                    || layout != shipping::layout()
                {
                    return Err(
                        "the worker runs a different build of this program (was the \
                         executable replaced?)"
                            .into(),
                    );
                }
            }
            Err(FrameError::Closed) => {
                // The worker hung up before saying hello: give it a moment to finish
                // exiting so that its own status is reported.
                let how = describe(self.process.reap_within(Some(Duration::from_secs(2))));
                return Err(format!(
                    "the worker {how} before connecting. Its main must call \
                     concurrent_futures::init() first; in a test binary, add \
                     concurrent_futures::worker_test!() at the root of the test crate"
                ));
            }
            Err(FrameError::TimedOut) => return Err("the worker did not say hello in time".into()),
            _ => return Err("the worker's handshake failed".into()),
        }
        let initializer = self
            .shared
            .config
            .initializer
            .map_or(0, |init| shipping::offset(init as usize));
        let mut setup = [0u8; 20];
        setup[..8].copy_from_slice(&(self.limit as u64).to_le_bytes());
        setup[8..16].copy_from_slice(&initializer.to_le_bytes());
        setup[16..].copy_from_slice(&self.relay.to_le_bytes());
        frame::write(
            &mut self.socket,
            frame::SETUP,
            &[&setup],
            frame::HANDSHAKE_LIMIT,
        )
        .map_err(|e| format!("cannot send the worker its setup: {e}"))?;
        match frame::read(&mut self.socket, self.limit, deadline) {
            Ok((frame::READY, _)) => Ok(()),
            Ok((frame::INIT_FAILED, why)) => Err(String::from_utf8_lossy(&why).into_owned()),
            Err(FrameError::Closed) => {
                let how = describe(self.process.reap_within(Some(Duration::from_secs(2))));
                Err(format!("the worker {how} during start-up"))
            }
            Err(FrameError::TimedOut) => {
                Err("the worker's initializer did not finish in time".into())
            }
            _ => Err("the worker's handshake failed".into()),
        }
    }

    pub(super) fn process(&self) -> &Arc<Process> {
        &self.process
    }

    /// Sends one task and waits for its reply until `deadline`.
    pub(super) fn call(
        &mut self,
        call: (i64, i64),
        args: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Reply, Lost> {
        self.send(call, args)?;
        self.receive(deadline)
    }

    /// Sends one task. The worker runs the tasks it is sent in order and answers each.
    pub(super) fn send(
        &mut self,
        (trampoline, function): (i64, i64),
        args: &[u8],
    ) -> Result<(), Lost> {
        let header = [trampoline.to_le_bytes(), function.to_le_bytes()];
        if let Err(e) = frame::write(
            &mut self.socket,
            frame::TASK,
            &[&header[0], &header[1], args],
            self.limit,
        ) {
            return Err(Lost::Died(if e.kind() == io::ErrorKind::WouldBlock {
                self.process.kill();
                describe(self.process.reap_within(None))
            } else {
                describe(self.process.reap_within(Some(Duration::from_secs(2))))
            }));
        }
        self.tasks += 1;
        Ok(())
    }

    /// Waits until `deadline` for the reply to the oldest task sent and not yet answered.
    pub(super) fn receive(&mut self, deadline: Option<Instant>) -> Result<Reply, Lost> {
        let reply = frame::read_polled(&mut self.socket, self.limit, deadline);
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        match reply {
            Ok((frame::DONE, bytes)) => Ok(Reply::Done(bytes)),
            Ok((frame::PANICKED, report)) => Ok(Reply::Panicked(
                match super::codec::decode::<worker::PanicReport>(&report) {
                    Ok(report) => worker::panic_error(report),
                    Err(e) => TaskError::Transport(format!("cannot decode a panic: {e}").into()),
                },
            )),
            Ok((frame::BROKEN, msg)) => Ok(Reply::Broken(text(msg))),
            Ok((frame::REFUSED, msg)) => Ok(Reply::Refused(text(msg))),
            Ok((kind, _)) => {
                self.process.kill();
                Err(Lost::Corrupt(format!(
                    "unexpected frame kind {kind} from the worker"
                )))
            }
            Err(FrameError::Corrupt(why)) => {
                // The stream is out of step: this worker cannot be trusted any more.
                self.process.kill();
                Err(Lost::Corrupt(why))
            }
            Err(FrameError::Stalled) => {
                self.process.kill();
                Err(Lost::Corrupt(
                    "the worker sent a frame header and then stalled".into(),
                ))
            }
            Err(FrameError::TimedOut) => {
                self.process
                    .terminate_then_kill(self.shared.config.kill_grace);
                Err(Lost::TimedOut)
            }
            Err(FrameError::Closed) => Err(Lost::Died(describe(
                self.process.reap_within(Some(Duration::from_secs(2))),
            ))),
        }
    }

    /// Asks the worker to exit, and reaps it (killing it if it takes over five seconds).
    pub(super) fn stop(self) {
        let _ = frame::write(&mut self.socket.stream(), frame::STOP, &[], self.limit);
        self.process.reap_within(Some(Duration::from_secs(5)));
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Stopped, lost or abandoned: make sure the worker is dead and reaped.
        self.process.kill();
        self.process.reap_within(None);
        self.shared.unregister(&self.process);
    }
}

/// The parent's stdout, on its way to a worker at descriptor `target`.
struct Relay {
    /// A close-on-exec copy of stdout, open in the parent until the child has been started.
    _stdout: OwnedFd,
    target: i32,
}

/// Starts the worker with stdout on `/dev/null` and a copy of the parent's stdout at
/// descriptor `target` (the number its connection has in the parent, free in the child once
/// std has moved the connection to stdin). The worker moves it back to stdout in `init()`,
/// so whatever ran before (a test harness's "running 1 test") went nowhere while tasks
/// print where the parent prints. `None`, and stdout simply inherited, where that cannot be
/// arranged.
#[allow(unsafe_code)]
fn relay_stdout(command: &mut Command, target: i32) -> Option<Relay> {
    use std::os::fd::{AsFd, AsRawFd};
    if target <= 2 {
        return None; // the parent's own stdio is closed: keep things simple
    }
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let from = stdout.as_raw_fd();
    command.stdout(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec, after std has set up its
    // stdio, and only calls `dup2`, which is async-signal-safe; it allocates nothing and
    // takes no lock. `from` is open in the parent until `spawn` returns (we hold `stdout`),
    // so it is open in the child; `target` is the child's copy of the connection, which
    // std has already duplicated onto stdin. `dup2` replaces it with the stdout copy and
    // clears close-on-exec, so the worker inherits it at that number.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(from, target) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Some(Relay {
        _stdout: stdout,
        target,
    })
}

/// How a worker ended, for error messages.
pub(super) fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("killed by signal {signal}{name}")
    } else {
        match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "exited".into(),
        }
    }
}
