//! The watches, as one typed event stream: CocoonSets, Hibernations, pods labelled
//! `cocoon.cis/cocoonset`, pods labelled `cocoon.cis/hibernation-target` (the pods Hibernations
//! name, labelled by the operator), `cocoon-vm-snapshots` ConfigMaps (field selector), and a
//! narrow watch on one pod name for a named pod that is not labelled yet (started and stopped on
//! command). Watches only: no periodic LIST or GET. RBAC: list/watch on each of these.
//!
//! Every watch sends its events into one bounded channel ([`EVENT_BUFFER`]): when the operator
//! falls behind, the watches wait (the API server's stream waits in its socket) instead of the
//! operator queueing events without bound. After the last main watch's first list, one
//! [`WatchEvent::Synced`] follows every listed event on that channel.

/// One event of one of the watches.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "travels boxed (`Input::Watch`), read once")]
pub enum WatchEvent {
    /// Of the CocoonSet watch (all namespaces).
    CocoonSet(Event<CocoonSet>),
    /// Of the Hibernation watch (all namespaces).
    Hibernation(Event<Hibernation>),
    /// Of the watch on pods labelled `cocoon.cis/cocoonset`.
    OwnedPod(Event<PodView>),
    /// Of the watch on pods labelled `cocoon.cis/hibernation-target`.
    LabelledTarget(Event<PodView>),
    /// Of the watch on the provider's nodes (`type=virtual-kubelet`), each read for its dialect.
    Node(Event<NodeSeen>),
    /// Of the narrow watch on one pod that Hibernations name.
    TargetPod { namespace: String, name: String, event: Event<PodView> },
    /// Of the `cocoon-vm-snapshots` ConfigMap watch: its events, as entries, wait in this
    /// queue, the newest version of each namespace only (sent when the queue was empty; the
    /// index drains it).
    Snapshots(Arc<SnapshotQueue>),
    /// Every main watch has delivered its first complete list; sent once, behind every event
    /// of those lists.
    Synced,
}

/// Events the watches may send ahead of the operator before they wait for it.
pub const EVENT_BUFFER: usize = 1024;

/// Start or stop following one pod that a Hibernation names and the label watch does not show:
/// label it, or, if it does not exist, watch its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCommand {
    Watch { namespace: String, pod: String },
    Unwatch { namespace: String, pod: String },
}

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::{Sender, UnboundedReceiver};
use tokio::task::JoinHandle;

use super::snapshot_queue::{NsSnapshots, SnapshotQueue};
use crate::api::{CocoonSet, Hibernation};
use crate::contract;
use crate::plan::{NodeSeen, PodView};

use super::error::ErrorCategory;
use super::watched_pod::WatchedPod;
use super::writer::Writer;

/// Counts the main watches that completed their first list.
pub struct SyncTracker {
    remaining: AtomicUsize,
    done: tokio::sync::watch::Sender<bool>,
}

impl SyncTracker {
    fn new(watches: usize) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(watches),
            done: tokio::sync::watch::Sender::new(false),
        })
    }

    /// One more main watch listed; whether it was the last.
    fn one_synced(&self) -> bool {
        let last = self.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            self.done.send_replace(true);
        }
        last
    }

    /// Resolves once every main watch has delivered its first complete list.
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    pub fn is_synced(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }
}

/// Drops what no decision reads and every cached copy would carry: `managedFields` (often
/// the largest part of an object) and kubectl's last-applied copy of the object.
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A cached Hibernation, slimmed, its conditions no longer than they are.
fn slim_hibernation(hibernation: &mut Hibernation) {
    slim(hibernation);
    if let Some(status) = hibernation.status.as_mut() {
        status.conditions.shrink_to_fit();
    }
}

/// A pod as read from the API server, turned into the operator's view of it.
pub trait IntoView {
    fn into_view(self) -> PodView;
}

impl IntoView for Pod {
    fn into_view(self) -> PodView {
        PodView::from_pod(&self)
    }
}

impl IntoView for WatchedPod {
    fn into_view(self) -> PodView {
        self.view()
    }
}

