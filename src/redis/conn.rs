//! One Redis connection that reconnects: each thread of a client or worker owns one.

use std::thread;
use std::time::Duration;

use ::redis::{Client, Connection, RedisResult};

use super::wire::Scripts;

/// How long a connection attempt may take. redis-rs gives the handshake that follows the
/// TCP connect as long again, so a server that accepts and never answers holds an attempt
/// up to twice this (measured: 10.4 s for 5 s). Short, because a thread in a connection
/// attempt cannot notice that its executor is shutting down; a failed attempt is retried.
const CONNECT: Duration = Duration::from_secs(2);
/// How long a command may take to be written.
const WRITE: Duration = Duration::from_secs(10);
/// The first pause after a failure; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A connection, opened on first use and again after it broke.
pub(super) struct Link {
    client: Client,
    con: Option<Connection>,
    /// Longer than any `BLOCK` this link sends: a blocking read waits for its server-side
    /// timeout, never for a short client-side one.
    read_timeout: Duration,
    what: &'static str,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("what", &self.what)
            .field("connected", &self.con.is_some())
            .finish()
    }
}

/// Whether a refusal Redis answered is for now only: the same command succeeds once Redis
/// is ready again. `LOADING` (replaying its data after a restart), `TRYAGAIN` and
/// `CLUSTERDOWN` (a cluster moving slots), `MASTERDOWN` (a replica cut off from its
/// primary), `READONLY` (a primary demoted by a failover: reconnect to find the new one).
pub(super) fn is_transient(code: &str) -> bool {
    matches!(
        code,
        "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY"
    )
}

/// Whether a reply in a pipeline is a transient refusal ([`is_transient`]).
pub(super) fn refused_for_now(reply: Option<&::redis::Value>) -> Option<&str> {
    match reply {
        Some(::redis::Value::ServerError(e)) if is_transient(e.code()) => Some(e.code()),
        _ => None,
    }
}

/// Pauses between attempts while Redis refuses for now: 50 ms doubling to 2 s, the first
/// refusal of a series logged as a warning, and the connection dropped after `READONLY` or
/// `MASTERDOWN`, so that the next attempt finds the server that now takes writes.
#[derive(Debug)]
pub(super) struct Patience {
    pause: Duration,
    tries: u32,
    what: &'static str,
}

impl Patience {
    pub(super) fn new(what: &'static str) -> Patience {
        Patience {
            pause: FIRST_PAUSE,
            tries: 0,
            what,
        }
    }

    /// Waits before the next attempt; `code` is what Redis answered, `n` how many commands
    /// it refused.
    pub(super) fn wait(&mut self, link: &mut Link, code: &str, n: usize) {
        if self.tries == 0 {
            log::warn!(target: "concurrent_futures::redis", "{}: Redis refused {n} commands for now ({code}); retrying until it is ready", self.what);
        } else {
            log::debug!(target: "concurrent_futures::redis", "{}: Redis still refuses ({code}); retrying", self.what);
        }
        if matches!(code, "READONLY" | "MASTERDOWN") {
            link.con = None;
        }
        self.tries += 1;
        thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }

    /// Logs the end of a series of refusals, if there was one.
    pub(super) fn done(&self) {
        if self.tries > 0 {
            log::info!(target: "concurrent_futures::redis", "{}: Redis took the commands after {} refusals", self.what, self.tries);
        }
    }
}

/// True for an error Redis answered (the connection is fine); false for a broken or timed
/// out connection.
pub(super) fn is_reply(e: &::redis::RedisError) -> bool {
    e.code().is_some()
}

impl Link {
    pub(super) fn new(client: Client, what: &'static str, read_timeout: Duration) -> Link {
        Link {
            client,
            con: None,
            read_timeout,
            what,
        }
    }

    /// Whether a connection is open (it may still turn out broken on next use).
    pub(super) fn is_connected(&self) -> bool {
        self.con.is_some()
    }

    /// Runs `f` once, connecting first if needed. A connection that failed is dropped, so
    /// the next call starts afresh.
    pub(super) fn once<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let con = match &mut self.con {
            Some(con) => con,
            slot => {
                let con = self.client.get_connection_with_timeout(CONNECT)?;
                con.set_read_timeout(Some(self.read_timeout))?;
                con.set_write_timeout(Some(WRITE))?;
                slot.insert(con)
            }
        };
        let result = f(con);
        if let Err(e) = &result {
            if !is_reply(e) {
                self.con = None;
            }
        }
        result
    }

    /// Writes `packed` (commands already encoded) without reading their replies: the
    /// caller reads them later with [`recv`](Self::recv), before any other use of the link.
    /// Only on a connected link: never connects, so it waits for nothing but a socket
    /// buffer with room (a few hundred bytes into an idle connection).
    pub(super) fn send_only(&mut self, packed: &[u8]) -> RedisResult<()> {
        let Some(con) = &mut self.con else {
            return Err((::redis::ErrorKind::Io, "not connected").into());
        };
        let result = con.send_packed_command(packed);
        if result.is_err() {
            self.con = None;
        }
        result
    }

    /// Reads one reply owed to a [`send_only`](Self::send_only), within the link's read
    /// timeout; a failed or timed out read drops the connection (the replies still owed on
    /// it are lost with it).
    pub(super) fn recv(&mut self) -> RedisResult<::redis::Value> {
        let Some(con) = &mut self.con else {
            return Err((::redis::ErrorKind::Io, "not connected").into());
        };
        let result = con.recv_response();
        if result.as_ref().is_err_and(|e| !is_reply(e)) {
            self.con = None;
        }
        result
    }

    /// Runs `f` until it succeeds, pausing between failures (50 ms doubling to 2 s) and
    /// reloading the scripts when Redis lost them (a restart); `None` once `give_up` says so.
    /// Every failure is logged, the first of a series as a warning.
    pub(super) fn retry<T>(
        &mut self,
        scripts: &Scripts,
        give_up: &dyn Fn() -> bool,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Option<T> {
        let mut pause = FIRST_PAUSE;
        let mut failures = 0u32;
        loop {
            match self.once(&mut f) {
                Err(e) if e.code().is_some_and(is_transient) => {
                    if matches!(e.code(), Some("READONLY" | "MASTERDOWN")) {
                        self.con = None; // find the server that takes writes now
                    }
                    if failures == 0 {
                        log::warn!(target: "concurrent_futures::redis", "{}: {e}; retrying until Redis is ready", self.what);
                    }
                }
                Ok(v) => {
                    if failures > 0 {
                        log::info!(target: "concurrent_futures::redis", "{}: Redis is back after {failures} failed attempts", self.what);
                    }
                    return Some(v);
                }
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    if let Err(e) = self.once(|con| scripts.load(con)) {
                        log::warn!(target: "concurrent_futures::redis", "{}: cannot load scripts: {e}", self.what);
                    }
                }
                Err(e) => {
                    if failures == 0 {
                        log::warn!(target: "concurrent_futures::redis", "{}: {e}; retrying", self.what);
                    } else {
                        log::debug!(target: "concurrent_futures::redis", "{}: {e}; retrying", self.what);
                    }
                }
            }
            failures += 1;
            if give_up() {
                return None;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}
