//! Timer tests of the actor skeleton with paused tokio time: a pass runs again when the core
//! asks, the supervisor's clock resyncs every actor once per period, and failed steps back off
//! along the curve.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::actors::registry::Registry;
use tokio::time::Instant;

use super::*;
use crate::actors::supervisor::SupervisorArgs;
use crate::actors::{ActorHandle, Supervisor};
use crate::api::{CocoonSet, CocoonSetSpec, CocoonSetStatus};
use crate::index::Update;
use crate::k8s::Writer;
use crate::metrics::Metrics;
use crate::plan::{Backoff, Retry};

/// When each test's part planned, by set name (tests run in parallel).
fn plans() -> &'static Mutex<HashMap<String, Vec<Instant>>> {
    static PLANS: OnceLock<Mutex<HashMap<String, Vec<Instant>>>> = OnceLock::new();
    PLANS.get_or_init(Default::default)
}

/// The times (`now`) a part planned at and recorded at, by set name.
type Clocks = Mutex<HashMap<String, Vec<(&'static str, Timestamp)>>>;

fn clocks() -> &'static Clocks {
    static CLOCKS: OnceLock<Clocks> = OnceLock::new();
    CLOCKS.get_or_init(Default::default)
}

/// A part whose passes are fixed by its set's name: `wait-<secs>` asks to be woken after that
/// long; `fail` has one pod write that always fails; `slow` one that takes 300 ms (real time).
struct Ticks {
    set: Option<Arc<CocoonSet>>,
    retry: Retry,
    view: PodsView,
}

impl Part for Ticks {
    type Object = CocoonSet;
    type PodWrite = ();
    type Status = CocoonSetStatus;

    fn new() -> Self {
        Self { set: None, retry: Retry::default(), view: PodsView::default() }
    }

    fn view(&mut self) -> &mut PodsView {
        &mut self.view
    }

    fn absorb(&mut self, pending: Pending) {
        if let Some(set) = pending.cocoon_set {
            self.set = set.map(|s| s.object().clone());
        }
    }

    fn object(&self) -> Option<&Arc<CocoonSet>> {
        self.set.as_ref()
    }

    fn plan(&mut self, _ctx: &Context, now: Timestamp) -> Planned<(), CocoonSetStatus> {
        let name = self.set.as_ref().and_then(|s| s.metadata.name.clone()).unwrap_or_default();
        plans().lock().unwrap().entry(name.clone()).or_default().push(Instant::now());
        clocks().lock().unwrap().entry(name.clone()).or_default().push(("plan", now));
        let wake_after =
            name.strip_prefix("wait-").and_then(|s| s.parse().ok()).map(Duration::from_secs);
        let steps = match name.as_str() {
            "fail" | "slow" => vec![Step::Pod(())],
            _ => Vec::new(),
        };
        Planned { pass: Pass { steps, wake_after }, phase: None, pod_count: 0 }
    }

    async fn write_pod(&self, _ctx: &Context, _namespace: &str, _write: &()) -> Outcome {
        if self.set.as_ref().and_then(|s| s.metadata.name.as_deref()) == Some("slow") {
            std::thread::sleep(Duration::from_millis(300));
            return Outcome::Done;
        }
        Outcome::Failed { detail: "503".into() }
    }

    fn record(
        &mut self,
        _ctx: &Context,
        _step: &Step<(), CocoonSetStatus>,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Recorded {
        let name = self.set.as_ref().and_then(|s| s.metadata.name.clone()).unwrap_or_default();
        clocks().lock().unwrap().entry(name).or_default().push(("record", now));
        self.retry.record(outcome, Backoff::retry(Duration::from_secs(60)))
    }

    fn wrote_status(&mut self, _own: crate::plan::OwnWrite) {}

    fn completed(&mut self) {
        self.retry.completed();
    }

    fn compact(&mut self) {
        self.view.compact();
    }
}

fn context(resync: Duration) -> Arc<Context> {
    context_with(resync, false)
}

/// A context whose actors go to rest (`--actor-rest`) or not.
fn context_with(resync: Duration, actor_rest: bool) -> Arc<Context> {
    // A client that is never used: building it opens no connection.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    Arc::new(Context {
        writer: Writer::new(client, None, 32),
        metrics: Metrics::new(),
        resync,
        actor_rest,
        max_backoff: Duration::from_secs(60),
        status_batch: Duration::ZERO,
        hibernation: crate::config::OperatorConfig::default().hibernation_settings(),
        registry: Registry::new(),
        synced: Arc::new(AtomicBool::new(true)),
        nodes: Default::default(),
        snapshot_registry: None,
        shutting_down: Default::default(),
    })
}

