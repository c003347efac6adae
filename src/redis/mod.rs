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

mod client;
mod conn;
mod info;
mod tasks;
mod wire;
mod worker;

use std::sync::Arc;

pub use self::client::{RedisExecutor, RedisExecutorBuilder, TaskOptions};
pub use self::info::{DeadLetter, QueueInfo, RunningTask, WorkerInfo};
pub use self::tasks::Tasks;
pub use self::worker::{RedisWorker, RedisWorkerBuilder};

/// A Redis executor or worker could not be set up.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::{RedisExecutor, SetupError, Tasks};
///
/// let err = RedisExecutor::builder("not a url", Tasks::new()).build().unwrap_err();
/// assert!(matches!(err, SetupError::Url(_)));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The connection URL does not parse.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// A setting is invalid, or a thread or process could not be started.
    #[error("{0}")]
    Config(String),
    /// Redis could not be reached, or refused a command (a missing permission, say).
    #[error("cannot use Redis: {0}")]
    Connect(#[source] Arc<::redis::RedisError>),
}

impl SetupError {
    fn connect(e: ::redis::RedisError) -> SetupError {
        SetupError::Connect(Arc::new(e))
    }
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

/// Opens a client after checking the namespace; connects nothing yet.
fn open(url: &str, namespace: &str, tls: &Tls) -> Result<::redis::Client, SetupError> {
    wire::check_namespace(namespace).map_err(SetupError::Config)?;
    let bad = |e: ::redis::RedisError| {
        // The error may quote the URL, password included: say only what kind it is.
        SetupError::Url(format!("{:?}", e.kind()))
    };
    let info = ::redis::IntoConnectionInfo::into_connection_info(url).map_err(bad)?;
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
        return ::redis::Client::build_with_tls(info, certs).map_err(bad);
    }
    #[cfg(feature = "redis-tls")]
    if url.starts_with("rediss") {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let _ = tls;
    ::redis::Client::open(info).map_err(bad)
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
    let client = open(url, namespace, &Tls::default())?;
    let mut con = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .map_err(SetupError::connect)?;
    info::read(&mut con, &wire::Keys::new(namespace)).map_err(SetupError::connect)
}
