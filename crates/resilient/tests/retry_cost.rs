//! Cost-aware retries: per-tenant budgets hold under one tenant's retry storm while another
//! tenant keeps retrying; costs from the call, from the result, or the default; refills;
//! the exhausted event; bounded memory. Paused time and a manual clock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::retry::{CostBudget, CostExhausted};
use resilient::{Error, ManualClock, Pipeline, Retry};

#[tokio::test(start_paused = true)]
async fn a_tenants_retry_storm_spends_only_its_own_budget() {
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::<CostExhausted>::new()));
    let ev = events.clone();
    let budget = CostBudget::builder(20, 2.0)
        .per_key(1_000)
        .clock(Arc::new(clock.clone()))
        .on_exhausted(move |e| ev.lock().unwrap().push(*e))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_millis(100))
                .attempts(5)
                .cost_budget(budget.clone()),
        )
        .build()
        .unwrap();

    // tenant "noisy": 200 calls against a dead dependency, 50 at a time
    let noisy_attempts = Arc::new(AtomicU32::new(0));
    let mut exhausted = 0;
    for round in 0..4 {
        let calls = (0..50).map(|_| {
            let n = noisy_attempts.clone();
            let p = &p;
            async move {
                p.call()
                    .key("noisy")
                    .execute(|| {
                        n.fetch_add(1, Ordering::Relaxed);
                        async { Err::<(), _>("down") }
                    })
                    .await
            }
        });
        for r in futures_join_all(calls).await {
            match r {
                Err(Error::CostBudgetExhausted { cost: 1, last, .. }) => {
                    assert_eq!(last.inner(), Some(&"down"));
                    exhausted += 1;
                }
                Err(Error::RetriesExhausted { .. }) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        clock.advance(Duration::from_secs(1)); // refills 2 units
    }
    // retries = attempts - calls: at most the capacity plus the refills (3 seconds of 2)
    let retries = noisy_attempts.load(Ordering::Relaxed) - 200;
    assert!(retries <= 20 + 3 * 2, "{retries} retries");
    assert!(retries >= 20, "the budget was spent: {retries}");
    assert!(exhausted >= 190, "{exhausted}");
    assert_eq!(events.lock().unwrap().len(), exhausted);
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.cost == 1 && e.key.is_some())
    );

    // tenant "calm" still retries: each call fails once, then works
    for _ in 0..10 {
        let mut first = true;
        let r = p
            .call()
            .key("calm")
            .execute(|| {
                let fail = std::mem::take(&mut first);
                async move { if fail { Err("blip") } else { Ok(7) } }
            })
            .await;
        assert_eq!(r, Ok(7));
    }
    assert_eq!(budget.available(Some(hash_of(&p, "calm"))), 10);
}

/// The key's hash as the budget sees it (`Context::key`).
fn hash_of<K: std::hash::Hash + ?Sized>(_: &Pipeline, key: &K) -> u64 {
    resilient::Context::new().with_key(key).key().unwrap()
}

/// Polls the futures together on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<_> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (h, o) in handles.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *o = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(start_paused = true)]
async fn the_calls_cost_prices_its_retries() {
    let budget = CostBudget::builder(10_000, 0.0).build().unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(10).cost_budget(budget.clone()))
        .build()
        .unwrap();
    // an LLM request of 3,000 tokens: three retries fit in 10,000, not a fourth
    let attempts = AtomicU32::new(0);
    let err = p
        .call()
        .cost(3_000)
        .execute(|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("overloaded") }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CostBudgetExhausted {
                attempts: 4,
                cost: 3_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(attempts.load(Ordering::Relaxed), 4);
    assert_eq!(budget.available(None), 1_000);
    assert!(
        err.to_string()
            .contains("cost budget exhausted after 4 attempts")
    );
    assert!(err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn the_result_prices_its_retry_before_the_call_and_the_default() {
    let budget = CostBudget::builder(10, 0.0)
        .default_cost(5)
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(20).cost_budget(budget.clone()))
        .retry_cost(|r: &Result<(), u16>| if r == &Err(503) { 1 } else { 4 })
        .build()
        .unwrap();
    let n = AtomicU32::new(0);
    // 503 costs 1 each: 10 retries, then refused
    let err = p
        .call()
        .cost(1_000) // the result's price wins over the call's
        .execute(|| {
            n.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(503) }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CostBudgetExhausted {
                attempts: 11,
                cost: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(n.load(Ordering::Relaxed), 11);
}

#[test]
fn blocking_calls_are_charged_too_and_refills_follow_the_clock() {
    let clock = ManualClock::new();
    let budget = CostBudget::builder(2, 1.0)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(5).cost_budget(budget.clone()))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let err = p.execute_blocking(|| Err::<(), _>("x")).unwrap_err();
    assert!(
        matches!(err, Error::CostBudgetExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(budget.available(None), 0);
    clock.advance(Duration::from_millis(1_500));
    assert_eq!(budget.available(None), 1);
    clock.advance(Duration::from_secs(100));
    assert_eq!(budget.available(None), 2, "refills stop at the capacity");
    // a success touches nothing
    assert_eq!(p.execute_blocking(|| Ok::<_, ()>(1)), Ok(1));
    assert_eq!(budget.available(None), 2);
}

#[test]
fn keys_are_bounded_and_full_buckets_forgotten() {
    let clock = ManualClock::new();
    let budget = CostBudget::builder(10, 1.0)
        .per_key(64)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    for k in 0..10_000u64 {
        budget.try_charge(Some(k), 1).unwrap();
    }
    assert!(
        budget.tracked_keys() <= 64 + 16,
        "{}",
        budget.tracked_keys()
    );
    clock.advance(Duration::from_secs(10));
    // everything has refilled: a new key's charge prunes full buckets in its shard
    for k in 20_000..20_016u64 {
        budget.try_charge(Some(k), 1).unwrap();
    }
    // without a key, every call shares one bucket
    let shared = CostBudget::builder(3, 0.0).build().unwrap();
    assert!(shared.try_charge(Some(1), 2).is_ok());
    assert_eq!(shared.try_charge(Some(2), 2).unwrap_err().available, 1);
    assert!(!shared.is_per_key());
}

#[test]
fn settings_are_validated() {
    for (b, field) in [
        (CostBudget::builder(0, 1.0), "cost_budget.capacity"),
        (CostBudget::builder(u64::MAX, 1.0), "cost_budget.capacity"),
        (CostBudget::builder(1, f64::NAN), "cost_budget.refill"),
        (CostBudget::builder(1, f64::INFINITY), "cost_budget.refill"),
        (CostBudget::builder(1, -0.5), "cost_budget.refill"),
        (
            CostBudget::builder(1, 1.0).per_key(0),
            "cost_budget.max_keys",
        ),
    ] {
        assert_eq!(b.build().unwrap_err().field(), field);
    }
    // extreme but valid values never panic when charged
    let b = CostBudget::builder(u64::MAX / 1_000, f64::MAX)
        .build()
        .unwrap();
    assert!(b.try_charge(None, u64::MAX).is_err());
    assert!(b.try_charge(None, 1).is_ok());
    let spent = AtomicU64::new(0);
    for _ in 0..3 {
        if b.try_charge(Some(9), u64::MAX / 1_000).is_ok() {
            spent.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert!(spent.load(Ordering::Relaxed) >= 1);
}
