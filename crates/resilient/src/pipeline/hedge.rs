//! Hedged attempts: the builder's `.hedge(..)` step. A hedge is one more attempt of the
//! same call, started while the others still run; each passes the per-attempt phases
//! (guards added after `.retry(..)`, the operation timeout) on its own and draws from the
//! pipeline's retry budget.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep, Timeout};

use crate::engine::context::{Ambient, Context, Scoped, deadline_from_now};
use crate::engine::error::ConfigError;
use crate::engine::guard::Rejection;
use crate::engine::outcome::{Classify, Outcome};
use crate::engine::telemetry::EventKind;
use crate::hedge::Hedge;
use crate::pipeline::{Attempt, Inner, Permits, Pipeline, PipelineBuilder, retried};

impl<C> PipelineBuilder<C> {
    /// Hedges each attempt: while it runs, further attempts of the same call start as
    /// `hedge` says (after its delay, all at once, or after a failure), up to its
    /// `max_hedges`; the first attempt whose result is not retried (a success, an ignored
    /// error) wins and the others are dropped in the same poll, their guards' permits given
    /// back uncounted. If every attempt fails, the last failure is the attempt's result
    /// and the retry loop decides as usual.
    ///
    /// Hedges are attempts: each passes the per-attempt guards (a breaker, rate limiter or
    /// bulkhead added after `.retry(..)`) and the operation timeout on its own, and each
    /// withdraws from the retry's [budget](crate::Retry::budget) (and the hedge's own, if
    /// any); a hedge either refuses is not started. Only for idempotent operations: the
    /// build fails unless the pipeline is marked [`idempotent`](Self::idempotent), and a
    /// call that is not can opt out with [`Call::idempotent`](crate::Call::idempotent).
    /// Blocking calls are not hedged.
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use resilient::{Error, Pipeline};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let p = Pipeline::builder()
    ///     .hedge(Hedge::delayed(Duration::from_millis(50)).build().unwrap())
    ///     .idempotent(true)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(p.stages(), ["hedge(per attempt)"]);
    /// let mut started = 0;
    /// let r: Result<u32, Error<()>> = p
    ///     .execute(|| {
    ///         started += 1;
    ///         let n = started;
    ///         async move {
    ///             if n == 1 {
    ///                 tokio::time::sleep(Duration::from_secs(10)).await; // stuck
    ///             }
    ///             Ok(n)
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap(), 2); // the hedge started after 50 ms answered
    /// // without the mark, the build fails
    /// let err = Pipeline::builder().hedge(Hedge::parallel().build().unwrap()).build().unwrap_err();
    /// assert_eq!(err.field(), "hedge");
    /// # }
    /// ```
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        if self.hedge.is_some() && self.error.is_none() {
            self.error = Some(ConfigError::new(
                "hedge",
                "is set twice; a pipeline has one hedging policy",
            ));
        }
        self.stages.push("hedge(per attempt)".into());
        self.hedge = Some(hedge);
        self
    }

    /// Marks the pipeline's operations idempotent (safe to run more than once at the same
    /// time), which [`hedge`](Self::hedge) requires. Default `false`.
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use resilient::Pipeline;
    /// let p = Pipeline::builder()
    ///     .idempotent(true)
    ///     .hedge(Hedge::parallel().max_hedges(2).build().unwrap())
    ///     .build();
    /// assert!(p.is_ok());
    /// ```
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }
}

