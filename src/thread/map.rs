//! The thread pool's [`map`](ThreadPoolExecutor::map) and
//! [`map_unordered`](ThreadPoolExecutor::map_unordered): the input side of the crate's lazy
//! maps (`crate::map`), whose chunks run as ordinary tasks.

use std::sync::Arc;

use super::ThreadPoolExecutor;
use crate::map::{Map, MapUnordered, Source, run_chunk};

impl ThreadPoolExecutor {
    /// Applies `f` to every item and yields the results in input order: Python's
    /// `executor.map(fn, iterable)`, lazy and bounded.
    ///
    /// - The input is read lazily: at most [`buffer_size`](Map::buffer_size) tasks are in
    ///   flight (default: twice `max_workers`), so an endless iterator works (Python 3.14's
    ///   `buffersize`). Tasks are submitted from the first `next()` on, so the settings apply
    ///   to all of them (Python submits at the call).
    /// - Items are batched per task by size measured as results come back: cheap items in
    ///   growing chunks, slow ones one per task (Python picks `len / (4 * workers)` for its
    ///   process pool and ignores `chunksize` on threads). [`chunk_size`](Map::chunk_size)
    ///   pins a size.
    /// - Each item is a `Result`: a panic fails that item only, the rest still run
    ///   (CPython's map stops at the first error, python/cpython#108518).
    /// - [`Map::timeout`] sets a deadline measured from this call; when it passes, the tasks
    ///   in flight are cancelled and the iterator yields [`MapError::Timeout`](crate::MapError::Timeout) once.
    /// - Dropping the iterator cancels the tasks that have not started.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let squares: Vec<u64> = pool
    ///     .map(|x: u64| x * x, 0..)            // an endless input is fine
    ///     .timeout(Duration::from_secs(60))
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<'a, F, I, T>(&self, f: F, items: I) -> Map<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: Send + 'a,
        I::Item: Send + 'static,
        T: Send + 'static,
    {
        Map::new(self.source(f, items), 2 * self.max_workers())
    }

    /// Like [`map`](Self::map), but yields results as they finish, not in input order:
    /// Python's `Pool.imap_unordered`. The same buffer and timeout rules apply.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let mut lens: Vec<usize> = pool
    ///     .map_unordered(|s: &str| s.len(), ["a", "bbb", "cc"])
    ///     .collect::<Result<_, _>>()?;
    /// lens.sort();
    /// assert_eq!(lens, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_unordered<'a, F, I, T>(&self, f: F, items: I) -> MapUnordered<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: Send + 'a,
        I::Item: Send + 'static,
        T: Send + 'static,
    {
        MapUnordered::new(self.source(f, items), 2 * self.max_workers())
    }

    /// The input side of a map: pulls the next item and submits it.
    fn source<'a, F, I, T>(&self, f: F, items: I) -> Source<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: Send + 'a,
        I::Item: Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        let f = Arc::new(f);
        crate::map::source(items.into_iter(), move |batch| {
            let f = f.clone();
            shared
                .submit(move || run_chunk(&*f, batch), None)
                .map_err(|e| Arc::from(e.to_string()))
        })
    }
}
