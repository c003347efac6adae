//! A Redis worker: the binary you run on every worker machine.
//!
//! ```text
//! cargo run --release --features redis --example redis_worker -- redis://10.0.0.5/ [--processes] [--concurrency N]
//! ```
//!
//! It runs the tasks of `redis_shared/tasks.rs` until SIGTERM or Ctrl-C, then finishes what
//! it runs and exits. With `--processes`, each task runs in a worker process of a
//! `ProcessPoolExecutor`: a task that crashes or passes its time limit is killed and only
//! that task fails.

#[path = "redis_shared/tasks.rs"]
mod shared;

use concurrent_futures::redis::RedisWorker;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing in main: lets this binary act as a process-pool worker (--processes).
    concurrent_futures::init();
    let mut args = std::env::args().skip(1);
    let mut url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".into());
    let mut processes = false;
    let mut concurrency = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--processes" => processes = true,
            "--concurrency" => concurrency = args.next().and_then(|n| n.parse().ok()),
            other => url = other.to_owned(),
        }
    }
    let mut builder = RedisWorker::builder(&url, shared::tasks()).processes(processes);
    if let Some(n) = concurrency {
        builder = builder.max_workers(n);
    }
    eprintln!(
        "worker pid {} on {} ({}), stop with Ctrl-C",
        std::process::id(),
        url.split('@').next_back().unwrap_or(""),
        if processes { "processes" } else { "threads" }
    );
    builder.run()?;
    eprintln!("worker pid {} stopped", std::process::id());
    Ok(())
}
