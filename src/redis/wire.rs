//! What lies in Redis: the key layout, the fields of queue and reply entries, the Lua scripts,
//! and the checks that every value read back passes before it is used.
//!
//! Everything read from Redis is untrusted: anyone who can write to the namespace can put
//! any bytes in an entry. Values are checked for type and size here and turned into plain
//! Rust data; nothing downstream looks at a [`Value`] again.

use std::time::Duration;

use ::redis::{Script, Value};

use super::tasks::{MAX_NAME, check_name};

/// The consumer group every worker reads the queue through.
pub(super) const GROUP: &str = "workers";

/// The version of the entry format, field `v` of every queue entry. Format 2 (this one)
/// names each task by its [`TaskId`](super::id::TaskId) (field `id`) and keeps a record of it;
/// format 1 routed replies by the client's task number (field `t`).
pub(super) const FORMAT: &str = "2";

/// The most fields an entry may have; ours have at most 10.
const MAX_FIELDS: usize = 32;

/// The longest client id or consumer name.
pub(super) const MAX_ID: usize = 96;

/// Redis keys of one namespace. Every key carries the namespace in braces (a hash tag), so
/// all of them live in one Redis Cluster slot and the Lua scripts may touch them together.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) ns: String,
    /// The stream of queued tasks.
    pub(super) queue: String,
    /// The stream of dead letters.
    pub(super) dead: String,
    /// Sorted set of live workers, scored by their last heartbeat (ms since the epoch).
    pub(super) workers: String,
    /// What each worker's hash of running tasks is named after (`{ns}:running:<worker>`:
    /// task id → when its current delivery started, ms).
    pub(super) running_prefix: String,
    /// Sorted set of the tasks that run later: task id, scored by when they are due (ms).
    pub(super) scheduled: String,
    /// Hash of the scheduled tasks' entries: task id → JSON `{b: ids bucket, f: fields}`.
    pub(super) payloads: String,
    /// Hash of the periodic tasks: name → their schedule and entry (JSON).
    pub(super) periodic: String,
    /// Sorted set of the periodic tasks by their next tick (ms).
    pub(super) periodic_due: String,
    /// Stream of samples of the queue, one every [`SAMPLE_EVERY`] at most: the history a
    /// dashboard charts, kept in Redis so that it outlives every process.
    pub(super) stats: String,
    /// Hash of the tasks answered since the namespace began: `ok` and `failed`.
    pub(super) counts: String,
    /// Hash of the running entries someone asked to kill: entry id → when (ms).
    pub(super) kill: String,
    /// Stream of the newest failed answers (about 1,000): task id, status, error, worker.
    pub(super) failures: String,
}

impl Keys {
    pub(super) fn new(ns: &str) -> Keys {
        Keys {
            ns: ns.to_owned(),
            queue: format!("{{{ns}}}:queue"),
            dead: format!("{{{ns}}}:dead"),
            workers: format!("{{{ns}}}:workers"),
            running_prefix: format!("{{{ns}}}:running:"),
            scheduled: format!("{{{ns}}}:scheduled"),
            payloads: format!("{{{ns}}}:scheduled:entries"),
            periodic: format!("{{{ns}}}:periodic"),
            periodic_due: format!("{{{ns}}}:periodic:due"),
            stats: format!("{{{ns}}}:stats"),
            counts: format!("{{{ns}}}:counts"),
            kill: format!("{{{ns}}}:kill"),
            failures: format!("{{{ns}}}:failures"),
        }
    }

    /// The index of queued and running tasks, task id → queue entry id, in 4,096 small
    /// hashes picked by a hash of the id: small hashes are stored compactly by Redis
    /// (listpacks, up to 128 fields), one big hash is not (about 116 bytes a field against
    /// about 50).
    pub(super) fn ids(&self, id: &str) -> String {
        format!("{}{:03x}", self.ids_prefix(), id_bucket(id))
    }

    /// What every bucket of the id index is named after: `{ns}:ids:`.
    pub(super) fn ids_prefix(&self) -> String {
        format!("{{{}}}:ids:", self.ns)
    }

    /// A finished task's record: its status, result or error, worker and end time.
    pub(super) fn result(&self, id: &str) -> String {
        format!("{{{}}}:result:{id}", self.ns)
    }

    /// The clients that attached to a task besides the one that submitted it.
    pub(super) fn watch(&self, id: &str) -> String {
        format!("{{{}}}:watch:{id}", self.ns)
    }

    /// The stream a client reads its results from.
    pub(super) fn reply(&self, client: &str) -> String {
        format!("{{{}}}:reply:{client}", self.ns)
    }
}

/// How many small hashes the index of task ids is spread over.
pub(super) const ID_BUCKETS: usize = 4096;

/// Which of the index's hashes holds task `id` (FNV-1a of the id).
pub(super) fn id_bucket(id: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % ID_BUCKETS
}

