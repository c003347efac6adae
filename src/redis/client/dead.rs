//! Operating a queue from any process: its history, and retrying or deleting dead letters
//! (what a dashboard's buttons do, `crate::dashboard`).

use super::RedisExecutor;
use crate::redis::SetupError;
use crate::redis::info::{self, QueueSample};
use crate::redis::wire::{self, RawEntry};

/// The most dead letters one call retries or deletes.
const MAX_IDS: usize = 1000;

/// The fields a dead letter adds to the entry it keeps (see `worker::reader::dead_fields`).
const DEAD_ONLY: [&str; 6] = ["entry", "why", "msg", "w", "at", "cut"];

/// A stream entry id (`<ms>-<seq>`), as XADD makes them: anything else is refused before
/// it reaches Redis.
fn valid_entry_id(id: &str) -> bool {
    let mut parts = id.splitn(2, '-');
    let digits = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    digits(parts.next()) && digits(parts.next())
}

impl RedisExecutor {
    /// The queue's history, oldest first: a sample every 10 s while any worker runs, six
    /// hours of them, kept in Redis (Flower's history dies with its process; this one does
    /// not). Each sample has the queue depth, the tasks running, the age of the oldest
    /// waiting task, and the answered counts, whose differences are the throughput.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// if let Some(last) = ex.history()?.last() {
    ///     println!("{} queued, the oldest for {:?}", last.queued, last.oldest_age);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn history(&self) -> Result<Vec<QueueSample>, SetupError> {
        let shared = &self.shared;
        let (mut con, fail) = self.own_connection()?;
        info::history(&mut con, &shared.keys).map_err(fail)
    }

    /// Queues the tasks of these dead letters again (ids from
    /// [`QueueInfo::dead`](crate::redis::QueueInfo::dead)), each under its own task id, and
    /// deletes the letters: RQ's `requeue`, Sidekiq's "retry". Each is atomic in Redis: a
    /// letter is queued once however many processes retry it at once, and a letter whose
    /// task id is queued or running again stays where it is. A letter that is gone, cut
    /// (its argument was longer than the worker's `max_payload_bytes`), or whose entry no
    /// longer passes a worker's checks is left alone. Returns how many were queued.
    ///
    /// Retry a letter once its cause is gone: a worker that registers its name is running,
    /// or the bug that crashed its workers is fixed. Its new result goes to its record (so
    /// [`attach`](Self::attach) and [`status`](Self::status) see it); the future that
    /// received the dead letter's error stays failed.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked (some letters may have been queued
    /// by then, each exactly once).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let dead: Vec<String> = ex.info()?.dead.into_iter().map(|d| d.id).collect();
    /// let ids: Vec<&str> = dead.iter().map(String::as_str).collect();
    /// println!("queued {} again", ex.retry_dead(&ids)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retry_dead(&self, ids: &[&str]) -> Result<usize, SetupError> {
        let shared = &self.shared;
        let (mut con, fail) = self.own_connection()?;
        let keys = &shared.keys;
        let mut queued = 0;
        for &id in ids.iter().filter(|id| valid_entry_id(id)).take(MAX_IDS) {
            let found: ::redis::Value = ::redis::cmd("XRANGE")
                .arg(&keys.dead)
                .arg(id)
                .arg(id)
                .query(&mut con)
                .map_err(&fail)?;
            let Some(letter) = wire::entries(&found).into_iter().next() else {
                continue;
            };
            if letter.get("cut").is_some() {
                continue;
            }
            // The entry as the worker would read it: the letter's own fields left out.
            let raw = RawEntry {
                id: letter.id.clone(),
                fields: letter.fields.as_ref().map(|fields| {
                    fields
                        .iter()
                        .filter(|(k, _)| !DEAD_ONLY.contains(&k.as_str()))
                        .cloned()
                        .collect()
                }),
            };
            let Ok(entry) = wire::task_entry(&raw, shared.cfg.max_payload) else {
                continue;
            };
            let task = entry.route.task.clone();
            let mut call = shared.scripts.requeue.prepare_invoke();
            call.key(&keys.dead)
                .key(&keys.queue)
                .key(keys.ids(&task))
                .key(keys.result(&task))
                .arg(id)
                .arg(&task);
            for (k, v) in wire::entry_fields(&entry) {
                call.arg(k).arg(v);
            }
            if call.invoke::<i64>(&mut con).map_err(&fail)? == 1 {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Deletes these dead letters (ids from [`QueueInfo::dead`](crate::redis::QueueInfo::dead)).
    /// Ids that are not stream ids are ignored. Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let info = ex.info()?;
    /// let ids: Vec<&str> = info.dead.iter().map(|d| d.id.as_str()).collect();
    /// println!("deleted {}", ex.delete_dead(&ids)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_dead(&self, ids: &[&str]) -> Result<usize, SetupError> {
        let ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| valid_entry_id(id))
            .take(MAX_IDS)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let shared = &self.shared;
        let (mut con, fail) = self.own_connection()?;
        let deleted: usize = ::redis::cmd("XDEL")
            .arg(&shared.keys.dead)
            .arg(&ids)
            .query(&mut con)
            .map_err(fail)?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_entry_id;

    #[test]
    fn only_stream_ids_pass() {
        assert!(valid_entry_id("1700000000000-0"));
        assert!(valid_entry_id("1-12"));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "a-1",
            "1-1-1",
            "+",
            "1 -1",
            &"9".repeat(21),
        ] {
            assert!(!valid_entry_id(bad), "{bad:?}");
        }
    }
}
