//! [`Tasks`]: the named functions a Redis queue may run, and how a worker runs one.

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::panic;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{TaskError, panic_message};
use crate::executor::PlainFn;
use crate::map::Chunk;
use crate::outcome::{self, Codec};

/// The longest task name, in bytes.
pub(super) const MAX_NAME: usize = 128;

thread_local! {
    /// Where the last panic on this thread happened (`file:line:col`), recorded by the hook
    /// that [`record_panic_locations`] installs.
    static PANICKED_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Makes a task's panic error say where it happened, as the process pool's does: installs,
/// once per process, a panic hook that records the location on the panicking thread and
/// then calls the hook that was set before (so what a panic prints does not change). Called
/// when a worker starts; a hook the program sets later replaces it, and the errors then go
/// without the location.
pub(super) fn record_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(at) = info.location() {
                let _ = PANICKED_AT.try_with(|p| *p.borrow_mut() = Some(at.to_string()));
            }
            previous(info);
        }));
    });
}

/// A caught panic's message, with where it happened and on which thread when the hook
/// recorded it: `boom (at src/jobs.rs:12:5, thread 'RedisWorker-2_0')`.
fn panic_report(payload: &(dyn std::any::Any + Send)) -> String {
    let message = panic_message(payload);
    match PANICKED_AT
        .try_with(|p| p.borrow_mut().take())
        .ok()
        .flatten()
    {
        Some(at) => {
            let thread = std::thread::current();
            format!(
                "{message} (at {at}, thread '{}')",
                thread.name().unwrap_or("<unnamed>")
            )
        }
        None => message.to_owned(),
    }
}

/// The list of named functions that a [`RedisExecutor`](super::RedisExecutor) may send and a
/// [`RedisWorker`](super::RedisWorker) may run: the only code a queue entry can reach.
///
/// Build the same list in the client and in the workers (both link the same crate, so a
/// `fn tasks() -> Tasks` shared by both is the natural shape). A queue entry names its task;
/// a worker looks the name up here and runs nothing else, so whoever can write to Redis can
/// at most ask for a registered function with a wrongly typed argument, which the worker
/// refuses ([`TaskError::Rejected`]). Put a version in each name (`"resize/v2"`) and change
/// it when the argument or result type changes, so that old and new workers never misread
/// each other's entries during a rolling upgrade.
///
/// Names are 1 to 128 bytes of ASCII letters, digits and `_ . : / -`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::Tasks;
///
/// fn double(x: u64) -> u64 { x * 2 }
/// fn shout(s: String) -> String { s.to_uppercase() }
///
/// let tasks = Tasks::new().add("double/v1", double).add("shout/v1", shout);
/// assert_eq!(tasks.name_of(double), Some("double/v1"));
/// assert!(tasks.contains("shout/v1"));
/// assert_eq!(tasks.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Tasks {
    by_name: HashMap<Box<str>, Arc<dyn Entry>>,
    /// The function's type → name, for `submit(f, arg)`: every function item has a type of
    /// its own (its address is no identity: the compiler may copy small functions).
    by_fn: HashMap<TypeId, Box<str>>,
}