impl<C: Send + Sync + 'static> Pipeline<C> {
    /// Reports the original attempt's win (a quick answer: no hedge started).
    #[inline]
    pub(super) fn hedge_won(&self) {
        if let Some(h) = &self.inner.hedge {
            h.won(0);
        }
    }

    /// Whether calls are hedged (the tower adapter then sends every attempt a copy).
    #[cfg(feature = "tower")]
    pub(crate) fn hedges(&self) -> bool {
        self.inner.hedge.is_some()
    }

    /// A hedged attempt behind per-attempt guards (without them, the retry loop polls the
    /// bare first attempt itself with [`PollOnce`], which keeps its future smaller than
    /// this one would). The first attempt (`first`, launched by the retry loop unless a
    /// per-attempt guard made it wait; `done` if a guard already rejected it) is polled
    /// once; a quick answer that is not retried is the attempt's, with no hedging state
    /// set up (no context copy, no timer, no allocation). Otherwise [`Pipeline::hedged`]
    /// takes over, boxed: only such calls pay for its state and timer, not every call
    /// future. One future (one `.await` in the retry loop), so that `first` is held by
    /// one state of the loop's future only.
    #[inline]
    pub(super) fn hedge_first<'c, T, E, F, Fut, R, L>(
        &self,
        ctx: &'c mut Context,
        op: &'c mut F,
        retryable: &'c R,
        first: Pin<&'c mut Option<L>>,
        mut done: Option<(Attempt<T, E>, Outcome)>,
    ) -> impl Future<Output = (Attempt<T, E>, Outcome)>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
        L: Future<Output = (Attempt<T, E>, Outcome)>,
    {
        let mut slots = Some((ctx, op, first));
        let mut hedging = None;
        poll_fn(move |cx| {
            if hedging.is_none() {
                let (ctx, op, mut first) = slots.take().expect("until hedging starts");
                if done.is_none()
                    && let Some(f) = first.as_mut().as_pin_mut()
                    && let Poll::Ready(r) = f.poll(cx)
                {
                    first.set(None);
                    done = Some(r);
                }
                if let Some((a, o)) = &done
                    && !retried(&self.inner.classify, a, *o)
                {
                    self.hedge_won();
                    return Poll::Ready(done.take().expect("checked above"));
                }
                hedging = Some(Box::pin(self.hedged(
                    ctx,
                    op,
                    retryable,
                    first,
                    done.take(),
                )));
            }
            hedging.as_mut().expect("set above").as_mut().poll(cx)
        })
    }

    /// Phases 4 to 6 for a hedged attempt whose first poll did not settle it: the attempt
    /// itself and hedges of it as the policy says. The retry loop admitted and launched the
    /// first attempt (`launched`) when every per-attempt guard answered at once, and hands
    /// over its failure (`done`) if it already failed; else it is admitted here. Each hedge
    /// is admitted by the per-attempt guards on its own context, then launched (the
    /// operation is called on this future's poll, so it is never shared between the
    /// attempts' futures) and completed under its own operation timeout.
    pub(super) async fn hedged<'p, T, E, F, Fut, R, L>(
        &'p self,
        ctx: &mut Context,
        op: &mut F,
        retryable: &R,
        mut launched: Pin<&mut Option<L>>,
        mut done: Option<(Attempt<T, E>, Outcome)>,
    ) -> (Attempt<T, E>, Outcome)
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
        L: Future<Output = (Attempt<T, E>, Outcome)>,
    {
        let inner = &*self.inner;
        let hedge = inner.hedge.as_ref().expect("hedged only with a hedge");
        let budget = inner.retry.as_ref().and_then(|r| r.budget.as_deref());
        let admit = |ctx: Context| async move {
            let mut permits = Permits::new();
            for g in &inner.attempt_guards {
                match g.acquire(&ctx).resolve().await {
                    Ok(p) => permits.push(p.of(&**g)),
                    Err(r) => return (ctx, Err(r)),
                }
            }
            (ctx, Ok(permits))
        };
        // The first attempt: launched by the retry loop (it may have failed already, as
        // `done`), else admitted here (a per-attempt guard would have made it wait).
        let mut first = pin!(if launched.is_some() || done.is_some() {
            Step::Gone
        } else {
            Step::Admit {
                fut: admit(ctx.clone()),
            }
        });
        // Launches an admitted attempt: the operation is called here, on the hedging
        // future's poll, so it is never shared between the attempts' futures.
        let mut launch = |mut ctx: Context, permits: Permits<'p>| {
            self.running(&mut ctx, |c: &Context| op(c), Some(permits))
        };
        // boxed: it exists only once a call is slower than its first poll
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        let mut last = None;
        let mut done = done.take().map(|r| (0, None, r));
        // A hedge starts only if the request can still be sent again (the tower adapter's
        // copy) and both budgets allow it.
        let probe = ctx.probe.clone();
        let start = |n: u32| {
            let started = retryable() && hedge.admit(n, budget);
            if started && let Some(p) = &probe {
                p.emit(EventKind::HedgeFired { attempt: n });
            }
            started
        };
        let max = hedge.max_hedges();
        let mut next = 1u32;
        // When each attempt started, for a percentile delay: the first one at about now
        // (its first poll found it pending a moment ago).
        let timed = hedge.timed();
        let started = || timed.then(Instant::now);
        let t0 = started();
        let mut hedges: Hedges<Step<_, _>> = Vec::new();
        if hedge.is_parallel() {
            while next <= max && start(next) {
                hedges.push((
                    next,
                    started(),
                    Box::pin(Step::Admit {
                        fut: admit(ctx.clone()),
                    }),
                ));
                next += 1;
            }
            next = max + 1;
        }
        poll_fn(|cx| {
            loop {
                if done.is_none()
                    && let Some(f) = launched.as_mut().as_pin_mut()
                    && let Poll::Ready(r) = f.poll(cx)
                {
                    launched.set(None);
                    done = Some((0, t0, r));
                }
                if done.is_none()
                    && !first.is_gone()
                    && let Poll::Ready(r) = drive(first.as_mut(), cx, &mut launch)
                {
                    done = Some((0, t0, r));
                }
                if done.is_none() {
                    for i in 0..hedges.len() {
                        if let Poll::Ready(r) = drive(hedges[i].2.as_mut(), cx, &mut launch) {
                            let (n, at, _) = hedges.swap_remove(i);
                            done = Some((n, at, r));
                            break;
                        }
                    }
                }
                if let Some((n, at, (result, outcome))) = done.take() {
                    if !retried(&inner.classify, &result, outcome) {
                        // the winner: every other attempt is dropped in this poll
                        first.set(Step::Gone);
                        launched.set(None);
                        hedges.clear();
                        hedge.won_after(n, at);
                        return Poll::Ready((result, outcome));
                    }
                    last = Some((result, outcome));
                    // a failure brings the next hedge forward (delayed and fallback modes)
                    if next <= max && start(next) {
                        hedges.push((
                            next,
                            started(),
                            Box::pin(Step::Admit {
                                fut: admit(ctx.clone()),
                            }),
                        ));
                        next += 1;
                        if let (Some(d), Some(t)) = (hedge.delay(), timer.as_mut()) {
                            t.as_mut().reset(Instant::now() + d);
                        }
                    }
                    if first.is_gone() && launched.is_none() && hedges.is_empty() {
                        return Poll::Ready(last.take().expect("a failed attempt"));
                    }
                    continue;
                }
                // nothing finished: in delayed mode a hedge is due after the delay (the
                // timer is set up only now, when the first poll found the call pending)
                if let Some(d) = hedge.delay()
                    && next <= max
                {
                    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                    if t.as_mut().poll(cx).is_ready() {
                        if start(next) {
                            hedges.push((
                                next,
                                started(),
                                Box::pin(Step::Admit {
                                    fut: admit(ctx.clone()),
                                }),
                            ));
                            next += 1;
                            t.as_mut().reset(Instant::now() + d);
                            continue;
                        }
                        next = max + 1;
                    }
                }
                return Poll::Pending;
            }
        })
        .await
    }
}

