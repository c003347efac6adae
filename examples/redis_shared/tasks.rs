//! The task list shared by the Redis examples' client and workers: both link this file, so
//! both agree on every name and type.

use concurrent_futures::redis::Tasks;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A thumbnail job (the image itself would be a path or a URL to fetch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Resize {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) scale: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stats {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixels: u64,
}

/// A task that can fail: the error is a value in the client's future.
pub(crate) fn resize(job: Resize) -> Result<Stats, String> {
    if job.scale <= 0.0 {
        return Err(format!("scale must be positive, got {}", job.scale));
    }
    let width = (f64::from(job.width) * job.scale).round() as u32;
    let height = (f64::from(job.height) * job.scale).round() as u32;
    Ok(Stats {
        width,
        height,
        pixels: u64::from(width) * u64::from(height),
    })
}

/// FNV-1a of a string, in hex: stands in for hashing a file's contents.
pub(crate) fn hash_file(path: String) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Sleeps `ms` milliseconds, then returns them: a long task.
pub(crate) fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Kills the process running it: shows what a worker in process mode survives.
pub(crate) fn crash(code: i32) -> i32 {
    std::process::exit(code)
}

pub(crate) fn tasks() -> Tasks {
    Tasks::new()
        .add("img.resize/v1", resize)
        .add("hash/v1", hash_file)
        .add("sleep/v1", sleep_ms)
        .add("crash/v1", crash)
}
