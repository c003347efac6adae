//! The same [`Future`](crate::Future) API across many machines: [`RedisExecutor`] queues
//! tasks on a Redis stream, [`RedisWorker`]s on any machine run them, and the results come
//! back to the client's futures as they finish.
//!
//! Python users who outgrow one machine move from `ProcessPoolExecutor` to RQ or Celery and
//! lose the executor API on the way. Here `submit`, `map`, [`as_completed`](crate::as_completed),
//! [`wait`](crate::wait), `add_done_callback` and `.await` work unchanged, and the
//! [`Executor`](crate::Executor) trait lets generic code run on threads, processes or Redis.
//!
//! | Python (RQ) | Rust |
//! | --- | --- |
//! | `q = Queue(connection=Redis())` | `let ex = RedisExecutor::builder(url, tasks()).build()?` |
//! | `job = q.enqueue(count_words, url)` | `let fut = ex.submit(count_words, url)?` |
//! | `job.result` (poll) / `job.return_value()` | `fut.result()?` (no polling: the reader pushes it) |
//! | `job.cancel()` | `fut.cancel()` (true only if no worker took it) |
//! | `rq worker` | `RedisWorker::builder(url, tasks()).run()?` in a binary of yours |
//! | `rq info` | [`inspect`] / [`RedisExecutor::info`], the `redis_info` example |
//!
//! # What runs
//!
//! Only functions registered by name in [`Tasks`], the same list in client and workers. A
//! queue entry carries a name and a JSON argument; nothing in it is ever treated as code.
//!
//! # Guarantees
//!
//! At least once, never lost while Redis keeps its data: a task runs again only when the
//! worker running it stopped renewing its lease (it died, froze, or lost Redis for a whole
//! lease), and each future completes exactly once: a late answer from a worker that lost
//! its lease is dropped by a fenced script. The README's "Many machines" section has the
//! table, and the Redis settings (`appendonly yes`, `maxmemory-policy noeviction`) these
//! need.
//!
//! # Examples
//!
//! ```no_run
//! use concurrent_futures::redis::{RedisExecutor, RedisWorker, Tasks};
//!
//! fn hash_file(path: String) -> String { format!("{:x}", path.len()) }
//! fn tasks() -> Tasks { Tasks::new().add("hash/v1", hash_file) }
//!
//! // A worker (normally on another machine, in its own binary):
//! let worker = RedisWorker::builder("redis://127.0.0.1/", tasks()).spawn()?;
//!
//! // The client:
//! let ex = RedisExecutor::builder("redis://127.0.0.1/", tasks()).build()?;
//! let fut = ex.submit(hash_file, "/etc/hosts".to_string())?;
//! println!("{}", fut.result()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Files, one concern each: `client/` (the executor: `builder.rs` settings, `book.rs` the
// futures it waits for and where each task's entry stands, `writer.rs` sends, `reader.rs`
// answers and start notices, `cancel.rs` the cancel protocol, `durable.rs` attach, status
// and schedules), `worker/` (`builder.rs` settings and signals, `reader.rs` takes tasks and
// marks their start, `finisher.rs` time limits, retries and answers, `keeper.rs` leases,
// heartbeats, takeovers, delayed and periodic tasks), `wire.rs` (what lies in Redis: keys,
// entries, the Lua scripts), `conn.rs` (a reconnecting link), `id.rs`, `status.rs`,
// `periodic.rs`, `info.rs`, `tasks.rs`.
mod client;
mod conn;
#[cfg(feature = "dashboard")]
mod dashboard;
mod host;
mod id;
mod info;
mod periodic;
mod status;
mod tasks;
mod wire;
mod worker;

use std::sync::Arc;

pub use self::client::{RedisExecutor, RedisExecutorBuilder, TaskOptions};
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub use self::dashboard::Dashboard;
pub use self::id::{InvalidTaskId, MAX_TASK_ID, TaskId};
pub use self::info::{DeadLetter, FailedTask, QueueInfo, QueueSample, RunningTask, WorkerInfo};
pub use self::periodic::{InvalidSchedule, Missed, PeriodicTask, Schedule};
pub use self::status::TaskStatus;
pub use self::tasks::Tasks;
pub use self::worker::{RedisWorker, RedisWorkerBuilder};