impl Tasks {
    /// An empty list.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(concurrent_futures::redis::Tasks::new().is_empty());
    /// ```
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Adds `f`, a plain function (or a closure that captures nothing), under `name`.
    ///
    /// The client finds a function's name by its type: each function item has its own, so
    /// `submit(resize, job)` sends `"img.resize/v1"` however the compiler laid out the code.
    /// Registering the same function under a second name makes `submit` use the first;
    /// both names run it.
    ///
    /// # Panics
    ///
    /// If `name` is empty, longer than 128 bytes, has a character other than ASCII letters,
    /// digits and `_ . : / -`, or is already in the list, or if `f` is a closure that
    /// captures data (nothing but code may be named): a list is written once, in code, and
    /// a mistake in it is a bug to catch at start-up.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::Tasks;
    ///
    /// fn len(s: String) -> usize { s.len() }
    /// let tasks = Tasks::new().add("len/v1", len);
    /// assert!(tasks.contains("len/v1"));
    /// ```
    #[must_use = "add returns the extended list"]
    pub fn add<F, A, R>(mut self, name: &str, f: F) -> Tasks
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if let Err(why) = check_name(name) {
            panic!("invalid task name {name:?}: {why}");
        }
        assert!(
            !self.by_name.contains_key(name),
            "task name {name:?} is registered twice"
        );
        assert!(
            std::mem::size_of::<F>() == 0,
            "task {name:?} is a closure that captures data: register a plain function"
        );
        self.by_name.insert(
            name.into(),
            Arc::new(Typed {
                f,
                types: std::marker::PhantomData,
            }),
        );
        self.by_fn
            .entry(TypeId::of::<F>())
            .or_insert_with(|| name.into());
        self
    }

    /// The name `f` is registered under.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::Tasks;
    /// fn a(x: u8) -> u8 { x }
    /// fn b(x: u16) -> u16 { x + 1 }
    /// let tasks = Tasks::new().add("a/v1", a);
    /// assert_eq!(tasks.name_of(a), Some("a/v1"));
    /// assert_eq!(tasks.name_of(b), None);
    /// ```
    pub fn name_of<F: PlainFn<A, R>, A, R>(&self, f: F) -> Option<&str> {
        let _ = f;
        self.by_fn.get(&TypeId::of::<F>()).map(|n| &**n)
    }

    /// Whether a task is registered under `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::Tasks;
    /// assert!(!Tasks::new().contains("x"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// How many tasks are registered.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::Tasks;
    /// assert_eq!(Tasks::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True if no task is registered.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::Tasks;
    /// assert!(Tasks::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The registered names, sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::Tasks;
    /// fn f(x: u8) -> u8 { x }
    /// fn g(x: u8) -> u16 { x.into() }
    /// assert_eq!(Tasks::new().add("g", g).add("f", f).names(), ["f", "g"]);
    /// ```
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(|n| &**n).collect();
        names.sort_unstable();
        names
    }

    pub(super) fn get(&self, name: &str) -> Option<&Arc<dyn Entry>> {
        self.by_name.get(name)
    }
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field("names", &self.names())
            .finish()
    }
}

/// Why a name is not valid.
pub(super) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("a name is 1 to 128 bytes long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
    {
        return Err("a name has only ASCII letters, digits and _ . : / -");
    }
    Ok(())
}

/// How a task ended on the worker: its result as JSON, or its error (`crate::outcome`).
pub(super) type Outcome = crate::outcome::Outcome<String>;

/// The reply's status word for an outcome.
pub(super) fn status<B>(outcome: &crate::outcome::Outcome<B>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(TaskError::Panicked(_)) => "panic",
        Err(TaskError::TimedOut) => "timeout",
        Err(TaskError::WorkerDied(_)) => "died",
        Err(TaskError::Rejected(_)) => "rejected",
        Err(TaskError::WorkerLost(_)) => "lost",
        // Killed while it ran (`RedisExecutor::kill`), or cancelled by the local pool.
        Err(TaskError::Cancelled) => "cancelled",
        // Anything else (a cancelled or broken local pool in process mode) could not carry
        // the task through.
        Err(_) => "transport",
    }
}

/// The reply's body: the JSON result, or the error's message (a panic with its origin).
pub(super) fn body(outcome: &Outcome) -> Cow<'_, str> {
    match outcome {
        Ok(json) => Cow::Borrowed(json),
        Err(err) => message(err),
    }
}

/// An error's message as a reply carries it.
fn message(err: &TaskError) -> Cow<'_, str> {
    match err {
        TaskError::TimedOut => Cow::Borrowed(""),
        TaskError::WorkerDied(m)
        | TaskError::Rejected(m)
        | TaskError::WorkerLost(m)
        | TaskError::Transport(m) => Cow::Borrowed(m),
        TaskError::Panicked(panic) => Cow::Owned(panic.to_string()),
        other => Cow::Owned(other.to_string()),
    }
}

/// Worth running again if the submitter asked for retries.
pub(super) fn retryable(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Err(TaskError::Panicked(_) | TaskError::TimedOut | TaskError::WorkerDied(_))
    )
}

/// The task error for a failed status; `None` for `ok`.
pub(super) fn error(status: &str, body: &str) -> Option<TaskError> {
    let msg = || Arc::<str>::from(body);
    Some(match status {
        "ok" => return None,
        "panic" => TaskError::Panicked(msg().into()),
        "timeout" => TaskError::TimedOut,
        "died" => TaskError::WorkerDied(msg()),
        "rejected" => TaskError::Rejected(msg()),
        "lost" => TaskError::WorkerLost(msg()),
        "transport" => TaskError::Transport(msg()),
        "cancelled" => TaskError::Cancelled,
        other => {
            TaskError::Transport(format!("the reply has an unknown status {:.40?}", other).into())
        }
    })
}

/// The Redis wire format for `crate::outcome`: JSON, readable by any language. A chunk's
/// outcomes are one array of `{"ok": result}` and `{"err": status, "msg": message}`.
pub(super) struct Json;

