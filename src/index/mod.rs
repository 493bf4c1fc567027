//! The router as a pure index: [`Index::apply`] takes one typed input (a watch event, the watches
//! having synced, an actor that stopped or may restart) and returns the deliveries it implies
//! (spawn actor X with its whole view, put these updates into actor Y's inbox, start or stop a
//! narrow pod watch). It owns the caches and the re-list bookkeeping; it talks to nobody, so it
//! is tested without a client or a runtime. One small task applies its deliveries
//! (`actors::delivery`).
//!
//! Pods go to their CocoonSet by controller ownerReference UID (never by label), and to the
//! Hibernations that name them by namespace/name ([`targets`], the follower of named pods). A
//! change of a namespace's snapshot entries wakes only the actors whose VMs' entries changed
//! (the owners a VM name reads back to, `contract::vm_name_owners`); an entry of no known actor
//! wakes every actor of the namespace. The entries themselves are one shared copy per namespace
//! ([`SnapshotCell`]) that every actor of the namespace reads at each pass: an actor not woken
//! still plans on the current entries at its next pass, and no actor keeps an old copy alive (a
//! thousand sets in one namespace would otherwise all plan again for every entry any VM writes,
//! or each keep the copy it was last handed). Actors are per object *incarnation*: an object
//! deleted and recreated under the same name (a new UID) gets a new actor that inherits nothing.
//! Each watch's events are folded by its [`relist::Listing`] into applies and deletes
//! ([`sources`]), so a re-list reports what vanished meanwhile.

mod cached;
pub mod key;
mod relist;
mod sources;
pub mod targets;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::ResourceExt;

pub use cached::CachedSet;
pub use key::{ActorKey, ActorKind};
use relist::{Listing, Relist};
use targets::{Follow, Targets};

use crate::api::Hibernation;
use crate::k8s::watch::{TargetCommand, WatchEvent};
use crate::plan::hibernation::Competitor;
use crate::plan::observe::Text;
use crate::plan::{Nodes, PodView, Snapshots};

/// One change for an actor's view. Deletions are `None`.
#[derive(Debug, Clone)]
pub enum Update {
    /// The CocoonSet itself (`None`: deleted).
    CocoonSet(Option<CachedSet>),
    /// The Hibernation itself (`None`: deleted).
    Hibernation(Option<Arc<Hibernation>>),
    /// A pod of the actor's view (`None`: gone, or no longer the actor's).
    Pod { name: Text, pod: Option<Arc<PodView>> },
    /// The snapshot entries of the actor's namespace changed (or, in a spawn, where to read
    /// them): the shared cell, read at each pass.
    Snapshots(Arc<SnapshotCell>),
    /// Every Hibernation naming the same pod.
    Competitors(Vec<Competitor>),
    /// The narrow watch on this pod name has listed once: "no pod" now means missing.
    TargetListed(Text),
}

/// A namespace's snapshot entries as the index last saw them, shared by the index and every
/// actor of the namespace. An actor takes [`SnapshotCell::current`] at the start of a pass, so
/// it plans on the latest entries whether or not their change woke it, and an old copy lives
/// only as long as a pass that reads it. It also says whether the ConfigMap exists at all.
#[derive(Debug, Default)]
pub struct SnapshotCell(RwLock<Arc<Snapshots>>, std::sync::atomic::AtomicBool);

impl SnapshotCell {
    /// The entries now.
    pub fn current(&self) -> Arc<Snapshots> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the namespace's snapshot ConfigMap exists.
    pub fn exists(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces the entries and whether the ConfigMap exists; returns the entries before.
    pub(crate) fn replace(&self, entries: Arc<Snapshots>, exists: bool) -> Arc<Snapshots> {
        self.1.store(exists, std::sync::atomic::Ordering::Release);
        std::mem::replace(&mut *self.0.write().unwrap_or_else(|e| e.into_inner()), entries)
    }
}

/// The provider's nodes as the index last saw them (each one's dialect and CPU class), shared
/// with every actor, which reads it at each pass.
#[derive(Debug, Default)]
pub struct NodeCell(RwLock<Arc<Nodes>>);

impl NodeCell {
    /// No node seen yet: `nodes` holds the dialect assumed for them.
    pub fn new(nodes: Nodes) -> Self {
        Self(RwLock::new(Arc::new(nodes)))
    }

    /// The nodes now.
    pub fn current(&self) -> Arc<Nodes> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies `change`; whether it changed anything planning reads.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Nodes) -> bool) -> bool {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        let mut nodes = (**guard).clone();
        let changed = change(&mut nodes);
        if changed {
            *guard = Arc::new(nodes);
        }
        changed
    }
}

/// Whether the owned-pod watch shows `pod` now (it selects the set label): a pod that left it
/// is kept for its set without the label (`PodView::left_the_watch`).
pub(crate) fn shown_by_owned_watch(pod: &PodView) -> bool {
    pod.labels.contains_key(crate::contract::LABEL_COCOONSET)
}

