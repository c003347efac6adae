//! [`TaskId`]: the name of a Redis task, the same in every process.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest task id.
pub const MAX_TASK_ID: usize = 128;

/// Crockford's base 32: no I, L, O, U, so an id read aloud or retyped stays the same.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A Redis task's id: printable, parseable, and the same in every process (RQ's `job.id`,
/// Celery's `AsyncResult.id`).
///
/// Every task gets one. By default it is generated: 26 characters, the time of the submit
/// in milliseconds and 80 random bits in Crockford's base 32 (the ULID layout), so ids sort
/// by submit time (to the millisecond) and do not repeat. An id you choose with [`TaskOptions::id`] makes the
/// submit idempotent: a second submit with the same id, while the first task is queued,
/// running or its result is kept, runs nothing new and completes with the first task's
/// outcome.
///
/// A chosen id is 1 to 128 ASCII letters, digits and `_ . - : @`.
///
/// [`TaskOptions::id`]: super::TaskOptions::id
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::TaskId;
///
/// let id: TaskId = "invoice:2026-12:42".parse()?;
/// assert_eq!(id.to_string(), "invoice:2026-12:42");
/// assert!("no spaces please".parse::<TaskId>().is_err());
///
/// let fresh = TaskId::generate();
/// assert_eq!(fresh.as_str().len(), 26);
/// assert_ne!(fresh, TaskId::generate());
/// # Ok::<(), concurrent_futures::redis::InvalidTaskId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Arc<str>);

/// A string that is not a valid [`TaskId`]; the message says why.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::TaskId;
///
/// let err = TaskId::new("").unwrap_err();
/// assert!(err.to_string().contains("1 to 128"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid task id {shown:?}: {why}")]
pub struct InvalidTaskId {
    shown: String,
    why: &'static str,
}

impl TaskId {
    /// Checks a chosen id.
    ///
    /// # Errors
    ///
    /// [`InvalidTaskId`] unless `id` is 1 to 128 ASCII letters, digits and `_ . - : @`.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::TaskId;
    /// assert_eq!(TaskId::new("report-7")?.as_str(), "report-7");
    /// # Ok::<(), concurrent_futures::redis::InvalidTaskId>(())
    /// ```
    pub fn new(id: &str) -> Result<TaskId, InvalidTaskId> {
        let refuse = |why| {
            Err(InvalidTaskId {
                shown: id.chars().take(40).collect(),
                why,
            })
        };
        if id.is_empty() || id.len() > MAX_TASK_ID {
            return refuse("an id is 1 to 128 characters");
        }
        if !id.bytes().all(valid_byte) {
            return refuse("an id holds only ASCII letters, digits and _ . - : @");
        }
        Ok(TaskId(id.into()))
    }

    /// A new id: the time now in milliseconds (48 bits) and 80 random bits, in 26
    /// characters of Crockford's base 32.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::TaskId;
    /// let (a, b) = (TaskId::generate(), TaskId::generate());
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 26);
    /// ```
    pub fn generate() -> TaskId {
        let ms = u128::from(super::host::now_ms()) & ((1 << 48) - 1);
        let random =
            (u128::from(super::host::random()) << 16) ^ u128::from(super::host::random() & 0xffff);
        let mut n = (ms << 80) | (random & ((1 << 80) - 1));
        let mut out = [0u8; 26];
        for c in out.iter_mut().rev() {
            *c = ALPHABET[(n & 31) as usize];
            n >>= 5;
        }
        let text = std::str::from_utf8(&out).expect("the alphabet is ASCII");
        TaskId(text.into())
    }

    /// The id as text.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::TaskId;
    /// assert_eq!(TaskId::new("a.b")?.as_str(), "a.b");
    /// # Ok::<(), concurrent_futures::redis::InvalidTaskId>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's text, shared (for `Future::task_id`).
    pub(super) fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// An id whose text was checked when it was made (kept as text in `TaskOptions`).
    pub(super) fn from_shared(text: Arc<str>) -> TaskId {
        debug_assert!(TaskId::checked(&text).is_some());
        TaskId(text)
    }

    /// An id read from Redis or a peer: `None` unless valid.
    pub(super) fn checked(text: &str) -> Option<TaskId> {
        TaskId::new(text).ok()
    }
}

/// Defined here, not in `future/`, so that the task cell knows nothing of Redis.
impl<T> crate::future::Future<T> {
    /// The id of a Redis task ([`TaskId`](crate::redis::TaskId)), the same in every
    /// process: another process can [`attach`](crate::redis::RedisExecutor::attach) to it or
    /// read its [`status`](crate::redis::RedisExecutor::status). `None` for a task of a
    /// local pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn double(x: u32) -> u32 { x * 2 }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("double", double)).build()?;
    /// let fut = ex.submit(double, 21)?;
    /// println!("queued as {}", fut.task_id().unwrap());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task_id(&self) -> Option<TaskId> {
        self.task.task_id().map(TaskId)
    }
}

fn valid_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.-:@".contains(&b)
}

impl FromStr for TaskId {
    type Err = InvalidTaskId;

    fn from_str(s: &str) -> Result<TaskId, InvalidTaskId> {
        TaskId::new(s)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", &self.0)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_sort_by_time_and_parse_back() {
        let a = TaskId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = TaskId::generate();
        assert!(a < b, "{a} < {b}");
        assert_eq!(a.as_str().parse::<TaskId>().unwrap(), a);
        assert!(a.as_str().bytes().all(|c| ALPHABET.contains(&c)));
    }

    #[test]
    fn chosen_ids_are_checked() {
        for bad in ["", "a b", "é", "a\nb", &"x".repeat(129), "{ns}"] {
            assert!(TaskId::new(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "order:42", "user@example.com", &"x".repeat(128)] {
            assert!(TaskId::new(good).is_ok(), "{good:?}");
        }
    }
}
