//! How a task that ran away from its submitter ended, and the one set of trampolines that run
//! it there, for both wire formats: postcard between a process pool and its workers
//! (`process::codec::Postcard`), JSON through Redis (`redis::tasks::Json`).
//!
//! - An [`Outcome`] is a `Result<B, TaskError>`: the encoded result, or the task's error. No
//!   executor has an outcome type of its own; the Redis wire's status words are a mapping of
//!   [`TaskError`] (`redis::tasks::status`), and a worker process sends a panic as a report
//!   built from the error's [`Panic`](crate::Panic).
//! - A worker runs a task with [`run`], or a chunk of a map with [`run_chunk`]: decode the
//!   argument, call under `catch_unwind`, encode the result. The codec decides only the bytes
//!   and how a caught panic is described.
//! - A submitter decodes a result with [`decode`] and a chunk's results with
//!   [`decode_chunk`], which hands back exactly one result per item, or the same error for
//!   each.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{TaskError, panic_message};
use crate::map::Chunk;

/// How a task ended where it ran: its encoded result, or its error.
pub(crate) type Outcome<B> = Result<B, TaskError>;

/// A wire format for tasks and their results.
pub(crate) trait Codec {
    /// What an encoded value is: bytes for postcard, text for JSON.
    type Bytes;

    /// Encodes a result or a chunk's results.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self::Bytes, String>;

    /// Decodes a task's argument, on the worker.
    fn decode_argument<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;

    /// Decodes a result, in the submitter: bytes from another process, so bounded.
    fn decode_result<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;

    /// The error of an argument that does not decode: `Rejected` where a queue entry may hold
    /// anything, `Transport` where the submitter encoded it with the same types.
    fn bad_argument(why: String) -> TaskError;

    /// The error of a panic just caught on this thread, with where it happened.
    fn panicked(payload: &(dyn Any + Send)) -> TaskError;

    /// A chunk's outcomes, one per item, in this codec's form.
    fn encode_chunk<R: Serialize>(items: &[Outcome<R>]) -> Result<Self::Bytes, String>;

    /// The items of a chunk encoded by [`encode_chunk`](Self::encode_chunk), each a result
    /// or its error.
    fn decode_chunk<R: DeserializeOwned>(bytes: &[u8]) -> Result<Chunk<R>, String>;
}

/// Decodes the argument, calls `f` on it catching a panic, encodes the result.
pub(crate) fn run<C: Codec, A: DeserializeOwned, R: Serialize>(
    f: impl FnOnce(A) -> R,
    arg: &[u8],
) -> Outcome<C::Bytes> {
    let arg: A = decode_argument::<C, A>(arg)?;
    let value = panic::catch_unwind(AssertUnwindSafe(|| f(arg))).map_err(|p| C::panicked(&*p))?;
    encode::<C, R>(&value)
}

/// Decodes a chunk's arguments, calls `f` on each catching each panic (a panic fails its
/// item only), encodes every item's outcome.
pub(crate) fn run_chunk<C: Codec, A: DeserializeOwned, R: Serialize>(
    f: impl Fn(A) -> R,
    args: &[u8],
) -> Outcome<C::Bytes> {
    let args: Vec<A> = decode_argument::<C, Vec<A>>(args)?;
    let items: Vec<Outcome<R>> = args
        .into_iter()
        .map(|a| panic::catch_unwind(AssertUnwindSafe(|| f(a))).map_err(|p| C::panicked(&*p)))
        .collect();
    chunk::<C, R>(&items)
}

/// A task's argument (or a chunk's arguments), on the worker.
pub(crate) fn decode_argument<C: Codec, A: DeserializeOwned>(bytes: &[u8]) -> Result<A, TaskError> {
    C::decode_argument(bytes).map_err(|e| {
        C::bad_argument(format!(
            "the argument does not decode as {}: {e}",
            std::any::type_name::<A>()
        ))
    })
}

/// Encodes a result; a `Serialize` that fails or panics is the task's `Transport` error.
pub(crate) fn encode<C: Codec, R: Serialize + ?Sized>(value: &R) -> Outcome<C::Bytes> {
    match panic::catch_unwind(AssertUnwindSafe(|| C::encode(value))) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(transport(format!("cannot encode the result: {e}"))),
        Err(p) => Err(transport(format!(
            "the result's Serialize panicked: {}",
            panic_message(&*p)
        ))),
    }
}

/// Encodes a chunk's outcomes, as [`encode`] does one result.
pub(crate) fn chunk<C: Codec, R: Serialize>(items: &[Outcome<R>]) -> Outcome<C::Bytes> {
    match panic::catch_unwind(AssertUnwindSafe(|| C::encode_chunk(items))) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(transport(format!("cannot encode the results: {e}"))),
        Err(p) => Err(transport(format!(
            "a result's Serialize panicked: {}",
            panic_message(&*p)
        ))),
    }
}

/// A task's result from its encoding.
pub(crate) fn decode<C: Codec, R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    C::decode_result(bytes).map_err(|e| {
        transport(format!(
            "the result does not decode as {}: {e}",
            std::any::type_name::<R>()
        ))
    })
}

/// A chunk's results from its outcome: exactly `n` of them when `n` is known, or the same
/// error for each.
pub(crate) fn decode_chunk<C: Codec, R: DeserializeOwned>(
    outcome: Outcome<&[u8]>,
    n: Option<usize>,
) -> Result<Chunk<R>, TaskError> {
    let chunk = C::decode_chunk::<R>(outcome?)
        .map_err(|e| transport(format!("the chunk's results do not decode: {e}")))?;
    match n {
        Some(n) if chunk.len() != n => Err(transport(format!(
            "the worker sent {} results for {n} items",
            chunk.len()
        ))),
        _ => Ok(chunk),
    }
}

fn transport(why: String) -> TaskError {
    TaskError::Transport(why.into())
}
