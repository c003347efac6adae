//! [`CallbackPool`]: where the done-callbacks of futures run when the thread that completes
//! them must never run user code (a process pool's managers, a Redis client's reader and
//! writer). A callback that waits on its executor, or shuts it down, would otherwise block
//! the very thread that completes what it waits for. One implementation for both executors.

use std::sync::Arc;
use std::time::Duration;

use crate::context::CallbackSink;
use crate::error::SubmitError;
use crate::thread::ThreadPoolExecutor;

/// How many callbacks of one executor's futures may block at once before the next waits.
const CALLBACK_THREADS: usize = 64;

/// An executor's callback threads: started as callbacks come, retired after a second idle.
pub(crate) struct CallbackPool(ThreadPoolExecutor);

impl CallbackPool {
    /// A pool whose threads are named `{prefix}_{n}`.
    pub(crate) fn new(prefix: String) -> Arc<CallbackPool> {
        let pool = ThreadPoolExecutor::builder()
            .max_workers(CALLBACK_THREADS)
            .idle_timeout(Duration::from_secs(1))
            .thread_name_prefix(prefix)
            .build()
            .expect("a valid thread pool configuration");
        Arc::new(CallbackPool(pool))
    }

    /// Where a completing thread sends callbacks (`context::defer_callbacks`). Once the pool
    /// is shut down or gone, they run on the completing thread rather than be lost.
    pub(crate) fn sink(self: &Arc<Self>) -> CallbackSink {
        let pool = Arc::downgrade(self);
        Arc::new(move |callbacks: Box<dyn FnOnce() + Send>| {
            let refused = match pool.upgrade() {
                Some(pool) => pool.0.submit(callbacks).err().map(SubmitError::into_inner),
                None => Some(callbacks),
            };
            if let Some(callbacks) = refused {
                callbacks();
            }
        })
    }

    /// Waits for the callbacks handed out so far; later ones run where they are completed.
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))] // Redis clients never wait
    pub(crate) fn shutdown(&self) {
        self.0.shutdown();
    }
}
