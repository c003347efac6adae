//! Feature `tracing`: a task's trace context carried to the process or machine that runs
//! it, through a [`Propagator`] the program sets (OpenTelemetry's, typically).

use tracing::Span;

/// Carries a task's trace context to the process or machine that runs it (feature
/// `tracing`): set one with [`set_propagator`] and the span of a task in a worker process or
/// on a Redis worker continues the submitter's trace.
///
/// `tracing` spans are known only inside their process, so the crate carries the context as
/// text, which the propagator makes and reads: with OpenTelemetry, the W3C `traceparent`
/// header, through `tracing-opentelemetry`'s `OpenTelemetrySpanExt::context` and
/// `set_parent` (or `add_link` for [`Relation::FollowsFrom`]). The text travels in the
/// task: in the frame sent to a worker process, in the Redis queue entry (field `tp`). At
/// most 512 bytes of printable ASCII are carried; anything else is dropped, on both sides.
///
/// A worker process has the propagator its [initializer](crate::ProcessPoolBuilder::initializer)
/// sets (with the subscriber it exports to); a Redis worker, the one its `main` sets.
///
/// # Examples
///
/// A propagator that carries the submitter's span id, to show the mechanism (a real one
/// carries OpenTelemetry's context):
///
/// ```
/// use concurrent_futures::{Propagator, Relation};
/// use tracing::Span;
///
/// struct SpanIds;
///
/// impl Propagator for SpanIds {
///     fn inject(&self, span: &Span) -> Option<String> {
///         span.id().map(|id| format!("span-{}", id.into_u64()))
///     }
///     fn extract(&self, span: &Span, context: &str, relation: Relation) {
///         tracing::info!(parent: span, context, ?relation, "continues the submitter's trace");
///     }
/// }
///
/// concurrent_futures::set_propagator(SpanIds);
/// ```
pub trait Propagator: Send + Sync + 'static {
    /// The context of `span` (a task's span, made where it is submitted) as text, or `None`
    /// to carry nothing.
    fn inject(&self, span: &Span) -> Option<String>;

    /// Makes `span`, the task's span where it runs, continue the carried `context`: as its
    /// child, or, for a Redis task delivered again (a retry after its worker died, a
    /// takeover), [following from](Relation::FollowsFrom) it. Called before the span is
    /// entered. A panic here is caught and logged.
    fn extract(&self, span: &Span, context: &str, relation: Relation);
}

/// How a task's span where it runs relates to the span that submitted it.
///
/// # Examples
///
/// ```
/// use concurrent_futures::Relation;
/// assert_ne!(Relation::Parent, Relation::FollowsFrom);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Relation {
    /// The submitter's span is the parent: the first delivery of a task.
    Parent,
    /// The task was delivered before, elsewhere: a link, not a child (OpenTelemetry's span
    /// link, `tracing`'s `follows_from`).
    FollowsFrom,
}

/// The most bytes of context a task carries.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub(crate) const MAX_CONTEXT: usize = 512;

static PROPAGATOR: std::sync::OnceLock<Box<dyn Propagator>> = std::sync::OnceLock::new();

/// Sets the process's [`Propagator`], once; false (and `propagator` dropped) if one was set
/// already.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Propagator, Relation};
/// struct Nothing;
/// impl Propagator for Nothing {
///     fn inject(&self, _: &tracing::Span) -> Option<String> { None }
///     fn extract(&self, _: &tracing::Span, _: &str, _: Relation) {}
/// }
/// let first = concurrent_futures::set_propagator(Nothing);
/// assert!(!concurrent_futures::set_propagator(Nothing), "once per process");
/// # let _ = first;
/// ```
pub fn set_propagator(propagator: impl Propagator) -> bool {
    PROPAGATOR.set(Box::new(propagator)).is_ok()
}

/// Context that may travel: 1 to 512 bytes of printable ASCII.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub(crate) fn carriable(context: &str) -> bool {
    !context.is_empty()
        && context.len() <= MAX_CONTEXT
        && context.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The context of `span` to carry with its task, if a propagator makes one that may travel.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub(crate) fn inject(span: &Span) -> Option<String> {
    let propagator = PROPAGATOR.get()?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| propagator.inject(span))) {
        Ok(context) => context.filter(|c| carriable(c)),
        Err(_) => {
            log::warn!(target: "concurrent_futures", "the trace propagator's inject panicked; the task carries no context");
            None
        }
    }
}

/// Continues a carried context in `span`, if a propagator is set and the context is one
/// that may travel (it comes from another process: it is checked again).
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub(crate) fn extract(span: &Span, context: &str, relation: Relation) {
    let Some(propagator) = PROPAGATOR.get() else {
        return;
    };
    if !carriable(context) {
        return;
    }
    let run = || propagator.extract(span, context, relation);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
        log::warn!(target: "concurrent_futures", "the trace propagator's extract panicked; the span starts a trace of its own");
    }
}
