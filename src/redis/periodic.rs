//! Periodic Redis tasks: a named [`Schedule`] (a fixed interval, or a cron expression in a
//! time zone) stored in Redis, whose ticks the workers fire, each exactly once however many
//! workers are alive.
//!
//! Keys: `{ns}:periodic` (hash: name → the schedule and its task, JSON) and
//! `{ns}:periodic:due` (sorted set: name → its next tick, ms). Every worker looks every
//! 250 ms for schedules whose tick is due, computes the tick after it, and calls the `FIRE`
//! script, which moves the schedule on only if its tick is still the one it read (a
//! compare-and-set): of several workers that saw the same tick due, exactly one queues its
//! task. The task's id is `<name>@<tick ms>`, so its status and result can be looked up.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// What happens to the ticks of a schedule that passed while no worker ran.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::{Missed, Schedule};
/// use std::time::Duration;
/// let s = Schedule::every(Duration::from_secs(60)).missed(Missed::Skip);
/// # let _ = s;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Missed {
    /// Ticks missed while no worker ran are run once, as soon as a worker is back; then the
    /// schedule goes on from the next tick to come (Celery beat's behaviour). The default.
    #[default]
    RunOnce,
    /// A tick found more than 2 s late is skipped; the schedule goes on from the next tick
    /// to come (cron's behaviour).
    Skip,
}

/// The largest schedule (JSON) a worker reads: a schedule and a task's entry (the client
/// refuses arguments above its `max_payload_bytes`, but the spec may be written by anyone
/// with access to the namespace).
pub(super) const MAX_SPEC: u64 = 16 << 20;

/// How late a tick may be found and still run under [`Missed::Skip`].
pub(super) const SKIP_GRACE_MS: u64 = 2_000;

/// When a periodic task runs: every fixed interval, or on a cron expression in a time zone.
/// Set with [`RedisExecutor::schedule`](super::RedisExecutor::schedule).
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::Schedule;
/// use std::time::Duration;
///
/// let hourly = Schedule::every(Duration::from_secs(3600));
/// let weekdays = Schedule::cron("30 8 * * Mon-Fri", "Europe/Paris")?; // 08:30 in Paris
/// # let _ = (hourly, weekdays);
/// # Ok::<(), concurrent_futures::redis::InvalidSchedule>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Milliseconds between ticks, for an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every: Option<u64>,
    /// The cron expression, for a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    /// The IANA time zone the cron expression reads its times in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tz: Option<String>,
    #[serde(default)]
    missed: Missed,
}

/// A schedule that cannot be used; the message says why.
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::Schedule;
/// assert!(Schedule::cron("61 * * * *", "UTC").is_err());
/// assert!(Schedule::cron("0 9 * * *", "Mars/Olympus_Mons").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule: {0}")]
pub struct InvalidSchedule(String);

impl Schedule {
    /// A tick every `period`, the first one `period` after the schedule is set. At least
    /// 100 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::Schedule;
    /// let s = concurrent_futures::redis::Schedule::every(std::time::Duration::from_secs(10));
    /// # let _ = s;
    /// ```
    pub fn every(period: Duration) -> Schedule {
        let ms = u64::try_from(period.as_millis())
            .unwrap_or(u64::MAX)
            .max(100);
        Schedule {
            every: Some(ms),
            cron: None,
            tz: None,
            missed: Missed::default(),
        }
    }

    /// Ticks on a cron expression read in `time_zone` (an IANA name such as
    /// `"Europe/Paris"`, or `"UTC"`): five fields (minute, hour, day of month, month, day
    /// of week), or six with seconds first. Daylight-saving changes follow the time zone:
    /// a time that does not exist that day is skipped, one that happens twice runs once.
    ///
    /// # Errors
    ///
    /// [`InvalidSchedule`] for an expression that does not parse or an unknown time zone.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::Schedule;
    /// let nightly = Schedule::cron("0 3 * * *", "America/New_York")?;
    /// # let _ = nightly;
    /// # Ok::<(), concurrent_futures::redis::InvalidSchedule>(())
    /// ```
    pub fn cron(expr: &str, time_zone: &str) -> Result<Schedule, InvalidSchedule> {
        let s = Schedule {
            every: None,
            cron: Some(expr.to_owned()),
            tz: Some(time_zone.to_owned()),
            missed: Missed::default(),
        };
        s.check()?;
        Ok(s)
    }

    /// What happens to ticks missed while no worker ran (default [`Missed::RunOnce`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::{Missed, Schedule};
    /// let s = Schedule::cron("*/5 * * * *", "UTC")?.missed(Missed::Skip);
    /// # let _ = s;
    /// # Ok::<(), concurrent_futures::redis::InvalidSchedule>(())
    /// ```
    pub fn missed(mut self, missed: Missed) -> Schedule {
        self.missed = missed;
        self
    }

    pub(super) fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// Checks a schedule, also one read back from Redis (untrusted).
    pub(super) fn check(&self) -> Result<(), InvalidSchedule> {
        match (&self.every, &self.cron, &self.tz) {
            (Some(ms), None, None) if *ms >= 100 => Ok(()),
            (None, Some(expr), Some(tz)) => {
                if expr.len() > 256 || tz.len() > 64 {
                    return Err(InvalidSchedule(
                        "the expression or time zone is too long".into(),
                    ));
                }
                parse_cron(expr)?;
                parse_tz(tz)?;
                Ok(())
            }
            _ => Err(InvalidSchedule(
                "neither an interval of at least 100 ms nor a cron expression with a time zone"
                    .into(),
            )),
        }
    }

