//! The Redis queue's dashboard, served by axum, over a queue with work flowing through it.
//!
//! ```text
//! cargo run --release --features dashboard --example redis_dashboard [-- redis://host/] [--port 8080] [--for SECONDS]
//! ```
//!
//! Without a URL it starts its own `redis-server`. It runs a worker (in this process, on
//! threads), keeps submitting work (some of which panics, and one task the worker does not
//! know, which becomes a dead letter), and serves the dashboard with its actions at
//! `http://127.0.0.1:8080/queue` and read-only at `/view`. With `--for`, it fetches its own
//! page once, prints what it got, and stops after that many seconds.

#[path = "redis_shared/server.rs"]
mod server;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use concurrent_futures::redis::{Dashboard, RedisExecutor, RedisWorker, Tasks};

/// Sleeps `ms` and returns it: the steady work.
fn work(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Fails one time in seven.
fn flaky(n: u64) -> u64 {
    assert!(n % 7 != 0, "flaky task {n} failed");
    n
}

/// A task of a newer build: the worker below does not know it.
fn resize_v2(side: u32) -> u32 {
    side / 2
}

fn worker_tasks() -> Tasks {
    Tasks::new().add("work/v1", work).add("flaky/v1", flaky)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let port: u16 = flag("--port").map_or(Ok(8080), |p| p.parse())?;
    let stop_after: Option<u64> = flag("--for").map(|s| s.parse()).transpose()?;
    let mut server = None;
    let url = match args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .or_else(|| std::env::var("REDIS_URL").ok())
    {
        Some(url) => url,
        None => {
            let (child, url) = server::start_redis()?;
            server = Some(child);
            url
        }
    };
    let result = demo(&url, port, stop_after);
    if let Some(mut s) = server {
        let _ = s.kill();
        let _ = s.wait();
    }
    result
}

fn demo(url: &str, port: u16, stop_after: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
    // The flaky tasks panic on purpose: one line each, not the default report.
    std::panic::set_hook(Box::new(|info| eprintln!("task panicked: {info}")));
    // A worker sampling the queue every second, so the charts fill while you watch.
    let worker = RedisWorker::builder(url, worker_tasks())
        .max_workers(4)
        .lease(Duration::from_secs(3))
        .sample_every(Duration::from_secs(1))
        .spawn()?;
    let ex =
        Arc::new(RedisExecutor::builder(url, worker_tasks().add("resize/v2", resize_v2)).build()?);

    // Work flows in bursts until the end.
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (ex, done) = (ex.clone(), done.clone());
        std::thread::spawn(move || {
            let _ = ex.submit(resize_v2, 640); // dead-lettered: the worker lacks it
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                for _ in 0..(5 + n % 20) {
                    n += 1;
                    drop(ex.submit(work, 20 + n % 80));
                    drop(ex.submit(flaky, n));
                }
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };

    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(async {
        let app = axum::Router::new()
            .nest("/queue", Dashboard::new(ex.clone()).with_actions().router())
            .nest(
                "/view",
                Dashboard::new(ex.clone())
                    .title("Queue (read-only)")
                    .router(),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        println!("dashboard: http://{addr}/queue  (read-only: http://{addr}/view)");
        let serve = axum::serve(listener, app);
        match stop_after {
            None => serve.await?,
            Some(secs) => {
                let check = tokio::task::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(1500));
                    fetch(addr, "/queue")
                });
                tokio::select! {
                    r = serve => r?,
                    () = tokio::time::sleep(Duration::from_secs(secs)) => {}
                }
                let (status, body) = check.await??;
                println!("GET /queue -> {status}, {} bytes", body.len());
                if !status.contains("200") || !body.contains("Dead letters") {
                    return Err::<(), Box<dyn std::error::Error>>(
                        "the dashboard did not answer as expected".into(),
                    );
                }
            }
        }
        Ok(())
    });
    done.store(true, Ordering::Relaxed);
    let _ = producer.join();
    drop(worker);
    served
}

/// One plain HTTP GET: the status line and the body.
fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    ))
}
