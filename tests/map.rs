//! `map` and `map_unordered`: order, per-item errors, deadlines, laziness, cancellation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::{Gate, HANG};
use concurrent_futures::{MapError, TaskError, ThreadPoolExecutor};

#[test]
fn results_come_in_input_order() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(4)
        .build()
        .unwrap();
    let out: Vec<u64> = pool
        .map(
            |i: u64| {
                thread::sleep(Duration::from_micros((37 * i) % 500));
                i * 2
            },
            0..200,
        )
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, (0..200).map(|i| i * 2).collect::<Vec<_>>());
}

#[test]
fn one_failure_does_not_stop_the_rest() {
    let pool = ThreadPoolExecutor::new();
    let out: Vec<_> = pool
        .map(
            |i: u32| if i % 3 == 0 { panic!("bad {i}") } else { i },
            0..9,
        )
        .collect();
    assert_eq!(out.len(), 9);
    for (i, r) in out.into_iter().enumerate() {
        if i % 3 == 0 {
            assert_eq!(
                r,
                Err(MapError::Task(TaskError::Panicked(
                    format!("bad {i}").into()
                )))
            );
        } else {
            assert_eq!(r, Ok(i as u32));
        }
    }
}

#[test]
fn timeout_is_measured_from_the_call() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let mut it = pool
        .map(move |_: u32| g.pass(), 0..4)
        .timeout(Duration::from_millis(20));
    thread::sleep(Duration::from_millis(50)); // the deadline passes before we even look
    assert_eq!(it.next(), Some(Err(MapError::Timeout)));
    assert_eq!(it.next(), None);
    gate.open();
}

#[test]
fn a_timeout_cancels_what_has_not_started() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let (s, g) = (started.clone(), gate.clone());
    let results: Vec<_> = pool
        .map(
            move |_: u32| {
                s.fetch_add(1, Ordering::SeqCst);
                g.pass();
            },
            0..10,
        )
        .buffer_size(10)
        .timeout(Duration::from_millis(20))
        .collect();
    assert_eq!(results, [Err(MapError::Timeout)]);
    gate.open();
    pool.shutdown();
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "only the task already running ran"
    );
}

#[test]
fn an_endless_input_is_read_lazily() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let first: Vec<u64> = pool
        .map(|x| x + 1, input)
        .buffer_size(8)
        .chunk_size(1)
        .take(100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (1..=100).collect::<Vec<_>>());
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= 100 + 8,
        "read {pulled} items for 100 results with a buffer of 8"
    );
}

#[test]
fn no_more_than_buffer_size_tasks_are_in_flight() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(8)
        .build()
        .unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    let it = pool
        .map(
            move |i: usize| {
                let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_micros(200));
                l.fetch_sub(1, Ordering::SeqCst);
                i
            },
            0..200,
        )
        .buffer_size(3);
    assert_eq!(it.map(Result::unwrap).sum::<usize>(), 19_900);
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "{peak} tasks ran at once with a buffer of 3"
    );
}

#[test]
fn nothing_is_submitted_before_iteration_starts() {
    let pool = ThreadPoolExecutor::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let it = pool.map(
        move |x: u32| r.fetch_add(1, Ordering::SeqCst) + x as usize,
        0..10,
    );
    thread::sleep(Duration::from_millis(20));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(it.count(), 10);
    assert_eq!(ran.load(Ordering::SeqCst), 10);
}

#[test]
fn dropping_the_iterator_cancels_queued_tasks() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let (r, g) = (ran.clone(), gate.clone());
    let mut it = pool
        .map(
            move |i: u32| {
                r.fetch_add(1, Ordering::SeqCst);
                if i > 0 {
                    g.pass();
                }
            },
            0..20,
        )
        .buffer_size(20);
    assert_eq!(it.next(), Some(Ok(())));
    drop(it); // item 1 may be running (blocked on the gate); items 2.. are queued
    gate.open();
    pool.shutdown();
    assert!(
        ran.load(Ordering::SeqCst) <= 2,
        "queued items were cancelled"
    );
}

