//! Cost-aware retry budgets: retries charged in units (tokens, money, requests) against
//! per-tenant or per-pipeline budgets that refill over time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::engine::clock::{SharedClock, system_clock};
use crate::engine::error::ConfigError;

/// Shards of the per-key map (a retry locks one).
const SHARDS: usize = 16;

/// A budget of retry cost that refills over time, for the whole pipeline or per tenant.
///
/// Each retry (not the first attempt) is charged a cost before it waits: by default
/// [`default_cost`](CostBudgetBuilder::default_cost) units; the call's own cost when it
/// has one (`pipeline.call().cost(n)`, e.g. the tokens an LLM request uses); or what
/// `PipelineBuilder::retry_cost` computes from the failed attempt (per error kind). A
/// retry the budget cannot pay for is not made: the call ends with
/// `Error::CostBudgetExhausted`, carrying the last attempt's error, and the budget's
/// [`on_exhausted`](CostBudgetBuilder::on_exhausted) hook is told.
///
/// With [`per_key`](CostBudgetBuilder::per_key), each call key (`pipeline.call().key(&tenant)`)
/// has its own bucket: one tenant's retry storm spends only its own budget. Calls without a
/// key share one bucket. Buckets refill continuously at `refill` units per second up to
/// `capacity`; a full bucket is forgotten, so idle tenants cost no memory, and at most
/// `max_keys` partly spent buckets are kept (beyond that the one idle longest is dropped,
/// which refills it early).
///
/// Only retries touch the budget: the success path never reads it.
///
/// ```
/// use resilient::retry::CostBudget;
/// use resilient::{Error, ManualClock, Pipeline, Retry};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let clock = ManualClock::new();
/// // 10 units, refilled at 1 unit per second; each retry costs 4 units
/// let budget = CostBudget::builder(10, 1.0)
///     .default_cost(4)
///     .clock(Arc::new(clock.clone()))
///     .build()
///     .unwrap();
/// let p = Pipeline::builder()
///     .retry(Retry::immediate().attempts(10).cost_budget(budget.clone()))
///     .build()
///     .unwrap();
/// let err = p.execute(|| async { Err::<(), _>("down") }).await.unwrap_err();
/// // two retries paid for (8 units), the third refused
/// assert!(matches!(err, Error::CostBudgetExhausted { attempts: 3, cost: 4, .. }));
/// assert_eq!(err.inner(), Some(&"down"));
/// assert_eq!(budget.available(None), 2);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(budget.available(None), 4);
/// # }
/// ```
#[derive(Clone)]
pub struct CostBudget {
    inner: Arc<Inner>,
}

/// A hook told of every retry a [`CostBudget`] refused.
pub type ExhaustedHook = Arc<dyn Fn(&CostExhausted) + Send + Sync>;

struct Inner {
    /// Capacity and balances in milli-units.
    capacity: u64,
    /// Milli-units per second.
    refill: f64,
    default_cost: u64,
    per_key: bool,
    max_keys: usize,
    clock: SharedClock,
    shards: Box<[Mutex<HashMap<u64, Bucket>>]>,
    on_exhausted: Option<ExhaustedHook>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Milli-units left at `at`.
    level: u64,
    /// Clock reading (nanoseconds) of `level`.
    at: u64,
}

/// A retry the budget refused (handed to the [`on_exhausted`](CostBudgetBuilder::on_exhausted)
/// hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CostExhausted {
    /// The call's key (hashed, as `Context::key` holds it), when the budget is per key.
    pub key: Option<u64>,
    /// What the refused retry would have cost.
    pub cost: u64,
    /// Whole units left in the bucket.
    pub available: u64,
}

/// Builds a [`CostBudget`].
#[derive(Clone)]
pub struct CostBudgetBuilder {
    capacity: u64,
    refill: f64,
    default_cost: u64,
    per_key: bool,
    max_keys: usize,
    clock: Option<SharedClock>,
    on_exhausted: Option<ExhaustedHook>,
}

impl fmt::Debug for CostBudgetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostBudgetBuilder")
            .field("capacity", &self.capacity)
            .field("refill", &self.refill)
            .field("default_cost", &self.default_cost)
            .field("per_key", &self.per_key)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CostBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostBudget")
            .field("capacity", &(self.inner.capacity / 1000))
            .field("refill_per_sec", &(self.inner.refill / 1000.0))
            .field("per_key", &self.inner.per_key)
            .finish_non_exhaustive()
    }
}

/// Milli-units: costs are whole units, refills fractional.
const MILLI: u64 = 1_000;

impl CostBudget {
    /// A budget of `capacity` units, refilled at `refill_per_sec` units per second.
    pub fn builder(capacity: u64, refill_per_sec: f64) -> CostBudgetBuilder {
        CostBudgetBuilder {
            capacity,
            refill: refill_per_sec,
            default_cost: 1,
            per_key: false,
            max_keys: 100_000,
            clock: None,
            on_exhausted: None,
        }
    }

    /// Whether retries are charged per call key.
    pub fn is_per_key(&self) -> bool {
        self.inner.per_key
    }

    /// The cost of a retry when neither the call nor the pipeline says otherwise.
    pub fn default_cost(&self) -> u64 {
        self.inner.default_cost
    }