/// Why a namespace is not valid: 1 to 64 ASCII letters, digits, `_ . -`.
pub(super) fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty()
        || ns.len() > 64
        || !ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(format!(
            "namespace {ns:?}: 1 to 64 ASCII letters, digits and _ . - are allowed"
        ));
    }
    Ok(())
}

/// Client ids and consumer names: what a reply key is built from, so an entry cannot point
/// a worker's reply at another key.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A stream entry as read: its id and its field/value pairs (`None` for an entry that was
/// deleted while pending, which Redis 6.2's `XAUTOCLAIM` reports as nil).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RawEntry {
    pub(super) id: String,
    pub(super) fields: Option<Vec<(String, Vec<u8>)>>,
}

impl RawEntry {
    pub(super) fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &v[..])
    }

    pub(super) fn text(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.get(name)?).ok()
    }

    pub(super) fn size(&self) -> usize {
        self.fields
            .as_ref()
            .map_or(0, |f| f.iter().map(|(k, v)| k.len() + v.len()).sum())
    }
}

/// Whether a reply says the scripts are not loaded (Redis restarted and lost its cache).
pub(super) fn is_no_script(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// The bytes of a string reply.
pub(super) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        Value::Okay => Some(b"OK"),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

pub(super) fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// The reply of a script that handles a batch of `n` items, one per item: its items, or
/// the one reply given for the whole call (a refusal such as `LOADING` or `NOSCRIPT`) for
/// each.
pub(super) fn per_item(reply: Option<&Value>, n: usize) -> Vec<Value> {
    match reply {
        Some(Value::Array(items)) if items.len() == n => items.clone(),
        Some(other) => vec![other.clone(); n],
        None => vec![Value::Nil; n],
    }
}

/// A task's kept record, one string: `<status>\n<worker>\n<end ms>\n<result or message>`
/// (one key, one `SET ... PX`: less memory and fewer commands than a hash), as field/value
/// pairs `s`, `w`, `at`, `r`; empty for a missing or malformed record.
pub(super) fn record(v: &Value) -> Vec<(String, Vec<u8>)> {
    let Some(b) = bytes(v) else {
        return Vec::new();
    };
    let mut parts = b.splitn(4, |c| *c == b'\n');
    let (Some(s), Some(w), Some(at), Some(r)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Vec::new();
    };
    vec![
        ("s".to_owned(), s.to_vec()),
        ("w".to_owned(), w.to_vec()),
        ("at".to_owned(), at.to_vec()),
        ("r".to_owned(), r.to_vec()),
    ]
}

/// Stream ids are `<ms>-<seq>`; anything else is refused before it is sent back to Redis.
pub(super) fn valid_stream_id(id: &str) -> bool {
    let mut parts = id.splitn(2, '-');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    ok(parts.next()) && ok(parts.next())
}

/// Parses one entry `[id, [field, value, ...]]`.
pub(super) fn entry(v: &Value) -> Option<RawEntry> {
    let parts = array(v)?;
    let id = text(parts.first()?)?;
    if !valid_stream_id(id) {
        return None;
    }
    let fields = match parts.get(1) {
        None | Some(Value::Nil) => None,
        Some(list) => {
            let list = array(list)?;
            if list.len() % 2 != 0 || list.len() > 2 * MAX_FIELDS {
                return Some(RawEntry {
                    id: id.to_owned(),
                    fields: Some(Vec::new()),
                });
            }
            let mut fields = Vec::with_capacity(list.len() / 2);
            for pair in list.chunks(2) {
                let (Some(k), Some(v)) = (text(&pair[0]), bytes(&pair[1])) else {
                    continue;
                };
                fields.push((k.to_owned(), v.to_vec()));
            }
            Some(fields)
        }
    };
    Some(RawEntry {
        id: id.to_owned(),
        fields,
    })
}

/// The entries of a list `[entry, ...]`, skipping what does not parse.
pub(super) fn entries(v: &Value) -> Vec<RawEntry> {
    array(v)
        .map(|list| list.iter().filter_map(entry).collect())
        .unwrap_or_default()
}

/// The entries of an `XREAD`/`XREADGROUP` reply (one stream), RESP2 or RESP3 shaped.
pub(super) fn read_reply(v: &Value) -> Vec<RawEntry> {
    match v {
        Value::Nil => Vec::new(),
        Value::Map(pairs) => pairs.first().map(|(_, e)| entries(e)).unwrap_or_default(),
        other => array(other)
            .and_then(|streams| streams.first())
            .and_then(array)
            .and_then(|s| s.get(1))
            .map(entries)
            .unwrap_or_default(),
    }
}

/// A queue entry that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TaskEntry {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) route: Route,
    pub(super) chunk: bool,
    pub(super) args: Vec<u8>,
    pub(super) limit: Option<Duration>,
    /// How many deliveries this task may have (`max_deliveries`).
    pub(super) tries: u32,
    pub(super) retries: u32,
    pub(super) backoff: Duration,
    /// How long the reply is kept (the client's `result_ttl`).
    pub(super) ttl: Duration,
    /// The submitter's trace context (field `tp`), if it carried one that may travel: at
    /// most 512 bytes of printable ASCII; anything else is dropped, not refused.
    pub(super) trace: Option<String>,
}