/// Starts an actor for a set of this name; returns when it started.
async fn start(name: &str, resync: Duration) -> Instant {
    start_in(name, &context(resync)).await.0
}

/// Starts an actor for a set of this name with `ctx`, recorded in its registry; returns when it
/// started, and the actor.
async fn start_in(name: &str, ctx: &Arc<Context>) -> (Instant, ActorRef<ResourceMsg>) {
    let spec: CocoonSetSpec =
        serde_json::from_value(serde_json::json!({"agent": {"image": "x"}})).unwrap();
    let set = crate::index::CachedSet::new(CocoonSet::new(name, spec));
    let inbox = Arc::new(Inbox::default());
    inbox.push(Update::CocoonSet(Some(set)));
    let key = ActorKey::cocoon_set("ns", name);
    let stats: Arc<Mutex<ActorStats>> = Arc::default();
    let args = Args {
        key: key.clone(),
        ctx: ctx.clone(),
        inbox: inbox.clone(),
        stats: stats.clone(),
        part: None,
    };
    let (actor, _) = Actor::spawn(None, ResourceActor::<Ticks>::default(), args).await.unwrap();
    let handle = ActorHandle { actor: actor.clone(), inbox, stats, restarts: 0 };
    ctx.registry.insert_for_test(key, handle);
    let started = Instant::now();
    actor.cast(ResourceMsg::Wake).unwrap();
    (started, actor)
}