impl<C> Pipeline<C> {
    /// Phase 5 starts: the operation is called under the attempt's deadline (the tighter
    /// of the call's and the operation timeout's, which its `Context` and nested
    /// pipelines see).
    /// An admitted attempt, launched (see [`Pipeline::launch`]) with its permits.
    #[inline]
    pub(super) fn running<'p, F, Fut>(
        &'p self,
        ctx: &mut Context,
        op: F,
        permits: Option<Permits<'p>>,
    ) -> Running<'p, Fut, C>
    where
        F: FnOnce(&Context) -> Fut,
        Fut: Future,
    {
        let inner = &*self.inner;
        let t0 = inner.time_attempts.then(|| inner.clock.now());
        Running {
            op: self.launch(ctx, op),
            permits,
            t0,
            inner,
        }
    }

    #[inline]
    fn launch<F, Fut>(&self, ctx: &mut Context, op: F) -> Launched<Fut>
    where
        F: FnOnce(&Context) -> Fut,
        Fut: Future,
    {
        // An operation timeout too long to fire is none.
        let timeout = self
            .inner
            .timeouts
            .operation
            .and_then(|limit| Some((limit, deadline_from_now(limit)?)));
        match timeout {
            Some((limit, at)) => {
                let call_deadline = ctx.deadline;
                let deadline = call_deadline.map_or(at, |d| d.min(at));
                ctx.deadline = Some(deadline);
                let fut = op(ctx);
                ctx.deadline = call_deadline;
                let ambient = Ambient {
                    deadline: Some(deadline),
                    cancel: Ambient::inherited_cancel(),
                };
                Launched::Timed {
                    fut: tokio::time::timeout_at(at, ambient.scope(fut)),
                    limit,
                }
            }
            None => Launched::Plain { fut: op(ctx) },
        }
    }
}