/// Which life of an actor: a new one for every spawn of a key.
pub type Incarnation = u64;

/// What the index reads.
#[derive(Debug)]
pub enum Input {
    /// A watch delivered an event (boxed: objects are large, the other inputs small), or every
    /// main watch has delivered its first complete list ([`WatchEvent::Synced`]: actors may
    /// write).
    Watch(Box<WatchEvent>),
    /// An actor stopped (its object went, or it stopped for another reason).
    ActorStopped { key: ActorKey, incarnation: Incarnation },
    /// A failed actor's restart backoff ended.
    RestartDue { key: ActorKey, incarnation: Incarnation },
}

/// What applying an input asks the runtime to do, in order.
#[derive(Debug)]
pub enum Delivery {
    /// Start an actor for `key` whose inbox begins with `updates` (its whole view).
    Spawn { key: ActorKey, incarnation: Incarnation, updates: Vec<Update> },
    /// Put `updates` into the live actor's inbox and wake it.
    Update { key: ActorKey, updates: Vec<Update> },
    /// The actor's object is gone (or is another incarnation now): hand it its last update and
    /// forget its inbox.
    Retire { key: ActorKey, update: Update },
    /// Forget the inbox of an actor that stopped for good.
    Forget { key: ActorKey },
    /// Wake every live actor (after the watches synced, every actor plans once).
    WakeAll,
    /// Start or stop a narrow pod watch.
    Target(TargetCommand),
}

/// Namespace and name, inline: the index keeps one per object in a map and in its re-list
/// bookkeeping, and a name of up to 24 bytes then needs no allocation.
type NsName = (Text, Text);

fn key_of<K: ResourceExt>(obj: &K) -> NsName {
    let meta = obj.meta();
    let name = meta.name.as_deref().or(meta.generate_name.as_deref()).unwrap_or_default();
    (Text::from(meta.namespace.as_deref().unwrap_or_default()), Text::from(name))
}

/// The pod a Hibernation in `namespace` targets, keyed as the pod caches are.
fn target_of(namespace: &Text, hib: &Hibernation) -> NsName {
    (namespace.clone(), Text::from(hib.spec.pod_name.as_str()))
}

fn pod_key(pod: &PodView) -> NsName {
    (pod.namespace.clone(), pod.name.clone())
}

/// The caches and bookkeeping behind routing.
#[derive(Default)]
pub struct Index {
    sets: HashMap<NsName, CachedSet>,
    set_by_uid: HashMap<String, NsName>,
    hibernations: HashMap<NsName, Arc<Hibernation>>,
    owned_pods: HashMap<NsName, Arc<PodView>>,
    /// Every namespace's entries (an empty cell for a namespace with actors and no ConfigMap).
    snapshots: HashMap<String, Arc<SnapshotCell>>,
    /// The provider's nodes (shared with the actors).
    nodes: Arc<NodeCell>,
    relist_nodes: Relist<String>,
    /// The sets' re-list: `sets` holds every key the watch has shown.
    relist_sets: Listing<NsName>,
    relist_hibs: Relist<NsName>,
    /// The owned pods' re-list: `owned_pods` holds every key the watch has shown, with the
    /// label (see [`shown_by_owned_watch`]).
    relist_owned: Listing<NsName>,
    relist_snapshots: Relist<String>,
    /// The pods Hibernations name, and what the watches show of them.
    targets: Targets,
    /// The incarnation of every actor the index has asked for and not seen stop: which
    /// incarnation of a key should live (the index's own question; the running actors are
    /// recorded by the supervisor's registry).
    live: HashMap<ActorKey, Incarnation>,
    last_incarnation: Incarnation,
}

impl Index {
    /// An index that records the provider's nodes in `nodes` (the cell the actors read).
    pub fn with_nodes(nodes: Arc<NodeCell>) -> Self {
        Self { nodes, ..Self::default() }
    }

    /// Applies one input; returns the deliveries it implies, in order.
    pub fn apply(&mut self, input: Input) -> Vec<Delivery> {
        match input {
            Input::Watch(event) => match *event {
                WatchEvent::CocoonSet(e) => self.cocoon_set(e),
                WatchEvent::Hibernation(e) => self.hibernation(e),
                WatchEvent::OwnedPod(e) => self.owned_pod(e),
                WatchEvent::LabelledTarget(e) => {
                    let follows = self.targets.labelled_event(e, &self.owned_pods);
                    self.follow(follows)
                }
                WatchEvent::TargetPod { namespace, name, event } => {
                    let follows = self.targets.narrow_event((namespace.into(), name.into()), event);
                    self.follow(follows)
                }
                WatchEvent::Node(e) => self.node(e),
                WatchEvent::Snapshots(queue) => {
                    queue.drain().into_iter().flat_map(|e| self.snapshots(e)).collect()
                }
                WatchEvent::Synced => {
                    let follows = self.targets.synced(&self.owned_pods);
                    let mut out = vec![Delivery::WakeAll];
                    out.extend(self.follow(follows));
                    out
                }
            },
            Input::ActorStopped { key, incarnation } | Input::RestartDue { key, incarnation } => {
                self.actor_gone(key, incarnation)
            }
        }
    }

