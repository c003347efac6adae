//! Hash every file under a directory, one by one and then on a thread pool, and print a
//! timing table: the classic `concurrent.futures` tutorial.
//!
//! ```text
//! cargo run --release --example hash_files            # a generated set of files
//! cargo run --release --example hash_files -- ~/src   # or any directory
//! ```
//!
//! Python equivalent:
//!
//! ```python
//! with ThreadPoolExecutor() as pool:
//!     futures = {pool.submit(sha256_file, p): p for p in paths}
//!     for fut in as_completed(futures):
//!         digests[futures[fut]] = fut.result()
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use concurrent_futures::{ThreadPoolExecutor, as_completed};
use sha2::{Digest, Sha256};

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// 192 files of 1 MiB of pseudo-random bytes in a fresh temporary directory: about 0.15 s
/// of hashing on one core, enough for the speed-up to stand out from timer noise.
fn generate() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hash_files-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..192 {
        let data: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        fs::write(dir.join(format!("file-{i:03}.bin")), data)?;
    }
    Ok(dir)
}

type Digests = BTreeMap<PathBuf, String>;

fn sequential(paths: &[PathBuf]) -> io::Result<Digests> {
    paths
        .iter()
        .map(|p| Ok((p.clone(), sha256_file(p)?)))
        .collect()
}

fn pooled(
    pool: &ThreadPoolExecutor,
    paths: &[PathBuf],
) -> Result<Digests, Box<dyn std::error::Error>> {
    let futures: Vec<_> = paths
        .iter()
        .map(|p| {
            let path = p.clone();
            Ok((p.clone(), pool.submit(move || sha256_file(&path))?))
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let mut digests = Digests::new();
    for (path, fut) in as_completed(futures) {
        digests.insert(path, fut.result()??);
    }
    Ok(digests)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dir, generated) = match std::env::args_os().nth(1) {
        Some(dir) => (PathBuf::from(dir), false),
        None => (generate()?, true),
    };
    let mut paths = Vec::new();
    walk(&dir, &mut paths)?;
    let bytes: u64 = paths
        .iter()
        .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!(
        "hashing {} files, {:.1} MiB, under {}",
        paths.len(),
        bytes as f64 / (1 << 20) as f64,
        dir.display()
    );

    // Each mode runs three times and keeps its best time: one run can be slowed by anything
    // else on the machine.
    const RUNS: usize = 3;
    let mut seq = std::time::Duration::MAX;
    let mut expected = Digests::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        expected = sequential(&paths)?;
        seq = seq.min(start.elapsed());
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = vec![("sequential".to_string(), seq)];
    for workers in [cpus, cpus + 4] {
        let pool = ThreadPoolExecutor::builder().max_workers(workers).build()?;
        let mut best = std::time::Duration::MAX;
        for _ in 0..RUNS {
            let start = Instant::now();
            let got = pooled(&pool, &paths)?;
            best = best.min(start.elapsed());
            assert_eq!(got, expected, "the pool computed the same digests");
        }
        rows.push((format!("ThreadPoolExecutor({workers})"), best));
    }

    println!(
        "\n{:<24} {:>10} {:>10} {:>8}",
        "mode", "seconds", "MiB/s", "speedup"
    );
    for (mode, t) in &rows {
        let s = t.as_secs_f64();
        println!(
            "{mode:<24} {s:>10.3} {:>10.1} {:>7.2}x",
            bytes as f64 / (1 << 20) as f64 / s,
            seq.as_secs_f64() / s
        );
    }
    // Say plainly when the machine did not let the pool show what it can do.
    let best = rows[1..].iter().map(|(_, t)| *t).min().unwrap_or(seq);
    let speedup = seq.as_secs_f64() / best.as_secs_f64();
    let ideal = cpus.min(paths.len()).max(1);
    if ideal > 1 && speedup < 0.6 * ideal as f64 {
        let load = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        println!(
            "\nnote: a {speedup:.2}x speed-up on {cpus} cores is well below {ideal}x: other work \
             is likely using the cores (load average {load}), or the files are not in memory"
        );
    } else if speedup > 1.1 * cpus as f64 {
        println!(
            "\n{speedup:.2}x faster than one thread, more than {cpus} cores can give: the \
             machine is busy, and more threads won a larger share of it than one did"
        );
    } else {
        println!("\n{speedup:.2}x faster than one thread, on {cpus} cores");
    }
    if let Some((path, digest)) = expected.iter().next() {
        println!("\nfirst digest: {digest}  {}", path.display());
    }
    if generated {
        fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