    /// The first tick strictly after `after_ms` (ms since the epoch); for an interval,
    /// counted on from `from_ms` (a previous tick) so that the ticks keep their phase.
    pub(super) fn next_after(&self, from_ms: u64, after_ms: u64) -> Option<u64> {
        if let Some(period) = self.every {
            if from_ms > after_ms {
                return Some(from_ms);
            }
            let periods = (after_ms - from_ms) / period + 1;
            return from_ms.checked_add(periods.checked_mul(period)?);
        }
        let cron = parse_cron(self.cron.as_deref()?).ok()?;
        let tz = parse_tz(self.tz.as_deref()?).ok()?;
        let after = chrono::DateTime::from_timestamp_millis(i64::try_from(after_ms).ok()?)?
            .with_timezone(&tz);
        let next = cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

fn parse_cron(expr: &str) -> Result<croner::Cron, InvalidSchedule> {
    croner::Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| InvalidSchedule(format!("cron expression {expr:?}: {e}")))
}

fn parse_tz(tz: &str) -> Result<chrono_tz::Tz, InvalidSchedule> {
    chrono_tz::Tz::from_str(tz).map_err(|_| {
        InvalidSchedule(format!(
            "unknown time zone {tz:?} (an IANA name such as \"Europe/Paris\" or \"UTC\")"
        ))
    })
}

/// A periodic task set in Redis, as [`RedisExecutor::schedules`](super::RedisExecutor::schedules)
/// reads it back.
///
/// # Examples
///
/// ```no_run
/// # use concurrent_futures::redis::{RedisExecutor, Tasks};
/// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
/// for p in ex.schedules()? {
///     println!("{}: {} ({}), next at {:?}", p.name, p.task, p.schedule, p.next);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeriodicTask {
    /// The name it was scheduled under.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// The name its function is registered under in [`Tasks`](super::Tasks).
    pub task: String,
    /// Its next tick: the first one to come, or a past one no worker has fired yet
    /// (while no worker runs).
    pub next: SystemTime,
}

/// `every 60 s`, `every 250 ms`, or `cron "0 3 * * *" in Europe/Paris`, followed by
/// `, missed ticks skipped` for [`Missed::Skip`].
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::{Missed, Schedule};
/// use std::time::Duration;
/// assert_eq!(Schedule::every(Duration::from_secs(60)).to_string(), "every 60 s");
/// let nightly = Schedule::cron("0 3 * * *", "Europe/Paris")?.missed(Missed::Skip);
/// assert_eq!(nightly.to_string(), r#"cron "0 3 * * *" in Europe/Paris, missed ticks skipped"#);
/// # Ok::<(), concurrent_futures::redis::InvalidSchedule>(())
/// ```
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.every, &self.cron, &self.tz) {
            (Some(ms), _, _) if ms % 1000 == 0 => write!(f, "every {} s", ms / 1000)?,
            (Some(ms), _, _) => write!(f, "every {ms} ms")?,
            (None, Some(expr), Some(tz)) => write!(f, "cron {expr:?} in {tz}")?,
            _ => f.write_str("no schedule")?,
        }
        if self.missed == Missed::Skip {
            f.write_str(", missed ticks skipped")?;
        }
        Ok(())
    }
}

/// A periodic task as stored in `{ns}:periodic`: its schedule and its entry's fields
/// (without `id`, which each tick gets).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Spec {
    pub(super) schedule: Schedule,
    pub(super) fields: Vec<(String, String)>,
}

impl Spec {
    /// A spec read from Redis: `None` unless it parses and checks.
    pub(super) fn read(json: &[u8]) -> Option<Spec> {
        let spec: Spec = serde_json::from_slice(json).ok()?;
        spec.schedule.check().ok()?;
        (spec.fields.len() <= 32).then_some(spec)
    }

    /// The name of the task's function (its entry's `fn`).
    pub(super) fn task(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == "fn")
            .map(|(_, v)| v.as_str())
    }
}

/// Names of periodic tasks: what a task id is made of, at most 96 characters.
pub(super) fn check_name(name: &str) -> Result<(), InvalidSchedule> {
    if name.is_empty()
        || name.len() > 96
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(&b))
    {
        return Err(InvalidSchedule(format!(
            "name {:?}: 1 to 96 ASCII letters, digits and _ . - :",
            name.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_keep_their_phase() {
        let s = Schedule::every(Duration::from_secs(10));
        assert_eq!(s.next_after(1_000, 500), Some(1_000));
        assert_eq!(s.next_after(1_000, 1_000), Some(11_000));
        assert_eq!(s.next_after(1_000, 35_000), Some(41_000));
    }

    #[test]
    fn cron_reads_times_in_its_time_zone_across_daylight_saving() {
        // 08:30 in Paris: 07:30 UTC in winter, 06:30 UTC in summer.
        let s = Schedule::cron("30 8 * * *", "Europe/Paris").unwrap();
        let jan_1 = 1_767_225_600_000; // 2026-01-01 00:00 UTC
        assert_eq!(s.next_after(0, jan_1), Some(jan_1 + (7 * 60 + 30) * 60_000));
        let jul_1 = 1_782_864_000_000; // 2026-07-01 00:00 UTC
        assert_eq!(s.next_after(0, jul_1), Some(jul_1 + (6 * 60 + 30) * 60_000));
        // With seconds.
        let every_second = Schedule::cron("* * * * * *", "UTC").unwrap();
        assert_eq!(every_second.next_after(0, 1_500), Some(2_000));
    }

    #[test]
    fn bad_schedules_and_names_are_refused() {
        assert!(Schedule::cron("not cron", "UTC").is_err());
        assert!(Schedule::cron("0 9 * * *", "Nowhere/Land").is_err());
        assert!(check_name("nightly-report").is_ok());
        assert!(check_name("a b").is_err());
        assert!(Spec::read(br#"{"schedule":{"every":5},"fields":[]}"#).is_none());
        assert!(Spec::read(b"garbage").is_none());
    }
}