    /// Keys of the actors the index considers live (for tests and the actor tree).
    pub fn live(&self) -> impl Iterator<Item = &ActorKey> {
        self.live.keys()
    }

    fn spawn(&mut self, key: ActorKey) -> Option<Delivery> {
        let updates = self.initial_updates(&key)?;
        self.last_incarnation += 1;
        self.live.insert(key.clone(), self.last_incarnation);
        Some(Delivery::Spawn { key, incarnation: self.last_incarnation, updates })
    }

    /// An actor stopped, or may restart: if it was the current incarnation and its object
    /// still exists, a new one starts with the whole view; otherwise its inbox is forgotten.
    fn actor_gone(&mut self, key: ActorKey, incarnation: Incarnation) -> Vec<Delivery> {
        if self.live.get(&key) != Some(&incarnation) {
            return Vec::new(); // an older life of the key: the current one is unaffected
        }
        self.live.remove(&key);
        match self.spawn(key.clone()) {
            Some(spawn) => vec![spawn],
            None => vec![Delivery::Forget { key }],
        }
    }

    /// Deliveries of `updates` for `key`: into the live actor, or a spawn with the whole view.
    fn deliver(&mut self, key: ActorKey, updates: Vec<Update>, out: &mut Vec<Delivery>) {
        if self.live.contains_key(&key) {
            out.push(Delivery::Update { key, updates });
        } else {
            out.extend(self.spawn(key));
        }
    }

    /// Updates for a live actor only (pods and snapshots never spawn one).
    fn deliver_live(&self, key: ActorKey, updates: Vec<Update>, out: &mut Vec<Delivery>) {
        if self.live.contains_key(&key) {
            out.push(Delivery::Update { key, updates });
        }
    }

    fn retire(&mut self, key: ActorKey, update: Update, out: &mut Vec<Delivery>) {
        if self.live.remove(&key).is_some() {
            out.push(Delivery::Retire { key, update });
        }
    }

    /// Carries out what the target follower asks: updates for every live Hibernation naming a
    /// pod, and narrow watch commands.
    fn follow(&self, follows: Vec<Follow>) -> Vec<Delivery> {
        let mut out = Vec::new();
        self.follow_into(follows, &mut out);
        out
    }

    fn follow_into(&self, follows: impl IntoIterator<Item = Follow>, out: &mut Vec<Delivery>) {
        for follow in follows {
            match follow {
                Follow::Tell { target, updates } => {
                    for name in self.targets.namers(&target) {
                        let key = ActorKey::hibernation(&target.0, &name);
                        self.deliver_live(key, updates.clone(), out);
                    }
                }
                Follow::Command(command) => out.push(Delivery::Target(command)),
            }
        }
    }

    /// The shared entries of `namespace` (created empty on first use).
    fn snapshot_cell(&mut self, namespace: &str) -> Arc<SnapshotCell> {
        self.snapshots.entry(namespace.to_string()).or_default().clone()
    }

    /// Every update a new actor for `key` needs; `None` when its object is gone.
    fn initial_updates(&mut self, key: &ActorKey) -> Option<Vec<Update>> {
        let at = (key.namespace.clone(), key.name.clone());
        let mut updates = Vec::new();
        match key.kind {
            ActorKind::CocoonSet => {
                let set = self.sets.get(&at)?.clone();
                let uid = set.object().uid();
                let mut pods: Vec<(&NsName, &Arc<PodView>)> = self
                    .owned_pods
                    .iter()
                    .filter(|((ns, _), pod)| {
                        *ns == key.namespace && pod.controller_uid.as_deref() == uid.as_deref()
                    })
                    .collect();
                pods.sort_by(|a, b| a.0.cmp(b.0));
                updates.extend(pods.into_iter().map(|((_, name), pod)| Update::Pod {
                    name: name.clone(),
                    pod: Some(pod.clone()),
                }));
                updates.push(Update::CocoonSet(Some(set)));
            }
            ActorKind::Hibernation => {
                let hib = self.hibernations.get(&at)?.clone();
                let target = target_of(&key.namespace, &hib);
                updates.extend(self.targets.updates_for(&target, &self.owned_pods));
                updates.push(Update::Competitors(self.targets.competitors(&target)));
                updates.push(Update::Hibernation(Some(hib)));
            }
        }
        updates.push(Update::Snapshots(self.snapshot_cell(&key.namespace)));
        Some(updates)
    }
}

#[cfg(test)]
mod tests;