    fn now(&self) -> u64 {
        u64::try_from(self.inner.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    fn slot(&self, key: Option<u64>) -> (u64, &Mutex<HashMap<u64, Bucket>>) {
        let k = if self.inner.per_key {
            key.unwrap_or(0)
        } else {
            0
        };
        (k, &self.inner.shards[(k as usize) % SHARDS])
    }

    fn level(&self, b: Option<&Bucket>, now: u64) -> u64 {
        let Some(b) = b else {
            return self.inner.capacity;
        };
        let secs = now.saturating_sub(b.at) as f64 / 1e9;
        let refill = (secs * self.inner.refill).min(self.inner.capacity as f64) as u64;
        b.level.saturating_add(refill).min(self.inner.capacity)
    }

    /// Whole units left for `key` (ignored unless the budget is per key).
    ///
    /// ```
    /// use resilient::retry::CostBudget;
    /// let b = CostBudget::builder(5, 1.0).per_key(1_000).build().unwrap();
    /// assert!(b.try_charge(Some(1), 5).is_ok());
    /// assert_eq!(b.available(Some(1)), 0);
    /// assert_eq!(b.available(Some(2)), 5); // another tenant is untouched
    /// ```
    pub fn available(&self, key: Option<u64>) -> u64 {
        let now = self.now();
        let (k, shard) = self.slot(key);
        let map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        self.level(map.get(&k), now) / MILLI
    }

    /// Buckets currently kept (partly spent ones; full buckets are forgotten).
    pub fn tracked_keys(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Charges `cost` units to `key`'s bucket (the shared one when the budget is not per
    /// key, or the call has no key). On refusal nothing is charged, the hook is told, and
    /// the refusal says what was left.
    pub fn try_charge(&self, key: Option<u64>, cost: u64) -> Result<(), CostExhausted> {
        let now = self.now();
        let (k, shard) = self.slot(key);
        let need = cost.saturating_mul(MILLI);
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let level = self.level(map.get(&k), now);
        if level < need {
            drop(map);
            let refused = CostExhausted {
                key: self.inner.per_key.then_some(k),
                cost,
                available: level / MILLI,
            };
            if let Some(hook) = &self.inner.on_exhausted {
                hook(&refused);
            }
            return Err(refused);
        }
        let left = level - need;
        if left >= self.inner.capacity {
            map.remove(&k);
            return Ok(());
        }
        let per_shard = self.inner.max_keys.div_ceil(SHARDS).max(1);
        if !map.contains_key(&k) && map.len() >= per_shard {
            // forget buckets that have refilled, then the one idle longest
            let cap = self.inner.capacity;
            map.retain(|_, b| self.level(Some(b), now) < cap);
            if map.len() >= per_shard
                && let Some(oldest) = map.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            k,
            Bucket {
                level: left,
                at: now,
            },
        );
        Ok(())
    }
}

impl CostBudgetBuilder {
    /// The cost of a retry when neither the call (`.cost(n)`) nor the pipeline
    /// (`retry_cost`) gives one (default 1).
    pub fn default_cost(mut self, cost: u64) -> Self {
        self.default_cost = cost;
        self
    }

    /// One bucket per call key, keeping at most `max_keys` partly spent ones (see
    /// [`CostBudget`]).
    pub fn per_key(mut self, max_keys: usize) -> Self {
        self.per_key = true;
        self.max_keys = max_keys;
        self
    }

    /// The clock that drives refills (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Calls `hook` for every retry the budget refuses (an event for logs and metrics).
    pub fn on_exhausted(mut self, hook: impl Fn(&CostExhausted) + Send + Sync + 'static) -> Self {
        self.on_exhausted = Some(Arc::new(hook));
        self
    }

    /// Checks the settings and builds the budget.
    ///
    /// ```
    /// use resilient::retry::CostBudget;
    /// assert_eq!(CostBudget::builder(0, 1.0).build().unwrap_err().field(), "cost_budget.capacity");
    /// assert_eq!(CostBudget::builder(10, -1.0).build().unwrap_err().field(), "cost_budget.refill");
    /// ```
    pub fn build(self) -> Result<CostBudget, ConfigError> {
        // milli-units must fit: at most u64::MAX / 1000 units
        if self.capacity == 0 || self.capacity > u64::MAX / MILLI {
            return Err(ConfigError::new(
                "cost_budget.capacity",
                format!("must be between 1 and {}", u64::MAX / MILLI),
            ));
        }
        if !(self.refill.is_finite() && self.refill >= 0.0) {
            return Err(ConfigError::new(
                "cost_budget.refill",
                format!(
                    "must be a finite number of units per second >= 0, got {}",
                    self.refill
                ),
            ));
        }
        if self.per_key && self.max_keys == 0 {
            return Err(ConfigError::new(
                "cost_budget.max_keys",
                "must be at least 1",
            ));
        }
        Ok(CostBudget {
            inner: Arc::new(Inner {
                capacity: self.capacity * MILLI,
                refill: self.refill * MILLI as f64,
                default_cost: self.default_cost,
                per_key: self.per_key,
                max_keys: self.max_keys,
                clock: self.clock.unwrap_or_else(system_clock),
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                on_exhausted: self.on_exhausted,
            }),
        })
    }
}
