//! `map` and `map_unordered` under the adaptive default chunk size (no `chunk_size`), on
//! both local pools: every promise `map` makes with explicit chunks holds (order, one result
//! per item, per-item errors also after a worker dies mid-chunk, the deadline, drop cancels),
//! and the results equal the sequential ones for random inputs and random failures.
#![cfg(all(unix, feature = "process"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{Gate, HANG, pool};
use concurrent_futures::{Executor, MapError, ProcessPoolExecutor, TaskError, ThreadPoolExecutor};
use proptest::prelude::*;

concurrent_futures::worker_test!();

fn triple(x: u64) -> u64 {
    x * 3
}

/// Kills its worker process at item 777, the way a segfault would.
fn abort_at_777(x: u64) -> u64 {
    if x == 777 {
        std::process::abort();
    }
    x * 3
}

/// An item that carries whether it fails: `(value, fails)`.
fn maybe_fail(item: (u32, bool)) -> u32 {
    assert!(!item.1, "item {} fails", item.0);
    item.0.wrapping_mul(7)
}

fn threads() -> &'static ThreadPoolExecutor {
    static POOL: OnceLock<ThreadPoolExecutor> = OnceLock::new();
    POOL.get_or_init(|| {
        ThreadPoolExecutor::builder()
            .max_workers(3)
            .build()
            .unwrap()
    })
}

fn processes() -> &'static ProcessPoolExecutor {
    static POOL: OnceLock<ProcessPoolExecutor> = OnceLock::new();
    POOL.get_or_init(|| pool(2))
}

#[test]
fn a_long_map_of_cheap_items_keeps_input_order_on_both_pools() {
    let n = 300_000u64;
    let want: Vec<u64> = (0..n).map(triple).collect();
    let got: Vec<u64> = threads()
        .map(triple, 0..n)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want);
    let got: Vec<u64> = processes()
        .map(triple, 0..n)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want);
    // Unordered: every index once, each with its own result.
    let mut seen = vec![false; n as usize];
    for (i, r) in processes().map_unordered(triple, 0..n).with_index() {
        assert_eq!(r, Ok(i as u64 * 3));
        assert!(!std::mem::replace(&mut seen[i], true), "index {i} twice");
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn a_worker_that_dies_mid_chunk_fails_only_its_item() {
    // Cheap items: the chunks have grown to hundreds of items by item 777, and the chunk
    // that kills its worker is run again item by item.
    let pool = pool(2);
    let out: Vec<_> = pool.map(abort_at_777, 0..3_000u64).collect();
    assert_eq!(out.len(), 3_000);
    for (i, r) in out.iter().enumerate() {
        if i == 777 {
            assert!(
                matches!(r, Err(MapError::Task(TaskError::WorkerDied(_)))),
                "{r:?}"
            );
        } else {
            assert_eq!(r, &Ok(i as u64 * 3), "item {i}");
        }
    }
    // And the pool goes on.
    assert_eq!(pool.submit(triple, 2).unwrap().result(), Ok(6));
}

#[test]
fn the_deadline_counts_from_the_call_and_ends_an_endless_map() {
    for unordered in [false, true] {
        let started = Instant::now();
        let slow = |x: u64| {
            std::thread::sleep(Duration::from_millis(2));
            x
        };
        let results: Vec<Result<u64, MapError>> = if unordered {
            threads()
                .map_unordered(slow, 0u64..)
                .timeout(Duration::from_millis(300))
                .collect()
        } else {
            threads()
                .map(slow, 0u64..)
                .timeout(Duration::from_millis(300))
                .collect()
        };
        let elapsed = started.elapsed();
        assert!(elapsed < HANG, "the map ended ({elapsed:?})");
        assert_eq!(results.last(), Some(&Err(MapError::Timeout)));
        assert_eq!(
            results.iter().filter(|r| r.is_err()).count(),
            1,
            "one timeout, then the end"
        );
        assert!(results.len() > 1, "some items ran before the deadline");
    }
}

#[test]
fn dropping_a_default_map_cancels_what_has_not_started() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let (r, g) = (ran.clone(), gate.clone());
    let mut it = pool.map(
        move |i: u32| {
            r.fetch_add(1, Ordering::SeqCst);
            if i > 0 {
                g.pass();
            }
            i
        },
        0..10_000,
    );
    assert_eq!(it.next(), Some(Ok(0)));
    drop(it); // the chunk after item 0 may be running (on the gate); the rest are queued
    gate.open();
    pool.shutdown();
    let ran = ran.load(Ordering::SeqCst);
    assert!(ran < 100, "{ran} items ran after the drop");
}

