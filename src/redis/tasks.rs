//! [`Tasks`]: the named functions a Redis queue may run, and how a worker runs one.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{TaskError, panic_message};
use crate::executor::PlainFn;

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

/// How a task ended on the worker, as the reply carries it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    /// The result, as JSON.
    Ok(String),
    Panicked(String),
    TimedOut,
    /// The worker process running it (process mode) died.
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))]
    Died(String),
    /// Refused before running: bad argument, unknown name, malformed entry.
    Rejected(String),
    /// The result could not be encoded.
    Transport(String),
    /// Delivered `max_deliveries` times without an answer.
    Lost(String),
}

impl Outcome {
    /// The reply's status word.
    pub(super) fn status(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Panicked(_) => "panic",
            Outcome::TimedOut => "timeout",
            Outcome::Died(_) => "died",
            Outcome::Rejected(_) => "rejected",
            Outcome::Transport(_) => "transport",
            Outcome::Lost(_) => "lost",
        }
    }

    /// The reply's body: the JSON result, or the message.
    pub(super) fn body(&self) -> &str {
        match self {
            Outcome::Ok(json) => json,
            Outcome::TimedOut => "",
            Outcome::Panicked(m)
            | Outcome::Died(m)
            | Outcome::Rejected(m)
            | Outcome::Transport(m)
            | Outcome::Lost(m) => m,
        }
    }

    /// Worth running again if the submitter asked for retries.
    pub(super) fn retryable(&self) -> bool {
        matches!(
            self,
            Outcome::Panicked(_) | Outcome::TimedOut | Outcome::Died(_)
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
            other => TaskError::Transport(
                format!("the reply has an unknown status {:.40?}", other).into(),
            ),
        })
    }

    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))]
    fn from_task_error(err: TaskError) -> Outcome {
        match err {
            TaskError::Panicked(m) => Outcome::Panicked(m.message().to_owned()),
            TaskError::TimedOut => Outcome::TimedOut,
            TaskError::WorkerDied(m) => Outcome::Died(m.to_string()),
            other => Outcome::Transport(other.to_string()),
        }
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
    /// is known.
    #[cfg(all(unix, feature = "process"))]
    fn submit(
        &self,
        pool: &crate::process::ProcessPoolExecutor,
        args: &[u8],
        chunk: bool,
        limit: Option<std::time::Duration>,
        done: Done,
    );
}

struct Typed<F, A, R> {
    f: F,
    types: std::marker::PhantomData<fn(A) -> R>,
}

fn decode<A: DeserializeOwned>(args: &[u8]) -> Result<A, String> {
    serde_json::from_slice(args).map_err(|e| {
        format!(
            "the argument does not decode as {}: {e}",
            std::any::type_name::<A>()
        )
    })
}

fn encode<R: Serialize>(value: &R) -> Outcome {
    match panic::catch_unwind(AssertUnwindSafe(|| serde_json::to_string(value))) {
        Ok(Ok(json)) => Outcome::Ok(json),
        Ok(Err(e)) => Outcome::Transport(format!("cannot encode the result: {e}")),
        Err(p) => Outcome::Transport(format!(
            "the result's Serialize panicked: {}",
            panic_message(&*p)
        )),
    }
}

/// One chunk item's outcome as an element of the chunk's JSON array.
fn chunk_item(outcome: &Outcome, out: &mut String) {
    match outcome {
        Outcome::Ok(json) => {
            out.push_str("{\"ok\":");
            out.push_str(json);
            out.push('}');
        }
        other => {
            let item = serde_json::json!({ "err": other.status(), "msg": other.body() });
            out.push_str(&item.to_string());
        }
    }
}

fn chunk_json(outcomes: &[Outcome]) -> String {
    let mut out = String::from("[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        chunk_item(o, &mut out);
    }
    out.push(']');
    out
}

impl<F, A, R> Typed<F, A, R>
where
    F: PlainFn<A, R>,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn run(&self, arg: A) -> Outcome {
        match panic::catch_unwind(AssertUnwindSafe(|| (self.f)(arg))) {
            Ok(value) => encode(&value),
            Err(p) => Outcome::Panicked(panic_report(&*p)),
        }
    }
}