impl Codec for Json {
    type Bytes = String;

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, String> {
        serde_json::to_string(value).map_err(|e| e.to_string())
    }

    fn decode_argument<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    fn decode_result<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        // serde_json refuses nesting past 128 levels: hostile bytes cannot overflow the stack.
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    fn bad_argument(why: String) -> TaskError {
        // Whoever can write to Redis can write anything: the entry is refused.
        TaskError::Rejected(why.into())
    }

    fn panicked(payload: &(dyn std::any::Any + Send)) -> TaskError {
        TaskError::Panicked(panic_report(payload).into())
    }

    fn encode_chunk<R: Serialize>(items: &[crate::outcome::Outcome<R>]) -> Result<String, String> {
        let mut out = String::from("[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // An item whose result does not encode fails alone.
            match item
                .as_ref()
                .map_err(Clone::clone)
                .and_then(outcome::encode::<Json, R>)
            {
                Ok(json) => {
                    out.push_str("{\"ok\":");
                    out.push_str(&json);
                    out.push('}');
                }
                Err(err) => {
                    let item = serde_json::json!({ "err": status::<()>(&Err(err.clone())), "msg": message(&err) });
                    out.push_str(&item.to_string());
                }
            }
        }
        out.push(']');
        Ok(out)
    }

    fn decode_chunk<R: DeserializeOwned>(bytes: &[u8]) -> Result<Chunk<R>, String> {
        let items: Vec<serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(items
            .into_iter()
            .map(|mut item| {
                if let Some(value) = item.get_mut("ok") {
                    return serde_json::from_value(value.take()).map_err(|e| {
                        Box::new(TaskError::Transport(
                            format!("cannot decode the result: {e}").into(),
                        ))
                    });
                }
                let status = item.get("err").and_then(|s| s.as_str()).unwrap_or("?");
                let msg = item.get("msg").and_then(|s| s.as_str()).unwrap_or("");
                Err(Box::new(error(status, msg).unwrap_or_else(|| {
                    TaskError::Transport("a chunk item has neither ok nor err".into())
                })))
            })
            .collect())
    }
}

/// Where a task's outcome goes once it is known.
pub(super) type Done = Box<dyn FnOnce(Outcome) + Send>;

/// A registered function with its types erased.
pub(super) trait Entry: Send + Sync {
    /// Runs the task on this thread: JSON argument in, outcome out (a panic is caught).
    fn call(&self, args: &[u8]) -> Outcome;
    /// Runs a chunk (a JSON array of arguments): each item's outcome, in order, as one
    /// JSON array of `{"ok": result}` / `{"err": status, "msg": message}`.
    fn call_chunk(&self, args: &[u8]) -> Outcome;
    /// Runs the task, or each item of a chunk, in a process pool, calling `done` when all
    /// is known. Returns the ids of the pool's futures, to kill the run with.
    #[cfg(all(unix, feature = "process"))]
    fn submit(
        &self,
        pool: &crate::process::ProcessPoolExecutor,
        args: &[u8],
        chunk: bool,
        limit: Option<std::time::Duration>,
        done: Done,
    ) -> Vec<usize>;
}

struct Typed<F, A, R> {
    f: F,
    types: std::marker::PhantomData<fn(A) -> R>,
}