/// Where a task's answer goes: its record (by task id), the submitting client's reply
/// stream, and the streams of the clients watching it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Route {
    pub(super) client: String,
    pub(super) task: String,
}

/// `max_deliveries` when an entry does not say (its field `tries` is left out).
pub(super) const DEFAULT_TRIES: u32 = 3;
/// How long a record and a reply are kept when an entry does not say (field `ttl`).
pub(super) const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The longest `max_deliveries` and `retries` an entry may ask for.
pub(super) const MAX_TRIES: u32 = 100;
/// The longest time limit or backoff an entry may ask for: a week.
const MAX_MS: u64 = 7 * 24 * 3600 * 1000;

/// Checks a queue entry. On refusal, the reply route if the entry has a valid one, so that
/// the client still hears why.
pub(super) fn task_entry(
    raw: &RawEntry,
    max_payload: usize,
) -> Result<TaskEntry, (Option<Route>, String)> {
    let route = match (raw.text("c"), raw.text("id")) {
        (Some(c), Some(t)) if valid_id(c) && super::id::TaskId::checked(t).is_some() => {
            Some(Route {
                client: c.to_owned(),
                task: t.to_owned(),
            })
        }
        _ => None,
    };
    let refuse = |why: String| Err((route.clone(), why));
    if raw.fields.is_none() {
        return refuse("the entry was deleted while it was pending".into());
    }
    if raw.size() > max_payload.saturating_add(4096) {
        return refuse(format!(
            "the entry is {} bytes, above the worker's limit of {} (max_payload_bytes)",
            raw.size(),
            max_payload
        ));
    }
    if raw.text("v") != Some(FORMAT) {
        return refuse(format!(
            "unknown entry format {:?} (this worker reads format {FORMAT})",
            String::from_utf8_lossy(raw.get("v").unwrap_or(b""))
                .chars()
                .take(20)
                .collect::<String>()
        ));
    }
    if route.is_none() {
        return refuse("the entry has no valid client and task id (fields c and id)".into());
    }
    let name = match raw.text("fn") {
        Some(n) if check_name(n).is_ok() => n.to_owned(),
        Some(n) => {
            return refuse(format!(
                "invalid task name {:?}",
                n.chars().take(MAX_NAME).collect::<String>()
            ));
        }
        None => return refuse("the entry has no task name (field fn)".into()),
    };
    let chunk = match raw.text("k") {
        Some("one") | None => false,
        Some("chunk") => true,
        Some(_) => return refuse("field k is neither \"one\" nor \"chunk\"".into()),
    };
    let Some(args) = raw.get("a") else {
        return refuse("the entry has no argument (field a)".into());
    };
    if args.len() > max_payload {
        return refuse(format!(
            "the argument is {} bytes, above the worker's limit of {max_payload}",
            args.len()
        ));
    }
    let number = |field: &str, max: u64| -> Result<Option<u64>, String> {
        match raw.text(field) {
            None => Ok(None),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => Err(format!("field {field} is not a number up to {max}")),
            },
        }
    };
    let fields = (|| {
        Ok::<_, String>((
            number("limit", MAX_MS)?,
            number("tries", u64::from(MAX_TRIES))?,
            number("retries", u64::from(MAX_TRIES))?,
            number("backoff", MAX_MS)?,
            number("ttl", 30 * 24 * 3600 * 1000)?,
        ))
    })();
    let (limit, tries, retries, backoff, ttl) = match fields {
        Ok(f) => f,
        Err(why) => return refuse(why),
    };
    Ok(TaskEntry {
        id: raw.id.clone(),
        name,
        route: route.expect("checked above"),
        chunk,
        args: args.to_vec(),
        limit: limit.map(Duration::from_millis),
        tries: tries.map_or(DEFAULT_TRIES, |t| t.max(1) as u32),
        retries: retries.unwrap_or(0) as u32,
        backoff: Duration::from_millis(backoff.unwrap_or(1000)),
        ttl: ttl.map_or(DEFAULT_TTL, |t| Duration::from_millis(t.max(1000))),
        trace: raw
            .text("tp")
            .filter(|t| {
                !t.is_empty() && t.len() <= 512 && t.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(str::to_owned),
    })
}

/// A checked entry's fields again, as a queue entry carries them (what `task_entry` read,
/// with the defaults left out): for a dead letter, and for queuing it again.
pub(super) fn entry_fields(entry: &TaskEntry) -> Vec<(String, Vec<u8>)> {
    let text = |k: &str, v: String| (k.to_owned(), v.into_bytes());
    let mut out = vec![
        text("v", FORMAT.to_owned()),
        text("id", entry.route.task.clone()),
        text("fn", entry.name.clone()),
        text("c", entry.route.client.clone()),
        ("a".to_owned(), entry.args.clone()),
    ];
    if entry.chunk {
        out.push(text("k", "chunk".to_owned()));
    }
    if entry.tries != DEFAULT_TRIES {
        out.push(text("tries", entry.tries.to_string()));
    }
    if entry.ttl != DEFAULT_TTL {
        out.push(text("ttl", millis(entry.ttl).to_string()));
    }
    if let Some(limit) = entry.limit {
        out.push(text("limit", millis(limit).to_string()));
    }
    if entry.retries > 0 {
        out.push(text("retries", entry.retries.to_string()));
        out.push(text("backoff", millis(entry.backoff).to_string()));
    }
    if let Some(trace) = &entry.trace {
        out.push(text("tp", trace.clone()));
    }
    out
}

/// The Lua scripts. Each touches only the keys it is given, all in one namespace (one
/// Cluster slot), and is the one place where a check and the write it guards must be atomic.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) finish: Script,
    pub(super) submit: Script,
    pub(super) attach: Script,
    pub(super) status: Script,
    pub(super) renew: Script,
    pub(super) cancel: Script,
    pub(super) prune: Script,
    pub(super) promote: Script,
    pub(super) fire: Script,
    pub(super) start: Script,
    pub(super) sample: Script,
    pub(super) requeue: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            finish: Script::new(FINISH),
            submit: Script::new(SUBMIT),
            attach: Script::new(ATTACH),
            status: Script::new(STATUS),
            renew: Script::new(RENEW),
            cancel: Script::new(CANCEL),
            prune: Script::new(PRUNE),
            promote: Script::new(PROMOTE),
            fire: Script::new(FIRE),
            start: Script::new(START),
            sample: Script::new(SAMPLE),
            requeue: Script::new(REQUEUE),
        }
    }

    /// Loads them all (after a restart emptied Redis's script cache).
    pub(super) fn load(&self, con: &mut ::redis::Connection) -> ::redis::RedisResult<()> {
        let mut pipe = ::redis::pipe();
        for source in [
            FINISH, SUBMIT, ATTACH, STATUS, RENEW, CANCEL, PRUNE, PROMOTE, FIRE, START, SAMPLE,
            REQUEUE,
        ] {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source);
        }
        pipe.query::<()>(con)
    }
}

