//! Features `tracing` and `metrics`: what the local pools record of each task, from submit
//! to completion.
//!
//! With `metrics`, through the `metrics` facade, labelled `executor` (`thread` or `process`):
//! the counters `concurrent_futures_tasks_submitted_total`, `..._started_total` and
//! `..._completed_total` (also labelled `outcome`), the histograms
//! `concurrent_futures_task_queue_wait_seconds` and `..._task_run_seconds`, and (from the
//! registry) the gauges `concurrent_futures_queue_depth` and `concurrent_futures_workers`.
//!
//! With `tracing`:
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
use std::time::{Duration, Instant};

#[cfg(feature = "tracing")]
use tracing::{Span, field};

#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use crate::error::TaskError;

/// A task's span, metrics and clock.
pub(crate) struct TaskSpan {
    #[cfg(feature = "tracing")]
    span: Span,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    executor: &'static str,
    made: Instant,
    started: Option<Instant>,
    ended: bool,
}

impl TaskSpan {
    /// A span for a task of `executor` running `function`, child of the current span.
    pub(crate) fn new(executor: &'static str, function: &str) -> TaskSpan {
        #[cfg(feature = "metrics")]
        metrics::counter!("concurrent_futures_tasks_submitted_total", "executor" => executor)
            .increment(1);
        #[cfg(not(feature = "tracing"))]
        let _ = function;
        #[cfg(feature = "tracing")]
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
            #[cfg(feature = "tracing")]
            span,
            executor,
            made: Instant::now(),
            started: None,
            ended: false,
        }
    }

    /// The task starts on `worker`.
    pub(crate) fn start(&mut self, worker: &dyn fmt::Display) {
        let now = Instant::now();
        self.started = Some(now);
        let wait = now.saturating_duration_since(self.made);
        #[cfg(feature = "tracing")]
        {
            self.span.record("worker", field::display(worker));
            self.span.record("wait_us", micros(wait));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = worker;
        #[cfg(feature = "metrics")]
        {
            let executor = self.executor;
            metrics::counter!("concurrent_futures_tasks_started_total", "executor" => executor)
                .increment(1);
            metrics::histogram!("concurrent_futures_task_queue_wait_seconds", "executor" => executor)
                .record(wait.as_secs_f64());
            metrics::gauge!("concurrent_futures_tasks_in_flight", "executor" => executor)
                .increment(1.0);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = wait;
    }

    /// The task ended with `outcome`.
    /// `outcome` is one of a few fixed names: a label value borrowed, never allocated per
    /// task.
    pub(crate) fn end(&mut self, outcome: &'static str) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let run: Option<Duration> = self.started.map(|s| s.elapsed());
        #[cfg(feature = "tracing")]
        {
            if let Some(run) = run {
                self.span.record("run_us", micros(run));
            }
            self.span.record("outcome", outcome);
        }
        #[cfg(feature = "metrics")]
        {
            let executor = self.executor;
            metrics::counter!(
                "concurrent_futures_tasks_completed_total",
                "executor" => executor,
                "outcome" => outcome
            )
            .increment(1);
            if let Some(run) = run {
                metrics::histogram!("concurrent_futures_task_run_seconds", "executor" => executor)
                    .record(run.as_secs_f64());
                metrics::gauge!("concurrent_futures_tasks_in_flight", "executor" => executor)
                    .decrement(1.0);
            }
        }
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = (run, outcome);
    }

    /// The task's error, as its outcome.
    #[cfg(all(unix, feature = "process"))]
    pub(crate) fn fail(&mut self, err: &TaskError) {
        self.end(outcome_of(err));
    }

    #[cfg(feature = "tracing")]
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

#[cfg(feature = "tracing")]
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `outcome` field of a task that failed with `err`.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
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
        let run = || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.call()));
        // Inside the span, and with the submitter's subscriber, which may be a thread-local
        // default the worker thread does not have.
        #[cfg(feature = "tracing")]
        let run = || {
            let _entered = span.span().enter();
            run()
        };
        #[cfg(feature = "tracing")]
        let outcome = match span
            .span()
            .with_subscriber(|(_, dispatch)| dispatch.clone())
        {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, run),
            None => run(),
        };
        #[cfg(not(feature = "tracing"))]
        let outcome = run();
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