/// A Redis executor or worker could not be set up.
///
/// Every message says what to do: which part of a URL is wrong and what a good one looks
/// like, the address that could not be reached, how long a timeout waited. The Redis
/// client's own error is the [`source()`](std::error::Error::source), never part of this
/// type, so a new major version of the client is not a breaking change here.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::{RedisExecutor, SetupError, Tasks};
///
/// let err = RedisExecutor::builder("localhost:6379", Tasks::new()).build().unwrap_err();
/// assert!(matches!(err, SetupError::Url(_)));
/// assert!(err.to_string().contains("redis://localhost:6379"), "{err}");
/// ```
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The connection URL is not a Redis URL; the text says which part is wrong and shows
    /// the form expected (`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS,
    /// `redis+unix:///path/to/socket`).
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// A setting is invalid, or a thread or process could not be started.
    #[error("{0}")]
    Config(String),
    /// Redis at `address` could not be reached, did not answer in time, or refused a
    /// command (a missing permission, say); `reason` says which.
    #[error("cannot use Redis at {address}: {reason}")]
    #[non_exhaustive]
    Connect {
        /// `host:port` or the socket's path (never the password).
        address: String,
        /// What went wrong, in words: "connection refused", "timed out after 10 s", what
        /// Redis answered.
        reason: String,
        /// The Redis client's own error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// A task could not be looked up by id ([`RedisExecutor::attach`]).
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{LookupError, RedisExecutor, TaskId, Tasks};
///
/// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
/// let id: TaskId = "never-submitted".parse()?;
/// assert!(matches!(ex.attach::<u32>(&id), Err(LookupError::Unknown(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Redis has no task with this id: it was never submitted, its record expired
    /// (`result_ttl` after it ended), or Redis lost it.
    #[error("no task {0} in Redis: never submitted, its record expired (result_ttl), or lost")]
    Unknown(TaskId),
    /// Redis could not be asked.
    #[error(transparent)]
    Redis(#[from] SetupError),
    /// The executor was shut down.
    #[error("cannot attach to a task after shutdown")]
    Shutdown,
}

/// The variant's name, then the message that says what to do (a `main` that returns
/// `Result<(), Box<dyn Error>>` prints `Debug`). The Redis client's own error, for a
/// connection, follows as its `source`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::{RedisExecutor, Tasks};
/// let err = RedisExecutor::builder("http://localhost/", Tasks::new()).build().unwrap_err();
/// assert!(format!("{err:?}").starts_with("Url: invalid Redis URL"), "{err:?}");
/// ```
impl std::fmt::Debug for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Url(_) => write!(f, "Url: {self}"),
            SetupError::Config(_) => write!(f, "Config: {self}"),
            SetupError::Connect { source, .. } => {
                write!(f, "Connect: {self} (Redis client: {source:?})")
            }
        }
    }
}

/// The variant's name, then the message (as [`SetupError`]'s).
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::LookupError;
/// assert_eq!(format!("{:?}", LookupError::Shutdown), "Shutdown: cannot attach to a task after shutdown");
/// ```
impl std::fmt::Debug for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Unknown(_) => write!(f, "Unknown: {self}"),
            LookupError::Redis(e) => write!(f, "Redis({e:?})"),
            LookupError::Shutdown => write!(f, "Shutdown: {self}"),
        }
    }
}

impl SetupError {
    /// Redis at `address` failed `e`, in an attempt that began at `started`.
    fn connect(
        address: &str,
        started: std::time::Instant,
    ) -> impl Fn(::redis::RedisError) -> SetupError + '_ {
        move |e| {
            let reason = if e.is_timeout() {
                format!(
                    "timed out after {:.1} s without an answer (is it frozen, or is this not \
                     a Redis server?)",
                    started.elapsed().as_secs_f64()
                )
            } else if e.is_connection_refusal() {
                "connection refused (is redis-server running and listening there?)".to_owned()
            } else if let Some(code) = e.code() {
                format!(
                    "Redis refused a command: {code} {}",
                    e.detail().unwrap_or_default()
                )
            } else if e.is_io_error() {
                format!("the connection failed: {e}")
            } else {
                format!("{e}")
            };
            SetupError::Connect {
                address: address.to_owned(),
                reason,
                source: Arc::new(e),
            }
        }
    }
}

