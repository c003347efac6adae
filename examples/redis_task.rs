//! Enqueue and exit, then look tasks up by id from another process: RQ's `q.enqueue` and
//! `rq job`, Celery's `delay` and `celery result <id>`.
//!
//! ```text
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ enqueue /data/a.bin /data/b.bin
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ status <id>
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ result <id>
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ schedule rehash 3600 /data
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ schedules
//! cargo run --features redis --example redis_task -- redis://127.0.0.1/ unschedule rehash
//! ```
//!
//! `enqueue` submits `hash_file` (from `redis_shared/tasks.rs`) for each path, prints each
//! task's id, and exits without waiting: the tasks run whenever a worker
//! (`--example redis_worker`) is up. `enqueue --id <id> <path>` chooses the id: running it
//! twice queues the task once. `status` prints where a task stands; `result` waits for its
//! result (pushed, no polling) and prints it as JSON, whatever its type. `schedule` sets a
//! periodic `hash_file` every so many seconds (it lives in Redis: the workers fire it),
//! `schedules` lists the periodic tasks with their next tick, like Celery beat's schedule,
//! and `unschedule` removes one.

#[path = "redis_shared/tasks.rs"]
mod shared;

use concurrent_futures::redis::{RedisExecutor, Schedule, TaskId, TaskOptions, TaskStatus};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: redis_task <url> enqueue [--id <id>] <path>... | status <id> | result <id> \
                 | schedule <name> <seconds> <path> | schedules | unschedule <name>";
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
        "schedule" => {
            let (Some(name), Some(secs), Some(path)) = (args.get(2), args.get(3), args.get(4))
            else {
                return Err(usage.into());
            };
            let every = Schedule::every(std::time::Duration::from_secs(secs.parse()?));
            ex.schedule(name, every, shared::hash_file, path.clone())?;
        }
        "unschedule" => {
            let name = args.get(2).ok_or(usage)?;
            if !ex.unschedule(name)? {
                println!("no periodic task named {name}");
            }
        }
        "schedules" => {
            for p in ex.schedules()? {
                let next = match p.next.duration_since(std::time::SystemTime::now()) {
                    Ok(d) => format!("in {:.1} s", d.as_secs_f64()),
                    Err(late) => format!("{:.1} s late", late.duration().as_secs_f64()),
                };
                println!("{}\t{}\t{}\tnext {next}", p.name, p.task, p.schedule);
            }
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
