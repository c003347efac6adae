//! The reader: blocks on the client's reply stream (`XREAD BLOCK`, a connection of its own),
//! completes futures as answers arrive, marks them running when a worker says it started
//! them, and looks for the tasks Redis lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::Value;
use serde::de::DeserializeOwned;

use super::book::{Cancel, SlotState, Waiting};
use super::{BATCH, BLOCK, LOST_AFTER, MAX_MESSAGE, READ_GRACE, Shared};
use crate::error::TaskError;
use crate::map::Chunk;
use crate::outcome;
use crate::redis::conn::Link;
use crate::redis::id::TaskId;
use crate::redis::tasks::{self, Json};
use crate::redis::wire::{self};

impl Shared {
    /// Looks for the tasks this client waits for: a task is in the index while queued or
    /// running, and its record is kept once it ended. One whose record exists although no
    /// answer came was answered while this client's reply stream was gone (Redis lost it):
    /// the record completes it. One in neither was lost with Redis's data. Either way only
    /// once it was seen so at the previous look too, two reads of the reply stream ago, so
    /// that an answer on its way is never taken for a loss. Returns the tasks seen so now,
    /// with when they were first seen so.
    pub(super) fn find_lost(
        &self,
        link: &mut Link,
        missing: HashMap<u64, Instant>,
    ) -> HashMap<u64, Instant> {
        let sent: Vec<(u64, TaskId)> = {
            let book = self.book.lock();
            book.waiting
                .iter()
                .filter(|(_, w)| matches!(&*w.slot.state.lock(), SlotState::Sent))
                .map(|(seq, w)| (*seq, w.task.clone()))
                .collect()
        };
        let mut now_missing = HashMap::new();
        let mut records = Vec::new();
        for batch in sent.chunks(500) {
            let found = link.once(|con| {
                let mut pipe = ::redis::pipe();
                for (_, id) in batch {
                    pipe.cmd("GET").arg(self.keys.result(id.as_str()));
                    pipe.cmd("HEXISTS")
                        .arg(self.keys.ids(id.as_str()))
                        .arg(id.as_str());
                }
                pipe.query::<Vec<Value>>(con)
            });
            let Ok(found) = found else {
                return missing; // Redis is away: look again later
            };
            for ((seq, _), v) in batch.iter().zip(found.chunks(2)) {
                let record = wire::record(&v[0]);
                let indexed = wire::int(&v[1]) == Some(1);
                if record.is_empty() && indexed {
                    continue;
                }
                let since = missing.get(seq).copied().unwrap_or_else(Instant::now);
                if since.elapsed() >= LOST_AFTER && !record.is_empty() {
                    records.push((*seq, record));
                } else {
                    now_missing.insert(*seq, since);
                }
            }
        }
        for (seq, record) in records {
            log::warn!(target: "concurrent_futures::redis", "task {seq} was answered but the answer never reached this client (its reply stream was lost): completed from the task's record");
            self.complete_from_record(seq, &record);
        }
        let lost: Vec<Waiting> = {
            let mut book = self.book.lock();
            now_missing
                .iter()
                .filter(|(_, since)| since.elapsed() >= LOST_AFTER)
                .filter_map(|(seq, _)| book.remove(*seq))
                .collect()
        };
        if !lost.is_empty() {
            let why: Arc<str> = format!(
                "Redis at {} no longer has it: it is neither queued nor running, it left no \
                 record, and no answer came within {:?} (Redis restarted without its data, \
                 failed over to a replica that never received it, or was flushed)",
                self.address, LOST_AFTER
            )
            .into();
            log::error!(target: "concurrent_futures::redis", "{} tasks lost: {why}", lost.len());
            for w in lost {
                (w.complete)(Err(TaskError::Lost(why.clone())));
            }
            self.notify_if_drained();
        }
        now_missing.retain(|seq, _| self.waits_for(*seq));
        now_missing
    }