#[test]
fn an_endless_input_is_read_ahead_by_a_bounded_amount() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let first: Vec<u64> = threads()
        .map(|x| x + 1, input)
        .take(50_000)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first.len(), 50_000);
    assert_eq!(first[49_999], 50_000);
    // At most the buffer's chunks beyond what was taken, and a chunk is at most 65,536
    // items; in practice a few thousand.
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= 50_000 + 6 * 65_536,
        "read {pulled} items for 50,000 results"
    );
}

fn expected(items: &[(u32, bool)]) -> Vec<Result<u32, ()>> {
    items
        .iter()
        .map(|&(x, fails)| {
            if fails {
                Err(())
            } else {
                Ok(x.wrapping_mul(7))
            }
        })
        .collect()
}

fn outcome(r: Result<u32, MapError>, item: u32) -> Result<u32, ()> {
    match r {
        Ok(v) => Ok(v),
        Err(MapError::Task(TaskError::Panicked(m))) => {
            assert!(m.contains(&format!("item {item} fails")), "{m}");
            Err(())
        }
        Err(other) => panic!("item {item}: {other:?}"),
    }
}

/// `map` and `map_unordered` through the `Executor` trait equal the sequential results.
fn same_as_sequential(ex: &impl Executor, items: &[(u32, bool)]) -> Result<(), TestCaseError> {
    let want = expected(items);
    let got: Vec<_> = ex
        .map_fn(maybe_fail, items.to_vec())
        .zip(items)
        .map(|(r, &(x, _))| outcome(r, x))
        .collect();
    prop_assert_eq!(&got, &want);
    // The collecting sink: every value, or the first item's error.
    let collected = ex.map_fn(maybe_fail, items.to_vec()).try_collect_vec();
    match want.iter().position(Result::is_err) {
        None => prop_assert_eq!(
            collected.unwrap(),
            want.iter().map(|r| r.unwrap()).collect::<Vec<_>>()
        ),
        Some(first) => prop_assert_eq!(outcome(collected.map(|_| 0), items[first].0), Err(())),
    }
    let mut un: Vec<(usize, Result<u32, ()>)> = ex
        .map_unordered_fn(maybe_fail, items.to_vec())
        .with_index()
        .map(|(i, r)| (i, outcome(r, items[i].0)))
        .collect();
    un.sort_by_key(|(i, _)| *i);
    prop_assert_eq!(un.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn map_equals_the_sequential_results_on_the_thread_pool(
        items in proptest::collection::vec((any::<u32>(), proptest::bool::weighted(0.02)), 0..4_000)
    ) {
        same_as_sequential(threads(), &items)?;
    }

    #[test]
    fn map_equals_the_sequential_results_on_the_process_pool(
        items in proptest::collection::vec((any::<u32>(), proptest::bool::weighted(0.02)), 0..4_000)
    ) {
        same_as_sequential(processes(), &items)?;
    }
}

#[test]
fn try_collect_vec_ends_at_the_deadline_or_the_first_error_and_cancels_the_rest() {
    // An endless input: only the deadline ends it.
    let started = Instant::now();
    let slow = |x: u64| {
        std::thread::sleep(Duration::from_millis(2));
        x
    };
    let got = threads()
        .map(slow, 0u64..)
        .timeout(Duration::from_millis(200))
        .try_collect_vec();
    assert_eq!(got, Err(MapError::Timeout));
    assert!(started.elapsed() < HANG, "the map ended");

    // The first error in input order comes back, and what had not started is cancelled.
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let got = pool
        .map(
            move |i: u32| {
                r.fetch_add(1, Ordering::SeqCst);
                assert!(i != 3, "item {i} fails");
                std::thread::sleep(Duration::from_millis(1));
                i
            },
            0..10_000,
        )
        .try_collect_vec();
    assert!(
        matches!(&got, Err(MapError::Task(TaskError::Panicked(m))) if m.contains("item 3 fails")),
        "{got:?}"
    );
    pool.shutdown();
    let ran = ran.load(Ordering::SeqCst);
    assert!(ran < 1_000, "{ran} items ran after the first error");
}
