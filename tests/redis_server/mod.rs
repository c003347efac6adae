//! A private `redis-server` for one test or benchmark: a free port and a directory of its
//! own, killed and removed on drop. Shared by `tests/redis.rs` and `benches/redis.rs`.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer `PING` (an AOF replay included).
const START: Duration = Duration::from_secs(20);

/// One `redis-server` process on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub url: String,
    aof: bool,
}

/// Whether `redis-server` is on the PATH.
pub fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a test that needs `redis-server` can run. Without one it fails under `CI=true`
/// (`.ci/run` installs it) and elsewhere prints a loud notice and lets the test pass.
pub fn available() -> bool {
    let found = installed();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is not installed: under CI=true the Redis tests must run (.ci/run installs it)"
        );
        eprintln!(
            "\n*** SKIPPED: redis-server is not installed, this Redis test did not run ***\n\
             *** install it (apt-get install redis-server) to run it                 ***\n"
        );
    }
    found
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts a server whose directory is named after `label`. With `aof`, every write is
    /// appended and fsynced before it is acknowledged, so a restart keeps it.
    ///
    /// # Panics
    ///
    /// If `redis-server` cannot be started or does not answer within 20 s.
    pub fn start(label: &str, aof: bool) -> RedisServer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cf-redis-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            url: format!("redis://127.0.0.1:{port}/"),
            aof,
        };
        server.launch();
        server
    }

    /// Starts the process (again, after [`kill`](Self::kill)) on the same port and
    /// directory, and waits until it answers.
    pub fn launch(&mut self) {
        self.launch_loading();
        let t = Instant::now();
        // Loaded (an AOF replay may take a moment): PING answers only when ready.
        while redis::cmd("PING").query::<String>(&mut self.con()).is_err() {
            assert!(t.elapsed() < START, "redis-server did not load");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process as [`launch`](Self::launch) does, but returns as soon as it
    /// accepts connections, while it may still be loading its AOF (and answer `LOADING`).
    pub fn launch_loading(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null());
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        self.child = Some(
            cmd.spawn()
                .expect("start redis-server (apt-get install redis-server)"),
        );
        let t = Instant::now();
        while self.client().get_connection().is_err() {
            assert!(t.elapsed() < START, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the process (SIGKILL): what it had not written to its AOF is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`) to the server: a frozen server accepts
    /// connections and answers nothing.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).unwrap()
    }

    pub fn con(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy in front of a server, for network partitions: while it is cut, it accepts
/// connections and bytes but forwards nothing either way, as a network that drops packets
/// (no reset, no error: the peers only see silence).
pub struct Proxy {
    pub url: String,
    pub address: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((down, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue; // the server is down: the client sees the connection close
                };
                down.set_nonblocking(false).unwrap();
                for (from, to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    let (c, s) = (c.clone(), s.clone());
                    std::thread::spawn(move || pump(from, to, &c, &s));
                }
            }
        });
        Proxy {
            url: format!("redis://{address}/"),
            address,
            cut,
            stop,
        }
    }

    /// Stops forwarding, both ways, on every connection, old and new.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards again; what was held back is delivered.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` while the proxy is not cut; ends when either side closes or the
/// proxy is dropped.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if cut.load(Ordering::SeqCst) {
            // Nothing read: the bytes wait in the kernel's buffers until the proxy heals.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Read just as the proxy was cut: held back too, until it heals.
                while cut.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
