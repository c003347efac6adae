//! `as_completed`: completion order, keys, timeouts, pushing while iterating, `Stream`.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::HANG;
use concurrent_futures::{
    Future, Promise, TaskError, ThreadPoolExecutor, TimeoutError, as_completed,
};
use futures::StreamExt;

fn promises(n: usize) -> (Vec<Promise<usize>>, Vec<Future<usize>>) {
    (0..n).map(|_| Promise::new()).unzip()
}

#[test]
fn yields_in_completion_order() {
    let (ps, fs) = promises(4);
    let mut it = as_completed(fs).timeout(HANG);
    for i in [2, 0, 3, 1] {
        ps[i].set_result(i).unwrap();
        assert_eq!(it.next().unwrap().unwrap().result(), Ok(i));
    }
    assert!(it.next().is_none());
}

#[test]
fn futures_already_done_come_first() {
    let (ps, fs) = promises(3);
    ps[2].set_result(2).unwrap();
    ps[1].set_result(1).unwrap();
    let mut it = as_completed(fs);
    let first: Vec<_> = (0..2)
        .map(|_| it.next().unwrap().result().unwrap())
        .collect();
    assert_eq!(first, [1, 2], "done ones first, in the order given");
    ps[0].set_result(0).unwrap();
    assert_eq!(it.next().unwrap().result(), Ok(0));
    assert!(it.next().is_none());
}

#[test]
fn each_future_is_yielded_exactly_once() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(4)
        .build()
        .unwrap();
    let futs: Vec<_> = (0..2000).map(|i| pool.submit(move || i).unwrap()).collect();
    let it = as_completed(futs);
    assert_eq!(it.len(), 2000);
    let mut seen: Vec<i32> = it.map(|f| f.result().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..2000).collect::<Vec<_>>());
}

#[test]
fn keys_ride_along_with_their_futures() {
    let pool = ThreadPoolExecutor::new();
    let urls = ["a", "bb", "ccc", "dddd"];
    let pairs: Vec<_> = urls
        .iter()
        .map(|&u| (u.to_string(), pool.submit(move || u.len()).unwrap()))
        .collect();
    let mut n = 0;
    for (url, fut) in as_completed(pairs) {
        assert_eq!(fut.result().unwrap(), url.len());
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn works_on_references_and_shared_futures() {
    let (ps, fs) = promises(2);
    for (i, p) in ps.iter().enumerate() {
        p.set_result(i).unwrap();
    }
    assert_eq!(as_completed(&fs).count(), 2);
    let shared: Vec<_> = fs.into_iter().map(Future::share).collect();
    let total: usize = as_completed(shared.clone())
        .map(|f| *f.result().unwrap())
        .sum();
    assert_eq!(total, 1);
}

#[test]
fn timeout_yields_an_error_once_and_leaves_the_rest_recoverable() {
    let (ps, fs) = promises(3);
    ps[1].set_result(1).unwrap();
    let mut it = as_completed(fs).timeout(Duration::from_millis(30));
    assert_eq!(it.next().unwrap().unwrap().result(), Ok(1));
    assert_eq!(it.next().unwrap().unwrap_err(), TimeoutError);
    assert!(it.next().is_none(), "iteration ends after the timeout");
    let left = it.into_remaining();
    assert_eq!(left.len(), 2);
    ps[0].set_result(0).unwrap();
    ps[2].set_result(2).unwrap();
    let rest: Vec<_> = left.into_iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(
        rest,
        [0, 2],
        "unfinished futures still work after the timeout"
    );
}

#[test]
fn futures_can_be_added_while_iterating() {
    let pool = ThreadPoolExecutor::new();
    let mut it = as_completed(vec![pool.submit(|| 1u64).unwrap()]);
    let mut total = 0;
    while let Some(fut) = it.next() {
        let depth = fut.result().unwrap();
        total += 1;
        if depth < 5 {
            it.push(pool.submit(move || depth + 1).unwrap());
            it.push(pool.submit(move || depth + 1).unwrap());
        }
    }
    assert_eq!(total, 31, "a binary tree of depth 5");
}

#[test]
fn empty_input_ends_at_once() {
    assert!(as_completed(Vec::<Future<()>>::new()).next().is_none());
    assert!(
        as_completed(Vec::<Future<()>>::new())
            .timeout(HANG)
            .next()
            .is_none()
    );
}

#[test]
fn cancel_wakes_as_completed() {
    // CPython's as_completed hangs on futures cancelled after it started (python/cpython#87893).
    let (_ps, fs) = promises(1);
    let shared = fs.into_iter().next().unwrap().share();
    let s = shared.clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        s.cancel()
    });
    let mut it = as_completed([shared]).timeout(HANG);
    let fut = it.next().unwrap().unwrap();
    assert!(canceller.join().unwrap());
    assert_eq!(fut.result(), Err(TaskError::Cancelled));
}