    /// Makes sure this client's reply stream exists (workers answer only clients whose
    /// stream exists, so that a client that left costs nothing) and keeps its TTL fresh:
    /// `result_ttl`, at least a minute, refreshed every 5 s by the reader.
    pub(super) fn keep_reply_stream(&self, link: &mut Link) -> ::redis::RedisResult<()> {
        let ttl = wire::millis(self.cfg.result_ttl.max(Duration::from_secs(60)));
        link.once(|con| {
            let alive: i64 = ::redis::cmd("PEXPIRE")
                .arg(&self.reply_key)
                .arg(ttl)
                .query(con)?;
            if alive == 0 {
                ::redis::pipe()
                    .cmd("XADD")
                    .arg(&self.reply_key)
                    .arg("*")
                    .arg("s")
                    .arg("hello")
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&self.reply_key)
                    .arg(ttl)
                    .ignore()
                    .query::<()>(con)?;
            }
            Ok(())
        })
    }

    /// Completes task `seq` (if this client still waits for it).
    pub(super) fn complete(&self, seq: u64, reply: Result<&[u8], TaskError>) {
        let waiting = self.book.lock().remove(seq);
        if let Some(w) = waiting {
            (w.complete)(reply);
            self.notify_if_drained();
        }
    }

    /// Completes future `seq` from a task's kept record (its fields as read).
    pub(super) fn complete_from_record(&self, seq: u64, record: &[(String, Vec<u8>)]) {
        let get = |k: &str| record.iter().find(|(f, _)| f == k).map(|(_, v)| &v[..]);
        let status = get("s")
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("");
        let reply = self.reply_of(status, get("r").unwrap_or(b""));
        self.complete(seq, reply);
    }

    /// A reply entry: completes the futures of its task after checking every field, or
    /// marks the futures of the tasks a worker started.
    pub(super) fn deliver(&self, e: &wire::RawEntry) {
        if e.text("s") == Some("started") {
            let ids = e.text("ids").unwrap_or("");
            let started: Vec<Arc<dyn Cancel>> = {
                let book = self.book.lock();
                // A worker lists one read's tasks (at most its slots); anything longer was
                // not written by a worker, and is read no further than that while the book
                // is locked.
                ids.split(' ')
                    .take(MAX_STARTED)
                    .filter_map(TaskId::checked)
                    .filter_map(|id| book.by_id.get(&id))
                    .flatten()
                    .filter_map(|seq| book.waiting.get(seq))
                    .map(|w| w.cancel.clone())
                    .collect()
            };
            for task in started {
                task.started();
            }
            return;
        }
        let Some(task) = e.text("id").and_then(TaskId::checked) else {
            return; // a wake-up, or garbage: nothing waits for it
        };
        let status = e.text("s").unwrap_or("");
        let body = e.get("r").unwrap_or(b"");
        let waiting = self.book.lock().remove_task(&task);
        if waiting.is_empty() {
            return;
        }
        for w in waiting {
            (w.complete)(self.reply_of(status, body));
        }
        self.notify_if_drained();
    }

    /// What a reply's status and body mean for a future.
    pub(super) fn reply_of<'b>(&self, status: &str, body: &'b [u8]) -> Result<&'b [u8], TaskError> {
        if body.len() > self.cfg.max_payload {
            Err(TaskError::Transport(
                format!(
                    "the result is {} bytes, above this client's limit of {} (max_payload_bytes)",
                    body.len(),
                    self.cfg.max_payload
                )
                .into(),
            ))
        } else {
            let message = String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]);
            match tasks::error(status, &message) {
                None => Ok(body),
                Some(err) => Err(err),
            }
        }
    }
}

