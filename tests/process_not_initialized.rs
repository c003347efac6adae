//! A program that forgot `init()` gets a typed error, never a fork bomb or a second `main`.
#![cfg(all(unix, feature = "process"))]

use concurrent_futures::{BuildError, ProcessPoolExecutor};

#[test]
fn building_without_init_is_refused() {
    let err = ProcessPoolExecutor::builder().build().unwrap_err();
    assert_eq!(err, BuildError::NotInitialized);
    assert!(err.to_string().contains("concurrent_futures::init()"));
    // What `main() -> Result<(), Box<dyn Error>>` prints is the Debug form: it says too.
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(
        format!("Error: {boxed:?}").contains("call concurrent_futures::init()"),
        "{boxed:?}"
    );
}

#[test]
fn new_without_init_panics_with_what_to_do() {
    let panic = std::panic::catch_unwind(ProcessPoolExecutor::new).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("NotInitialized: call concurrent_futures::init()"),
        "{message}"
    );
}