#[test]
fn chunks_keep_order_and_per_item_errors() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    for chunk in [1, 2, 7, 100, 5000] {
        let out: Vec<_> = pool
            .map(
                |i: u32| {
                    if i % 50 == 3 {
                        panic!("item {i}")
                    } else {
                        i * 2
                    }
                },
                0..1000,
            )
            .chunk_size(chunk)
            .collect();
        assert_eq!(out.len(), 1000, "chunk {chunk}");
        for (i, r) in out.iter().enumerate() {
            if i % 50 == 3 {
                assert!(
                    matches!(r, Err(MapError::Task(e)) if e.panic_message() == Some(&*format!("item {i}")))
                );
            } else {
                assert_eq!(*r, Ok(i as u32 * 2), "chunk {chunk}, item {i}");
            }
        }
    }
}

#[test]
fn chunked_unordered_yields_every_item() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let mut all: Vec<u32> = pool
        .map_unordered(|i: u32| i, 0..10_000)
        .chunk_size(64)
        .buffer_size(4)
        .map(Result::unwrap)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..10_000).collect::<Vec<_>>());
}

#[test]
fn a_chunk_cancelled_by_the_timeout_ends_the_map() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let out: Vec<_> = pool
        .map(
            move |i: u32| {
                if i >= 10 {
                    g.pass();
                    i
                } else {
                    i
                }
            },
            0..100,
        )
        .chunk_size(10)
        .timeout(Duration::from_millis(50))
        .collect();
    gate.open();
    assert_eq!(out.len(), 11, "{out:?}");
    assert!(out[..10].iter().all(Result::is_ok));
    assert_eq!(out[10], Err(MapError::Timeout));
}

#[test]
fn map_after_shutdown_reports_the_refusal_once() {
    let pool = ThreadPoolExecutor::new();
    pool.shutdown();
    let out: Vec<_> = pool.map(|x: u8| x, 0..5).collect();
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Err(MapError::Refused(r)) if r.contains("shutdown")));
}

#[test]
fn borrowed_input_iterators_work() {
    let pool = ThreadPoolExecutor::new();
    let words = [String::from("a"), String::from("bb")];
    let lens: Vec<usize> = pool
        .map(|w: String| w.len(), words.iter().cloned())
        .map(Result::unwrap)
        .collect();
    assert_eq!(lens, [1, 2]);
}

#[test]
fn unordered_yields_every_result_in_completion_order() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let mut it = pool.map_unordered(
        move |i: u32| {
            if i == 0 {
                g.pass();
            }
            i
        },
        0..2,
    );
    assert_eq!(it.next(), Some(Ok(1)), "item 1 finishes while item 0 waits");
    gate.open();
    assert_eq!(it.next(), Some(Ok(0)));
    assert_eq!(it.next(), None);

    let mut all: Vec<u32> = pool
        .map_unordered(|i: u32| i, 0..500)
        .map(Result::unwrap)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..500).collect::<Vec<_>>());
}

#[test]
fn unordered_timeout_and_errors() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let out: Vec<_> = pool
        .map_unordered(
            move |i: u32| match i {
                0 => panic!("zero"),
                1 => 1,
                _ => {
                    g.pass();
                    2
                }
            },
            0..3,
        )
        // Long enough for the panic of item 0 to be reported (a backtrace printed in a
        // debug build can take over 100 ms): only item 2 may meet the deadline.
        .timeout(Duration::from_secs(2))
        .collect();
    gate.open();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out.contains(&Ok(1)));
    assert!(
        out.iter()
            .any(|r| matches!(r, Err(MapError::Task(e)) if e.is_panic()))
    );
    assert_eq!(out.last(), Some(&Err(MapError::Timeout)));
    let _ = HANG;
}

