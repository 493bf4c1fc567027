//! The driver's views: a reflector per kind and namespace (one watch each) that scenarios wait
//! on (the driver never polls the API), and each set's time to settle after its own patch.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Notify;

use super::BoxError;
use super::report::Quantiles;

/// Longest wait for one scenario.
pub const LIMIT: Duration = Duration::from_secs(1800);

/// A reflector: the driver's view of one kind in one namespace (one watch).
pub struct Watched<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub store: Store<K>,
    /// The kind, for lookups by name (`()` for a typed kind).
    pub dyntype: K::DynamicType,
    /// Told after every event the store took in: a wait looks again then, so the end of a
    /// scenario is seen when the watch shows it, not at the next tick of a poll.
    changed: Arc<Notify>,
    /// Told when an object of that key changes (its name, or what `key` makes of it: the set
    /// a pod belongs to): a thousand sets each wait on their own pods, and are not all woken
    /// by every pod event.
    by_name: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    /// The namespace watched (`None`: every namespace, or a cluster-scoped kind).
    namespace: Option<String>,
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
    /// A typed kind; waits by name wake on the object of that name.
    pub async fn start(api: Api<K>) -> Result<Self, BoxError> {
        Self::start_keyed(api, (), |name| name.to_string()).await
    }
}

impl<K> Watched<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    /// Any kind (`dyntype` for a dynamic one); `key` maps an object's name to the key waits
    /// by name wake on.
    pub async fn start_keyed(
        api: Api<K>,
        dyntype: K::DynamicType,
        key: fn(&str) -> String,
    ) -> Result<Self, BoxError> {
        let namespace = api.namespace().map(str::to_string);
        let writer = reflector::store::Writer::new(dyntype.clone());
        let store = writer.as_reader();
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
                            if let Some(n) = named.get(&key(&o.name_any())) {
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
        Ok(Self { store, dyntype, changed, by_name, namespace, task })
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

    /// The object of this name in the watched namespace, if the store holds it.
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        let key = reflector::ObjectRef::<K>::new_with(name, self.dyntype.clone());
        let key = match &self.namespace {
            Some(ns) => key.within(ns),
            None => key,
        };
        self.store.get(&key)
    }

    /// Waits until `done` holds, looking again whenever an object of key `name` changes.
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
            // A look at a large store (50,000 pods) costs milliseconds: looks take at most a
            // tenth of the driver's time, whatever the store's size.
            let spacing = spacing.max(looked.elapsed() * 10);
            if since.elapsed() > LIMIT {
                return Err(format!("{what}: not reached within {LIMIT:?}").into());
            }
            // After an event, or after a while in any case (a missed event costs no more).
            let _ = tokio::time::timeout(Duration::from_millis(200), next).await;
            tokio::time::sleep(spacing.saturating_sub(looked.elapsed())).await;
        }
    }
}

impl<K: Resource + Clone + 'static> Drop for Watched<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each set's time to settle after its own patch, measured while the driver goes on patching
/// the others: the wall time of a scenario also counts the driver's patches, sent one at a
/// time, which a busier API server answers more slowly.
/// `None`: the set did not settle within the scenario's limit.
pub struct Settles(pub(crate) Vec<tokio::task::JoinHandle<Result<Option<Duration>, BoxError>>>);

impl Settles {
    /// `count`, `p50` and `p99` of the settle times, in seconds.
    pub async fn figures(self) -> Result<Quantiles, BoxError> {
        let mut seconds = Vec::with_capacity(self.0.len());
        let mut unsettled = 0;
        for waiter in self.0 {
            match waiter.await?? {
                Some(took) => seconds.push(took.as_secs_f64()),
                None => unsettled += 1,
            }
        }
        if unsettled > 0 {
            eprintln!("                  {unsettled} set(s) did not settle within the limit");
        }
        let q = Quantiles::of(&seconds);
        if let (Some(p50), Some(p99)) = (q.p50, q.p99) {
            eprintln!("                  each set, patch to settled: p50 {p50:.2}s, p99 {p99:.2}s");
        }
        Ok(q)
    }
}

