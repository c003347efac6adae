//! The parent's end of one worker: starting it over a private connection, the handshake,
//! sending tasks and waiting for their replies with a time limit, and `kill_task`. This is
//! the parent's side of the trust boundary: everything a worker sends is read here,
//! bounded, and checked.
//!
//! The connection is one end of a socket pair made for this worker alone; the other end
//! becomes the worker's standard input (std's `Stdio` puts it there, in the child only), so
//! no name exists anywhere for another process to reach, squat or race.
//!
//! # Waiting
//!
//! The parent's end is non-blocking. A reply is awaited in one `poll` over three
//! descriptors, with the task's deadline to the nanosecond: the connection (a reply), the
//! worker's pidfd (it died, even if a process it forked still holds its end of the
//! connection), and a wake-up socket on which `kill_task` posts requests. Before sleeping
//! the reader spins briefly, since a quick task's reply is microseconds away.
//!
//! # At most once
//!
//! The worker runs the tasks it is sent one after another and answers each before it reads
//! the next. So when it dies, every reply it wrote is in the socket, and the first task
//! without a complete reply is the one it was running; those after it never started. The
//! reader takes every reply still buffered before it reports the death, so a finished task
//! always gets its value and only the tasks behind the running one run again. `kill_task`
//! and an expired time limit first freeze the worker (SIGSTOP) and read what it has sent:
//! a task whose reply has begun to arrive finished, and is not killed; otherwise the task
//! really running is the one killed, and no other.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::child::Workers;
use super::child::{self, Process};
use super::config::Config;
use super::frame::{self, FrameError, Parsed};
use super::job::Target;
use super::shipping;
use super::worker;
use crate::error::TaskError;
use crate::outcome::Outcome;

/// What a worker answered: the encoded result, or the task's error (a panic, a codec
/// failure in the worker, or a refusal to call what the task named, as `Transport`).
pub(super) type Reply = Outcome<Vec<u8>>;

/// Why a worker can no longer be used; it has been reaped.
pub(super) enum Lost {
    Died(String),
    TimedOut,
    Corrupt(String),
    /// `kill_task` killed the task awaited.
    Killed,
    /// The task could not be handed to the worker: it never reached it.
    NotSent(String),
}

impl From<Lost> for TaskError {
    fn from(lost: Lost) -> TaskError {
        match lost {
            Lost::Died(how) | Lost::NotSent(how) => TaskError::WorkerDied(how.into()),
            Lost::TimedOut => TaskError::TimedOut,
            Lost::Corrupt(why) => TaskError::Transport(why.into()),
            Lost::Killed => TaskError::Cancelled,
        }
    }
}

/// Where `kill_task` reaches a worker's manager: requests, and a socket to wake it.
pub(super) struct Control {
    wake: UnixStream,
    requests: Mutex<Requests>,
}

#[derive(Default)]
struct Requests {
    /// The connection is gone: every request is answered `false` at once.
    closed: bool,
    waiting: Vec<(usize, Sender<bool>)>,
}

impl Control {
    /// Asks the manager to kill the task of future `id` if it is the one running; returns
    /// what the manager found. The caller holds the pool's list of holders, so the manager
    /// cannot finish with the task unseen: every request is answered, at the latest when the
    /// manager is done with its job or the connection is dropped.
    pub(super) fn request_kill(&self, id: usize) -> crossbeam_channel::Receiver<bool> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut requests = self.requests.lock();
        if requests.closed {
            let _ = tx.send(false);
        } else {
            requests.waiting.push((id, tx));
            // A full socket means a wake-up is pending already.
            let _ = (&self.wake).write(&[1]);
        }
        rx
    }

    fn take(&self) -> Vec<(usize, Sender<bool>)> {
        std::mem::take(&mut self.requests.lock().waiting)
    }

    fn close(&self) {
        let mut requests = self.requests.lock();
        requests.closed = true;
        for (_, tx) in requests.waiting.drain(..) {
            let _ = tx.send(false);
        }
    }
}

