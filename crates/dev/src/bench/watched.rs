//! The driver's views: a reflector per kind and namespace (one watch each) that scenarios wait
//! on (the driver never polls the API), and each set's time to settle after its own patch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;
use tokio::sync::Notify;

use super::BoxError;
use super::report::Quantiles;
use cocoon_operator::api::{CocoonSet, CocoonSetPhase, Hibernation, HibernationPhase};

/// Longest wait for one scenario.
pub const LIMIT: Duration = Duration::from_secs(1800);

/// A reflector: the driver's view of one kind in one namespace (one watch).
pub struct Watched<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    /// Told after every event the store took in: a wait looks again then, so the end of a
    /// scenario is seen when the watch shows it, not at the next tick of a poll.
    changed: Arc<Notify>,
    /// Told when the object of that name changes: the raw client's sets each wait on their
    /// own pods, and a thousand of them are not all woken by every pod event.
    by_name: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The shortest time between two looks at a whole store: a burst of events (thousands of pods)
/// makes one look per interval, not one per event.
const LOOK_INTERVAL: Duration = Duration::from_millis(5);

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    pub async fn start(api: Api<K>) -> Result<Self, BoxError> {
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        let changed = Arc::new(Notify::new());
        let by_name: Arc<Mutex<HashMap<String, Arc<Notify>>>> = Arc::default();
        let (tell, tell_named) = (changed.clone(), by_name.clone());
        let task = tokio::spawn(async move {
            stream
                .for_each(|event| {
                    let named = tell_named.lock().unwrap_or_else(|e| e.into_inner());
                    match &event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))
                        | Ok(watcher::Event::Delete(o)) => {
                            if let Some(n) = named.get(&o.name_any()) {
                                n.notify_waiters();
                            }
                        }
                        _ => named.values().for_each(|n| n.notify_waiters()),
                    }
                    tell.notify_waiters();
                    std::future::ready(())
                })
                .await;
        });
        store.wait_until_ready().await?;
        Ok(Self { store, changed, by_name, task })
    }

    pub fn all(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Waits until `done` holds for the whole store; returns how long that took.
    pub async fn until(
        &self,
        what: &str,
        since: Instant,
        done: impl Fn(&[Arc<K>]) -> bool,
    ) -> Result<Duration, BoxError> {
        self.wait(&self.changed, what, since, || done(&self.all()), LOOK_INTERVAL).await
    }

    /// Waits until `done` holds, looking again whenever the object `name` changes.
    pub async fn until_named(
        &self,
        name: &str,
        what: &str,
        since: Instant,
        done: impl Fn() -> bool,
    ) -> Result<Duration, BoxError> {
        let notify = {
            let mut named = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
            named.entry(name.to_string()).or_default().clone()
        };
        self.wait(&notify, what, since, done, Duration::ZERO).await
    }

    async fn wait(
        &self,
        changed: &Notify,
        what: &str,
        since: Instant,
        done: impl Fn() -> bool,
        spacing: Duration,
    ) -> Result<Duration, BoxError> {
        loop {
            // Registered before the look, so that an event between the two is not missed.
            let next = changed.notified();
            let looked = Instant::now();
            if done() {
                return Ok(since.elapsed());
            }
            if since.elapsed() > LIMIT {
                return Err(format!("{what}: not reached within {LIMIT:?}").into());
            }
            // After an event, or after a while in any case (a missed event costs no more).
            let _ = tokio::time::timeout(Duration::from_millis(200), next).await;
            tokio::time::sleep(spacing.saturating_sub(looked.elapsed())).await;
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each set's time to settle after its own patch, measured while the driver goes on patching
/// the others: the wall time of a scenario also counts the driver's patches, sent one at a
/// time, which a busier API server answers more slowly.
pub struct Settles(Vec<tokio::task::JoinHandle<Result<Duration, BoxError>>>);

impl Settles {
    /// `count`, `p50` and `p99` of the settle times, in seconds.
    pub async fn figures(self) -> Result<Quantiles, BoxError> {
        let mut seconds = Vec::with_capacity(self.0.len());
        for waiter in self.0 {
            seconds.push(waiter.await??.as_secs_f64());
        }
        let q = Quantiles::of(&seconds);
        if let (Some(p50), Some(p99)) = (q.p50, q.p99) {
            eprintln!("                  each set, patch to settled: p50 {p50:.2}s, p99 {p99:.2}s");
        }
        Ok(q)
    }
}

/// Merge-patches `set-0` .. `set-<n-1>` with `patch`, one request at a time as a user's script
/// would, and times each from its patch's answer until the driver's watch shows a version at
/// least as new as that answer for which `settled` holds.
pub async fn patch_each<F>(
    api: &Api<CocoonSet>,
    sets: &Arc<Watched<CocoonSet>>,
    what: &'static str,
    n: usize,
    patch: &Value,
    settled: F,
) -> Result<Settles, BoxError>
where
    F: Fn(&CocoonSet) -> bool + Copy + Send + Sync + 'static,
{
    let mut waiters = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("set-{i}");
        let answer = api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        let since = Instant::now();
        let generation = answer.metadata.generation.unwrap_or(0);
        let watched = sets.clone();
        waiters.push(tokio::spawn(async move {
            let key = reflector::ObjectRef::<CocoonSet>::new(&name).within(super::workload::NS);
            let done = || {
                watched.store.get(&key).is_some_and(|s| {
                    s.metadata.generation.unwrap_or(0) >= generation && settled(&s)
                })
            };
            watched.until_named(&name, what, since, done).await
        }));
    }
    Ok(Settles(waiters))
}

/// The pod's VM serves, as the operator reads it in the pod's dialect (a current provider
/// also says `ready` in its lifecycle state).
pub fn serving(pod: &Pod) -> bool {
    cocoon_operator::plan::PodView::from_pod(pod).is_serving()
}

pub fn set_settled(set: &CocoonSet, phase: CocoonSetPhase, ready: i32) -> bool {
    set.status.as_ref().is_some_and(|s| {
        s.phase == Some(phase)
            && (phase != CocoonSetPhase::Running || s.ready_agents == ready)
            && s.observed_generation == set.metadata.generation
    })
}

pub fn hib_phase(hib: &Hibernation) -> Option<HibernationPhase> {
    hib.status.as_ref().and_then(|s| s.phase)
}