#[test]
fn the_deadline_stops_reading_a_slow_input() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let slow_input = (0..40u32).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(100));
    });
    let out: Vec<_> = pool
        .map(|x: u32| x, slow_input)
        .timeout(Duration::from_millis(700))
        .collect();
    let pulled = pulled.load(Ordering::SeqCst);
    // Before the fix every one of the 40 items was read (4 s) and 39 yielded.
    assert!(pulled < 40, "the whole input was read: {pulled}");
    assert_eq!(out.last(), Some(&Err(MapError::Timeout)), "{out:?}");
    let oks = out.iter().filter(|r| r.is_ok()).count();
    assert_eq!(oks + 1, out.len());
    assert!(oks < pulled, "yielded {oks} of {pulled} items read");
}

#[test]
fn a_refused_chunk_yields_one_error_per_item() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    pool.shutdown();
    let out: Vec<_> = pool.map(|x: u8| x, 0..10).chunk_size(4).collect();
    assert_eq!(
        out.len(),
        4,
        "the four items taken for the refused chunk: {out:?}"
    );
    assert!(
        out.iter()
            .all(|r| matches!(r, Err(MapError::Refused(why)) if why.contains("shutdown")))
    );
}

#[test]
fn a_cancelled_chunk_yields_one_error_per_item() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let blocker = pool.submit(move || g.pass()).unwrap();
    let mut results = pool.map(|x: u32| x, 0..9).chunk_size(3);
    let canceller = {
        let pool_ref = &pool;
        thread::scope(|s| {
            let h = s.spawn(|| results.next());
            // The map's first chunks are queued behind the blocker: cancel them.
            thread::sleep(Duration::from_millis(50));
            pool_ref.shutdown_with(false, true);
            gate.open();
            h.join().unwrap()
        })
    };
    blocker.result().unwrap();
    let mut out = vec![canceller.unwrap()];
    out.extend(results);
    assert_eq!(out.len(), 9, "{out:?}");
    assert!(
        out[..3]
            .iter()
            .all(|r| *r == Err(MapError::Task(TaskError::Cancelled)))
    );
}

#[test]
fn unordered_with_index_names_every_item_once() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .build()
        .unwrap();
    let mut seen: Vec<(usize, Result<u32, MapError>)> = pool
        .map_unordered(
            |x: u32| {
                assert!(x % 7 != 3, "seven threes");
                x * 10
            },
            0..100u32,
        )
        .chunk_size(6)
        .with_index()
        .collect();
    seen.sort_by_key(|(i, _)| *i);
    assert_eq!(seen.len(), 100);
    for (i, r) in seen {
        if i % 7 == 3 {
            assert!(matches!(r, Err(MapError::Task(e)) if e.is_panic()));
        } else {
            assert_eq!(r, Ok(i as u32 * 10));
        }
    }
}

#[test]
fn size_hint_is_exact_over_a_sized_input_and_bounded_with_a_deadline() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let mut it = pool.map(|x: u32| x, 0..10).chunk_size(3);
    assert_eq!(it.size_hint(), (10, Some(10)));
    it.next().unwrap().unwrap();
    assert_eq!(it.size_hint(), (9, Some(9)));
    assert_eq!(it.by_ref().count(), 9);
    assert_eq!(it.size_hint(), (0, Some(0)));

    let mut it = pool.map_unordered(|x: u32| x, 0..10).chunk_size(4);
    assert_eq!(it.size_hint(), (10, Some(10)));
    it.next().unwrap().unwrap();
    assert_eq!(it.size_hint(), (9, Some(9)));
    let indexed = pool.map_unordered(|x: u32| x, 0..5).with_index();
    assert_eq!(indexed.size_hint(), (5, Some(5)));

    // With a deadline the map may end with its timeout error early.
    let timed = pool.map(|x: u32| x, 0..10).timeout(HANG);
    assert_eq!(timed.size_hint(), (1, Some(10)));
    // An endless input has no upper bound.
    let endless = pool.map(|x: u32| x, 0..);
    assert_eq!(endless.size_hint(), (usize::MAX, None));
}
