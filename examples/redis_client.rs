//! Many machines, one API: a client submits to Redis, worker processes run the tasks, and
//! the results come back to ordinary futures.
//!
//! ```text
//! cargo run --release --features redis --example redis_client [-- redis://host/]
//! ```
//!
//! Without a URL it starts its own `redis-server` (on a free port, in a temporary
//! directory; `apt-get install redis-server` if it is missing). It then starts two worker
//! processes (this same binary, `--worker URL`; on real machines, `redis_worker`), and shows
//! `submit`, `map` with a timeout, `as_completed`, a task error, a crashing task, and a
//! worker killed mid-task whose task another worker finishes.

#[path = "redis_shared/server.rs"]
mod server;
#[path = "redis_shared/tasks.rs"]
mod shared;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_futures::redis::{RedisExecutor, RedisWorker, TaskOptions};
use concurrent_futures::{TaskError, as_completed};
use shared::{Resize, crash, hash_file, resize, sleep_ms, tasks};

const LEASE: Duration = Duration::from_secs(2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    concurrent_futures::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return Ok(RedisWorker::builder(&args[1], tasks())
            .processes(true)
            .max_workers(4)
            .lease(LEASE)
            .run()?);
    }
    let mut server = None;
    let url = match args
        .first()
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
    let result = demo(&url);
    if let Some(mut s) = server {
        let _ = s.kill();
        let _ = s.wait();
    }
    result
}

fn demo(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let spawn_worker = || {
        Command::new(&me)
            .args(["--worker", url])
            .stdin(Stdio::null())
            .spawn()
    };
    let mut workers = vec![spawn_worker()?, spawn_worker()?];
    let ex = RedisExecutor::builder(url, tasks())
        .max_deliveries(3)
        .build()?;

    // submit: a value, and a task's own error, both in their futures.
    let ok = ex.submit(
        resize,
        Resize {
            width: 640,
            height: 480,
            scale: 0.5,
        },
    )?;
    let bad = ex.submit(
        resize,
        Resize {
            width: 640,
            height: 480,
            scale: -1.0,
        },
    )?;
    println!("resize      -> {:?}", ok.result()?);
    println!("resize(-1)  -> {:?}", bad.result()?);

    // map: 10,000 paths, results in input order, 60 s for all of it. No chunk_size: the
    // first tasks carry one path each, then chunks grow to about 5 ms of the workers' time
    // (these paths are cheap, so a few hundred each) as the results come back.
    let t = Instant::now();
    let paths: Vec<String> = (0..10_000).map(|i| format!("/data/file-{i}.bin")).collect();
    let hashes: Vec<String> = ex
        .map(hash_file, paths)
        .timeout(Duration::from_secs(60))
        .collect::<Result<_, _>>()?;
    println!(
        "map         -> {} hashes in {:.0?}, first {}",
        hashes.len(),
        t.elapsed(),
        hashes[0]
    );

    // as_completed: shortest first, whatever order they were submitted in.
    let sleeps = [300u64, 100, 200];
    let futs: Vec<_> = sleeps
        .iter()
        .map(|&ms| ex.submit(sleep_ms, ms))
        .collect::<Result<_, _>>()?;
    let order: Vec<u64> = as_completed(futs)
        .map(|f| f.result())
        .collect::<Result<_, _>>()?;
    println!("as_completed-> {order:?}");

    // A task that kills its process: only that task fails, the worker carries on.
    match ex.submit(crash, 3)?.result() {
        Err(TaskError::WorkerDied(how)) => println!("crash(3)    -> worker process died: {how}"),
        other => println!("crash(3)    -> {other:?}"),
    }

    // A time limit the worker enforces (it kills the process running the task).
    let limited = ex.submit_with(
        sleep_ms,
        5_000,
        TaskOptions::new().time_limit(Duration::from_millis(300)),
    )?;
    println!(
        "time limit  -> {:?}",
        limited.result().map_err(|e| e.to_string())
    );

    // SIGKILL a whole worker while it runs a task: the other one runs it again after the
    // lease, and the future completes once.
    let long = ex.submit(sleep_ms, 1_500)?;
    let t = Instant::now();
    while !running_somewhere(&ex)? {
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = ex.info()?.running[0].worker.clone();
    let victim = workers
        .iter()
        .position(|w| holder.contains(&format!("-{}-", w.id())))
        .unwrap_or(0);
    workers[victim].kill()?;
    workers[victim].wait()?;
    println!(
        "killed      -> worker pid {} while it ran the task",
        workers[victim].id()
    );
    println!(
        "re-run      -> {:?} after {:.1?} (lease {:?})",
        long.result()?,
        t.elapsed(),
        LEASE
    );
    print!("info        -> {}", ex.info()?);

    ex.shutdown();
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    Ok(())
}

fn running_somewhere(ex: &RedisExecutor) -> Result<bool, Box<dyn std::error::Error>> {
    Ok(!ex.info()?.running.is_empty())
}