/// A pod event as the operator keeps it: each pod object viewed ([`PodView::from_pod`]) and
/// dropped.
pub fn viewed<P: IntoView>(event: Event<P>) -> Event<PodView> {
    let view = |pod: P| pod.into_view();
    match event {
        Event::Apply(pod) => Event::Apply(view(pod)),
        Event::Delete(pod) => Event::Delete(view(pod)),
        Event::InitApply(pod) => Event::InitApply(view(pod)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

/// A node event as the index keeps it: each node read for its dialect and dropped.
fn seen(event: Event<Node>) -> Event<NodeSeen> {
    let see = |node: Node| NodeSeen::of(&node);
    match event {
        Event::Apply(n) => Event::Apply(see(n)),
        Event::Delete(n) => Event::Delete(see(n)),
        Event::InitApply(n) => Event::InitApply(see(n)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

fn spawn_watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    sync: Option<Arc<SyncTracker>>,
    modify: fn(&mut K),
    events: Sender<WatchEvent>,
    route: F,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(Event<K>) -> Option<WatchEvent> + Send + 'static,
{
    tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff().modify(modify);
        drive(stream, sync, events, route).await;
    })
}

/// Hands each event of `stream` to the operator as `route` words it, waiting while the channel
/// is full; ends when the operator is gone.
async fn drive<K, F>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    sync: Option<Arc<SyncTracker>>,
    events: Sender<WatchEvent>,
    route: F,
) where
    F: Fn(Event<K>) -> Option<WatchEvent>,
{
    let mut stream = std::pin::pin!(stream);
    let mut first_sync = sync;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let init_done = matches!(event, Event::InitDone);
                if let Some(event) = route(event)
                    && events.send(event).await.is_err()
                {
                    return;
                }
                if init_done
                    && let Some(s) = first_sync.take()
                    && s.one_synced()
                    && events.send(WatchEvent::Synced).await.is_err()
                {
                    return;
                }
            }
            Err(error) => tracing::warn!(%error, "watch error; the watcher retries with backoff"),
        }
    }
}

/// The running watches; dropping it stops them.
pub struct Watches {
    tasks: Vec<JoinHandle<()>>,
    pub sync: Arc<SyncTracker>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts every watch; each event goes to `events`, in order per watch; `targets` receives the
/// commands for per-pod watches.
pub fn start(
    client: Client,
    writer: Writer,
    events: Sender<WatchEvent>,
    targets: UnboundedReceiver<TargetCommand>,
    open_narrow: Gauge,
) -> Watches {
    let sync = SyncTracker::new(6);
    let mut tasks = vec![
        spawn_watch(
            Api::<CocoonSet>::all(client.clone()),
            watcher::Config::default(),
            Some(sync.clone()),
            slim::<CocoonSet>,
            events.clone(),
            |e| Some(WatchEvent::CocoonSet(e)),
        ),
        spawn_watch(
            Api::<Hibernation>::all(client.clone()),
            watcher::Config::default(),
            Some(sync.clone()),
            slim_hibernation,
            events.clone(),
            |e| Some(WatchEvent::Hibernation(e)),
        ),
        spawn_watch(
            Api::<WatchedPod>::all(client.clone()),
            watcher::Config::default().labels(contract::LABEL_COCOONSET),
            Some(sync.clone()),
            slim,
            events.clone(),
            |e| Some(WatchEvent::OwnedPod(viewed(e))),
        ),
        spawn_watch(
            Api::<WatchedPod>::all(client.clone()),
            watcher::Config::default().labels(contract::LABEL_HIBERNATION_TARGET),
            Some(sync.clone()),
            slim,
            events.clone(),
            |e| Some(WatchEvent::LabelledTarget(viewed(e))),
        ),
    ];
    let queue = Arc::new(SnapshotQueue::default());
    let snapshots = watcher::Config::default()
        .fields(&format!("metadata.name={}", contract::SNAPSHOT_CONFIGMAP));
    tasks.push(spawn_watch(
        Api::<ConfigMap>::all(client.clone()),
        snapshots,
        Some(sync.clone()),
        slim,
        events.clone(),
        move |e| queue.push(NsSnapshots::event(e)).then(|| WatchEvent::Snapshots(queue.clone())),
    ));
    // The provider's nodes, for the dialect each speaks, its readiness and whether it is
    // still there (placement and node loss): listed before any actor writes, so that no pod
    // is built in the wrong dialect and no set takes a node it has not seen for a lost one.
    let selector = format!("{}={}", contract::NODE_LABEL_TYPE, contract::NODE_TYPE_VIRTUAL_KUBELET);
    tasks.push(spawn_watch(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().labels(&selector),
        Some(sync.clone()),
        slim,
        events.clone(),
        |e| Some(WatchEvent::Node(seen(e))),
    ));
    tasks.push(tokio::spawn(target_watches(client, writer, events, targets, open_narrow)));
    Watches { tasks, sync }
}

/// The per-target tasks; dropping the set (also when its owner task is aborted) stops them — a
/// dropped `JoinHandle` alone would leave its task running.
#[derive(Default)]
struct TargetTasks(HashMap<(String, String), (JoinHandle<()>, Arc<TargetPhase>)>);

impl Drop for TargetTasks {
    fn drop(&mut self) {
        for (task, _) in self.0.values() {
            task.abort();
        }
    }
}

/// Where a per-target task is: labelling its pod, or watching it by name. A task no longer
/// wanted while it labels is let finish its one patch and end (aborting it would cancel the
/// request mid-flight: the API server answers 504 "context canceled" and the connection is
/// lost); one watching is aborted.
struct TargetPhase(AtomicU8);

const LABELLING: u8 = 0;
const WATCHING: u8 = 1;
const UNWANTED: u8 = 2;

impl TargetPhase {
    fn new() -> Arc<Self> {
        Arc::new(Self(AtomicU8::new(LABELLING)))
    }

