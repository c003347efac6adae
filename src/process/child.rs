//! One worker process as its parent sees it: signals to its whole process group that never
//! reach a pid the pool no longer owns, waits with deadlines, freezing it to look at what it
//! has sent, and reaping it exactly once.
//!
//! The worker leads a process group of its own (`process_group(0)` at spawn), so the
//! helpers its tasks start (`sleep 40`, a shell, a forked child) are in that group.
//!
//! # Rules
//!
//! 1. **A signal goes only to a process the pool still owns.** Until the pool reaps the
//!    worker, its pid, and with it the group id, cannot be reused: the worker is alive or a
//!    zombie held by us. Every signal is sent under the reaper's lock after checking, without
//!    reaping, that the worker is still our unreaped child (`waitid` with `WNOWAIT`). Once
//!    reaped, or if the system reaped it for us (SIGCHLD ignored), nothing is sent.
//! 2. **Kills reach the group.** A kill, a time limit, recycling and `terminate()` send the
//!    signal to the group and to the worker itself (in case a task moved it out of its
//!    group), and a reap kills what is left of the group before collecting the status, while
//!    the zombie still holds the group's id.
//! 3. **Death is seen by the process, not only by end-of-file.** On Linux a pidfd becomes
//!    readable when the worker exits, whoever still holds its end of the connection;
//!    elsewhere the pool looks every [`TICK`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often death is checked where no pidfd exists.
pub(super) const TICK: Duration = Duration::from_millis(20);

/// How long a worker may take to stop once sent SIGSTOP (a process in uninterruptible
/// sleep stops only when it leaves it); past this it is treated as running.
const FREEZE_BOUND: Duration = Duration::from_secs(2);

/// How a reaped worker ended.
#[derive(Clone, Copy, Debug)]
pub(super) enum Ended {
    Status(ExitStatus),
    /// The system reaped it before the pool could: SIGCHLD is ignored in this process.
    Unknown,
}

impl Ended {
    /// How the worker ended, for error messages.
    pub(super) fn describe(self) -> String {
        match self {
            Ended::Status(status) => describe(status),
            Ended::Unknown => "ended, how is unknown: SIGCHLD is ignored in this process, so \
                               the system reaped the worker before the pool could read its \
                               exit status"
                .into(),
        }
    }
}

/// A worker process: its pid, a pidfd where the system has them, and how it ended once
/// reaped.
pub(super) struct Process {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// `Some` once reaped (rule 1: from then on no signal is sent).
    ended: Mutex<Option<Ended>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid).finish()
    }
}

impl Process {
    /// Takes over `child`: from here the pool waits for it itself (std's `Child` neither
    /// kills nor waits when dropped).
    pub(super) fn new(child: Child) -> Process {
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        Process {
            pid,
            pidfd: pidfd_open(pid),
            ended: Mutex::new(None),
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The descriptor that becomes readable when the worker exits (Linux), for `poll`.
    pub(super) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.pidfd.as_ref().map(|fd| fd.as_fd())
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

    /// Sends `signal` to the worker's process group and to the worker (rule 2), if the pool
    /// still owns it (rule 1). False if nothing was sent.
    pub(super) fn signal_group(&self, signal: libc::c_int) -> bool {
        let ended = self.ended.lock();
        if ended.is_some() || !self.unreaped() {
            return false;
        }
        send(-self.pid, signal);
        send(self.pid, signal);
        true
    }

    /// Sends `signal` to the worker alone, if the pool still owns it (rule 1).
    fn signal_one(&self, signal: libc::c_int) -> bool {
        let ended = self.ended.lock();
        if ended.is_some() || !self.unreaped() {
            return false;
        }
        send(self.pid, signal);
        true
    }

    /// SIGKILL to the worker's group (rule 2).
    pub(super) fn kill(&self) {
        self.signal_group(libc::SIGKILL);
    }

    /// Whether the worker is still our child and not reaped: alive, or a zombie we hold.
    /// Called under the `ended` lock, so no reap of ours races it.
    fn unreaped(&self) -> bool {
        self.peek(libc::WEXITED).is_some()
    }

    /// Looks, without reaping, whether the worker is in one of the `states` now:
    /// `Some(true)` if it is, `Some(false)` if not, `None` if it is not our unreaped child
    /// (the system reaped it: SIGCHLD is ignored).
    #[allow(unsafe_code)]
    fn peek(&self, states: libc::c_int) -> Option<bool> {
        // SAFETY: `siginfo_t` is a plain C struct of integers and unions of them, for which
        // all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `waitid` writes only into `info`, which is valid for writes; WNOWAIT
        // leaves the child waitable, so this reaps nothing.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                states | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: `waitid` succeeded, so `info` is filled (pid 0: no state change).
        (rc == 0).then(|| unsafe { info.si_pid() } != 0)
    }

    /// Whether the worker has exited (reaped or not).
    pub(super) fn exited(&self) -> bool {
        if self.ended.lock().is_some() {
            return true;
        }
        match &self.pidfd {
            Some(fd) => {
                let mut fds = [pollfd(fd.as_raw_fd(), libc::POLLIN)];
                matches!(poll(&mut fds, Some(Instant::now())), Ok(n) if n > 0)
            }
            None => self.exit_pending(libc::WEXITED),
        }
    }

    /// Whether the worker is in one of the `states` now, or gone for good.
    fn exit_pending(&self, states: libc::c_int) -> bool {
        self.peek(states).unwrap_or(true)
    }

    /// Waits until the worker exits or `deadline` passes; true if it exited.
    pub(super) fn wait_exit(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.exited() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut fds = [pollfd(fd.as_raw_fd(), libc::POLLIN)];
                    let _ = poll(&mut fds, deadline);
                }
                None => {
                    let left =
                        deadline.map_or(TICK, |d| d.saturating_duration_since(Instant::now()));
                    std::thread::sleep(left.min(Duration::from_millis(1)));
                }
            }
        }
    }

    /// Stops the worker (SIGSTOP) and waits until it is stopped or gone, so that what it has
    /// sent can be read with nothing more on the way. False if it could not be frozen (it is
    /// not ours any more, or did not stop within [`FREEZE_BOUND`]).
    pub(super) fn freeze(&self) -> bool {
        if !self.signal_one(libc::SIGSTOP) {
            return false;
        }
        let end = Instant::now() + FREEZE_BOUND;
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if self.exit_pending(libc::WSTOPPED | libc::WEXITED) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                backoff.snooze();
            }
        }
    }

    /// Lets a frozen worker go on (SIGCONT).
    pub(super) fn thaw(&self) {
        self.signal_one(libc::SIGCONT);
    }

    /// Waits up to `grace` (`None`: as long as it takes) for the worker to exit by itself,
    /// then kills it; kills what is left of its group and reaps it (rule 2). Returns how it
    /// ended; a second call returns the same.
    #[allow(unsafe_code)]
    pub(super) fn reap_within(&self, grace: Option<Duration>) -> Ended {
        if let Some(ended) = *self.ended.lock() {
            return ended;
        }
        let deadline = grace.and_then(|g| Instant::now().checked_add(g));
        if !self.wait_exit(deadline) {
            self.kill();
            self.wait_exit(None);
        }
        let mut ended = self.ended.lock();
        if let Some(ended) = *ended {
            return ended;
        }
        if self.unreaped() {
            // The zombie still holds the group's id: helpers left behind go with it.
            send(-self.pid, libc::SIGKILL);
        }
        let mut status = 0;
        let outcome = loop {
            // SAFETY: `status` is valid for writes. The worker has exited, so this does not
            // block for long; only this function reaps, under the lock.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                break Ended::Status(ExitStatus::from_raw(status));
            }
            if rc == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Ended::Unknown; // ECHILD: the system reaped it (SIGCHLD ignored)
        };
        *ended = Some(outcome);
        outcome
    }
}