/// The pod's VM serves, as the operator reads it in the pod's dialect (a current provider
/// also says `ready` in its lifecycle state).
pub fn serving(pod: &Pod) -> bool {
    cocoon_operator::plan::PodView::from_pod(pod).is_serving()
}

/// The set a pod of the bench belongs to: `set-7-2` and `set-7-box` are `set-7`'s.
pub fn set_of_pod(name: &str) -> String {
    name.rsplit_once('-').map(|(set, _)| set.to_string()).unwrap_or_default()
}

/// What a set's pods must show, whatever operator made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Slots `0..=replicas` and the toolbox serve, and the set has no other pod.
    Running,
    /// As `Running`, but pods above the slots may exist in any state (a warm pool refilling
    /// in the background).
    RunningRefilling,
    /// As `Running`, plus `warm` hibernated pods right above the slots.
    Warm(i32),
    /// Every agent pod `0..=replicas` hibernated (the toolbox is not judged).
    Suspended,
    /// Every agent pod `0..=replicas` hibernated or gone (seats released).
    Released,
}

/// The highest slot the bench ever asks for (replicas + 2 on scale-up, + 2 warm), and one
/// above, so that a pod left over there is seen.
pub fn top_slot(replicas: i32) -> i32 {
    replicas.max(0) + 5
}

/// Whether the pods of `set` (looked up by name) show `want` with `replicas` sub-agents.
pub fn reached(
    set: &str,
    replicas: i32,
    want: Want,
    pod: &dyn Fn(&str) -> Option<Arc<Pod>>,
) -> bool {
    let r = replicas.max(0);
    let slot = |s: i32| pod(&format!("{set}-{s}"));
    let hibernated = |p: &Pod| cocoon_operator::plan::PodView::from_pod(p).reports_hibernated();
    match want {
        Want::Suspended => (0..=r).all(|s| slot(s).is_some_and(|p| hibernated(&p))),
        Want::Released => (0..=r).all(|s| slot(s).is_none_or(|p| hibernated(&p))),
        Want::Running | Want::RunningRefilling | Want::Warm(_) => {
            let base = (0..=r).all(|s| slot(s).is_some_and(|p| serving(&p)))
                && pod(&format!("{set}-box")).is_some_and(|p| serving(&p));
            let above = (r + 1..=top_slot(r) + 2).map(|s| (s - r, slot(s)));
            base && above.into_iter().all(|(k, p)| match want {
                Want::Running => p.is_none(),
                Want::RunningRefilling => true,
                Want::Warm(w) if k <= w => p.is_some_and(|p| hibernated(&p)),
                _ => p.is_none(),
            })
        }
    }
}