pin_project_lite::pin_project! {
    /// An attempt's operation, called, within its operation timeout if any.
    #[project = LaunchedProj]
    enum Launched<Fut> {
        Timed { #[pin] fut: Timeout<Scoped<Fut>>, limit: Duration },
        Plain { #[pin] fut: Fut },
    }
}

impl<T, E, Fut: Future<Output = Result<T, E>>> Future for Launched<Fut> {
    type Output = Attempt<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Attempt<T, E>> {
        Poll::Ready(match self.project() {
            LaunchedProj::Timed { fut, limit } => match ready!(fut.poll(cx)) {
                Ok(r) => Attempt::Done(r),
                Err(_) => Attempt::TimedOut(*limit),
            },
            LaunchedProj::Plain { fut } => Attempt::Done(ready!(fut.poll(cx))),
        })
    }
}

/// The hedges of an attempt in flight: each one's number, when it started (timed for a
/// percentile delay only) and its step.
type Hedges<S> = Vec<(u32, Option<Instant>, Pin<Box<S>>)>;

/// Polls a hedged call's first attempt once, in the retry loop's own poll: `Some` with
/// its result if it settled (the slot is emptied), `None` if it is pending or was never
/// launched. A quick answer that is not retried is then the attempt's, with no hedging
/// state set up (no context copy, no timer, no allocation); anything else goes to
/// [`Pipeline::hedged`], boxed, so only slow calls pay for its state and timer.
pub(super) struct PollOnce<'a, L>(pub(super) Pin<&'a mut Option<L>>);

impl<L: Future> Future for PollOnce<'_, L> {
    type Output = Option<L::Output>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let Some(first) = self.0.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match first.poll(cx) {
            Poll::Ready(r) => {
                self.0.set(None);
                Poll::Ready(Some(r))
            }
            Poll::Pending => Poll::Ready(None),
        }
    }
}

pin_project_lite::pin_project! {
    /// A first attempt with nothing around it (no per-attempt guard, no operation
    /// timeout): the operation's future, judged when it ends.
    pub(super) struct Bare<'p, Fut, C> {
        #[pin]
        pub(super) fut: Fut,
        pub(super) classify: &'p C,
    }
}

impl<T, E, Fut, C> Future for Bare<'_, Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = (Attempt<T, E>, Outcome);

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let r = ready!(this.fut.poll(cx));
        let outcome = this.classify.classify(&r);
        Poll::Ready((Attempt::Done(r), outcome))
    }
}

pin_project_lite::pin_project! {
    /// A launched attempt and its permits (none without per-attempt guards): once the
    /// operation ends, its result is judged and recorded on them.
    pub(super) struct Running<'p, Fut, C> {
        #[pin]
        op: Launched<Fut>,
        permits: Option<Permits<'p>>,
        t0: Option<Duration>,
        inner: &'p Inner<C>,
    }
}

impl<T, E, Fut, C> Future for Running<'_, Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = (Attempt<T, E>, Outcome);

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.op.poll(cx));
        let inner = *this.inner;
        let outcome = match &result {
            Attempt::Done(r) => inner.classify.classify(r),
            _ => Outcome::Failure,
        };
        let took = this
            .t0
            .map_or(Duration::ZERO, |t0| inner.clock.now().saturating_sub(t0));
        if let Some(permits) = this.permits.as_mut() {
            for p in permits.drain(..) {
                p.record(outcome, took);
            }
        }
        Poll::Ready((result, outcome))
    }
}

pin_project_lite::pin_project! {
    /// One hedged attempt: admitted by the per-attempt guards, then running.
    #[project = StepProj]
    enum Step<A, R> {
        Admit { #[pin] fut: A },
        Run { #[pin] fut: R },
        Gone,
    }
}

impl<A, R> Step<A, R> {
    fn is_gone(&self) -> bool {
        matches!(self, Step::Gone)
    }
}

/// Drives one hedged attempt: its admission, then (on the same poll) its launch and run.
fn drive<'p, A, L, Run, T, E>(
    mut step: Pin<&mut Step<A, Run>>,
    cx: &mut TaskContext<'_>,
    launch: &mut L,
) -> Poll<(Attempt<T, E>, Outcome)>
where
    A: Future<Output = (Context, Result<Permits<'p>, Rejection>)>,
    L: FnMut(Context, Permits<'p>) -> Run,
    Run: Future<Output = (Attempt<T, E>, Outcome)>,
{
    loop {
        match step.as_mut().project() {
            StepProj::Admit { fut } => match ready!(fut.poll(cx)) {
                (_, Err(r)) => {
                    step.set(Step::Gone);
                    return Poll::Ready((Attempt::Rejected(r), Outcome::Failure));
                }
                (ctx, Ok(permits)) => step.set(Step::Run {
                    fut: launch(ctx, permits),
                }),
            },
            StepProj::Run { fut } => {
                let r = ready!(fut.poll(cx));
                step.set(Step::Gone);
                return Poll::Ready(r);
            }
            StepProj::Gone => return Poll::Pending,
        }
    }
}
