//! Feature `tracing`: a span per task on the local pools, from submit to completion.
//!
//! The span is made when the task is submitted, as a child of the submitter's current span,
//! so a task follows the request that made it onto a worker thread or into a worker process's
//! manager. Its fields say where and how it ran: `executor` (`thread` or `process`),
//! `function` (the closure's or function's type), `worker` (the thread that ran it),
//! `wait_us` (queued, from submit to start), `run_us` (from start to end) and `outcome`
//! (`ok`, `panicked`, `cancelled`, or the error's kind). On the thread pool the span is also
//! entered while the closure runs, under the submitter's subscriber, so what the task traces
//! is inside it and goes where the submitter's traces go. A subscriber
//! that reports span closes (for example `tracing_subscriber::fmt` with
//! `FmtSpan::CLOSE`) shows one line per task with every field.

use std::fmt;
use std::time::Instant;

use tracing::{Span, field};

#[cfg(all(unix, feature = "process"))]
use crate::error::TaskError;

/// A task's span and clock.
pub(crate) struct TaskSpan {
    span: Span,
    made: Instant,
    started: Option<Instant>,
    ended: bool,
}

impl TaskSpan {
    /// A span for a task of `executor` running `function`, child of the current span.
    pub(crate) fn new(executor: &'static str, function: &'static str) -> TaskSpan {
        let span = tracing::info_span!(
            target: "concurrent_futures",
            "task",
            executor,
            function,
            worker = field::Empty,
            wait_us = field::Empty,
            run_us = field::Empty,
            outcome = field::Empty,
        );
        TaskSpan {
            span,
            made: Instant::now(),
            started: None,
            ended: false,
        }
    }

    /// The task starts on `worker`.
    pub(crate) fn start(&mut self, worker: &dyn fmt::Display) {
        let now = Instant::now();
        self.started = Some(now);
        self.span.record("worker", field::display(worker));
        self.span
            .record("wait_us", micros(now.saturating_duration_since(self.made)));
    }

    /// The task ended with `outcome`.
    pub(crate) fn end(&mut self, outcome: &str) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Some(started) = self.started {
            self.span.record("run_us", micros(started.elapsed()));
        }
        self.span.record("outcome", outcome);
    }

    /// The task's error, as its outcome.
    #[cfg(all(unix, feature = "process"))]
    pub(crate) fn fail(&mut self, err: &TaskError) {
        self.end(outcome_of(err));
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }
}

impl Drop for TaskSpan {
    /// A task dropped before it ran was cancelled (or its executor went away).
    fn drop(&mut self) {
        self.end("cancelled");
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `outcome` field of a task that failed with `err`.
#[cfg(all(unix, feature = "process"))]
pub(crate) fn outcome_of(err: &TaskError) -> &'static str {
    match err {
        TaskError::Panicked(_) => "panicked",
        TaskError::Cancelled => "cancelled",
        TaskError::TimedOut => "timed_out",
        TaskError::WorkerDied(_) => "worker_died",
        TaskError::BrokenExecutor(_) => "broken_executor",
        _ => "failed",
    }
}

/// A thread pool task with its span, which is entered while the closure runs.
pub(crate) struct Traced<J> {
    job: J,
    span: TaskSpan,
}

impl<J> Traced<J> {
    pub(crate) fn new(job: J, executor: &'static str) -> Traced<J> {
        Traced {
            job,
            span: TaskSpan::new(executor, std::any::type_name::<J>()),
        }
    }

    /// The closure back, refused by the pool.
    pub(crate) fn into_inner(self) -> J {
        let Traced { job, mut span } = self;
        span.end("refused");
        job
    }
}

impl<T, J: crate::future::Job<T>> crate::future::Job<T> for Traced<J> {
    fn call(self) -> T {
        let Traced { job, mut span } = self;
        let me = std::thread::current();
        span.start(&me.name().unwrap_or("unnamed"));
        // Inside the span, and with the submitter's subscriber, which may be a thread-local
        // default the worker thread does not have.
        let run = || {
            let _entered = span.span().enter();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.call()))
        };
        let dispatch = span
            .span()
            .with_subscriber(|(_, dispatch)| dispatch.clone());
        let outcome = match dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, run),
            None => run(),
        };
        match outcome {
            Ok(value) => {
                span.end("ok");
                value
            }
            Err(payload) => {
                span.end("panicked");
                std::panic::resume_unwind(payload)
            }
        }
    }
}