/// An `EVALSHA` of `script` over `keys`, to which the caller adds the arguments: for
/// pipelines (a `NOSCRIPT` answer makes the caller load the scripts and send it again).
pub(super) fn evalsha(script: &Script, keys: &[&str]) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    cmd
}

/// Completes tasks, any number in one call (a finisher's whole batch), each if, and only
/// if, the calling worker still holds it on the same delivery (the fence): acknowledges and
/// deletes its queue entry, removes it from the index, keeps its record (status, result or
/// error, worker, end time) for the reply TTL, appends the answer to the submitting
/// client's reply stream (if that client is still there: `NOMKSTREAM`) and to the stream
/// of every client that attached to it, and optionally writes a dead letter. A task whose
/// entry Redis no longer has at all (neither held nor queued: Redis restarted without its
/// data, or was flushed) is answered too, so that its clients get the result instead of a
/// loss; if another worker answered it already, the clients keep the first answer.
///
/// Each answered task adds one to `ok` or `failed` in the counts hash (the history's
/// throughput), which then lives as long as a dead letter would; a failed one (not
/// cancelled, nor dead-lettered: those are listed there) is also added to the failures
/// stream, its error cut to 4 KiB.
///
/// KEYS: queue, dead stream, counts hash, failures stream.
/// ARGV: group, consumer, dead TTL ms, dead max length, reply key prefix (`{ns}:reply:`),
///       end time ms, then for each task: entry id, delivery, reply TTL ms, flags (`r`
///       reply, `d` dead), the submitter's reply stream, its ids bucket, record and
///       watchers keys, task id, n, the reply's n items (in this order: `id`, the id, `s`,
///       the status, `r`, the body, `w`, the worker), m, the dead letter's m items.
/// Returns, per task, 1 if applied, 2 if applied to a task Redis no longer had, 0 if the
/// worker had lost the task (another worker holds it, or it is queued again). The reply
/// stream's TTL is the client's to refresh.
const FINISH: &str = r"
local out = {}
local i = 7
while i <= #ARGV do
  local entry, attempt, ttl, flags = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local reply, bucket, record, watch, task = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local rf = i + 10
  local rl = i + 9 + tonumber(ARGV[i + 9])
  local df = rl + 2
  local dl = rl + 1 + tonumber(ARGV[rl + 1])
  i = dl + 1
  local applied = 0
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], entry, entry, 1)
  if type(p) == 'table' and not p.err and #p > 0 then
    if p[1][2] == ARGV[2] and tonumber(p[1][4]) == tonumber(attempt) then
      redis.pcall('XACK', KEYS[1], ARGV[1], entry)
      redis.pcall('XDEL', KEYS[1], entry)
      applied = 1
    end
  else
    local e = redis.pcall('XRANGE', KEYS[1], entry, entry)
    if type(e) == 'table' and not e.err and #e == 0 then applied = 2 end
  end
  if applied > 0 and string.find(flags, 'r', 1, true) and rl >= rf + 7 then
    if ARGV[rf + 3] == 'ok' then
      redis.pcall('HINCRBY', KEYS[3], 'ok', 1)
    else
      redis.pcall('HINCRBY', KEYS[3], 'failed', 1)
      local st = ARGV[rf + 3]
      if st ~= 'cancelled' and st ~= 'rejected' and st ~= 'lost' then
        redis.pcall('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'id', ARGV[rf + 1],
          's', ARGV[rf + 3], 'r', string.sub(ARGV[rf + 5], 1, 4096), 'w', ARGV[rf + 7])
        redis.pcall('PEXPIRE', KEYS[4], ARGV[3])
      end
    end
    redis.pcall('PEXPIRE', KEYS[3], ARGV[3])
    redis.pcall('HDEL', bucket, task)
    redis.pcall('SET', record, ARGV[rf + 3] .. '\n' .. ARGV[rf + 7] .. '\n' .. ARGV[6] .. '\n' .. ARGV[rf + 5], 'PX', ttl)
    redis.pcall('XADD', reply, 'NOMKSTREAM', '*', unpack(ARGV, rf, rl))
    local w = redis.pcall('SMEMBERS', watch)
    if type(w) == 'table' and not w.err and #w > 0 then
      for _, c in ipairs(w) do
        local key = ARGV[5] .. c
        if #c <= 96 and string.match(c, '^[%w_.-]+$') and key ~= reply then
          redis.pcall('XADD', key, 'NOMKSTREAM', '*', unpack(ARGV, rf, rl))
        end
      end
      redis.pcall('DEL', watch)
    end
  end
  if applied > 0 and string.find(flags, 'd', 1, true) and dl >= df then
    redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, df, dl))
    redis.pcall('PEXPIRE', KEYS[2], ARGV[3])
  end
  out[#out + 1] = applied
end
return out
";

/// Queues tasks under their ids, any number in one call (the writer sends a whole batch
/// at once: one script call, not one per task): appends each entry and indexes it (task id
/// → entry id). With `unique` (an id the user chose), a task already known under that id
/// is not queued again: if its record is kept, the record is returned (`done`); if it is
/// queued or running, the calling client joins its watchers and gets the entry id
/// (`exists`). With a due time, the task is not queued but scheduled: its entry waits in
/// the payloads hash, its id in the scheduled set, and the index says `s:<due ms>` (see
/// `PROMOTE`). A task that Redis refuses (out of memory, say) gets its error, the others
/// go on.
///
/// KEYS: queue, scheduled, payloads.
/// ARGV: client id, TTL ms to refresh the queue with (`0`: not this time), group, then
///       for each task: task id, unique (`1`/`0`), its ids bucket, result record and watchers keys,
///       TTL ms of its watchers and schedule, TTL ms to refresh its bucket with (`0`: not
///       this time), due time ms (`0`: now), n, then its n entry items.
/// Returns one reply per task: the new entry id, `{'done', record}`, `{'exists', entry
/// id, 1 if a worker holds it}`, `{'scheduled', due ms}`, or an error.
const SUBMIT: &str = r"
local out = {}
local i = 4
while i <= #ARGV do
  local id, unique, bucket, result, watch = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local keep, refresh, due = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local first, last = i + 9, i + 8 + tonumber(ARGV[i + 8])
  i = last + 1
  local reply = nil
  if unique == '1' then
    local r = redis.call('GET', result)
    if r then
      reply = {'done', r}
    else
      local e = redis.call('HGET', bucket, id)
      if e then
        redis.call('SADD', watch, ARGV[1])
        redis.call('PEXPIRE', watch, keep)
        local held = 0
        if string.sub(e, 1, 2) ~= 's:' then
          local p = redis.pcall('XPENDING', KEYS[1], ARGV[3], e, e, 1)
          if type(p) == 'table' and not p.err and #p > 0 then held = 1 end
        end
        reply = {'exists', e, held}
      end
    end
  end
  if reply == nil and due ~= '0' then
    local f = {}
    for j = first, last do f[#f + 1] = ARGV[j] end
    redis.call('HSET', KEYS[3], id, cjson.encode({b = bucket, f = f}))
    redis.call('ZADD', KEYS[2], due, id)
    redis.call('HSET', bucket, id, 's:' .. due)
    for _, key in ipairs({bucket, KEYS[2], KEYS[3]}) do
      if redis.call('PEXPIRE', key, keep, 'GT') == 0 then
        redis.call('PEXPIRE', key, keep, 'NX')
      end
    end
    reply = {'scheduled', due}
  end
  if reply == nil then
    local e = redis.pcall('XADD', KEYS[1], '*', unpack(ARGV, first, last))
    if type(e) == 'string' then
      redis.call('HSET', bucket, id, e)
      if refresh ~= '0' then redis.call('PEXPIRE', bucket, refresh) end
    end
    reply = e
  end
  out[#out + 1] = reply
end
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return out
";

/// Fires one tick of a periodic task, if the tick is still the one the caller read (a
/// compare-and-set: of the workers that saw it due, exactly one fires it): moves the
/// schedule on to its next tick and, with `run`, queues the tick's task and indexes it.
/// Refreshes the TTL of the schedule's keys.
///
/// KEYS: periodic due set, queue, ids bucket of the task id, periodic hash.
/// ARGV: name, the tick read (ms), the next tick (ms), run (`1`/`0`), task id, TTL ms,
///       then the entry's items.
/// Returns 1 if this call fired the tick, 0 if another did (or the schedule is gone).
const FIRE: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if ARGV[4] == '1' then
  local f = {}
  for i = 7, #ARGV do f[#f + 1] = ARGV[i] end
  local e = redis.call('XADD', KEYS[2], '*', unpack(f))
  redis.call('HSET', KEYS[3], ARGV[5], e)
  if redis.call('PEXPIRE', KEYS[3], ARGV[6], 'GT') == 0 then
    redis.call('PEXPIRE', KEYS[3], ARGV[6], 'NX')
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return 1
";

/// Moves the scheduled tasks that are due into the queue, at most `limit` of them, each
/// exactly once however many workers run it at once (one script: a task leaves the
/// schedule in the same step that queues it). A payload that does not decode, or names an
/// index bucket outside the namespace, is dropped.
///
/// KEYS: scheduled, payloads, queue. ARGV: now ms, limit, ids bucket prefix (`{ns}:ids:`).
/// Returns how many were queued.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local p = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  if p then
    local ok, d = pcall(cjson.decode, p)
    if ok and type(d) == 'table' and type(d.b) == 'string' and type(d.f) == 'table'
        and string.sub(d.b, 1, #ARGV[3]) == ARGV[3] and #d.b == #ARGV[3] + 3 and #d.f <= 64 then
      local e = redis.pcall('XADD', KEYS[3], '*', unpack(d.f))
      if type(e) == 'string' then
        redis.call('HSET', d.b, id, e)
        n = n + 1
      end
    end
  end
end
return n
";

/// Marks tasks started, any number in one call (a worker's whole read): each task id goes
/// into the worker's running hash with the start time (for `status`), and the submitting
/// client's reply stream and the stream of every client attached to the task get a
/// `started` entry listing it (one entry per stream per call, `s` = `started`, `ids` = the
/// task ids separated by spaces), so that `running()` of their futures turns true. Streams
/// of clients that left are not made again (`NOMKSTREAM`).
///
/// KEYS: the worker's running hash.
/// ARGV: the hash's TTL ms, reply key prefix (`{ns}:reply:`), then for each task: task id,
///       the submitting client's id, the task's watchers key, when it started (ms).
/// Returns how many `started` entries were appended.
const START: &str = r"
local streams, order = {}, {}
local function note(client, id)
  if #client > 96 or not string.match(client, '^[%w_.-]+$') then return end
  local key = ARGV[2] .. client
  local l = streams[key]
  if l == nil then
    l = {}
    streams[key] = l
    order[#order + 1] = key
  end
  l[#l + 1] = id
end
local fields = {}
for i = 3, #ARGV - 3, 4 do
  local id = ARGV[i]
  fields[#fields + 1] = id
  fields[#fields + 1] = ARGV[i + 3]
  note(ARGV[i + 1], id)
  if redis.call('EXISTS', ARGV[i + 2]) == 1 then
    for _, c in ipairs(redis.call('SMEMBERS', ARGV[i + 2])) do note(c, id) end
  end
end
for i = 1, #fields, 512 do
  redis.call('HSET', KEYS[1], unpack(fields, i, math.min(i + 511, #fields)))
end
if #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
for _, key in ipairs(order) do
  redis.pcall('XADD', key, 'NOMKSTREAM', '*', 's', 'started', 'ids', table.concat(streams[key], ' '))
end
return #order
";

/// Attaches a client to a task by id: the task's record if it finished (`done`), else the
/// client joins its watchers and gets the entry id and whether a worker holds it
/// (`waiting`; from then on the worker's `START` tells this client too), or `unknown`.
///
/// KEYS: result record, ids bucket, watchers, queue.
/// ARGV: task id, client id, watchers' TTL ms, group.
const ATTACH: &str = r"
local r = redis.call('GET', KEYS[1])
if r then return {'done', r} end
local e = redis.call('HGET', KEYS[2], ARGV[1])
if not e then return {'unknown'} end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local held = 0
if string.sub(e, 1, 2) ~= 's:' then
  local p = redis.pcall('XPENDING', KEYS[4], ARGV[4], e, e, 1)
  if type(p) == 'table' and not p.err and #p > 0 then held = 1 end
end
return {'waiting', e, held}
";

/// Where a task stands: `{'done', record}`, `{'scheduled', due ms}`, `{'running', entry, worker, ms since the
/// lease was renewed, deliveries, started at ms or false}`, `{'queued', entry}` or
/// `{'unknown'}`.
///
/// KEYS: result record, ids bucket, queue. ARGV: task id, group, the running hashes' prefix
/// (`{ns}:running:`, followed by the holder's consumer name).
const STATUS: &str = r"
local r = redis.call('GET', KEYS[1])
if r then return {'done', r} end
local e = redis.call('HGET', KEYS[2], ARGV[1])
if not e then return {'unknown'} end
if string.sub(e, 1, 2) == 's:' then return {'scheduled', string.sub(e, 3)} end
local p = redis.pcall('XPENDING', KEYS[3], ARGV[2], e, e, 1)
if type(p) == 'table' and not p.err and #p > 0 then
  local s = false
  if string.match(p[1][2], '^[%w_.-]+$') then s = redis.call('HGET', ARGV[3] .. p[1][2], ARGV[1]) end
  return {'running', e, p[1][2], p[1][3], p[1][4], s}
end
return {'queued', e}
";

/// Renews the leases of the entries the calling worker still holds (resets their idle
/// time without counting a delivery); returns the ids it no longer holds.
///
/// KEYS: queue. ARGV: group, consumer, entry ids...
const RENEW: &str = r"
local lost = {}
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(p) == 'table' and not p.err and #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
";

/// Cancels a task by id if no worker has taken it: a queued one leaves the queue, a
/// scheduled one the schedule. 1 if cancelled, 0 if a worker holds it, it ended, or there
/// is no such task. A cancelled task leaves a record that says so, and the clients
/// attached to it are told.
///
/// KEYS: ids bucket, queue, result record, watchers, scheduled, payloads.
/// ARGV: group, task id, record TTL ms, reply key prefix, the canceller's id, now ms.
const CANCEL: &str = r"
local e = redis.call('HGET', KEYS[1], ARGV[2])
if not e then return 0 end
if string.sub(e, 1, 2) == 's:' then
  redis.call('ZREM', KEYS[5], ARGV[2])
  redis.call('HDEL', KEYS[6], ARGV[2])
else
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], e, e, 1)
  if type(p) == 'table' and not p.err and #p > 0 then return 0 end
  local n = redis.pcall('XDEL', KEYS[2], e)
  if n ~= 1 then return 0 end
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.pcall('SET', KEYS[3], 'cancelled\n\n' .. ARGV[6] .. '\n', 'PX', ARGV[3])
local w = redis.pcall('SMEMBERS', KEYS[4])
if type(w) == 'table' and not w.err and #w > 0 then
  for _, c in ipairs(w) do
    if c ~= ARGV[5] and #c <= 96 and string.match(c, '^[%w_.-]+$') then
      redis.pcall('XADD', ARGV[4] .. c, 'NOMKSTREAM', '*', 'id', ARGV[2], 's', 'cancelled', 'r', '', 'w', '')
    end
  end
  redis.pcall('DEL', KEYS[4])
end
return 1
";

/// How often the queue is sampled for its history, at most: every worker offers a sample
/// with its heartbeat, and `SAMPLE` keeps one per period whoever offers it.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How many samples the history keeps: six hours of [`SAMPLE_EVERY`].
pub(super) const MAX_SAMPLES: usize = 2160;

/// How long the history and the counts outlive the last worker's last sample.
pub(super) const HISTORY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Appends a sample of the queue to the history, unless the newest sample is younger than
/// the period: how many entries wait and how many are held, how long the oldest waiting
/// one has waited, and the answered counts. Times are Redis's (`TIME`, the clock of the
/// stream ids), so workers with skewed clocks agree on the period. Returns 1 if it added a
/// sample.
///
/// KEYS: queue, stats stream, counts hash.
/// ARGV: group, period ms, max samples, TTL ms.
const SAMPLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local at = tonumber(string.match(last[1][1], '^(%d+)'))
  if at and now - at < tonumber(ARGV[2]) then return 0 end
end
local len = redis.call('XLEN', KEYS[1])
local held, newest = 0, nil
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then
  held = tonumber(p[1]) or 0
  if held > 0 then newest = p[3] end
end
local waiting = len - held
if waiting < 0 then waiting = 0 end
local oldest = 0
if waiting > 0 then
  local from = '-'
  if newest then from = '(' .. newest end
  local e = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 1)
  if #e > 0 then
    local at = tonumber(string.match(e[1][1], '^(%d+)'))
    if at and now > at then oldest = now - at end
  end
end
local c = redis.call('HMGET', KEYS[3], 'ok', 'failed')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'q', waiting, 'r', held, 'o', oldest,
  'ok', c[1] or 0, 'f', c[2] or 0)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
";

/// Queues a dead letter's task again, atomically: deletes the dead letter, appends the
/// entry to the queue and indexes it under its task id, and deletes the failed record so
/// that attached clients wait for the new run. 1 if queued, 0 if the dead letter is gone
/// (retried or deleted by someone else: never queued twice), 2 if a task with that id is
/// queued or running now (the dead letter stays).
///
/// KEYS: dead stream, queue, ids bucket, record.
/// ARGV: dead letter id, task id, then the entry's fields and values.
const REQUEUE: &str = r"
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return 2 end
if redis.call('XDEL', KEYS[1], ARGV[1]) ~= 1 then return 0 end
local e = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('HSET', KEYS[3], ARGV[2], e)
redis.call('DEL', KEYS[4])
return 1
";

/// Deletes consumers that hold nothing and have not read for `min idle` ms (workers that
/// are gone), atomically, so a consumer is never deleted between a check and a read.
/// `ARGV[3]`, if given, is a consumer to delete if it holds nothing, whatever its idle time
/// (a worker leaving).
///
/// KEYS: queue. ARGV: group, min idle ms, [consumer].
const PRUNE: &str = r"
local c = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(c) ~= 'table' or c.err then return 0 end
local n = 0
for _, info in ipairs(c) do
  local f = {}
  for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
  local old = tonumber(f['idle']) >= tonumber(ARGV[2]) or f['name'] == ARGV[3]
  if tonumber(f['pending']) == 0 and old then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
";

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: &[(&str, &str)]) -> RawEntry {
        RawEntry {
            id: "1-0".into(),
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            ),
        }
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("v", "2"),
            ("fn", "double/v1"),
            ("c", "client-1"),
            ("id", "01JEXAMPLE0000000000000007"),
            ("k", "one"),
            ("a", "21"),
        ]
    }

    #[test]
    fn a_good_entry_parses() {
        let e = task_entry(&raw(&good()), 1024).unwrap();
        assert_eq!(e.name, "double/v1");
        assert_eq!(e.route.client, "client-1");
        assert_eq!(e.args, b"21");
        assert_eq!(e.tries, 3);
        assert!(!e.chunk);
    }

    #[test]
    fn bad_entries_are_refused_with_a_route_when_they_have_one() {
        let big = "1".repeat(2000);
        type Change<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(Change<'_>, &str, bool)> = vec![
            (vec![("v", "1")], "format", true),
            (vec![("c", "../../x")], "client and task id", false),
            (vec![("c", "{other}:reply:x")], "client and task id", false),
            (vec![("id", "a b")], "client and task id", false),
            (
                vec![("id", "{other}:result:x")],
                "client and task id",
                false,
            ),
            (vec![("fn", "a b")], "invalid task name", true),
            (vec![("k", "many")], "field k", true),
            (vec![("limit", "-1")], "field limit", true),
            (vec![("tries", "100000")], "field tries", true),
            (vec![("a", &*big)], "above", true),
        ];
        for (change, why, routed) in cases {
            let mut fields = good();
            for (k, v) in &change {
                fields.retain(|(f, _)| f != k);
                fields.push((k, v));
            }
            let (route, msg) = task_entry(&raw(&fields), 1024).unwrap_err();
            assert!(msg.contains(why), "{change:?}: {msg}");
            assert_eq!(route.is_some(), routed, "{change:?}");
        }
        let mut missing = good();
        missing.retain(|(k, _)| *k != "a");
        assert!(task_entry(&raw(&missing), 1024).is_err());
        let deleted = RawEntry {
            id: "1-0".into(),
            fields: None,
        };
        assert!(task_entry(&deleted, 1024).is_err());
    }

    #[test]
    fn replies_parse_in_both_protocols_and_garbage_is_skipped() {
        let e = |id: &str| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"t".to_vec()),
                    Value::BulkString(b"1".to_vec()),
                ]),
            ])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"k".to_vec()),
            Value::Array(vec![e("1-1"), e("bad id"), Value::Int(3), e("2-0")]),
        ])]);
        let got: Vec<String> = read_reply(&resp2).into_iter().map(|e| e.id).collect();
        assert_eq!(got, ["1-1", "2-0"]);
        let resp3 = Value::Map(vec![(
            Value::BulkString(b"k".to_vec()),
            Value::Array(vec![e("3-0")]),
        )]);
        assert_eq!(read_reply(&resp3)[0].text("t"), Some("1"));
        assert!(read_reply(&Value::Nil).is_empty());
        assert!(read_reply(&Value::Int(1)).is_empty());
    }

    #[test]
    fn ids_and_namespaces_are_checked() {
        assert!(valid_stream_id("1700000000000-12"));
        assert!(!valid_stream_id("1-"));
        assert!(!valid_stream_id("*"));
        assert!(!valid_stream_id("1-2-3"));
        assert!(check_namespace("jobs.prod-1").is_ok());
        assert!(check_namespace("a}b").is_err());
        assert!(check_namespace("").is_err());
        assert!(valid_id("host-12-ab"));
        assert!(!valid_id("a:b"));
        assert_eq!(Keys::new("x").reply("c1"), "{x}:reply:c1");
    }
}