/// How long `build()`, `spawn()`, `info()` and [`inspect`] wait for Redis to connect and
/// answer before they fail with [`SetupError::Connect`]: a frozen or silent server is an
/// error within about this bound, never a hang (measured against a server that accepts
/// connections and never answers: 10.4 s). The error says how long it waited.
///
/// # Examples
///
/// ```
/// assert_eq!(concurrent_futures::redis::SETUP_TIMEOUT.as_secs(), 10);
/// ```
pub const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection for setting up, and when the attempt began: connected within
/// [`SETUP_TIMEOUT`], its commands given what is left of it.
fn setup_connection(
    client: &::redis::Client,
    address: &str,
    timeout: std::time::Duration,
) -> Result<(::redis::Connection, std::time::Instant), SetupError> {
    let started = std::time::Instant::now();
    let failed = SetupError::connect(address, started);
    // Half the bound for the client's connect and handshake: against a server that
    // accepts and never answers, the client's handshake waits twice the timeout it is
    // given (measured: 15.0 s for 10 s, 10.4 s for 5 s).
    let con = client
        .get_connection_with_timeout(timeout / 2)
        .map_err(&failed)?;
    // The client's own handshake may have used most of the bound.
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(std::time::Duration::from_millis(100));
    con.set_read_timeout(Some(left)).map_err(&failed)?;
    con.set_write_timeout(Some(left)).map_err(&failed)?;
    Ok((con, started))
}

/// TLS settings beyond the URL's `rediss://`: a private root certificate, a client
/// certificate (feature `redis-tls`).
#[derive(Clone, Default)]
pub(crate) struct Tls {
    #[cfg(feature = "redis-tls")]
    root: Option<Vec<u8>>,
    #[cfg(feature = "redis-tls")]
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        let mut d = f.debug_struct("Tls");
        #[cfg(feature = "redis-tls")]
        d.field("root", &self.root.is_some())
            .field("client", &self.client.is_some());
        d.finish()
    }
}

/// The TLS settings of both builders (`$built` is the type the builder builds).
#[cfg(feature = "redis-tls")]
macro_rules! tls_methods {
    ($builder:ident, $built:ident) => {
        impl $builder {
            /// Trusts the certificate authority in `pem` (PEM) for `rediss://` connections,
            /// instead of the Mozilla roots: for a Redis with a private CA.
            ///
            /// # Examples
            ///
            /// ```no_run
            /// # use concurrent_futures::redis::*;
            /// let ca = std::fs::read("/etc/redis/ca.crt")?;
            #[doc = concat!("let b = ", stringify!($built), "::builder(\"rediss://redis.internal:6380/\", Tasks::new())")]
            ///     .tls_root_certificate(ca);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
            pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
                self.tls.root = Some(pem.into());
                self
            }

            /// Presents this certificate and key (both PEM) to a Redis that requires client
            /// certificates (`tls-auth-clients yes`).
            ///
            /// # Examples
            ///
            /// ```no_run
            /// # use concurrent_futures::redis::*;
            /// let (cert, key) = (std::fs::read("me.crt")?, std::fs::read("me.key")?);
            #[doc = concat!("let b = ", stringify!($built), "::builder(\"rediss://redis.internal:6380/\", Tasks::new())")]
            ///     .tls_client_certificate(cert, key);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
            pub fn tls_client_certificate(
                mut self,
                cert_pem: impl Into<Vec<u8>>,
                key_pem: impl Into<Vec<u8>>,
            ) -> Self {
                self.tls.client = Some((cert_pem.into(), key_pem.into()));
                self
            }
        }
    };
}

#[cfg(feature = "redis-tls")]
tls_methods!(RedisExecutorBuilder, RedisExecutor);
#[cfg(feature = "redis-tls")]
tls_methods!(RedisWorkerBuilder, RedisWorker);

/// The form of a Redis URL, for error messages.
const URL_FORM: &str = "redis://[user:password@]host[:port][/db], rediss://... for TLS, or \
                        redis+unix:///path/to/socket";