/// `kill(pid, signal)`; errors (ESRCH: a group with no member left) are of no interest.
#[allow(unsafe_code)]
fn send(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: `kill` has no memory-safety preconditions; callers check rule 1 first.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A pidfd for `pid` (Linux 5.3 and later); `None` where the system has none.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1. The pid
    // is our child's, not yet reaped, so it names that child.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned to us by the kernel and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    above_stdio(fd).ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn pidfd_open(_: libc::pid_t) -> Option<OwnedFd> {
    None
}

/// Moves a descriptor the pool made to a number above 2, so that a program whose standard
/// streams are closed never finds the pool's descriptors at 0, 1 or 2. The copy is
/// close-on-exec.
#[allow(unsafe_code)]
pub(super) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: `fd` is open and ours; F_DUPFD_CLOEXEC returns a new descriptor >= 3 or -1.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is a new descriptor that nobody else owns. `fd` closes on return.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Whether descriptor `fd` of this process is open.
#[allow(unsafe_code)]
pub(super) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD reads a descriptor's flags; on a closed number it fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

pub(super) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll` until `deadline` (`None`: no limit), to the nanosecond where the system allows
/// (`ppoll`), retrying on EINTR. Returns how many descriptors are ready (0: the deadline).
#[allow(unsafe_code)]
pub(super) fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let rc = {
            let spec = left.map(|l| libc::timespec {
                tv_sec: libc::time_t::try_from(l.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: l.subsec_nanos() as libc::c_long,
            });
            let spec_ptr = spec
                .as_ref()
                .map_or(std::ptr::null(), |s| s as *const libc::timespec);
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds, and `spec_ptr` is null
            // or points at a timespec that lives across the call; no signal mask is passed.
            unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    spec_ptr,
                    std::ptr::null(),
                )
            }
        };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let rc = {
            // Whole milliseconds, rounded up so that a deadline is never cut short.
            let ms = left.map_or(-1, |l| {
                libc::c_int::try_from(l.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
            });
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
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

/// Every worker process of one pool that exists, starting or running: what `terminate`
/// kills. A worker started after `terminate` is killed as it registers.
#[derive(Debug, Default)]
pub(super) struct Workers {
    state: Mutex<WorkersState>,
}

#[derive(Debug, Default)]
struct WorkersState {
    terminating: bool,
    all: Vec<Arc<Process>>,
}

impl Workers {
    /// Adds a worker to the list `terminate` kills; false (and killed) if it is too late.
    pub(super) fn register(&self, process: Arc<Process>) -> bool {
        let mut state = self.state.lock();
        if state.terminating {
            process.kill();
            return false;
        }
        state.all.push(process);
        true
    }

    pub(super) fn unregister(&self, process: &Arc<Process>) {
        self.state.lock().all.retain(|p| !Arc::ptr_eq(p, process));
    }

    pub(super) fn pids(&self) -> Vec<u32> {
        self.state.lock().all.iter().map(|p| p.pid()).collect()
    }

    pub(super) fn terminating(&self) -> bool {
        self.state.lock().terminating
    }

    /// From now on a worker that registers is killed at once; the ones that exist now.
    pub(super) fn terminate(&self) -> Vec<Arc<Process>> {
        let mut state = self.state.lock();
        state.terminating = true;
        state.all.clone()
    }
}
