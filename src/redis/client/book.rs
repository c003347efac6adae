//! The client's book: the futures it waits for (by number and by task id), each task's *slot*
//! (where its queue entry stands: local, being sent, sent, dropped), and the count of tasks
//! not sent yet that `max_unsent` bounds and `flush` waits on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Shared;
use crate::error::TaskError;
use crate::future::{CancelHook, Future, Hooked};
use crate::redis::id::TaskId;

/// The tasks this client waits for, by number (one per future), and by task id (several
/// futures of one client may follow one task: a repeated idempotent submit, an attach).
pub(super) struct Book {
    pub(super) waiting: HashMap<u64, Waiting>,
    pub(super) by_id: HashMap<TaskId, Vec<u64>>,
    pub(super) closed: bool,
}

impl Book {
    pub(super) fn insert(&mut self, seq: u64, w: Waiting) {
        self.by_id.entry(w.task.clone()).or_default().push(seq);
        self.waiting.insert(seq, w);
    }

    pub(super) fn remove(&mut self, seq: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&seq)?;
        if let Some(seqs) = self.by_id.get_mut(&w.task) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_id.remove(&w.task);
            }
        }
        Some(w)
    }

    /// Every future of this client that follows task `id`.
    pub(super) fn remove_task(&mut self, id: &TaskId) -> Vec<Waiting> {
        let seqs = self.by_id.remove(id).unwrap_or_default();
        seqs.into_iter()
            .filter_map(|seq| self.waiting.remove(&seq))
            .collect()
    }

    pub(super) fn drain(&mut self) -> Vec<Waiting> {
        self.by_id.clear();
        self.waiting.drain().map(|(_, w)| w).collect()
    }
}

/// Completes a task's future from its reply (decoding the body as the task's type).
pub(super) type Complete = Box<dyn for<'b> FnOnce(Result<&'b [u8], TaskError>) + Send>;

pub(super) struct Waiting {
    pub(super) task: TaskId,
    pub(super) complete: Complete,
    pub(super) cancel: Arc<dyn Cancel>,
    /// Where the task is in the queue, once sent: to notice that Redis lost it.
    pub(super) slot: Arc<Slot>,
}

/// What the book does to a task's future besides completing it.
pub(super) trait Cancel: Send + Sync {
    /// Cancels it if no worker took it (for `shutdown(cancel_futures)`).
    fn cancel_now(self: Arc<Self>) -> bool;
    /// A worker said that it started the task: `running()` turns true.
    fn started(&self);
    /// Whether anyone but this client's book still holds the future (a dropped
    /// executor stops following the tasks nobody holds).
    fn held(self: Arc<Self>) -> bool;
}

/// A task not sent yet: its number, its slot, its entry's fields.
pub(super) type Unsent = (u64, Arc<Slot>, Vec<(&'static str, String)>);

/// Where a task's queue entry stands, for `cancel`.
#[derive(Debug)]
pub(super) struct Slot {
    /// The task it carries.
    pub(super) task: TaskId,
    /// Whether the id was chosen by the user (the submit is then idempotent).
    pub(super) unique: bool,
    /// Whether it is sent as idempotent by id (queued only if its id is unknown): an
    /// idle client's inline send, whose reply may never come, and every send after an
    /// attempt that may have reached Redis without its reply coming back. So a task sent
    /// twice that way is queued once.
    pub(super) idempotent: std::sync::atomic::AtomicBool,
    /// When it is due, in ms since the epoch, if it runs later.
    pub(super) due: Option<u64>,
    pub(super) state: Mutex<SlotState>,
    pub(super) sent: Condvar,
    /// The client's count of tasks not taken by Redis yet, which this one leaves once it
    /// is sent or dropped.
    pub(super) unsent: Arc<UnsentCount>,
}

/// How many tasks wait in the client for Redis to take them; `flush` waits for zero.
#[derive(Debug, Default)]
pub(super) struct UnsentCount {
    pub(super) n: AtomicUsize,
    pub(super) lock: Mutex<()>,
    pub(super) zero: Condvar,
}

impl UnsentCount {
    pub(super) fn get(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    pub(super) fn add(&self) {
        self.n.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn sub(&self) {
        if self.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.lock.lock();
            self.zero.notify_all();
        }
    }

    /// Waits up to `d` for the count to reach zero; true if it did.
    pub(super) fn wait_zero(&self, d: Duration) -> bool {
        let mut guard = self.lock.lock();
        if self.get() == 0 {
            return true;
        }
        self.zero.wait_for(&mut guard, d);
        self.get() == 0
    }
}

#[derive(Debug)]
pub(super) enum SlotState {
    /// In the writer's channel.
    Local,
    /// In a pipeline whose answer has not come back.
    Sending,
    /// In Redis (queued, scheduled, or followed by id).
    Sent,
    /// Cancelled before it was sent, or refused by Redis: never to be sent.
    Dropped,
}

impl Slot {
    /// Moves to `next`, leaving the count of unsent tasks if the task was waiting to be
    /// sent and now is not (exactly once: `Sent` and `Dropped` are final).
    pub(super) fn set(&self, st: &mut SlotState, next: SlotState) {
        let was_unsent = matches!(st, SlotState::Local | SlotState::Sending);
        let now_unsent = matches!(next, SlotState::Local | SlotState::Sending);
        *st = next;
        if was_unsent && !now_unsent {
            self.unsent.sub();
        }
        self.sent.notify_all();
    }

    pub(super) fn begin_send(&self) -> bool {
        let mut st = self.state.lock();
        match *st {
            SlotState::Local => {
                *st = SlotState::Sending;
                true
            }
            _ => false,
        }
    }

    /// A send that Redis refused for now, or that failed: the task waits to be sent again
    /// (and may be cancelled meanwhile).
    pub(super) fn back_to_local(&self) {
        let mut st = self.state.lock();
        if matches!(*st, SlotState::Sending) {
            self.set(&mut st, SlotState::Local);
        }
    }

    pub(super) fn end_send(&self, id: Option<String>) {
        let mut st = self.state.lock();
        self.set(&mut st, id.map_or(SlotState::Dropped, |_| SlotState::Sent));
    }
}

/// What a Redis task's future asks before it is cancelled: its queue entry, and the client
/// that can withdraw it.
pub(super) struct Withdraw {
    pub(super) slot: Arc<Slot>,
    pub(super) shared: Weak<Shared>,
}

/// A Redis task's future: a promise whose `cancel` first removes the queue entry.
/// Referenced by the user's futures, the book's `complete` and `cancel` (two), nothing else.
pub(super) type Remote<T> = Hooked<T, Withdraw>;

impl<T: Send + 'static> CancelHook<T> for Withdraw {
    fn cancel(task: &Remote<T>, fut: &Future<T>) -> bool {
        task.cancel_with(fut)
    }

    fn task_id(&self) -> Option<Arc<str>> {
        Some(self.slot.task.shared())
    }
}

impl<T: Send + 'static> Cancel for Remote<T> {
    fn cancel_now(self: Arc<Self>) -> bool {
        let fut = self.future();
        self.cancel_with(&fut)
    }

    fn started(&self) {
        self.set_running();
    }

    fn held(self: Arc<Self>) -> bool {
        // The book's two references, and this one.
        Arc::strong_count(&self) > 3
    }
}