/// Whether the pods of `set` serve as [`Want::Running`] has them, every one bound to `node`
/// (a set that migrated there).
pub fn moved(set: &str, replicas: i32, node: &str, pod: &dyn Fn(&str) -> Option<Arc<Pod>>) -> bool {
    let on = |name: String| {
        pod(&name)
            .is_some_and(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    };
    reached(set, replicas, Want::Running, pod)
        && (0..=replicas.max(0)).all(|s| on(format!("{set}-{s}")))
        && on(format!("{set}-box"))
}

/// Whether every one of `n` sets `set-<i>` reached `want`, looking at the whole pod store.
pub fn all_reached(pods: &[Arc<Pod>], n: usize, replicas: i32, want: Want) -> bool {
    let by_name: HashMap<String, Arc<Pod>> =
        pods.iter().map(|p| (p.name_any(), p.clone())).collect();
    let lookup = |name: &str| by_name.get(name).cloned();
    (0..n).all(|i| reached(&format!("set-{i}"), replicas, want, &lookup))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod of the bench as a provider shows it: serving, hibernated (seed or current), or
    /// still being created.
    fn pod(name: &str, state: &str) -> Arc<Pod> {
        let (phase, ready, annotations, waiting) = match state {
            "serving" => ("Running", "True", serde_json::json!({}), None),
            "seed-hibernated" => (
                "Running",
                "False",
                serde_json::json!({"cocoon.cis/hibernate": "true"}),
                Some("Hibernated"),
            ),
            "current-hibernated" => (
                "Pending",
                "False",
                serde_json::json!({
                    "vm.cocoonstack.io/name": format!("vk-bench-{name}"),
                    "vm.cocoonstack.io/hibernate": "true",
                    "cocoonset.cocoonstack.io/generation": "2",
                    "vm.cocoonstack.io/lifecycle-state": "hibernated",
                    "vm.cocoonstack.io/lifecycle-observed-generation": "2",
                }),
                None,
            ),
            _ => ("Pending", "False", serde_json::json!({}), None),
        };
        let statuses = match waiting {
            Some(reason) => serde_json::json!([{
                "name": "vm", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason}}
            }]),
            None => serde_json::json!([]),
        };
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "bench", "annotations": annotations},
                "spec": {"containers": [{"name": "vm", "image": "x"}]},
                "status": {
                    "phase": phase,
                    "conditions": [{"type": "Ready", "status": ready}],
                    "containerStatuses": statuses,
                }
            }))
            .expect("a pod"),
        )
    }

    fn shows(pods: &[Arc<Pod>], want: Want) -> bool {
        all_reached(pods, 1, 1, want)
    }

    #[test]
    fn a_set_runs_when_its_slots_and_toolbox_serve_and_nothing_else_is_left() {
        let mut pods = vec![pod("set-0-0", "serving"), pod("set-0-1", "serving")];
        assert!(!shows(&pods, Want::Running), "the toolbox is missing");
        pods.push(pod("set-0-box", "serving"));
        assert!(shows(&pods, Want::Running));
        pods.push(pod("set-0-2", "creating"));
        assert!(!shows(&pods, Want::Running), "a pod above the slots is still there");
        assert!(shows(&pods, Want::RunningRefilling), "unless the warm pool refills");
        assert!(!shows(&pods, Want::Warm(1)), "a warm slot is hibernated, not creating");
        pods[3] = pod("set-0-2", "seed-hibernated");
        assert!(shows(&pods, Want::Warm(1)));
        pods[1] = pod("set-0-1", "creating");
        assert!(!shows(&pods, Want::Running), "a slot that does not serve yet");
        assert_eq!(set_of_pod("set-10-box"), "set-10");
    }

    #[test]
    fn suspended_is_every_agent_hibernated_in_its_dialect_and_released_allows_gone() {
        let toolbox = pod("set-0-box", "serving");
        let seed = vec![pod("set-0-0", "seed-hibernated"), pod("set-0-1", "seed-hibernated")];
        assert!(shows(&[seed.clone(), vec![toolbox.clone()]].concat(), Want::Suspended));
        let current = vec![pod("set-0-0", "current-hibernated"), pod("set-0-1", "serving")];
        assert!(!shows(&current, Want::Suspended), "one agent still serves");
        let current =
            vec![pod("set-0-0", "current-hibernated"), pod("set-0-1", "current-hibernated")];
        assert!(shows(&current, Want::Suspended));
        let released = vec![pod("set-0-0", "current-hibernated")];
        assert!(!shows(&released, Want::Suspended), "a gone agent is not hibernated");
        assert!(shows(&released, Want::Released), "but released");
        assert!(!shows(&[pod("set-0-0", "serving")], Want::Released));
    }

    #[test]
    fn a_set_has_moved_once_every_pod_serves_on_the_new_node() {
        let bound = |name: &str, node: &str| {
            let mut p = (*pod(name, "serving")).clone();
            p.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
            Arc::new(p)
        };
        let store = |pods: Vec<Arc<Pod>>| {
            move |name: &str| pods.iter().find(|p| p.name_any() == name).cloned()
        };
        let there =
            store(vec![bound("set-0-0", "b"), bound("set-0-1", "b"), bound("set-0-box", "b")]);
        assert!(moved("set-0", 1, "b", &there));
        assert!(!moved("set-0", 1, "a", &there), "not where it was asked to go");
        let half =
            store(vec![bound("set-0-0", "b"), bound("set-0-1", "a"), bound("set-0-box", "b")]);
        assert!(!moved("set-0", 1, "b", &half), "a sub-agent still on the old node");
        let no_box = store(vec![bound("set-0-0", "b"), bound("set-0-1", "b")]);
        assert!(!moved("set-0", 1, "b", &no_box), "the toolbox is not back yet");
    }
}