#[test]
fn completions_from_many_threads_are_all_seen() {
    let (ps, fs) = promises(64);
    let ps = Arc::new(ps);
    let setters: Vec<_> = (0..4)
        .map(|t| {
            let ps = ps.clone();
            thread::spawn(move || {
                for i in (t..64).step_by(4) {
                    ps[i].set_result(i).unwrap();
                }
            })
        })
        .collect();
    let mut got: Vec<_> = as_completed(fs)
        .timeout(HANG)
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    for s in setters {
        s.join().unwrap();
    }
    got.sort_unstable();
    assert_eq!(got, (0..64).collect::<Vec<_>>());
}

#[test]
fn is_a_stream_for_async_code() {
    let pool = ThreadPoolExecutor::new();
    let futs: Vec<_> = (0..50u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    let mut got: Vec<u32> = futures::executor::block_on(
        as_completed(futs)
            .into_stream()
            .then(|f| async move { f.await.unwrap() })
            .collect(),
    );
    got.sort_unstable();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn dropping_the_iterator_early_releases_the_futures() {
    let (ps, fs) = promises(3);
    {
        let mut it = as_completed(fs);
        ps[0].set_result(0).unwrap();
        drop(it.next().unwrap());
    }
    // Completing the rest after the iterator is gone must not touch it.
    ps[1].set_result(1).unwrap();
    ps[2].set_result(2).unwrap();
}

#[test]
fn the_same_future_given_twice_is_yielded_once() {
    let (ps, fs) = promises(2);
    let order: Vec<usize> = [&fs[0], &fs[1], &fs[0]]
        .into_iter()
        .map(|f| f.id())
        .collect();
    assert_eq!(order.len(), 3);
    let mut it = as_completed([&fs[0], &fs[1], &fs[0]]);
    assert_eq!(
        it.remaining(),
        2,
        "a duplicate is watched once, as Python's set(fs)"
    );
    ps[1].set_result(1).unwrap();
    ps[0].set_result(0).unwrap();
    let yielded: Vec<usize> = it.by_ref().map(|f| f.id()).collect();
    assert_eq!(yielded, [fs[1].id(), fs[0].id()]);

    // Clones of one shared future are one future too, also when pushed later.
    let (p, f) = Promise::<u8>::new();
    let shared = f.share();
    let mut it = as_completed([shared.clone(), shared.clone()]);
    it.push(shared.clone());
    assert_eq!(it.remaining(), 1);
    p.set_result(7).unwrap();
    assert_eq!(it.count(), 1);
}

#[test]
fn a_yielded_future_pushed_again_is_yielded_again() {
    let (p, f) = Promise::<u8>::new();
    p.set_result(1).unwrap();
    let shared = f.share();
    let mut it = as_completed([shared.clone()]);
    assert!(it.next().is_some());
    it.push(shared);
    assert!(it.next().is_some());
    assert!(it.next().is_none());

    // Owned futures skip the duplicate check (one cannot be given twice); pushing one back
    // still watches it again, also while it is pending, keyed pairs included.
    let (p, f) = Promise::<u8>::new();
    let mut it = as_completed([("k", f)]);
    let (q, g) = Promise::<u8>::new();
    it.push(("j", g));
    q.set_result(2).unwrap();
    let (key, g) = it.next().unwrap();
    assert_eq!(key, "j");
    it.push((key, g));
    assert_eq!(it.remaining(), 2);
    p.set_result(1).unwrap();
    let mut keys: Vec<&str> = it.map(|(k, _)| k).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["j", "k"]);
}

#[test]
fn remaining_futures_come_back_in_the_order_given_after_slots_are_reused() {
    let (ps, fs) = promises(4);
    let ids: Vec<usize> = fs.iter().map(Future::id).collect();
    let mut it = as_completed(fs);
    ps[1].set_result(1).unwrap();
    assert_eq!(it.next().unwrap().id(), ids[1]);
    let (_q, late) = Promise::new();
    let late_id = late.id();
    it.push(late); // takes the freed slot
    let left: Vec<usize> = it.into_remaining().iter().map(Future::id).collect();
    assert_eq!(left, [ids[0], ids[2], ids[3], late_id]);
    drop(ps);
}

#[test]
fn the_timeout_form_bounds_its_length() {
    let (ps, fs) = promises(3);
    let mut it = as_completed(fs).timeout(HANG);
    assert_eq!(it.size_hint(), (1, Some(3)));
    ps[0].set_result(0).unwrap();
    assert!(it.next().unwrap().is_ok());
    assert_eq!(it.size_hint(), (1, Some(2)));
    drop(ps);
}