/// Says what is wrong with `url`, if it is not a Redis URL, before the Redis client parses
/// it (whose errors say only "invalid client config"). Never quotes a password.
fn check_url(url: &str) -> Result<(), String> {
    let shown = |s: &str| {
        if s.contains('@') {
            "(not shown: it holds a password)".to_owned()
        } else {
            format!("`{s}`")
        }
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        if let Some(after) = ["redis:", "rediss:", "redis+unix:", "unix:"]
            .iter()
            .find_map(|p| url.strip_prefix(p))
        {
            return Err(format!(
                "{} has one slash after the scheme where two are needed: `{}//{}`; \
                 expected {URL_FORM}",
                shown(url),
                &url[..url.len() - after.len()],
                after.trim_start_matches('/')
            ));
        }
        return Err(format!(
            "{} has no scheme: write `redis://{}`; expected {URL_FORM}",
            shown(url),
            if url.contains('@') { "..." } else { url }
        ));
    };
    match scheme {
        "redis" | "rediss" | "valkey" | "valkeys" => {}
        "redis+unix" | "unix" => return Ok(()),
        other => {
            return Err(format!(
                "the scheme `{other}` is not Redis's; expected {URL_FORM}"
            ));
        }
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_port = rest[..authority_end].rsplit('@').next().unwrap_or_default();
    if host_port.is_empty() {
        return Err(format!("no host: expected {URL_FORM}"));
    }
    // `host:port`, or `[v6 address]:port`.
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").map(|(_, port)| port),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    if let Some(port) = port.filter(|p| p.parse::<u16>().map_or(true, |n| n == 0)) {
        return Err(format!(
            "the port `{port}` is not a number from 1 to 65535; expected {URL_FORM}"
        ));
    }
    let path = &rest[authority_end..];
    let db = path
        .strip_prefix('/')
        .map(|p| p.split('?').next().unwrap_or_default())
        .unwrap_or_default();
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(format!(
            "the database `{db}` is not a number: `/0` picks database 0; expected {URL_FORM}"
        ));
    }
    Ok(())
}

/// Opens a client after checking the namespace and the URL; connects nothing yet. Returns
/// the address it points at, for error messages.
fn open(url: &str, namespace: &str, tls: &Tls) -> Result<(::redis::Client, String), SetupError> {
    wire::check_namespace(namespace).map_err(SetupError::Config)?;
    check_url(url).map_err(SetupError::Url)?;
    let bad = |e: ::redis::RedisError| {
        // The error may quote the URL, password included: say only what kind it is.
        SetupError::Url(format!("{:?}; expected {URL_FORM}", e.kind()))
    };
    let info = ::redis::IntoConnectionInfo::into_connection_info(url).map_err(bad)?;
    let address = info.addr().to_string();
    // Small commands and replies, each awaited: Nagle's algorithm would only delay them.
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_tcp_settings(tcp);
    #[cfg(feature = "redis-tls")]
    if tls.root.is_some() || tls.client.is_some() {
        // The ring provider, whatever else the program's dependencies enable in rustls
        // (an error here means one is installed already, which is as good).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = ::redis::TlsCertificates {
            client_tls: tls.client.clone().map(|(client_cert, client_key)| {
                ::redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: tls.root.clone(),
        };
        return ::redis::Client::build_with_tls(info, certs)
            .map(|c| (c, address))
            .map_err(bad);
    }
    #[cfg(feature = "redis-tls")]
    if url.starts_with("rediss") {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let _ = tls;
    ::redis::Client::open(info)
        .map(|c| (c, address))
        .map_err(bad)
}

/// Creates the queue and its consumer group if they do not exist. The group starts at the
/// beginning of the stream, so entries added before it existed are still delivered.
fn ensure_group(con: &mut ::redis::Connection, keys: &wire::Keys) -> ::redis::RedisResult<()> {
    let created = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.queue)
        .arg(wire::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(con);
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Reads what the queue of `namespace` holds now, without an executor: queued and running
/// tasks, live workers, dead letters.
///
/// # Errors
///
/// [`SetupError`] if the URL or namespace is invalid or Redis cannot be asked.
///
/// # Examples
///
/// ```no_run
/// let info = concurrent_futures::redis::inspect("redis://127.0.0.1/", "cf")?;
/// println!("{} queued, {} dead letters", info.queued, info.dead_total);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(url: &str, namespace: &str) -> Result<QueueInfo, SetupError> {
    let (client, address) = open(url, namespace, &Tls::default())?;
    let (mut con, started) = setup_connection(&client, &address, SETUP_TIMEOUT)?;
    info::read(&mut con, &wire::Keys::new(namespace))
        .map_err(SetupError::connect(&address, started))
}
