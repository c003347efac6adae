//! What the queue carries: a task as bytes plus the typed end that completes its future.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::codec::Postcard;
use crate::error::TaskError;
use crate::future::Promise;
use crate::map::Chunk;
use crate::outcome;

/// What a worker is told to run: the code to call (trampoline and function distances) and
/// the submitter's trace context, if a propagator made one (feature `tracing`).
pub(super) struct Target {
    pub(super) code: (i64, i64),
    pub(super) trace: Option<Arc<str>>,
}

impl Target {
    /// The bytes a TASK frame spends before the argument: the two distances, the trace
    /// context's length (`u16`) and the context.
    pub(super) fn header_len(&self) -> usize {
        18 + self.trace.as_deref().map_or(0, str::len)
    }
}

/// One task: what to run, its encoded argument, and where its answer goes.
pub(super) struct Job {
    pub(super) call: Target,
    pub(super) args: Vec<u8>,
    /// For a chunk of a map: where each item's encoding lies in `args` (after the length
    /// prefix), so that the items of a chunk whose worker died can be run again one by one.
    pub(super) items: Option<Vec<Range<usize>>>,
    /// The time limit of the task, or of each item of a chunk.
    pub(super) timeout: Option<Duration>,
    pub(super) sink: Box<dyn Sink>,
}

/// The typed end of a job: decodes the worker's answer into the caller's future.
pub(super) trait Sink: Send {
    /// Marks the future running; false if it was cancelled meanwhile.
    fn start(&self) -> bool;
    fn cancelled(&self) -> bool;
    fn cancel(&self);
    /// The identity of the future, as [`Future::id`](crate::Future::id) gives it.
    fn id(&self) -> usize;
    fn fail(self: Box<Self>, err: TaskError);
    /// The payload of a DONE frame answering the whole job.
    fn done(self: Box<Self>, bytes: &[u8]);
    /// A chunk run again item by item: for each item, the DONE payload of a one-item chunk
    /// or the error that item met.
    fn items(self: Box<Self>, outcomes: Vec<Result<Vec<u8>, TaskError>>);
}

/// The sink of a task submitted alone.
pub(super) struct One<R: Send + 'static>(pub(super) Promise<R>);

/// The sink of a chunk of a map.
pub(super) struct Many<R: Send + 'static>(pub(super) Promise<Chunk<R>>);

fn decode_result<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    outcome::decode::<Postcard, R>(bytes)
}

/// A chunk's results, each item's panic report becoming that item's error.
fn decode_chunk<R: DeserializeOwned>(bytes: &[u8]) -> Result<Chunk<R>, TaskError> {
    outcome::decode_chunk::<Postcard, R>(Ok(bytes), None)
}

macro_rules! promise_sink {
    () => {
        fn start(&self) -> bool {
            self.0.set_running_or_notify_cancel()
        }
        fn cancelled(&self) -> bool {
            self.0.cancelled()
        }
        fn cancel(&self) {
            self.0.cancel();
        }
        fn id(&self) -> usize {
            self.0.id()
        }
        fn fail(self: Box<Self>, err: TaskError) {
            let _ = self.0.set_error(err);
        }
    };
}

impl<R: DeserializeOwned + Send + 'static> Sink for One<R> {
    promise_sink!();

    fn done(self: Box<Self>, bytes: &[u8]) {
        let _ = match decode_result(bytes) {
            Ok(value) => self.0.set_result(value).map_err(drop),
            Err(err) => self.0.set_error(err).map_err(drop),
        };
    }

    fn items(self: Box<Self>, outcomes: Vec<Result<Vec<u8>, TaskError>>) {
        match outcomes.into_iter().next() {
            Some(Ok(bytes)) => self.done(&bytes),
            Some(Err(err)) => self.fail(err),
            None => self.fail(TaskError::Transport("no result for the task".into())),
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Many<R> {
    promise_sink!();

    fn done(self: Box<Self>, bytes: &[u8]) {
        let _ = match decode_chunk(bytes) {
            Ok(chunk) => self.0.set_result(chunk).map_err(drop),
            Err(err) => self.0.set_error(err).map_err(drop),
        };
    }

    fn items(self: Box<Self>, outcomes: Vec<Result<Vec<u8>, TaskError>>) {
        let chunk: Chunk<R> = outcomes
            .into_iter()
            .map(|outcome| {
                let mut one = decode_chunk::<R>(&outcome?)?.into_results().into_iter();
                match (one.next(), one.next()) {
                    (Some(item), None) => item,
                    _ => Err(Box::new(TaskError::Transport(
                        "expected the result of one item".into(),
                    ))),
                }
            })
            .collect();
        let _ = self.0.set_result(chunk);
    }
}

/// `sink` with the task's span (feature `tracing`), for a task running `function`, and the
/// span's context to carry into the worker process, if a propagator makes one.
#[cfg(any(feature = "tracing", feature = "metrics"))]
pub(super) fn traced(
    sink: Box<dyn Sink>,
    function: &'static str,
) -> (Box<dyn Sink>, Option<Arc<str>>) {
    let span = crate::trace::TaskSpan::new("process", function);
    #[cfg(feature = "tracing")]
    let trace = crate::propagate::inject(span.span()).map(Arc::from);
    #[cfg(not(feature = "tracing"))]
    let trace = None;
    let sink = Box::new(Traced {
        inner: sink,
        span: parking_lot::Mutex::new(span),
    });
    (sink, trace)
}

/// `sink` as it is (without the `tracing` feature), and no context.
#[cfg(not(any(feature = "tracing", feature = "metrics")))]
pub(super) fn traced(
    sink: Box<dyn Sink>,
    _function: &'static str,
) -> (Box<dyn Sink>, Option<Arc<str>>) {
    (sink, None)
}

/// A sink that records its task's start, end and outcome in the task's span.
#[cfg(any(feature = "tracing", feature = "metrics"))]
struct Traced {
    inner: Box<dyn Sink>,
    span: parking_lot::Mutex<crate::trace::TaskSpan>,
}

#[cfg(any(feature = "tracing", feature = "metrics"))]
impl Sink for Traced {
    fn start(&self) -> bool {
        let started = self.inner.start();
        if started {
            // The manager thread that sends it to its worker process.
            let me = std::thread::current();
            self.span.lock().start(&me.name().unwrap_or("unnamed"));
        }
        started
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
    fn cancel(&self) {
        self.span.lock().end("cancelled");
        self.inner.cancel();
    }
    fn id(&self) -> usize {
        self.inner.id()
    }
    fn fail(self: Box<Self>, err: TaskError) {
        self.span.lock().fail(&err);
        self.inner.fail(err);
    }
    fn done(self: Box<Self>, bytes: &[u8]) {
        self.span.lock().end("ok");
        self.inner.done(bytes);
    }
    fn items(self: Box<Self>, outcomes: Vec<Result<Vec<u8>, TaskError>>) {
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        self.span
            .lock()
            .end(if failed == 0 { "ok" } else { "items_failed" });
        self.inner.items(outcomes);
    }
}