/// Seconds after `start` at which the part planned.
fn planned_at(name: &str, start: Instant) -> Vec<u64> {
    let plans = plans().lock().unwrap();
    plans.get(name).into_iter().flatten().map(|t| t.duration_since(start).as_secs()).collect()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_pass_that_asks_to_be_woken_later_runs_again_then_and_not_before() {
    let start = start("wait-30", HOUR).await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(planned_at("wait-30", start), vec![0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(planned_at("wait-30", start), vec![0, 30]);
}

#[tokio::test(start_paused = true)]
async fn the_supervisors_clock_resyncs_every_actor_once_a_period_spread_over_it() {
    let ctx = context(Duration::from_secs(15));
    let names: Vec<String> = (0..20).map(|i| format!("quiet-{i}")).collect();
    let mut started = Vec::new();
    for name in &names {
        let (at, _) = start_in(name, &ctx).await;
        started.push(at);
    }
    let (index, _inputs) = tokio::sync::mpsc::unbounded_channel();
    let args = SupervisorArgs { ctx: ctx.clone(), index };
    let (_supervisor, _) = Actor::spawn(None, Supervisor, args).await.unwrap();
    tokio::time::sleep(Duration::from_secs(46)).await;
    let mut offsets = std::collections::BTreeSet::new();
    for (name, start) in names.iter().zip(started) {
        let at = planned_at(name, start);
        // The first pass on Wake, then one resync per period, at the actor's own offset.
        assert_eq!(at.len(), 4, "{name}: {at:?}");
        assert_eq!(at[0], 0);
        assert!((1..=15).contains(&at[1]), "{name}: {at:?}");
        assert_eq!((at[2] - at[1], at[3] - at[2]), (15, 15), "{name}: {at:?}");
        offsets.insert(at[1]);
    }
    assert!(offsets.len() > 5, "the resyncs are spread over the period: {offsets:?}");
}

#[tokio::test(start_paused = true)]
async fn an_actor_keeps_no_resync_timer_of_its_own() {
    let start = start("alone", Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(46)).await;
    assert_eq!(planned_at("alone", start), vec![0], "only the supervisor's clock resyncs");
}

#[tokio::test(start_paused = true)]
async fn a_failing_write_is_retried_along_the_backoff_curve() {
    let start = start("fail", HOUR).await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(planned_at("fail", start), vec![0, 1, 3, 7, 15]);
}

#[tokio::test(start_paused = true)]
async fn an_actor_whose_resync_pass_has_nothing_to_do_rests_with_its_part_parked() {
    let ctx = context_with(HOUR, true);
    let key = ActorKey::cocoon_set("ns", "rest");
    let (_, actor) = start_in("rest", &ctx).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ctx.registry.get(&key).is_some(), "a pass on an update does not rest");
    actor.cast(ResourceMsg::Resync).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ctx.registry.get(&key).is_none(), "at rest, it is not a running actor");
    assert_eq!(actor.get_status(), ractor::ActorStatus::Stopped);
    let inbox = ctx.registry.resting_inbox(&key).expect("parked");
    assert!(inbox.is_resting(), "the next update asks for a revival");
    let parked = ctx.registry.unpark(&key).unwrap();
    let part = parked.part.downcast::<Ticks>().expect("its own part");
    assert_eq!(part.set.as_ref().and_then(|s| s.metadata.name.as_deref()), Some("rest"));
}

#[tokio::test(start_paused = true)]
async fn an_actor_with_a_timer_or_with_rest_turned_off_stays_running() {
    for (ctx, name) in
        [(context_with(HOUR, true), "wait-20"), (context_with(HOUR, false), "rest-off")]
    {
        let key = ActorKey::cocoon_set("ns", name);
        let (start, actor) = start_in(name, &ctx).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        actor.cast(ResourceMsg::Resync).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(ctx.registry.get(&key).is_some(), "{name}: still running");
        assert!(ctx.registry.resting_inbox(&key).is_none(), "{name}: nothing parked");
        if name == "wait-20" {
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert_eq!(planned_at(name, start), vec![0, 1, 21], "its timer still fires");
        }
    }
}

#[tokio::test]
async fn an_outcome_is_recorded_at_the_time_of_its_answer_not_of_the_passs_start() {
    start("slow", HOUR).await;
    let slow = || clocks().lock().unwrap().get("slow").filter(|c| c.len() >= 2).cloned();
    let clocks = common_wait(slow).await;
    let (plan, record) = (clocks[0], clocks[1]);
    assert_eq!((plan.0, record.0), ("plan", "record"));
    // An expectation dated from the pass's start would expire early when writes wait their turn.
    let waited = record.1.duration_since(plan.1);
    assert!(
        waited >= k8s_openapi::jiff::SignedDuration::from_millis(300),
        "recorded {waited:?} after the plan"
    );
}

/// Polls `look` (real time) until it gives a value.
async fn common_wait<T>(look: impl Fn() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = look() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not seen within 2 s");
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_that_fell_behind_its_clock_resyncs_one_slice_not_every_missed_one() {
    use crate::actors::supervisor::RESYNC_SLICES;
    let ctx = context_with(Duration::from_secs(15), true);
    let names: Vec<String> = (0..45).map(|i| format!("behind-{i}")).collect();
    for name in &names {
        start_in(name, &ctx).await;
    }
    let (index, _inputs) = tokio::sync::mpsc::unbounded_channel();
    let args = SupervisorArgs { ctx: ctx.clone(), index };
    let (_supervisor, _) = Actor::spawn(None, Supervisor, args).await.unwrap();
    // Every actor resyncs once and, with nothing to do, rests.
    tokio::time::sleep(Duration::from_millis(15_500)).await;
    let resting = || ctx.registry.iter_resting().map(|e| e.key().clone()).collect::<Vec<_>>();
    assert_eq!(resting().len(), names.len(), "all at rest");
    // The clock jumps five ticks while the supervisor is not run (a busy machine); then the
    // actors of every slice its next tick resyncs are revived (taken out of rest).
    tokio::time::advance(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let still = resting();
    let revived: std::collections::BTreeSet<u64> = names
        .iter()
        .map(|n| ActorKey::cocoon_set("ns", n))
        .filter(|k| !still.contains(k))
        .map(|k| k.resync_slice(RESYNC_SLICES))
        .collect();
    assert_eq!(revived.len(), 1, "one slice resynced, not one per missed tick: {revived:?}");
}
