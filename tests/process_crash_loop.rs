//! A pool whose new workers keep dying at start-up is marked broken instead of respawning
//! forever. This test binary's workers die at start once a marker file exists.
#![cfg(all(unix, feature = "process"))]

use std::path::PathBuf;

use concurrent_futures::{ProcessPoolExecutor, SubmitError, TaskError};

fn marker(parent: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cf-crash-loop-{parent}"))
}

/// The worker entry point of this binary, with a way to fail at start-up.
#[test]
fn concurrent_futures_worker() {
    if marker(&std::os::unix::process::parent_id().to_string()).exists() {
        std::process::exit(9);
    }
    concurrent_futures::init();
}

fn die(_: ()) -> u8 {
    std::process::exit(1)
}

fn one(_: ()) -> u8 {
    1
}

#[test]
fn a_crash_loop_breaks_the_pool() {
    concurrent_futures::init();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    assert_eq!(pool.submit(one, ()).unwrap().result(), Ok(1));
    let mark = marker(&std::process::id().to_string());
    std::fs::write(&mark, b"").unwrap();
    // The worker dies; every replacement dies at start-up from now on.
    assert!(matches!(
        pool.submit(die, ()).unwrap().result(),
        Err(TaskError::WorkerDied(_))
    ));
    let outcomes: Vec<_> = (0..3)
        .map(|_| pool.submit(one, ()).map(|f| f.result()))
        .collect();
    std::fs::remove_file(&mark).unwrap();
    assert!(
        matches!(outcomes[0], Ok(Err(TaskError::WorkerDied(_)))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Ok(Err(TaskError::BrokenExecutor(_)))),
        "{outcomes:?}"
    );
    assert!(pool.is_broken());
    assert!(matches!(
        pool.submit(one, ()),
        Err(SubmitError::Broken { .. })
    ));
}
