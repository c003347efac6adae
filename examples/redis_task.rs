//! Enqueue and exit, then look tasks up by id from another process: RQ's `q.enqueue` and
//! `rq job`, Celery's `delay` and `celery result <id>`.
//!
//! ```text
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ enqueue /data/a.bin /data/b.bin
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ status <id>
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ result <id>
//! ```
//!
//! `enqueue` submits `hash_file` (from `redis_shared/tasks.rs`) for each path, prints each
//! task's id, and exits without waiting: the tasks run whenever a worker
//! (`--example redis_worker`) is up. `enqueue --id <id> <path>` chooses the id: running it
//! twice queues the task once. `status` prints where a task stands; `result` waits for its
//! result (pushed, no polling) and prints it as JSON, whatever its type.

#[path = "redis_shared/tasks.rs"]
mod shared;

use concurrent_futures::redis::{RedisExecutor, TaskId, TaskOptions, TaskStatus};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: redis_task <url> enqueue [--id <id>] <path>... | status <id> | result <id>";
    let (Some(url), Some(command)) = (args.first(), args.get(1)) else {
        return Err(usage.into());
    };
    let ex = RedisExecutor::builder(url, shared::tasks()).build()?;
    match command.as_str() {
        "enqueue" => {
            let mut rest = &args[2..];
            let mut opts = TaskOptions::new();
            if rest.first().map(String::as_str) == Some("--id") {
                let id: TaskId = rest.get(1).ok_or(usage)?.parse()?;
                opts = opts.id(id);
                rest = &rest[2..];
            }
            for path in rest {
                let fut = ex.submit_with(shared::hash_file, path.clone(), opts.clone())?;
                println!("{}\t{path}", fut.task_id().expect("a Redis task has an id"));
            }
            // Dropping the executor sends every task and returns: nothing waits for results.
        }
        "status" => {
            let id: TaskId = args.get(2).ok_or(usage)?.parse()?;
            match ex.status(&id)? {
                TaskStatus::Running {
                    worker,
                    deliveries,
                    started,
                    ..
                } => {
                    let secs = started
                        .and_then(|t| t.elapsed().ok())
                        .map_or(String::from("?"), |d| format!("{:.1}", d.as_secs_f64()));
                    println!("running on {worker} for {secs} s (delivery {deliveries})");
                }
                TaskStatus::Done { worker, .. } => println!("done on {worker}"),
                TaskStatus::Scheduled { at, .. } => {
                    let secs = at
                        .duration_since(std::time::SystemTime::now())
                        .map_or(0.0, |d| d.as_secs_f64());
                    println!("scheduled, due in {secs:.1} s");
                }
                TaskStatus::Failed { error, worker, .. } => println!("failed on {worker}: {error}"),
                TaskStatus::DeadLettered { error, .. } => println!("dead-lettered: {error}"),
                other => println!("{other:?}"),
            }
        }
        "result" => {
            let id: TaskId = args.get(2).ok_or(usage)?.parse()?;
            // Any task's result, whatever its type, as JSON.
            let value: serde_json::Value = ex.attach(&id)?.result()?;
            println!("{value}");
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
