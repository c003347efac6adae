//! `ThreadPoolExecutor::map_slice`: results in order for every length, a borrowing closure,
//! a panic at any position (every value made is dropped exactly once, none leaks), a shut
//! down pool, a call from one of the pool's own workers, and zero-sized results.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use concurrent_futures::{MapError, TaskError, ThreadPoolExecutor};
use proptest::prelude::*;

fn pool() -> &'static ThreadPoolExecutor {
    static POOL: OnceLock<ThreadPoolExecutor> = OnceLock::new();
    POOL.get_or_init(|| {
        ThreadPoolExecutor::builder()
            .max_workers(3)
            .build()
            .unwrap()
    })
}

#[test]
fn results_come_in_input_order_for_every_length() {
    for n in [0usize, 1, 2, 3, 7, 12, 13, 100, 1_000, 65_537, 1_000_000] {
        let items: Vec<u64> = (0..n as u64).collect();
        let got = pool().map_slice(|x| x * 2 + 1, &items).unwrap();
        assert_eq!(got.len(), n);
        assert!(
            got.iter().copied().eq(items.iter().map(|x| x * 2 + 1)),
            "n = {n}"
        );
    }
}

#[test]
fn the_closure_borrows_from_the_caller() {
    let table: Vec<String> = (0..100).map(|i| format!("row {i}")).collect();
    let picks: Vec<usize> = (0..100).rev().collect();
    let got = pool().map_slice(|&i| table[i].as_str(), &picks).unwrap();
    assert_eq!(got[0], "row 99");
    assert_eq!(got[99], "row 0");
}

/// Counts the values alive, to check that a failed map drops every value it made, once.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(alive: &Arc<AtomicUsize>) -> Counted {
        alive.fetch_add(1, Ordering::SeqCst);
        Counted(alive.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn fail_at(n: usize, fails: &[usize]) -> (Result<Vec<Counted>, MapError>, Arc<AtomicUsize>) {
    let alive = Arc::new(AtomicUsize::new(0));
    let items: Vec<usize> = (0..n).collect();
    let out = pool().map_slice(
        |&i| {
            assert!(!fails.contains(&i), "item {i} fails");
            Counted::new(&alive)
        },
        &items,
    );
    (out, alive)
}

#[test]
fn a_panic_is_the_error_and_every_value_made_is_dropped_once() {
    for (n, fails) in [
        (1, vec![0]),
        (10, vec![0]),
        (10, vec![9]),
        (10_000, vec![5_000]),
        (10_000, vec![3, 9_999]),
    ] {
        let (out, alive) = fail_at(n, &fails);
        match out {
            Err(MapError::Task(TaskError::Panicked(m))) => {
                assert!(
                    fails.iter().any(|i| m.contains(&format!("item {i} fails"))),
                    "{m}"
                )
            }
            other => panic!("n = {n}: {:?}", other.map(|v| v.len())),
        }
        assert_eq!(alive.load(Ordering::SeqCst), 0, "n = {n}: values leaked");
    }
    // Without a failure every value is handed over, and dropped with the vector.
    let (out, alive) = fail_at(10_000, &[]);
    assert_eq!(alive.load(Ordering::SeqCst), 10_000);
    drop(out);
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}

#[test]
fn a_shut_down_pool_refuses_the_map() {
    let pool = ThreadPoolExecutor::new();
    pool.shutdown();
    let out = pool.map_slice(|x: &u8| *x, &[1, 2, 3]);
    assert!(matches!(out, Err(MapError::Refused(_))), "{out:?}");
    // Nothing to do needs no pool.
    assert_eq!(pool.map_slice(|x: &u8| *x, &[]), Ok(vec![]));
}

#[test]
fn a_worker_of_a_one_worker_pool_can_map_a_slice_on_its_own_pool() {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(1)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let fut = pool
        .submit(move || p.map_slice(|x: &u32| x + 1, &[1, 2, 3]))
        .unwrap();
    // The waiting worker runs the map's task itself instead of deadlocking.
    assert_eq!(fut.result().unwrap(), Ok(vec![2, 3, 4]));
}

#[test]
fn zero_sized_results_are_counted_too() {
    let items = vec![7u8; 1_000];
    let out = pool().map_slice(|_| (), &items).unwrap();
    assert_eq!(out.len(), 1_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The result equals the sequential one, or is a failing item's error with nothing left
    /// alive.
    #[test]
    fn map_slice_equals_the_sequential_results(
        items in proptest::collection::vec((any::<u32>(), proptest::bool::weighted(0.01)), 0..3_000)
    ) {
        let alive = Arc::new(AtomicUsize::new(0));
        let out = pool().map_slice(
            |&(x, fails)| {
                assert!(!fails, "value {x} fails");
                (x.wrapping_mul(7), Counted::new(&alive))
            },
            &items,
        );
        match out {
            Ok(values) => {
                prop_assert!(items.iter().all(|(_, fails)| !fails));
                prop_assert!(values.iter().map(|(v, _)| *v).eq(items.iter().map(|(x, _)| x.wrapping_mul(7))));
            }
            Err(MapError::Task(TaskError::Panicked(m))) => {
                prop_assert!(items.iter().any(|(x, fails)| *fails && m.contains(&format!("value {x} fails"))), "{}", m);
                prop_assert_eq!(alive.load(Ordering::SeqCst), 0);
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }
}
