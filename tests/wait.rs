//! `wait`: FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED, timeouts, cancellation.

mod common;

use std::thread;
use std::time::Duration;

use common::HANG;
use concurrent_futures::{Future, Promise, ReturnWhen, ThreadPoolExecutor, wait};

fn promises(n: usize) -> (Vec<Promise<usize>>, Vec<Future<usize>>) {
    (0..n).map(|_| Promise::new()).unzip()
}

#[test]
fn all_completed_returns_everything_done() {
    let pool = ThreadPoolExecutor::new();
    let futs: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
    let (done, not_done) = wait(futs, None, ReturnWhen::AllCompleted);
    assert_eq!(done.len(), 20);
    assert!(not_done.is_empty());
    let values: Vec<_> = done.into_iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(values, (0..20).collect::<Vec<_>>(), "order given is kept");
}

#[test]
fn first_completed_returns_as_soon_as_one_is_done() {
    let (mut ps, fs) = promises(3);
    let p = ps.remove(1); // the others stay alive (a dropped promise completes its future)
    let p1 = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        p.set_result(1).unwrap();
    });
    let (done, not_done) = wait(fs, Some(HANG), ReturnWhen::FirstCompleted);
    assert_eq!(done.len(), 1);
    assert_eq!(not_done.len(), 2);
    p1.join().unwrap();
    assert_eq!(done.into_iter().next().unwrap().result(), Ok(1));
}

#[test]
fn first_exception_returns_on_the_first_error() {
    let (ps, fs) = promises(3);
    ps[2].set_exception("boom").unwrap();
    let (done, not_done) = wait(fs, Some(HANG), ReturnWhen::FirstException);
    assert_eq!((done.len(), not_done.len()), (1, 2));
    drop(ps);
}

#[test]
fn first_exception_is_all_completed_without_errors_and_ignores_cancellation() {
    let (ps, fs) = promises(3);
    fs[0].cancel(); // a cancellation is not an exception
    ps[1].set_result(1).unwrap();
    let setter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        ps[2].set_result(2).unwrap();
        ps
    });
    let (done, not_done) = wait(fs, Some(HANG), ReturnWhen::FirstException);
    assert_eq!((done.len(), not_done.len()), (3, 0));
    setter.join().unwrap();
}

#[test]
fn first_exception_sees_a_panicking_task() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let gate = common::Gate::new();
    let g = gate.clone();
    let slow = pool
        .submit(move || {
            g.pass();
            0
        })
        .unwrap();
    let bad = pool.submit(|| -> i32 { panic!("x") }).unwrap();
    let (done, not_done) = wait(vec![slow, bad], Some(HANG), ReturnWhen::FirstException);
    assert_eq!((done.len(), not_done.len()), (1, 1));
    assert!(done[0].exception().unwrap().is_panic());
    gate.open();
}

#[test]
fn a_timeout_is_not_an_error() {
    let (_ps, fs) = promises(2);
    let (done, not_done) = wait(
        fs,
        Some(Duration::from_millis(10)),
        ReturnWhen::AllCompleted,
    );
    assert!(done.is_empty());
    assert_eq!(not_done.len(), 2);
}

#[test]
fn cancel_wakes_wait() {
    // CPython leaves wait() hanging here (python/cpython#92001).
    let (_ps, fs) = promises(1);
    let shared = fs.into_iter().next().unwrap().share();
    let s = shared.clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        s.cancel();
    });
    let (done, _) = wait([shared], None, ReturnWhen::AllCompleted);
    assert!(done[0].future().cancelled());
    canceller.join().unwrap();
}

#[test]
fn takes_references_and_pairs() {
    let (ps, fs) = promises(2);
    ps[0].set_result(0).unwrap();
    let (done, not_done) = wait(&fs, Some(Duration::ZERO), ReturnWhen::FirstCompleted);
    assert_eq!((done.len(), not_done.len()), (1, 1));
    let pairs: Vec<_> = fs.into_iter().enumerate().collect();
    let (done, _) = wait(pairs, Some(Duration::ZERO), ReturnWhen::AllCompleted);
    assert_eq!(done[0].0, 0);
}

#[test]
fn empty_input_returns_at_once() {
    for how in [
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::AllCompleted,
    ] {
        let (done, not_done) = wait(Vec::<Future<()>>::new(), None, how);
        assert!(done.is_empty() && not_done.is_empty());
    }
}

#[test]
fn repeated_timed_waits_on_the_same_futures() {
    // Each call registers and unregisters; nothing piles up or misfires.
    let (ps, fs) = promises(4);
    for _ in 0..200 {
        let (done, _) = wait(&fs, Some(Duration::ZERO), ReturnWhen::FirstCompleted);
        assert!(done.is_empty());
    }
    ps[3].set_result(3).unwrap();
    let (done, _) = wait(&fs, Some(HANG), ReturnWhen::FirstCompleted);
    assert_eq!(done.len(), 1);
}

#[test]
fn the_same_future_given_twice_counts_once() {
    let (ps, fs) = promises(2);
    ps[0].set_result(0).unwrap();
    let (done, not_done) = wait(
        [&fs[0], &fs[0], &fs[1], &fs[1]],
        Some(Duration::ZERO),
        ReturnWhen::AllCompleted,
    );
    assert_eq!(done.len(), 1);
    assert_eq!(not_done.len(), 1);
    drop(ps);
}
