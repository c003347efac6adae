//! The cancel protocol: a future's `cancel` first withdraws its task (the `CANCEL` script
//! removes a queued or scheduled entry only if no worker took it), and [`RedisExecutor::cancel`]
//! does the same by id from any process.

use std::sync::Arc;
use std::time::Instant;

use super::book::{Remote, Slot, SlotState};
use super::{RedisExecutor, Shared};
use crate::error::TaskError;
use crate::future::Future;
use crate::redis::SetupError;
use crate::redis::host;
use crate::redis::id::TaskId;
use crate::redis::wire::{self, GROUP};

impl<T: Send + 'static> Remote<T> {
    /// Withdraws the queue entry, then cancels the future; `fut` is the handle that its
    /// callbacks are given.
    pub(super) fn cancel_with(&self, fut: &Future<T>) -> bool {
        match self.state() {
            crate::future::State::Cancelled => return true,
            crate::future::State::Running | crate::future::State::Finished => return false,
            crate::future::State::Pending => {}
        }
        let link = self.hook();
        let Some(shared) = link.shared.upgrade() else {
            return false;
        };
        match shared.withdraw(&link.slot) {
            Some(true) => {
                // This client's other futures of the same task end too (Redis tells only
                // the other clients).
                let taken = shared.book.lock().remove_task(&link.slot.task);
                shared.notify_if_drained();
                let cancelled = self.cancel_promise(fut);
                for w in taken {
                    if w.slot.task == link.slot.task && !Arc::ptr_eq(&w.slot, &link.slot) {
                        (w.complete)(Err(TaskError::Cancelled));
                    }
                }
                cancelled
            }
            Some(false) => {
                // A worker holds it: from now on it reads as running.
                self.set_running();
                false
            }
            None => false,
        }
    }
}

impl Shared {
    /// Removes a task's entry from the queue if no worker has taken it. `Some(true)` if it
    /// will never run, `Some(false)` if a worker holds it or it finished, `None` if Redis
    /// could not be asked within `command_timeout`.
    pub(super) fn withdraw(&self, slot: &Slot) -> Option<bool> {
        let deadline = Instant::now() + self.cfg.command_timeout;
        // An idle client's task may be on the control link with its reply unread.
        if let Some(mut control) = self.control.try_lock_until(deadline) {
            self.settle(&mut control);
        }
        {
            let mut st = slot.state.lock();
            loop {
                match &*st {
                    SlotState::Local => {
                        slot.set(&mut st, SlotState::Dropped);
                        return Some(true);
                    }
                    SlotState::Dropped => return Some(true),
                    // In a pipeline the writer is trying to send (Redis may be away).
                    SlotState::Sending => {
                        if slot.sent.wait_until(&mut st, deadline).timed_out() {
                            return None;
                        }
                    }
                    SlotState::Sent => break,
                }
            }
        }
        if self.outage.lock().is_some() {
            // Known to be out of reach: asking would only wait out `command_timeout` (and
            // `shutdown(cancel_futures)` would wait it out for every task).
            return None;
        }
        let mut control = self.control.try_lock_until(deadline)?;
        self.settle(&mut control);
        let late = || {
            let late = Instant::now() >= deadline;
            if late {
                self.unreachable(); // the next cancels do not wait it out again
            }
            late
        };
        control
            .link
            .retry(&self.scripts, &late, |con| {
                self.cancel_cmd(&slot.task).query::<i64>(con)
            })
            .map(|removed| removed == 1)
    }

    /// The `CANCEL` script for task `id`.
    pub(super) fn cancel_cmd(&self, id: &TaskId) -> ::redis::Cmd {
        let task = id.as_str();
        let mut cmd = wire::evalsha(
            &self.scripts.cancel,
            &[
                &self.keys.ids(task),
                &self.keys.queue,
                &self.keys.result(task),
                &self.keys.watch(task),
                &self.keys.scheduled,
                &self.keys.payloads,
            ],
        );
        cmd.arg(GROUP)
            .arg(task)
            .arg(wire::millis(self.cfg.result_ttl))
            .arg(self.keys.reply(""))
            .arg(&self.client_id)
            .arg(host::now_ms());
        cmd
    }
}

