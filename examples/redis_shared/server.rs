//! A private `redis-server` for the Redis examples run without a URL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `redis-server` on a free port in a temporary directory, and waits until it
/// answers: the child (kill it when done) and its URL.
pub(crate) fn start_redis() -> Result<(Child, String), Box<dyn std::error::Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("cf-redis-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server ({e}); install it (apt-get install redis-server) or pass a URL"))?;
    let url = format!("redis://127.0.0.1:{port}/");
    let t = Instant::now();
    while concurrent_futures::redis::inspect(&url, "cf").is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, url))
}
