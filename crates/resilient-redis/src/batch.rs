//! Auto-batching: while a limiter's script is in flight, the decisions that arrive queue
//! up and go to Redis together as the next `EVALSHA`, which decides them in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use resilient::ratelimit::Verdict;
use tokio::sync::oneshot;

use crate::limiter::LeaseFetch;

/// One queued decision.
pub(crate) struct Pending {
    /// `PREFIX{KEY}`.
    pub(crate) base: String,
    pub(crate) cost: u64,
    /// The units asked for: `cost`, or a lease's size (see `RedisLimiterBuilder::lease`).
    pub(crate) want: u64,
    /// The verdict (a lease it fetched already held), or `None` if the round trip
    /// failed.
    pub(crate) tx: oneshot::Sender<Option<Verdict>>,
    /// The key's lease fetch, if this decision is it: settled by the driver when the
    /// verdict arrives; dropped with a decision skipped while queued, which abandons it
    /// (a waiter fetches in its place).
    pub(crate) fetch: Option<LeaseFetch>,
}

/// A queue whose batches are sent one at a time.
#[derive(Default)]
struct Lane {
    queue: VecDeque<Pending>,
    /// A driver task owns this lane (it is sending a batch or about to).
    busy: bool,
}

/// The lanes of one limiter: one for a standalone server (a script may touch any key),
/// one per hash tag on a Cluster (a script's keys must share a slot, and every key of
/// one `PREFIX{KEY}` shares its tag, so each key batches only with itself).
pub(crate) struct Batcher {
    lanes: Mutex<Lanes>,
    /// The most decisions in one script.
    pub(crate) max: usize,
    cluster: bool,
}

#[derive(Default)]
struct Lanes {
    one: Lane,
    by_tag: HashMap<String, Lane>,
}

/// Which lane a decision goes to: `None` for the single lane of a standalone server,
/// the key's `PREFIX{KEY}` on a Cluster.
pub(crate) type LaneId = Option<String>;

impl Lanes {
    fn get(&mut self, id: &LaneId) -> Option<&mut Lane> {
        match id {
            None => Some(&mut self.one),
            Some(tag) => self.by_tag.get_mut(tag),
        }
    }
}

impl Batcher {
    pub(crate) fn new(max: usize, cluster: bool) -> Self {
        Self {
            lanes: Mutex::new(Lanes::default()),
            max,
            cluster,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `p`; returns the lane to start a driver for if none owns it.
    pub(crate) fn submit(&self, p: Pending) -> Option<LaneId> {
        let mut lanes = self.lock();
        let (lane, id) = if self.cluster {
            let id = p.base.clone();
            (lanes.by_tag.entry(id.clone()).or_default(), Some(id))
        } else {
            (&mut lanes.one, None)
        };
        lane.queue.push_back(p);
        if lane.busy {
            None
        } else {
            lane.busy = true;
            Some(id)
        }
    }

    /// The next batch of lane `id` (at most `max`, oldest first), skipping callers that
    /// gave up while queued (they were never sent, so they count nowhere); `None`, and
    /// the lane released, once nothing is queued.
    pub(crate) fn next(&self, id: &LaneId) -> Option<Vec<Pending>> {
        let mut lanes = self.lock();
        let lane = lanes.get(id)?;
        lane.queue.retain(|p| !p.tx.is_closed());
        if lane.queue.is_empty() {
            lane.busy = false;
            if let Some(tag) = id {
                lanes.by_tag.remove(tag);
            }
            return None;
        }
        let n = lane.queue.len().min(self.max);
        Some(lane.queue.drain(..n).collect())
    }

    /// Takes everything queued on lane `id` (after a failed round trip: those callers
    /// go to the failure mode at once instead of waiting on a failing Redis).
    pub(crate) fn drain(&self, id: &LaneId) -> Vec<Pending> {
        let mut lanes = self.lock();
        lanes
            .get(id)
            .map(|l| l.queue.drain(..).collect())
            .unwrap_or_default()
    }

    /// Releases lane `id` when its driver is dropped mid-flight (its runtime shut
    /// down): the next decision starts a new driver.
    pub(crate) fn release(&self, id: &LaneId) {
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get(id) {
            lane.busy = false;
        }
    }
}