impl RedisExecutor {
    /// Cancels the task with this id, submitted by any process, if no worker has taken it
    /// yet: a queued task leaves the queue, a scheduled one the schedule, and it never
    /// runs (RQ's `Job.fetch(id).cancel()`, Celery's `AsyncResult(id).revoke()` for a task
    /// not started). `true` if it was cancelled now; `false` if a worker holds it, it
    /// ended, or there is no such task. Every future attached to it, in any process,
    /// completes as cancelled.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked within `command_timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskId, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let id: TaskId = "report-2026-12".parse()?;
    /// if ex.cancel(&id)? {
    ///     println!("{id} will not run");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self, id: &TaskId) -> Result<bool, SetupError> {
        let shared = &self.shared;
        let started = Instant::now();
        let cancelled = {
            let mut control = shared.control_for_command(started)?;
            shared
                .run_script(&mut control.link, |con| {
                    shared.cancel_cmd(id).query::<i64>(con)
                })
                .map_err(SetupError::connect(&shared.address, started))?
                == 1
        };
        if cancelled {
            // This client's own futures of the task (Redis tells only the other clients).
            let taken = shared.book.lock().remove_task(id);
            shared.notify_if_drained();
            for w in taken {
                w.slot.end_send(None);
                (w.complete)(Err(TaskError::Cancelled));
            }
        }
        Ok(cancelled)
    }

    /// Stops a task wherever it is: a queued or scheduled one is [cancelled](Self::cancel);
    /// a running one is killed by the worker that holds it, within about a quarter of a
    /// second (its keeper looks for requests every 250 ms). In a worker that runs tasks in
    /// processes, the process running it is killed and replaced (with the helpers it
    /// started); in one that runs them on threads the thread cannot be killed, so the task is
    /// answered at once and its result, when it comes, is dropped. Either way the task ends
    /// [`TaskError::Cancelled`], is not retried, and its record says cancelled. Returns false
    /// if the task is unknown or has ended.
    ///
    /// The request names the task's current queue entry, so a later task under the same id
    /// is never hit by it; a request no worker takes up (its worker died meanwhile) expires
    /// after an hour.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskId, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let id: TaskId = "report-2026-12".parse()?;
    /// if ex.kill(&id)? {
    ///     println!("{id} is stopping");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kill(&self, id: &TaskId) -> Result<bool, SetupError> {
        let shared = &self.shared;
        let (mut con, fail) = self.own_connection()?;
        let keys = &shared.keys;
        let entry: Option<String> = ::redis::cmd("HGET")
            .arg(keys.ids(id.as_str()))
            .arg(id.as_str())
            .query(&mut con)
            .map_err(&fail)?;
        let Some(entry) = entry else {
            return Ok(false);
        };
        let held = !entry.starts_with("s:") && {
            let pending: ::redis::Value = ::redis::cmd("XPENDING")
                .arg(&keys.queue)
                .arg(GROUP)
                .arg(&entry)
                .arg(&entry)
                .arg(1)
                .query(&mut con)
                .map_err(&fail)?;
            wire::array(&pending).is_some_and(|p| !p.is_empty())
        };
        if !held {
            // Queued or scheduled: no worker has it, so it never starts.
            return self.cancel(id);
        }
        ::redis::pipe()
            .cmd("HSET")
            .arg(&keys.kill)
            .arg(&entry)
            .arg(host::now_ms())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&keys.kill)
            .arg(KILL_TTL_MS)
            .ignore()
            .query::<()>(&mut con)
            .map_err(&fail)?;
        Ok(true)
    }
}

/// How long a kill request waits for the worker that holds its entry.
const KILL_TTL_MS: u64 = 3_600_000;