impl<F, A, R> Entry for Typed<F, A, R>
where
    F: PlainFn<A, R>,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn call(&self, args: &[u8]) -> Outcome {
        outcome::run::<Json, A, R>(self.f, args)
    }

    fn call_chunk(&self, args: &[u8]) -> Outcome {
        outcome::run_chunk::<Json, A, R>(self.f, args)
    }

    #[cfg(all(unix, feature = "process"))]
    fn submit(
        &self,
        pool: &crate::process::ProcessPoolExecutor,
        args: &[u8],
        chunk: bool,
        limit: Option<std::time::Duration>,
        done: Done,
    ) -> Vec<usize> {
        use parking_lot::Mutex;

        let Some(f) = crate::executor::fn_ptr(&self.f) else {
            unreachable!("Tasks::add accepts only zero-sized functions")
        };
        // Each outcome is typed until the end: one result is encoded alone, a chunk's in one
        // array, as a worker on threads does (`crate::outcome`).
        type Typed<R> = Box<dyn FnOnce(crate::outcome::Outcome<R>) + Send>;
        let start = |arg: A, done: Typed<R>| -> Option<usize> {
            let submitted = match limit {
                Some(limit) => pool.submit_with_time_limit(f, arg, limit),
                None => pool.submit(f, arg),
            };
            match submitted {
                Ok(fut) => {
                    let id = fut.id();
                    fut.on_result(done);
                    Some(id)
                }
                Err(e) => {
                    done(Err(TaskError::Transport(
                        e.without_task().to_string().into(),
                    )));
                    None
                }
            }
        };
        if !chunk {
            return match outcome::decode_argument::<Json, A>(args) {
                Ok(arg) => start(
                    arg,
                    Box::new(move |r| done(r.and_then(|v| outcome::encode::<Json, R>(&v)))),
                )
                .into_iter()
                .collect(),
                Err(err) => {
                    done(Err(err));
                    Vec::new()
                }
            };
        }
        let items = match outcome::decode_argument::<Json, Vec<A>>(args) {
            Ok(items) => items,
            Err(err) => {
                done(Err(err));
                return Vec::new();
            }
        };
        if items.is_empty() {
            done(Ok("[]".into()));
            return Vec::new();
        }
        // Each item runs as its own task, so a crash or time limit fails only that item.
        struct Gather<R> {
            outcomes: Vec<Option<crate::outcome::Outcome<R>>>,
            left: usize,
            done: Option<Done>,
        }
        let gather = Arc::new(Mutex::new(Gather {
            outcomes: (0..items.len()).map(|_| None).collect(),
            left: items.len(),
            done: Some(done),
        }));
        let mut ids = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let gather = gather.clone();
            ids.extend(start(
                item,
                Box::new(move |outcome| {
                    let mut g = gather.lock();
                    g.outcomes[i] = Some(outcome);
                    g.left -= 1;
                    if g.left == 0 {
                        let all: Vec<_> = g.outcomes.drain(..).flatten().collect();
                        let done = g.done.take();
                        drop(g);
                        if let Some(done) = done {
                            done(outcome::chunk::<Json, R>(&all));
                        }
                    }
                }),
            ));
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    fn boom(x: u32) -> u32 {
        assert!(x != 3, "three");
        x
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("img.resize/v1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(129)).is_err());
        assert!(check_name("{ns}").is_err());
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_name_is_registered_once() {
        let _ = Tasks::new().add("d", double).add("d", boom);
    }

    #[test]
    fn calls_decode_run_and_encode() {
        let tasks = Tasks::new().add("d", double).add("b", boom);
        let d = tasks.get("d").unwrap();
        assert_eq!(d.call(b"21"), Ok("42".into()));
        assert!(matches!(d.call(b"\"x\""), Err(TaskError::Rejected(m)) if m.contains("u32")));
        assert!(matches!(d.call(b"-1"), Err(TaskError::Rejected(_))));
        let b = tasks.get("b").unwrap();
        assert_eq!(b.call(b"3"), Err(TaskError::Panicked("three".into())));
        assert_eq!(
            b.call_chunk(b"[1,3]"),
            Ok(r#"[{"ok":1},{"err":"panic","msg":"three"}]"#.into())
        );
        assert!(matches!(b.call_chunk(b"{}"), Err(TaskError::Rejected(_))));
    }

    #[test]
    fn statuses_map_to_task_errors_and_back() {
        for err in [
            TaskError::Panicked("p".into()),
            TaskError::TimedOut,
            TaskError::WorkerDied("d".into()),
            TaskError::Rejected("r".into()),
            TaskError::Transport("t".into()),
            TaskError::WorkerLost("l".into()),
        ] {
            let outcome: Outcome = Err(err.clone());
            assert_eq!(error(status(&outcome), &body(&outcome)), Some(err));
        }
        // Killed or cancelled while it ran has a status of its own.
        let cancelled: Outcome = Err(TaskError::Cancelled);
        assert_eq!(
            error(status(&cancelled), &body(&cancelled)),
            Some(TaskError::Cancelled)
        );
        // What has none travels as transport, with its text.
        let broken: Outcome = Err(TaskError::BrokenExecutor("gone".into()));
        assert_eq!(status(&broken), "transport");
        assert_eq!(body(&broken), "executor is broken: gone");
        assert!(error("ok", "1").is_none());
        assert!(matches!(error("what", ""), Some(TaskError::Transport(_))));
    }

    #[test]
    fn a_chunk_round_trips_through_json() {
        let items: Vec<crate::outcome::Outcome<u32>> = vec![
            Ok(1),
            Err(TaskError::Panicked("x".into())),
            Err(TaskError::TimedOut),
        ];
        let json = outcome::chunk::<Json, u32>(&items).unwrap();
        let back = Json::decode_chunk::<u32>(json.as_bytes())
            .unwrap()
            .into_results();
        let back: Vec<_> = back.into_iter().map(|r| r.map_err(|e| *e)).collect();
        assert_eq!(back, items);
    }
}