    /// The task's label patch is answered and the pod needs a watch: whether it is still wanted.
    fn start_watching(&self) -> bool {
        self.0.compare_exchange(LABELLING, WATCHING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The target is no longer to be followed: whether the task must be aborted (it is
    /// watching) or ends by itself after its patch (it is labelling).
    fn unwant(&self) -> bool {
        self.0.compare_exchange(LABELLING, UNWANTED, Ordering::AcqRel, Ordering::Acquire).is_err()
    }
}

/// Counts a narrow watch as open for as long as it lives (also when its task is aborted).
struct OpenWatch(Gauge);

impl OpenWatch {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Follows the pods Hibernations name that the label watch does not show: one label patch
/// through the writer labels an existing pod (the label watch then shows it, and the index stops following it
/// here); a pod that does not exist (or cannot be labelled) gets a narrow watch on its name
/// until it appears and is labelled.
async fn target_watches(
    client: Client,
    writer: Writer,
    events: Sender<WatchEvent>,
    mut commands: UnboundedReceiver<TargetCommand>,
    open: Gauge,
) {
    let mut running = TargetTasks::default();
    while let Some(command) = commands.recv().await {
        match command {
            TargetCommand::Watch { namespace, pod } => {
                let key = (namespace.clone(), pod.clone());
                if running.0.get(&key).is_some_and(|(t, _)| !t.is_finished()) {
                    continue;
                }
                let phase = TargetPhase::new();
                let task_phase = phase.clone();
                let api = Api::<WatchedPod>::namespaced(client.clone(), &namespace);
                let writer = writer.clone();
                let tx = events.clone();
                let open = open.clone();
                let task = tokio::spawn(async move {
                    match writer.label_target(&namespace, &pod).await {
                        Ok(()) => return,
                        Err(e) if e.category() == ErrorCategory::NotFound => {}
                        Err(error) => tracing::warn!(
                            %error, %namespace, %pod,
                            "cannot label the pod a Hibernation names; watching it by name"
                        ),
                    }
                    if !task_phase.start_watching() {
                        return;
                    }
                    let _open = OpenWatch::new(&open);
                    let config = watcher::Config::default().fields(&format!("metadata.name={pod}"));
                    let stream = watcher::watcher(api, config).default_backoff();
                    drive(stream, None, tx, move |event| {
                        let (namespace, name) = (namespace.clone(), pod.clone());
                        Some(WatchEvent::TargetPod { namespace, name, event: viewed(event) })
                    })
                    .await;
                });
                running.0.insert(key, (task, phase));
            }
            TargetCommand::Unwatch { namespace, pod } => {
                if let Some((task, phase)) = running.0.remove(&(namespace, pod))
                    && phase.unwant()
                {
                    task.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::contract::dialect::seed;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    #[test]
    fn a_target_unwanted_while_its_label_patch_is_in_flight_is_not_aborted_and_opens_no_watch() {
        let labelling = super::TargetPhase::new();
        assert!(!labelling.unwant(), "the patch in flight is let finish");
        assert!(!labelling.start_watching(), "and the task then ends without a watch");
        let watching = super::TargetPhase::new();
        assert!(watching.start_watching());
        assert!(watching.unwant(), "a narrow watch is aborted");
    }

    use super::*;

    #[test]
    fn cached_objects_carry_no_managed_fields_nor_last_applied_copy() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                annotations: Some(
                    [
                        ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                        (seed::KEYS.vm_name, "vk-a"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        slim(&mut pod);
        assert!(pod.metadata.managed_fields.is_none());
        let kept: Vec<&String> = pod.metadata.annotations.as_ref().unwrap().keys().collect();
        assert_eq!(kept, vec![seed::KEYS.vm_name]);
    }

    #[test]
    fn cached_status_lists_are_no_longer_than_they_are() {
        // (A CocoonSet's status is kept as JSON by the index: `index::CachedSet`.)
        let text = r#"{"apiVersion":"cocoon.cis/v1alpha1","kind":"Hibernation",
            "metadata":{"name":"h","namespace":"prod"},
            "spec":{"podName":"p","action":"hibernate"},
            "status":{"conditions":[{"type":"Ready","status":"True",
                "lastTransitionTime":"2026-01-01T00:00:00Z","reason":"Done","message":""}]}}"#;
        let mut hibernation: Hibernation = serde_json::from_str(text).unwrap();
        slim_hibernation(&mut hibernation);
        assert_eq!(hibernation.status.as_ref().unwrap().conditions.capacity(), 1);
    }
}