/// Bytes read from the worker and not yet taken as frames. Grows only with the bytes that
/// arrive, whatever a header claims.
struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// When the body of the frame whose header is in must have arrived.
    body_deadline: Option<Instant>,
}

const INBOX: usize = 16 * 1024;

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buf: vec![0; INBOX],
            start: 0,
            end: 0,
            body_deadline: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// One non-blocking read. `Ok(0)`: the end of the stream.
    fn fill(&mut self, socket: &UnixStream) -> io::Result<usize> {
        if self.is_empty() {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 1 << 20 {
                self.buf = vec![0; INBOX]; // a large frame has gone: give its room back
            }
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // Full of bytes that arrived: room for as many again.
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        let n = (&*socket).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads until the socket has nothing more now (or ends). True if it ended.
    fn drain(&mut self, socket: &UnixStream) -> bool {
        loop {
            match self.fill(socket) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    /// The next whole frame, if one is in.
    fn next(&mut self, limit: usize) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
        match frame::parse(&self.buf[self.start..self.end], limit)? {
            Parsed::Frame { kind, body, used } => {
                let body = self.start + body.start..self.start + body.end;
                let payload = self.buf[body].to_vec();
                self.start += used;
                self.body_deadline = None;
                Ok(Some((kind, payload)))
            }
            Parsed::Need { header } => {
                if header && self.body_deadline.is_none() {
                    let claimed = &self.buf[self.start + 5..self.start + 9];
                    let len = u32::from_le_bytes(claimed.try_into().expect("4 bytes")) as usize;
                    self.body_deadline = Instant::now().checked_add(frame::body_time(len));
                }
                Ok(None)
            }
        }
    }

    /// How many whole frames are in, and whether bytes of another follow them.
    fn count(&self, limit: usize) -> (usize, bool) {
        let mut at = self.start;
        let mut frames = 0;
        loop {
            match frame::parse(&self.buf[at..self.end], limit) {
                Ok(Parsed::Frame { used, .. }) => {
                    frames += 1;
                    at += used;
                }
                // Garbage counts as bytes of a reply: the task is not killed for it.
                _ => return (frames, at < self.end),
            }
        }
    }
}

/// A live worker and its connection. Dropping it kills and reaps the worker unless it was
/// stopped; either way it leaves the pool's list.
pub(super) struct Connection {
    socket: UnixStream,
    inbox: Inbox,
    /// Our end of the wake-up pair whose other end is in [`Control`].
    woken: UnixStream,
    control: Arc<Control>,
    /// The descriptor number at which the worker finds the parent's stdout (-1: none).
    relay: i32,
    process: Arc<Process>,
    /// The pool's list of worker processes, which `terminate` kills.
    workers: Arc<Workers>,
    kill_grace: Duration,
    limit: usize,
    /// Tasks run, for `max_tasks_per_child`.
    pub(super) tasks: usize,
    /// The connection ended or the worker exited: what is in the inbox is all there is.
    ended: bool,
    /// The future whose task `kill_task` killed on this worker.
    killed: Option<usize>,
    /// When the worker last answered: a worker that answered a moment ago is not looked at
    /// again before the next task (see [`is_gone`](Self::is_gone)).
    answered: Instant,
    /// Asked to stop (SIGTERM) after a time limit: dropping it waits this long for the
    /// worker to exit before killing it.
    grace: Option<Duration>,
}

/// How long a worker may have been idle before the next task looks whether it still lives.
const IDLE_LOOK: Duration = Duration::from_millis(1);

impl Connection {
    /// Starts a worker and completes the handshake by the pool's start timeout.
    pub(super) fn start(config: &Config, workers: &Arc<Workers>) -> Result<Connection, String> {
        let pair = |what: &str| -> Result<(UnixStream, UnixStream), String> {
            let (a, b) = UnixStream::pair().map_err(|e| format!("cannot make {what}: {e}"))?;
            // Never at 0, 1 or 2, where a program with closed standard streams would have
            // them: its own prints, or the worker's stdout, would land on the connection.
            let lift = |s: UnixStream| {
                child::above_stdio(OwnedFd::from(s))
                    .map(UnixStream::from)
                    .map_err(|e| format!("cannot place {what}: {e}"))
            };
            Ok((lift(a)?, lift(b)?))
        };
        let (ours, theirs) = pair("a socket pair")?;
        let (woken, wake) = pair("a wake-up pair")?;
        for s in [&ours, &woken, &wake] {
            s.set_nonblocking(true)
                .map_err(|e| format!("cannot set up the worker's connection: {e}"))?;
        }
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
            // The marker names this process, so that a worker whose pool has exited knows.
            .env(worker::WORKER_ENV, std::process::id().to_string())
            // Its own process group: Ctrl-C in a terminal reaches the parent, which decides;
            // kills reach the helpers its tasks start.
            .process_group(0);
        if !child::is_open(2) {
            command.stderr(Stdio::null());
        }
        let relay = relay_stdout(&mut command, theirs.as_raw_fd());
        let spawned = command.stdin(Stdio::from(OwnedFd::from(theirs))).spawn();
        // The command holds the worker's end of the socket pair: close it now, or a worker
        // that dies would never read as gone (its end would still be open here).
        drop(command);
        let child = spawned.map_err(|e| format!("cannot start a worker process: {e}"))?;
        let relay_fd = relay.as_ref().map_or(-1, |r| r.target);
        drop(relay);
        let process = Arc::new(Process::new(child));
        let mut conn = Connection {
            socket: ours,
            inbox: Inbox::new(),
            woken,
            control: Arc::new(Control {
                wake,
                requests: Mutex::new(Requests::default()),
            }),
            relay: relay_fd,
            process: process.clone(),
            workers: workers.clone(),
            kill_grace: config.kill_grace,
            limit: config.frame_limit,
            tasks: 0,
            ended: false,
            killed: None,
            answered: Instant::now(),
            grace: None,
        };
        if !workers.register(process) {
            return Err("the pool was terminated".into());
        }
        let deadline = Instant::now().checked_add(config.start_timeout);
        conn.handshake(config.initializer, deadline)?;
        Ok(conn)
    }

    fn handshake(
        &mut self,
        initializer: Option<fn()>,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        match self.wait_frame(frame::HANDSHAKE_LIMIT, deadline) {
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
            Err(Waited::Closed) => {
                // The worker hung up before saying hello: give it a moment to finish
                // exiting so that its own status is reported.
                let how = self.process.reap_within(Some(Duration::from_secs(2)));
                return Err(format!(
                    "the worker {} before connecting. Its main must call \
                     concurrent_futures::init() first; in a test binary, add \
                     concurrent_futures::worker_test!() at the root of the test crate",
                    how.describe()
                ));
            }
            Err(Waited::TimedOut) => return Err("the worker did not say hello in time".into()),
            _ => return Err("the worker's handshake failed".into()),
        }
        let initializer = initializer.map_or(0, |init| shipping::offset(init as usize));
        let mut setup = [0u8; 20];
        setup[..8].copy_from_slice(&(self.limit as u64).to_le_bytes());
        setup[8..16].copy_from_slice(&initializer.to_le_bytes());
        setup[16..].copy_from_slice(&self.relay.to_le_bytes());
        self.write_frame(frame::SETUP, &[&setup], frame::HANDSHAKE_LIMIT)
            .map_err(|_| "cannot send the worker its setup: it stopped reading".to_string())?;
        match self.wait_frame(self.limit, deadline) {
            Ok((frame::READY, _)) => Ok(()),
            Ok((frame::INIT_FAILED, why)) => Err(String::from_utf8_lossy(&why).into_owned()),
            Err(Waited::Closed) => {
                let how = self.process.reap_within(Some(Duration::from_secs(2)));
                Err(format!("the worker {} during start-up", how.describe()))
            }
            Err(Waited::TimedOut) => Err("the worker's initializer did not finish in time".into()),
            _ => Err("the worker's handshake failed".into()),
        }
    }

    pub(super) fn process(&self) -> &Arc<Process> {
        &self.process
    }

    pub(super) fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Whether the worker is known to be gone (it exited while idle, say): a task must not
    /// be sent to it. A worker that answered within the last millisecond is not looked at
    /// (a system call saved on every quick task); if it died in that millisecond the send
    /// fails and the task goes to a new worker all the same, unless a process the task
    /// forked holds the worker's end of the connection.
    pub(super) fn is_gone(&self) -> bool {
        self.ended || (self.answered.elapsed() >= IDLE_LOOK && self.process.exited())
    }

    /// Sends one task and waits for its reply until `deadline`; `id` is its future's, for
    /// `kill_task`.
    pub(super) fn call(
        &mut self,
        id: usize,
        call: &Target,
        args: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Reply, Lost> {
        self.send(call, args)?;
        self.receive(deadline, &[id])
    }

    /// Sends one task. The worker runs the tasks it is sent in order and answers each.
    /// [`Lost::NotSent`]: no byte of it reached the worker, which is gone.
    pub(super) fn send(&mut self, target: &Target, args: &[u8]) -> Result<(), Lost> {
        let (trampoline, function) = target.code;
        let trace = target.trace.as_deref().unwrap_or("").as_bytes();
        let header = [trampoline.to_le_bytes(), function.to_le_bytes()];
        // At most 512 bytes (`propagate::carriable`), so the length fits a u16.
        let trace_len = u16::try_from(trace.len()).unwrap_or(0).to_le_bytes();
        let trace = &trace[..usize::from(u16::from_le_bytes(trace_len))];
        let parts: [&[u8]; 5] = [&header[0], &header[1], &trace_len, trace, args];
        match self.write_frame(frame::TASK, &parts, self.limit) {
            Ok(()) => {
                self.tasks += 1;
                Ok(())
            }
            Err(Unsent::Nothing(why)) => {
                let how = self.process.reap_within(Some(Duration::from_secs(2)));
                Err(Lost::NotSent(format!("{} ({why})", how.describe())))
            }
            Err(Unsent::Part) => {
                let how = self.process.reap_within(Some(Duration::from_secs(2)));
                Err(Lost::Died(how.describe()))
            }
        }
    }

    /// Writes one frame whole, waiting (for the worker to read) at most the time a body of
    /// its size may take.
    fn write_frame(&mut self, kind: u8, parts: &[&[u8]], limit: usize) -> Result<(), Unsent> {
        let mut bytes = Vec::new();
        frame::write(&mut bytes, kind, parts, limit).map_err(|e| Unsent::Nothing(e.to_string()))?;
        let deadline = Instant::now().checked_add(frame::body_time(bytes.len()));
        let mut at = 0;
        while at < bytes.len() {
            match (&self.socket).write(&bytes[at..]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if deadline.is_some_and(|d| Instant::now() >= d) || self.process.exited() {
                        break;
                    }
                    let mut fds = [child::pollfd(self.socket.as_raw_fd(), libc::POLLOUT)];
                    let tick = Instant::now() + child::TICK;
                    let _ = child::poll(&mut fds, Some(deadline.map_or(tick, |d| d.min(tick))));
                }
                Err(e) if at == 0 => return Err(Unsent::Nothing(e.to_string())),
                Err(_) => break,
            }
        }
        if at == bytes.len() {
            Ok(())
        } else if at == 0 {
            Err(Unsent::Nothing("the worker stopped reading".into()))
        } else {
            Err(Unsent::Part)
        }
    }

    /// Waits until `deadline` for the reply to the oldest task sent and not yet answered.
    /// `sent` names the futures of the tasks sent and not answered, oldest first: the one
    /// awaited, then those sent ahead. Serves `kill_task` requests meanwhile.
    pub(super) fn receive(
        &mut self,
        deadline: Option<Instant>,
        sent: &[usize],
    ) -> Result<Reply, Lost> {
        let (kind, payload) = {
            match self.wait(self.limit, deadline, Some(sent)) {
                Ok(frame) => frame,
                Err(Waited::TimedOut) => {
                    // Freeze it and look: a reply that has begun to arrive is let through.
                    let frozen = self.process.freeze();
                    self.ended |= self.inbox.drain(&self.socket);
                    let (frames, partial) = self.inbox.count(self.limit);
                    if frames > 0 || partial {
                        if frozen {
                            self.process.thaw();
                        }
                        return self.receive(None, sent);
                    }
                    // Told to stop; the manager reaps it, grace period included, once the
                    // task's future has its error.
                    self.process.signal_group(libc::SIGTERM);
                    self.process.signal_group(libc::SIGCONT);
                    self.grace = Some(self.kill_grace);
                    return Err(Lost::TimedOut);
                }
                Err(Waited::Closed) => {
                    let how = self.process.reap_within(Some(Duration::from_secs(2)));
                    return Err(
                        if self.killed == sent.first().copied() && self.killed.is_some() {
                            Lost::Killed
                        } else {
                            Lost::Died(how.describe())
                        },
                    );
                }
                Err(Waited::Corrupt(why)) => {
                    // The stream is out of step: this worker cannot be trusted any more.
                    self.process.kill();
                    return Err(Lost::Corrupt(why));
                }
                Err(Waited::Stalled) => {
                    self.process.kill();
                    return Err(Lost::Corrupt(
                        "the worker sent a frame header and then stalled".into(),
                    ));
                }
            }
        };
        self.answered = Instant::now();
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        match kind {
            frame::DONE => Ok(Ok(payload)),
            frame::PANICKED => Ok(Err(
                match super::codec::decode::<super::report::PanicReport>(&payload) {
                    Ok(report) => super::report::panic_error(report),
                    Err(e) => TaskError::Transport(format!("cannot decode a panic: {e}").into()),
                },
            )),
            frame::BROKEN => Ok(Err(TaskError::Transport(text(payload).into()))),
            frame::REFUSED => Ok(Err(TaskError::Transport(
                format!("the worker refused the task: {}", text(payload)).into(),
            ))),
            kind => {
                self.process.kill();
                Err(Lost::Corrupt(format!(
                    "unexpected frame kind {kind} from the worker"
                )))
            }
        }
    }

    /// Waits for one frame until `deadline`, without serving `kill_task`.
    fn wait_frame(
        &mut self,
        limit: usize,
        deadline: Option<Instant>,
    ) -> Result<(u8, Vec<u8>), Waited> {
        self.wait(limit, deadline, None)
    }

    /// The next frame: from the inbox, else spinning briefly, else in `poll` on the
    /// connection, the pidfd and the wake-up socket until `deadline`.
    fn wait(
        &mut self,
        limit: usize,
        deadline: Option<Instant>,
        sent: Option<&[usize]>,
    ) -> Result<(u8, Vec<u8>), Waited> {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if let Some(frame) = self.inbox.next(limit).map_err(|e| match e {
                FrameError::Corrupt(why) => Waited::Corrupt(why),
                _ => Waited::Closed,
            })? {
                return Ok(frame);
            }
            if self.ended {
                return Err(Waited::Closed);
            }
            match self.inbox.fill(&self.socket) {
                Ok(0) => {
                    self.ended = true;
                    continue;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.ended = true;
                    continue;
                }
            }
            // A quick task's reply is microseconds away: far cheaper to catch awake.
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            let now = Instant::now();
            if let Some(body) = self.inbox.body_deadline {
                if now >= body {
                    return Err(Waited::Stalled);
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(Waited::TimedOut);
            }
            let mut until = match (deadline, self.inbox.body_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let pidfd = self.process.pidfd().map(|fd| fd.as_raw_fd());
            if pidfd.is_none() {
                let tick = now + child::TICK;
                until = Some(until.map_or(tick, |u| u.min(tick)));
            }
            let mut fds = [
                child::pollfd(self.socket.as_raw_fd(), libc::POLLIN),
                child::pollfd(self.woken.as_raw_fd(), libc::POLLIN),
                child::pollfd(pidfd.unwrap_or(-1), libc::POLLIN),
            ];
            if child::poll(&mut fds, until).is_err() {
                std::thread::sleep(Duration::from_millis(1)); // never a busy loop
            }
            if fds[1].revents != 0 {
                let mut sink = [0u8; 64];
                while matches!((&self.woken).read(&mut sink), Ok(n) if n > 0) {}
                if let Some(sent) = sent {
                    self.serve_kills(sent);
                }
            }
            let exited = fds[2].revents != 0 || (pidfd.is_none() && self.process.exited());
            if exited && fds[0].revents == 0 {
                // Dead, though something may hold its end open: what it sent is all there is.
                self.inbox.drain(&self.socket);
                self.ended = true;
            }
        }
    }

    /// Answers `kill_task` requests: the task killed is the one the worker is running now,
    /// seen with the worker frozen; any other request is answered `false`.
    fn serve_kills(&mut self, sent: &[usize]) {
        let requests = self.control.take();
        if requests.is_empty() {
            return;
        }
        let mut frozen = false;
        let mut running = None;
        if requests.iter().any(|(id, _)| sent.contains(id)) && self.killed.is_none() {
            frozen = self.process.freeze();
            self.ended |= self.inbox.drain(&self.socket);
            let (frames, partial) = self.inbox.count(self.limit);
            if frozen && !partial {
                running = sent.get(frames).copied();
            }
        }
        let mut killed = false;
        for (id, answer) in requests {
            let hit = running == Some(id) && !killed;
            if hit {
                // Still frozen: it cannot move on to another task before it dies.
                self.process.kill();
                self.killed = Some(id);
                killed = true;
            }
            let _ = answer.send(hit);
        }
        if frozen && !killed {
            self.process.thaw();
        }
    }

    /// Answers every pending `kill_task` request `false`: nothing of this worker's is
    /// running any more.
    pub(super) fn answer_requests(&self) {
        for (_, answer) in self.control.take() {
            let _ = answer.send(false);
        }
    }

    /// Asks the worker to exit, and reaps it (killing it if it takes over five seconds).
    pub(super) fn stop(mut self) {
        let _ = self.write_frame(frame::STOP, &[], self.limit);
        self.process.reap_within(Some(Duration::from_secs(5)));
    }
}

/// Why a frame did not come.
enum Waited {
    Closed,
    TimedOut,
    Stalled,
    Corrupt(String),
}

/// Why a frame was not written.
enum Unsent {
    /// No byte of it left: the worker never saw it.
    Nothing(String),
    /// Part of it left.
    Part,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Stopped, lost or abandoned: make sure the worker is dead and reaped. One told to
        // stop after a time limit has its grace period first.
        self.control.close();
        if self.grace.is_none() {
            self.process.kill();
        }
        self.process.reap_within(self.grace);
        self.workers.unregister(&self.process);
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
/// print where the parent prints. A parent without a stdout (closed: a daemon, `prog >&-`)
/// gives its workers none either: their prints go to `/dev/null`.
#[allow(unsafe_code)]
fn relay_stdout(command: &mut Command, target: i32) -> Option<Relay> {
    use std::os::fd::AsFd;
    command.stdout(Stdio::null());
    if target <= 2 || !child::is_open(1) {
        return None;
    }
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let stdout = child::above_stdio(stdout).ok()?;
    let from = stdout.as_raw_fd();
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
