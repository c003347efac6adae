//! The `lock` module: each type against Python's `threading` semantics.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::HANG;
use concurrent_futures::lock::{
    Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Event, Lock, OverReleaseError, RLock,
    RwLock, Semaphore, TimeoutError,
};

#[test]
fn lock_serialises_updates_from_many_threads() {
    let lock = Arc::new(Lock::new(0u64));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let lock = lock.clone();
            thread::spawn(move || {
                for _ in 0..10_000 {
                    *lock.lock() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*lock.lock(), 80_000);
}

#[test]
fn lock_timeout_try_lock_and_with() {
    let lock = Arc::new(Lock::new(vec![1]));
    let held = lock.lock();
    let l = lock.clone();
    let other = thread::spawn(move || {
        (
            l.try_lock().is_none(),
            l.lock_timeout(Duration::from_millis(5)).err(),
        )
    });
    assert_eq!(other.join().unwrap(), (true, Some(TimeoutError)));
    assert!(lock.is_locked());
    drop(held);
    assert!(lock.lock_timeout(HANG).is_ok());
    assert_eq!(
        lock.with(|v| {
            v.push(2);
            v.len()
        }),
        2
    );
}

#[test]
fn a_panic_while_holding_a_lock_releases_it() {
    let lock = Arc::new(Lock::new(0));
    let l = lock.clone();
    let _ = thread::spawn(move || {
        let _g = l.lock();
        panic!("while locked");
    })
    .join();
    assert!(!lock.is_locked(), "no poisoning: the lock is usable");
    *lock.lock() += 1;
}

#[test]
fn rlock_is_reentrant_but_exclusive_across_threads() {
    let lock = Arc::new(RLock::new(std::cell::Cell::new(0)));
    let outer = lock.lock();
    let inner = lock.lock();
    inner.set(1);
    let l = lock.clone();
    let blocked = thread::spawn(move || l.lock_timeout(Duration::from_millis(5)).is_err());
    assert!(blocked.join().unwrap());
    drop((inner, outer));
    let l = lock.clone();
    assert_eq!(
        thread::spawn(move || l.with(|c| c.get())).join().unwrap(),
        1
    );
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    let lock = Arc::new(RwLock::new(5));
    let r1 = lock.read();
    let r2 = lock.try_read().unwrap();
    assert_eq!(*r1 + *r2, 10);
    let l = lock.clone();
    assert!(
        thread::spawn(move || l.write_timeout(Duration::from_millis(5)).is_err())
            .join()
            .unwrap()
    );
    drop((r1, r2));
    *lock.write() = 6;
    let w = lock.write();
    let l = lock.clone();
    assert!(
        thread::spawn(move || l.read_timeout(Duration::from_millis(5)).is_err())
            .join()
            .unwrap()
    );
    drop(w);
    assert_eq!(*lock.read(), 6);
}

#[test]
fn condition_wait_for_sees_the_predicate_come_true() {
    let cond = Arc::new(Condition::new(0));
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let cond = cond.clone();
            thread::spawn(move || {
                for _ in 0..100 {
                    *cond.lock() += 1;
                    cond.notify_all();
                }
            })
        })
        .collect();
    let mut g = cond.lock();
    assert!(g.wait_for(|n| *n == 400, Some(HANG)));
    drop(g);
    for p in producers {
        p.join().unwrap();
    }
}

