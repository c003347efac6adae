//! A task's panic as a worker reports it to the parent, and the parent's error built from
//! the report. Its own file so that the trampolines (`shipping.rs`) and the serve loop
//! (`worker.rs`) both use it without using each other.

use std::sync::atomic::Ordering;

/// A task's panic as a worker reports it: the message, the worker's pid, the thread's name
/// and the source location (`file:line:col`, empty when unknown). Sent as postcard; the
/// parent builds a [`Panic`](crate::Panic) from it.
pub(crate) type PanicReport = (String, u32, String, String);

thread_local! {
    /// Where the last panic on this thread happened (thread name, location), for the task's
    /// error.
    static PANIC_CONTEXT: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

/// Records where the panic being reported on this thread happened (thread name, location),
/// from the panic hook.
pub(super) fn record_context(context: (String, String)) {
    let _ = PANIC_CONTEXT.try_with(|c| *c.borrow_mut() = Some(context));
}

/// A panic caught on this thread, with where it happened. Each part is cut to a quarter of
/// `limit` (at least 64 bytes), so that the report always fits a frame.
pub(crate) fn panic_report(payload: &(dyn std::any::Any + Send), limit: usize) -> PanicReport {
    let part = (limit / 4).max(64);
    let message = truncate(crate::error::panic_message(payload).to_owned(), part);
    let (thread, location) = PANIC_CONTEXT
        .try_with(|c| c.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_default();
    (
        message,
        std::process::id(),
        truncate(thread, part),
        truncate(location, part),
    )
}

/// The frame limit this worker was given, for the trampolines' panic reports.
static LIMIT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(super::MIN_FRAME_BYTES);

pub(crate) fn frame_limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

pub(super) fn set_frame_limit(limit: usize) {
    LIMIT.store(limit, Ordering::Relaxed);
}

/// The error of a task whose worker reported `report`.
pub(crate) fn panic_error(
    (message, pid, thread, location): PanicReport,
) -> crate::error::TaskError {
    crate::error::TaskError::Panicked(crate::error::Panic::in_process(
        &message, pid, &thread, &location,
    ))
}

/// The report of a panic caught in this worker (`Postcard::panicked` made it from a
/// report), to send to the parent.
pub(crate) fn report_of(panic: &crate::error::Panic) -> PanicReport {
    (
        panic.message().to_owned(),
        panic.pid().unwrap_or_else(std::process::id),
        panic.thread().unwrap_or_default().to_owned(),
        panic.location().unwrap_or_default().to_owned(),
    )
}

/// Cuts a message to fit a frame, on a character boundary.
pub(super) fn truncate(mut msg: String, limit: usize) -> String {
    if msg.len() > limit {
        let mut end = limit;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
    }
    msg
}
