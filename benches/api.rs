//! Criterion micro-benchmarks, one group per API, for tracking regressions:
//! `cargo bench --bench api`. Comparisons with other libraries live in `peers.rs`.

use std::hint::black_box;
use std::sync::Arc;

use concurrent_futures::lock::{Lock, Semaphore};
use concurrent_futures::{Promise, ReturnWhen, ThreadPoolExecutor, as_completed, wait};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn pool() -> ThreadPoolExecutor {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    ThreadPoolExecutor::builder()
        .max_workers(cores)
        .build()
        .unwrap()
}

fn submit(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("submit");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 tasks then results", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..1000u64)
                .map(|i| pool.submit(move || i).unwrap())
                .collect();
            futs.into_iter().map(|f| f.result().unwrap()).sum::<u64>()
        })
    });
    g.bench_function("round trip", |b| {
        b.iter(|| pool.submit(|| black_box(1u64)).unwrap().result().unwrap())
    });
    g.finish();
}

fn result(c: &mut Criterion) {
    let mut g = c.benchmark_group("result");
    g.bench_function("promise set then result", |b| {
        b.iter(|| {
            let (p, f) = Promise::new();
            p.set_result(black_box(7u64)).unwrap();
            f.result().unwrap()
        })
    });
    g.bench_function("shared result by reference", |b| {
        let (p, f) = Promise::new();
        p.set_result(vec![0u8; 64]).unwrap();
        let shared = f.share();
        b.iter(|| black_box(shared.result().unwrap().len()))
    });
    g.finish();
}

fn completion(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("as_completed");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 tasks in completion order", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..1000u64)
                .map(|i| pool.submit(move || i).unwrap())
                .collect();
            as_completed(futs).map(|f| f.result().unwrap()).sum::<u64>()
        })
    });
    g.bench_function("wait all, 1000 done promises", |b| {
        b.iter_batched(
            || {
                (0..1000)
                    .map(|i| {
                        let (p, f) = Promise::new();
                        p.set_result(i).unwrap();
                        f
                    })
                    .collect::<Vec<_>>()
            },
            |futs| wait(futs, None, ReturnWhen::AllCompleted).0.len(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn map(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("map");
    g.throughput(Throughput::Elements(10_000));
    for buffer in [4, 64, 1024] {
        g.bench_function(format!("10000 items, buffer {buffer}"), |b| {
            b.iter(|| {
                pool.map(|x: u64| x + 1, 0..10_000)
                    .buffer_size(buffer)
                    .map(Result::unwrap)
                    .sum::<u64>()
            })
        });
    }
    g.bench_function("10000 items unordered", |b| {
        b.iter(|| {
            pool.map_unordered(|x: u64| x + 1, 0..10_000)
                .map(Result::unwrap)
                .sum::<u64>()
        })
    });
    g.finish();
}

fn locks(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock");
    let lock = Lock::new(0u64);
    g.bench_function("uncontended lock", |b| b.iter(|| *lock.lock() += 1));
    let shared = Arc::new(Lock::new(0u64));
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("2 threads, 10000 increments each", |b| {
        b.iter(|| {
            let s = shared.clone();
            let other = std::thread::spawn(move || (0..10_000).for_each(|_| *s.lock() += 1));
            (0..10_000).for_each(|_| *shared.lock() += 1);
            other.join().unwrap();
        })
    });
    let sem = Semaphore::new(1);
    g.bench_function("semaphore acquire/release", |b| {
        b.iter(|| drop(sem.acquire()))
    });
    g.finish();
}

criterion_group!(benches, submit, result, completion, map, locks);
criterion_main!(benches);