#[test]
fn condition_wait_for_times_out_false_and_checks_first() {
    let cond = Condition::new(false);
    let mut g = cond.lock();
    assert!(!g.wait_for(|ready| *ready, Some(Duration::from_millis(5))));
    *g = true;
    assert!(
        g.wait_for(|ready| *ready, Some(Duration::ZERO)),
        "predicate checked before waiting"
    );
    assert!(!g.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn condition_notify_n_wakes_that_many() {
    let cond = Arc::new(Condition::new(0usize));
    let woke = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (cond, woke, waiting) = (cond.clone(), woke.clone(), waiting.clone());
            thread::spawn(move || {
                let mut g = cond.lock();
                waiting.fetch_add(1, Ordering::SeqCst);
                g.wait_for(|go| *go > 0, Some(HANG));
                *g -= 1;
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    while waiting.load(Ordering::SeqCst) < 3 {
        thread::yield_now();
    }
    *cond.lock() = 3;
    let mut woken = 0;
    while woke.load(Ordering::SeqCst) < 3 {
        woken += cond.notify(3);
        thread::yield_now();
    }
    assert!(woken >= 1);
    for w in waiters {
        w.join().unwrap();
    }
}

#[test]
fn semaphore_bounds_concurrency() {
    let sem = Arc::new(Semaphore::new(2));
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (sem, live, peak) = (sem.clone(), live.clone(), peak.clone());
            thread::spawn(move || {
                for _ in 0..50 {
                    let _permit = sem.acquire();
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    thread::yield_now();
                    live.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 2);
    assert_eq!(sem.available(), 2);
}

#[test]
fn semaphore_timeouts_and_manual_release() {
    let sem = Semaphore::new(1);
    let p = sem.try_acquire().unwrap();
    assert!(sem.try_acquire().is_none());
    assert_eq!(
        sem.acquire_timeout(Duration::from_millis(5)).err(),
        Some(TimeoutError)
    );
    drop(p);
    sem.acquire().forget();
    assert_eq!(sem.available(), 0);
    sem.release(3); // an unbounded semaphore may grow, as in Python
    assert_eq!(sem.available(), 3);
}

#[test]
fn release_wakes_a_blocked_acquire() {
    let sem = Arc::new(Semaphore::new(0));
    let s = sem.clone();
    let waiter = thread::spawn(move || s.acquire_timeout(HANG).map(|p| p.forget()).is_ok());
    thread::sleep(Duration::from_millis(5));
    sem.release(1);
    assert!(waiter.join().unwrap());
}

#[test]
fn bounded_semaphore_refuses_over_release() {
    let sem = BoundedSemaphore::new(2);
    assert_eq!(sem.release(1), Err(OverReleaseError));
    sem.acquire().forget();
    sem.acquire().forget();
    assert_eq!(sem.release(3), Err(OverReleaseError), "all or nothing");
    assert_eq!(sem.available(), 0);
    assert_eq!(sem.release(2), Ok(()));
    assert_eq!(sem.available(), 2);
    let p = sem.acquire_timeout(HANG).unwrap();
    drop(p);
    assert_eq!(sem.available(), 2);
}

#[test]
fn event_set_clear_wait() {
    let ev = Arc::new(Event::new());
    assert!(!ev.wait_timeout(Duration::from_millis(1)));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_timeout(HANG))
        })
        .collect();
    ev.set();
    assert!(waiters.into_iter().all(|w| w.join().unwrap()));
    ev.clear();
    assert!(!ev.is_set());
    assert!(!ev.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn barrier_releases_all_parties_round_after_round() {
    let parties = 4;
    let barrier = Arc::new(Barrier::new(parties).with_timeout(HANG));
    let handles: Vec<_> = (0..parties)
        .map(|_| {
            let b = barrier.clone();
            thread::spawn(move || (0..50).map(|_| b.wait().unwrap()).collect::<Vec<_>>())
        })
        .collect();
    let rounds: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for round in 0..50 {
        let mut idx: Vec<usize> = rounds.iter().map(|r| r[round]).collect();
        idx.sort_unstable();
        assert_eq!(idx, (0..parties).collect::<Vec<_>>(), "round {round}");
    }
}

#[test]
fn barrier_action_runs_once_per_round() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let barrier = Arc::new(Barrier::new(3).with_action(move || {
        r.fetch_add(1, Ordering::SeqCst);
    }));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let b = barrier.clone();
            thread::spawn(move || {
                for _ in 0..10 {
                    b.wait_timeout(HANG).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 10);
}

#[test]
fn barrier_timeout_breaks_it_for_everyone() {
    let barrier = Arc::new(Barrier::new(3));
    let b = barrier.clone();
    let patient = thread::spawn(move || b.wait_timeout(HANG));
    while barrier.n_waiting() < 1 {
        thread::yield_now();
    }
    assert_eq!(
        barrier.wait_timeout(Duration::from_millis(5)),
        Err(BrokenBarrierError)
    );
    assert_eq!(patient.join().unwrap(), Err(BrokenBarrierError));
    assert!(barrier.is_broken());
    assert_eq!(barrier.wait(), Err(BrokenBarrierError), "stays broken");
    barrier.reset();
    assert!(!barrier.is_broken());
}

#[test]
fn barrier_abort_and_reset_wake_waiters_with_an_error() {
    for how in ["abort", "reset"] {
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        let waiter = thread::spawn(move || b.wait_timeout(HANG));
        while barrier.n_waiting() < 1 {
            thread::yield_now();
        }
        if how == "abort" {
            barrier.abort();
        } else {
            barrier.reset();
        }
        assert_eq!(waiter.join().unwrap(), Err(BrokenBarrierError), "{how}");
        if how == "reset" {
            assert!(!barrier.is_broken(), "reset leaves the barrier usable");
            let b = barrier.clone();
            let other = thread::spawn(move || b.wait_timeout(HANG));
            assert!(barrier.wait_timeout(HANG).is_ok());
            assert!(other.join().unwrap().is_ok());
        }
    }
}

#[test]
fn barrier_action_panic_breaks_it() {
    let barrier = Barrier::new(1).with_action(|| panic!("action failed"));
    assert_eq!(barrier.wait(), Err(BrokenBarrierError));
    assert!(barrier.is_broken());
}

#[test]
#[should_panic(expected = "at least one party")]
fn barrier_needs_a_party() {
    let _ = Barrier::new(0);
}