/// The reader thread: blocks on this client's reply stream and completes futures, until the
/// executor is shut down and nothing is left to wait for.
pub(super) fn reader(shared: &Arc<Shared>) {
    crate::context::defer_callbacks(shared.callback_sink());
    let mut link = Link::new(
        shared.redis.clone(),
        "RedisExecutor reader",
        BLOCK + READ_GRACE,
    );
    let finished = || {
        let book = shared.book.lock();
        book.closed && book.waiting.is_empty()
    };
    let mut last = "0-0".to_owned();
    let mut read: Vec<String> = Vec::new();
    let mut deleted = Instant::now();
    // Tasks whose queue entries were gone at the last look, and since when.
    let mut missing: HashMap<u64, Instant> = HashMap::new();
    let mut looked = Instant::now();
    // When the reply stream's TTL was last refreshed.
    let mut kept = Instant::now();
    // The last read took everything the reply stream held: no answer waits unread.
    let mut caught_up = false;
    let give_up = || {
        shared.unreachable();
        finished()
    };
    while !finished() {
        // Only with every answer read and delivered: a task whose entry is gone then has
        // its answer in hand, or has none anywhere.
        if kept.elapsed() >= LOST_AFTER / 2 {
            let _ = shared.keep_reply_stream(&mut link);
            kept = Instant::now();
        }
        if caught_up && looked.elapsed() >= LOST_AFTER / 2 {
            missing = shared.find_lost(&mut link, std::mem::take(&mut missing));
            looked = Instant::now();
        }
        if shared.book.lock().closed {
            shared.forget_unheld();
        }
        let Some(reply) = link.retry(&shared.scripts, &give_up, |con| {
            ::redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(wire::millis(BLOCK))
                .arg("STREAMS")
                .arg(&shared.reply_key)
                .arg(&last)
                .query::<Value>(con)
        }) else {
            break;
        };
        shared.reached();
        let entries = wire::read_reply(&reply);
        caught_up = entries.len() < BATCH;
        let Some(newest) = entries.last() else {
            continue;
        };
        last.clone_from(&newest.id);
        for e in &entries {
            shared.deliver(e);
        }
        // Read entries are deleted in batches, off the path of the next round trip.
        read.extend(entries.into_iter().map(|e| e.id));
        if read.len() >= BATCH || deleted.elapsed() >= Duration::from_secs(1) {
            let _ = link.once(|con| {
                let mut del = ::redis::cmd("XDEL");
                del.arg(&shared.reply_key);
                for id in &read {
                    del.arg(id);
                }
                del.query::<()>(con)
            });
            read.clear();
            deleted = Instant::now();
        }
    }
    // Not while Redis is out of reach (a connection attempt could take seconds): the reply
    // stream expires by itself after `result_ttl`.
    if shared.outage.lock().is_none() {
        let _ = link.once(|con| ::redis::cmd("DEL").arg(&shared.reply_key).query::<()>(con));
    }
}

pub(super) fn decode_one<R: DeserializeOwned>(body: &[u8]) -> Result<R, TaskError> {
    outcome::decode::<Json, R>(body)
}

/// The most task ids read from one `started` entry.
const MAX_STARTED: usize = 10_000;

/// A chunk's results: exactly `n` of them, or the same error for each.
pub(super) fn decode_chunk<R: DeserializeOwned>(
    reply: Result<&[u8], TaskError>,
    n: usize,
) -> Chunk<R> {
    outcome::decode_chunk::<Json, R>(reply, Some(n))
        .unwrap_or_else(|e| (0..n).map(|_| Err(Box::new(e.clone()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_always_have_one_result_per_item() {
        let ok =
            decode_chunk::<u32>(Ok(br#"[{"ok":1},{"err":"panic","msg":"x"}]"#), 2).into_results();
        assert_eq!(ok[0].as_ref().unwrap(), &1);
        assert!(
            matches!(ok[1].as_ref().map_err(|e| &**e), Err(TaskError::Panicked(m)) if &**m == "x")
        );
        for bad in [
            &b"[{\"ok\":1}]"[..],
            b"{}",
            b"[1,2]",
            b"[{\"ok\":\"s\"},{}]",
        ] {
            let got = decode_chunk::<u32>(Ok(bad), 2).into_results();
            assert_eq!(got.len(), 2, "{}", String::from_utf8_lossy(bad));
            assert!(got.iter().any(Result::is_err));
        }
        let lost = decode_chunk::<u32>(Err(TaskError::WorkerLost("3".into())), 3).into_results();
        assert_eq!(lost.len(), 3);
    }

    #[test]
    fn deep_results_are_refused_not_overflowing() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let got: Result<Vec<serde_json::Value>, _> = decode_one(deep.as_bytes());
        assert!(got.is_err());
    }
}
