//! The README's Python-to-Rust rows that are more than a method name, written out as they
//! appear there, so that a row that stops compiling fails here.

use std::collections::HashMap;
use std::time::Duration;

use concurrent_futures::{ReturnWhen, SharedFuture, ThreadPoolExecutor, as_completed, wait};

fn load(url: &str) -> usize {
    url.len()
}

fn urls() -> Vec<String> {
    ["a.test/1", "b.test/22", "c.test/333"]
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn dict_of_futures_as_pairs() {
    // futs = {ex.submit(load, u): u for u in urls}; for f in as_completed(futs): futs[f]
    let ex = ThreadPoolExecutor::new();
    let mut seen = Vec::new();
    for (u, fut) in as_completed(
        urls()
            .into_iter()
            .map(|u| (u.clone(), ex.submit(move || load(&u)).unwrap())),
    ) {
        assert_eq!(fut.result().unwrap(), u.len());
        seen.push(u);
    }
    seen.sort();
    assert_eq!(seen, urls());
}

#[test]
fn dict_of_futures_as_indexed_map() {
    let ex = ThreadPoolExecutor::new();
    let urls = urls();
    let mut n = 0;
    for (i, len) in ex
        .map_unordered(|u: String| load(&u), urls.clone())
        .with_index()
    {
        assert_eq!(len.unwrap(), urls[i].len());
        n += 1;
    }
    assert_eq!(n, urls.len());
}

#[test]
fn shared_futures_as_map_keys_waited_on_in_place() {
    // futures as dict keys, read in many places
    let ex = ThreadPoolExecutor::new();
    #[allow(clippy::mutable_key_type)] // hashed by identity, which never changes
    let futs: HashMap<SharedFuture<usize>, String> = urls()
        .into_iter()
        .map(|u| {
            let v = u.clone();
            (ex.submit(move || load(&v)).unwrap().share(), u)
        })
        .collect();
    for fut in as_completed(futs.keys()) {
        assert_eq!(*fut.result().unwrap(), futs[fut].len());
    }
    let (done, not_done) = wait(
        futs.keys(),
        Some(Duration::from_secs(30)),
        ReturnWhen::AllCompleted,
    );
    assert_eq!((done.len(), not_done.len()), (3, 0));
}

#[test]
fn as_completed_with_a_timeout_yields_results() {
    // for f in as_completed(fs, timeout=30):
    let ex = ThreadPoolExecutor::new();
    let fs: Vec<_> = (0..3).map(|i| ex.submit(move || i).unwrap()).collect();
    let mut total = 0;
    for f in as_completed(fs).timeout(Duration::from_secs(30)) {
        total += f.unwrap().result().unwrap();
    }
    assert_eq!(total, 3);
}

#[test]
fn map_with_timeout_buffer_and_chunks() {
    // ex.map(fn, xs, timeout=30, buffersize=16); Pool.map(fn, xs, chunksize=100)
    let ex = ThreadPoolExecutor::new();
    let a: Vec<u32> = ex
        .map(|x: u32| x + 1, 0..100)
        .timeout(Duration::from_secs(30))
        .buffer_size(16)
        .collect::<Result<_, _>>()
        .unwrap();
    let b: Vec<u32> = ex
        .map(|x: u32| x + 1, 0..1000)
        .chunk_size(100)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!((a.len(), b.len(), a[99], b[999]), (100, 1000, 100, 1000));
}