impl<F, A, R> Entry for Typed<F, A, R>
where
    F: PlainFn<A, R>,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn call(&self, args: &[u8]) -> Outcome {
        match decode::<A>(args) {
            Ok(arg) => self.run(arg),
            Err(why) => Outcome::Rejected(why),
        }
    }

    fn call_chunk(&self, args: &[u8]) -> Outcome {
        match decode::<Vec<A>>(args) {
            Ok(items) => {
                let outcomes: Vec<Outcome> = items.into_iter().map(|a| self.run(a)).collect();
                Outcome::Ok(chunk_json(&outcomes))
            }
            Err(why) => Outcome::Rejected(why),
        }
    }

    #[cfg(all(unix, feature = "process"))]
    fn submit(
        &self,
        pool: &crate::process::ProcessPoolExecutor,
        args: &[u8],
        chunk: bool,
        limit: Option<std::time::Duration>,
        done: Done,
    ) {
        use parking_lot::Mutex;

        let Some(f) = crate::executor::fn_ptr(&self.f) else {
            unreachable!("Tasks::add accepts only zero-sized functions")
        };
        let start = |arg: A, done: Box<dyn FnOnce(Outcome) + Send>| {
            let submitted = match limit {
                Some(limit) => pool.submit_with_time_limit(f, arg, limit),
                None => pool.submit(f, arg),
            };
            match submitted {
                Ok(fut) => fut.on_result(move |r| {
                    done(match r {
                        Ok(value) => encode(&value),
                        Err(e) => Outcome::from_task_error(e),
                    })
                }),
                Err(e) => done(Outcome::Transport(e.without_task().to_string())),
            }
        };
        if !chunk {
            match decode::<A>(args) {
                Ok(arg) => start(arg, done),
                Err(why) => done(Outcome::Rejected(why)),
            }
            return;
        }
        let items = match decode::<Vec<A>>(args) {
            Ok(items) => items,
            Err(why) => return done(Outcome::Rejected(why)),
        };
        if items.is_empty() {
            return done(Outcome::Ok("[]".into()));
        }
        // Each item runs as its own task, so a crash or time limit fails only that item.
        struct Gather {
            outcomes: Vec<Option<Outcome>>,
            left: usize,
            done: Option<Done>,
        }
        let gather = Arc::new(Mutex::new(Gather {
            outcomes: vec![None; items.len()],
            left: items.len(),
            done: Some(done),
        }));
        for (i, item) in items.into_iter().enumerate() {
            let gather = gather.clone();
            start(
                item,
                Box::new(move |outcome| {
                    let mut g = gather.lock();
                    g.outcomes[i] = Some(outcome);
                    g.left -= 1;
                    if g.left == 0 {
                        let all: Vec<Outcome> = g.outcomes.drain(..).flatten().collect();
                        let done = g.done.take();
                        drop(g);
                        if let Some(done) = done {
                            done(Outcome::Ok(chunk_json(&all)));
                        }
                    }
                }),
            );
        }
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
        assert_eq!(d.call(b"21"), Outcome::Ok("42".into()));
        assert!(matches!(d.call(b"\"x\""), Outcome::Rejected(m) if m.contains("u32")));
        assert!(matches!(d.call(b"-1"), Outcome::Rejected(_)));
        let b = tasks.get("b").unwrap();
        assert_eq!(b.call(b"3"), Outcome::Panicked("three".into()));
        assert_eq!(
            b.call_chunk(b"[1,3]"),
            Outcome::Ok(r#"[{"ok":1},{"err":"panic","msg":"three"}]"#.into())
        );
        assert!(matches!(b.call_chunk(b"{}"), Outcome::Rejected(_)));
    }

    #[test]
    fn statuses_map_to_task_errors() {
        for o in [
            Outcome::Panicked("p".into()),
            Outcome::TimedOut,
            Outcome::Died("d".into()),
            Outcome::Rejected("r".into()),
            Outcome::Transport("t".into()),
            Outcome::Lost("l".into()),
        ] {
            let err = Outcome::error(o.status(), o.body()).unwrap();
            assert_eq!(
                Outcome::from_task_error(err.clone()).status() == o.status(),
                {
                    // Rejected and Lost exist only on the wire.
                    !matches!(o, Outcome::Rejected(_) | Outcome::Lost(_))
                }
            );
        }
        assert!(Outcome::error("ok", "1").is_none());
        assert!(matches!(
            Outcome::error("what", ""),
            Some(TaskError::Transport(_))
        ));
    }
}
