//! The router as a pure index: [`Index::apply`] takes one typed input (a watch event, the watches
//! having synced, an actor that stopped or may restart) and returns the deliveries it implies
//! (spawn actor X with its whole view, put these updates into actor Y's inbox, start or stop a
//! narrow pod watch). It owns the caches and the re-list bookkeeping; it talks to nobody, so it
//! is tested without a client or a runtime. One small task applies its deliveries
//! (`actors::delivery`).
//!
//! Pods go to their CocoonSet by controller ownerReference UID (never by label), and to the
//! Hibernations that name them by namespace/name. A change of a namespace's snapshot entries
//! wakes only the actors whose VMs' entries changed (VM names are `vk-<ns>-<pod>`, SPEC §2:
//! the set is a prefix of the pod name, the Hibernation names the pod); an entry of no known
//! actor wakes every actor of the namespace. The entries themselves are one shared copy per
//! namespace ([`SnapshotCell`]) that every actor of the namespace reads at each pass: an actor not
//! woken still plans on the current entries at its next pass, and no actor keeps an old copy
//! alive (a thousand sets in one namespace would otherwise all plan again for every entry any
//! VM writes, or each keep the copy it was last handed). A Hibernation's pod is seen through one label watch (the operator labels every
//! pod a Hibernation names, `cocoon.cis/hibernation-target`) whatever the number of
//! Hibernations; a narrow watch on one pod name runs only, once the watches have synced, for a
//! named pod the label watch does not show (it does not exist yet, or is not labelled yet). Actors are per object *incarnation*: an object deleted and recreated under the same
//! name (a new UID) gets a new actor that inherits nothing.

pub mod key;
mod relist;
pub mod snapshot_queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::watcher::Event;

pub use key::{ActorKey, ActorKind};
use relist::Relist;
use snapshot_queue::NsSnapshots;

use crate::api::{CocoonSet, Hibernation};
use crate::k8s::watch::{TargetCommand, WatchEvent};
use crate::plan::hibernation::Competitor;
use crate::plan::{PodView, Snapshots, VecMap};

/// One change for an actor's view. Deletions are `None`.
#[derive(Debug, Clone)]
pub enum Update {
    /// The CocoonSet itself (`None`: deleted).
    CocoonSet(Option<Arc<CocoonSet>>),
    /// The Hibernation itself (`None`: deleted).
    Hibernation(Option<Arc<Hibernation>>),
    /// A pod of the actor's view (`None`: gone, or no longer the actor's).
    Pod { name: String, pod: Option<Arc<PodView>> },
    /// The snapshot entries of the actor's namespace changed (or, in a spawn, where to read
    /// them): the shared cell, read at each pass.
    Snapshots(Arc<SnapshotCell>),
    /// Every Hibernation naming the same pod.
    Competitors(Vec<Competitor>),
    /// The narrow watch on this pod name has listed once: "no pod" now means missing.
    TargetListed(String),
}

/// A namespace's snapshot entries as the index last saw them, shared by the index and every
/// actor of the namespace. An actor takes [`SnapshotCell::current`] at the start of a pass, so
/// it plans on the latest entries whether or not their change woke it, and an old copy lives
/// only as long as a pass that reads it.
#[derive(Debug, Default)]
pub struct SnapshotCell(RwLock<Arc<Snapshots>>);

impl SnapshotCell {
    /// The entries now.
    pub fn current(&self) -> Arc<Snapshots> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the entries; returns the ones before.
    pub(crate) fn replace(&self, entries: Arc<Snapshots>) -> Arc<Snapshots> {
        std::mem::replace(&mut *self.0.write().unwrap_or_else(|e| e.into_inner()), entries)
    }
}

/// Which life of an actor: a new one for every spawn of a key.
pub type Incarnation = u64;

/// What the index reads.
#[derive(Debug)]
pub enum Input {
    /// A watch delivered an event (boxed: objects are large, the other inputs small).
    Watch(Box<WatchEvent>),
    /// Every main watch has delivered its first complete list: actors may write.
    Synced,
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

type NsName = (String, String);

fn key_of<K: ResourceExt>(obj: &K) -> NsName {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The entries added, removed or changed between two versions of a namespace's entries.
fn changed_entries<'a>(old: &'a Snapshots, new: &'a Snapshots) -> Vec<&'a str> {
    let mut out: Vec<&str> =
        new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(k, _)| k.as_str()).collect();
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).map(String::as_str));
    out
}

fn pod_key(pod: &PodView) -> NsName {
    (pod.namespace.clone(), pod.name.clone())
}

/// A "deleted" event of the label-selected pod watch for a pod that was not being deleted: the
/// pod may have left the selector (someone removed its label; the API server then sends the
/// *previous* object, label and all) or have been deleted at once (`--force`, grace 0). Which one, the event cannot
/// tell. The index keeps it in its owner's view without the label, so that the owner writes the
/// label back; the API server's answer settles it (a 404 means it is gone).
fn left_the_watch(pod: &PodView) -> Option<PodView> {
    if gone_when_deleted(pod) {
        return None;
    }
    let mut unlabelled = pod.clone();
    unlabelled.labels.remove(crate::contract::LABEL_COCOONSET);
    Some(unlabelled)
}

/// Whether a "deleted" event of a label-selected watch means the pod is gone: it was being
/// deleted, or it was Failed/Succeeded (the API server deletes those at once, without a
/// deletionTimestamp). Otherwise it may only have lost the label.
fn gone_when_deleted(pod: &PodView) -> bool {
    pod.terminating || pod.is_terminal()
}

/// The caches and bookkeeping behind routing.
#[derive(Default)]
pub struct Index {
    sets: HashMap<NsName, Arc<CocoonSet>>,
    set_by_uid: HashMap<String, NsName>,
    hibernations: HashMap<NsName, Arc<Hibernation>>,
    /// (namespace, pod) → Hibernations naming it (name → creation time).
    targets: HashMap<NsName, VecMap<Option<Timestamp>>>,
    owned_pods: HashMap<NsName, Arc<PodView>>,
    target_pods: HashMap<NsName, Arc<PodView>>,
    /// Every namespace's entries (an empty cell for a namespace with actors and no ConfigMap).
    snapshots: HashMap<String, Arc<SnapshotCell>>,
    relist_sets: Relist<NsName>,
    relist_hibs: Relist<NsName>,
    relist_owned: Relist<NsName>,
    relist_snapshots: Relist<String>,
    relist_targets: HashMap<NsName, Relist<NsName>>,
    /// Targets whose narrow watch has delivered a complete list at least once.
    listed_targets: HashSet<NsName>,
    /// Pods the label watch shows (labelled `cocoon.cis/hibernation-target`), named or not.
    labelled: HashMap<NsName, Arc<PodView>>,
    relist_labelled: Relist<NsName>,
    /// Targets whose narrow watch runs.
    narrow: HashSet<NsName>,
    /// Every main watch has listed once: a named pod the label watch does not show needs its
    /// narrow watch (before, the label watch may simply not have listed it yet).
    synced: bool,
    /// The incarnation of every actor the index has asked for and not seen stop.
    live: HashMap<ActorKey, Incarnation>,
    last_incarnation: Incarnation,
}

impl Index {
    /// Applies one input; returns the deliveries it implies, in order.
    pub fn apply(&mut self, input: Input) -> Vec<Delivery> {
        match input {
            Input::Watch(event) => match *event {
                WatchEvent::CocoonSet(e) => self.cocoon_set(e),
                WatchEvent::Hibernation(e) => self.hibernation(e),
                WatchEvent::OwnedPod(e) => self.owned_pod(e),
                WatchEvent::LabelledTarget(e) => self.labelled_pod(e),
                WatchEvent::TargetPod { namespace, name, event } => {
                    self.target_pod((namespace, name), event)
                }
                WatchEvent::Snapshots(queue) => {
                    queue.drain().into_iter().flat_map(|e| self.snapshots(e)).collect()
                }
            },
            Input::Synced => {
                self.synced = true;
                let mut out = vec![Delivery::WakeAll];
                let mut targets: Vec<NsName> = self.targets.keys().cloned().collect();
                targets.sort();
                for target in targets {
                    self.sync_narrow(&target, &mut out);
                }
                out
            }
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
    fn deliver_live(&mut self, key: ActorKey, updates: Vec<Update>, out: &mut Vec<Delivery>) {
        if self.live.contains_key(&key) {
            out.push(Delivery::Update { key, updates });
        }
    }

    /// The shared entries of `namespace` (created empty on first use).
    fn snapshot_cell(&mut self, namespace: &str) -> Arc<SnapshotCell> {
        self.snapshots.entry(namespace.to_string()).or_default().clone()
    }

    /// The live actors whose VMs own the entry `vm` of `namespace`, by the VM naming of SPEC
    /// §2 (`vk-<ns>-<set>-<slot|toolbox>`, and a Hibernation's pod `vk-<ns>-<pod>`); `None`
    /// when the name follows no known actor (then every actor of the namespace is told).
    fn entry_owners(&self, namespace: &str, vm: &str) -> Option<Vec<ActorKey>> {
        let rest = vm.strip_prefix("vk-")?.strip_prefix(namespace)?.strip_prefix('-')?;
        let mut owners = Vec::new();
        for (i, _) in rest.match_indices('-') {
            let set = (namespace.to_string(), rest[..i].to_string());
            if self.sets.contains_key(&set) {
                owners.push(ActorKey::cocoon_set(namespace, &set.1));
            }
        }
        let pod = (namespace.to_string(), rest.to_string());
        for name in self.targets.get(&pod).into_iter().flat_map(|t| t.keys()) {
            owners.push(ActorKey::hibernation(namespace, name));
        }
        (!owners.is_empty()).then_some(owners)
    }

    fn retire(&mut self, key: ActorKey, update: Update, out: &mut Vec<Delivery>) {
        if self.live.remove(&key).is_some() {
            out.push(Delivery::Retire { key, update });
        }
    }

    fn cocoon_set(&mut self, event: Event<CocoonSet>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut removed = Vec::new();
        match event {
            Event::Init => self.relist_sets.init(),
            Event::InitApply(set) | Event::Apply(set) => {
                let at = key_of(&set);
                self.relist_sets.apply(at.clone());
                let key = ActorKey::cocoon_set(&at.0, &at.1);
                let set = Arc::new(set);
                let old = self.sets.insert(at.clone(), set.clone());
                if let Some(uid) = set.uid() {
                    self.set_by_uid.insert(uid, at.clone());
                }
                let old_uid = old.as_ref().and_then(|o| o.uid());
                if old.is_some() && old_uid != set.uid() {
                    // Deleted and recreated while we looked away: a new actor, nothing inherited.
                    if let Some(uid) = old_uid {
                        self.set_by_uid.remove(&uid);
                    }
                    self.retire(key.clone(), Update::CocoonSet(None), &mut out);
                }
                self.deliver(key, vec![Update::CocoonSet(Some(set))], &mut out);
            }
            Event::Delete(set) => {
                let at = key_of(&set);
                self.relist_sets.delete(&at);
                removed.push(at);
            }
            Event::InitDone => removed = self.relist_sets.done(),
        }
        for at in removed {
            if let Some(set) = self.sets.remove(&at)
                && let Some(uid) = set.uid()
            {
                self.set_by_uid.remove(&uid);
            }
            self.retire(ActorKey::cocoon_set(&at.0, &at.1), Update::CocoonSet(None), &mut out);
        }
        out
    }

    fn hibernation(&mut self, event: Event<Hibernation>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut changed_targets = Vec::new();
        let mut removed = Vec::new();
        match event {
            Event::Init => self.relist_hibs.init(),
            Event::InitApply(hib) | Event::Apply(hib) => {
                let at = key_of(&hib);
                self.relist_hibs.apply(at.clone());
                let key = ActorKey::hibernation(&at.0, &at.1);
                let hib = Arc::new(hib);
                let old = self.hibernations.insert(at.clone(), hib.clone());
                let target = (at.0.clone(), hib.spec.pod_name.clone());
                if let Some(old) = &old {
                    let old_target = (at.0.clone(), old.spec.pod_name.clone());
                    if old_target != target {
                        changed_targets.extend(self.untarget(&old_target, &at.1, &mut out));
                    }
                    if old.uid() != hib.uid() {
                        self.retire(key.clone(), Update::Hibernation(None), &mut out);
                    }
                }
                let created = hib.metadata.creation_timestamp.as_ref().map(|t| t.0);
                self.targets.entry(target.clone()).or_default().insert(at.1.clone(), created);
                self.sync_narrow(&target, &mut out);
                changed_targets.push(target.clone());
                let mut updates = Vec::new();
                if self.live.contains_key(&key) {
                    // A new target already seen for another Hibernation: hand this one what the
                    // watches have seen, or it would wait for an event forever.
                    updates.extend(self.target_updates(&target));
                }
                updates.push(Update::Hibernation(Some(hib)));
                self.deliver(key, updates, &mut out);
            }
            Event::Delete(hib) => {
                let at = key_of(&hib);
                self.relist_hibs.delete(&at);
                removed.push(at);
            }
            Event::InitDone => removed = self.relist_hibs.done(),
        }
        for at in removed {
            if let Some(hib) = self.hibernations.remove(&at) {
                let target = (at.0.clone(), hib.spec.pod_name.clone());
                changed_targets.extend(self.untarget(&target, &at.1, &mut out));
            }
            self.retire(ActorKey::hibernation(&at.0, &at.1), Update::Hibernation(None), &mut out);
        }
        // Every Hibernation naming a changed pod learns its competitors.
        for target in changed_targets {
            let list = self.competitors(&target);
            let names: Vec<String> =
                self.targets.get(&target).map(|t| t.keys().cloned().collect()).unwrap_or_default();
            for name in names {
                let key = ActorKey::hibernation(&target.0, &name);
                self.deliver_live(key, vec![Update::Competitors(list.clone())], &mut out);
            }
        }
        out
    }

    /// Removes one Hibernation from a target; stops the target's watch when none is left.
    fn untarget(&mut self, target: &NsName, hib: &str, out: &mut Vec<Delivery>) -> Option<NsName> {
        let entry = self.targets.get_mut(target)?;
        entry.remove(hib);
        if entry.is_empty() {
            self.targets.remove(target);
            self.sync_narrow(target, out);
        }
        Some(target.clone())
    }

    /// Starts or stops following `target` by name (label it, or watch its name while it does
    /// not exist): only for a named pod that neither the label watch nor the owned-pod watch
    /// shows, once the watches have synced. A CocoonSet's pod needs no following of its own:
    /// its Hibernation sees it through the owned-pod watch until its own first patch labels it
    /// (one pod write per new Hibernation, not a label patch and then the Hibernation's).
    fn sync_narrow(&mut self, target: &NsName, out: &mut Vec<Delivery>) {
        let want = self.synced
            && self.named_live(target)
            && !self.labelled.contains_key(target)
            && self.owned_view(target).is_none();
        let running = self.narrow.contains(target);
        let (namespace, pod) = (target.0.clone(), target.1.clone());
        if want && !running {
            self.narrow.insert(target.clone());
            out.push(Delivery::Target(TargetCommand::Watch { namespace, pod }));
        } else if !want && running {
            self.narrow.remove(target);
            self.target_pods.remove(target);
            self.relist_targets.remove(target);
            self.listed_targets.remove(target);
            out.push(Delivery::Target(TargetCommand::Unwatch { namespace, pod }));
        }
        if !self.targets.contains_key(target) {
            self.target_pods.remove(target);
        }
    }

    /// Whether a Hibernation that is not being deleted names `target`. One named only by
    /// Hibernations being deleted needs no following: they are taking its label away.
    fn named_live(&self, target: &NsName) -> bool {
        self.targets.get(target).is_some_and(|names| {
            names.keys().any(|name| {
                let hib = self.hibernations.get(&(target.0.clone(), name.clone()));
                hib.is_none_or(|h| h.metadata.deletion_timestamp.is_none())
            })
        })
    }

    /// The owned-pod watch's current view of `target`, while that watch shows it (a pod that
    /// left it is kept for its set without the label, and is no longer followed there).
    fn owned_view(&self, target: &NsName) -> Option<&Arc<PodView>> {
        self.owned_pods
            .get(target)
            .filter(|pod| pod.labels.contains_key(crate::contract::LABEL_COCOONSET))
    }

    /// What the watches have seen of a named pod, as updates for a Hibernation actor: the label
    /// watch's view, else the owned-pod watch's, else what its narrow watch has seen.
    fn target_updates(&self, target: &NsName) -> Vec<Update> {
        let mut updates = Vec::new();
        let (pod, listed) = match self.labelled.get(target).or_else(|| self.owned_view(target)) {
            Some(pod) => (Some(pod), true),
            None => (self.target_pods.get(target), self.listed_targets.contains(target)),
        };
        if let Some(pod) = pod {
            updates.push(Update::Pod { name: target.1.clone(), pod: Some(pod.clone()) });
        }
        if listed {
            updates.push(Update::TargetListed(target.1.clone()));
        }
        updates
    }

    /// Hands every Hibernation naming `target` the same updates.
    fn deliver_to_namers(&mut self, target: &NsName, updates: &[Update], out: &mut Vec<Delivery>) {
        if updates.is_empty() {
            return;
        }
        let names: Vec<String> =
            self.targets.get(target).map(|t| t.keys().cloned().collect()).unwrap_or_default();
        for name in names {
            self.deliver_live(ActorKey::hibernation(&target.0, &name), updates.to_vec(), out);
        }
    }

    /// An event of the label watch on pods Hibernations name.
    fn labelled_pod(&mut self, event: Event<PodView>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut left: Vec<(NsName, PodView)> = Vec::new();
        match event {
            Event::Init => self.relist_labelled.init(),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let at = pod_key(&pod);
                self.relist_labelled.apply(at.clone());
                let pod = Arc::new(pod);
                self.labelled.insert(at.clone(), pod.clone());
                if self.targets.contains_key(&at) {
                    let updates = [
                        Update::Pod { name: at.1.clone(), pod: Some(pod) },
                        Update::TargetListed(at.1.clone()),
                    ];
                    self.deliver_to_namers(&at, &updates, &mut out);
                }
                self.sync_narrow(&at, &mut out);
            }
            Event::Delete(pod) => {
                let at = pod_key(&pod);
                self.relist_labelled.delete(&at);
                self.labelled.remove(&at);
                left.push((at, pod));
            }
            Event::InitDone => {
                for at in self.relist_labelled.done() {
                    if let Some(pod) = self.labelled.remove(&at) {
                        left.push((at, (*pod).clone()));
                    }
                }
            }
        }
        for (at, pod) in left {
            if !self.targets.contains_key(&at) {
                continue;
            }
            // Gone, or only unlabelled (a user's edit): following it by name tells which;
            // meanwhile an unlabelled pod stays in view without the label, so that it is
            // labelled again. Hibernations being deleted took the label away themselves (or the
            // pod went): for them it is gone, which is all they wait for.
            let update = if gone_when_deleted(&pod) || !self.named_live(&at) {
                self.target_pods.remove(&at);
                Update::Pod { name: at.1.clone(), pod: None }
            } else if let Some(owned) = self.owned_view(&at) {
                // Its set's watch still shows it, as it is now.
                Update::Pod { name: at.1.clone(), pod: Some(owned.clone()) }
            } else {
                let mut unlabelled = pod;
                unlabelled.labels.remove(crate::contract::LABEL_HIBERNATION_TARGET);
                let unlabelled = Arc::new(unlabelled);
                self.target_pods.insert(at.clone(), unlabelled.clone());
                Update::Pod { name: at.1.clone(), pod: Some(unlabelled) }
            };
            self.deliver_to_namers(&at, &[update], &mut out);
            self.sync_narrow(&at, &mut out);
        }
        out
    }

    fn owner_of(&self, pod: &PodView) -> Option<ActorKey> {
        let at = self.set_by_uid.get(pod.controller_uid.as_ref()?)?;
        Some(ActorKey::cocoon_set(&at.0, &at.1))
    }

    fn owned_pod(&mut self, event: Event<PodView>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut gone: Vec<Arc<PodView>> = Vec::new();
        match event {
            Event::Init => self.relist_owned.init(),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let at = pod_key(&pod);
                self.relist_owned.apply(at.clone());
                let pod = Arc::new(pod);
                let before = self.owned_pods.insert(at.clone(), pod.clone());
                // A pod whose controller changed leaves its former owner's view.
                let was = before.as_deref().and_then(|p| self.owner_of(p));
                let now = self.owner_of(&pod);
                if let Some(was) = was.filter(|w| Some(w) != now.as_ref()) {
                    self.deliver_live(
                        was,
                        vec![Update::Pod { name: at.1.clone(), pod: None }],
                        &mut out,
                    );
                }
                if let Some(owner) = now {
                    let update = Update::Pod { name: at.1.clone(), pod: Some(pod.clone()) };
                    self.deliver_live(owner, vec![update], &mut out);
                }
                self.owned_target_changed(&at, Some(pod), &mut out);
            }
            Event::Delete(pod)
                if self.owner_of(&pod).is_some() && left_the_watch(&pod).is_some() =>
            {
                let at = pod_key(&pod);
                self.relist_owned.delete(&at);
                let pod = Arc::new(left_the_watch(&pod).unwrap_or(pod));
                self.owned_pods.insert(at.clone(), pod.clone());
                if let Some(owner) = self.owner_of(&pod) {
                    let update = Update::Pod { name: at.1.clone(), pod: Some(pod.clone()) };
                    self.deliver_live(owner, vec![update], &mut out);
                }
                // Left the watch, or deleted at once: following it by name tells which.
                self.owned_target_changed(&at, Some(pod), &mut out);
            }
            Event::Delete(pod) => {
                let at = pod_key(&pod);
                self.relist_owned.delete(&at);
                gone.extend(self.owned_pods.remove(&at).or(Some(Arc::new(pod))));
            }
            Event::InitDone => {
                for at in self.relist_owned.done() {
                    gone.extend(self.owned_pods.remove(&at));
                }
            }
        }
        for pod in gone {
            if let Some(owner) = self.owner_of(&pod) {
                let update = Update::Pod { name: pod.name.clone(), pod: None };
                self.deliver_live(owner, vec![update], &mut out);
            }
            self.owned_target_changed(&pod_key(&pod), None, &mut out);
        }
        out
    }

    /// A pod the owned-pod watch showed changed (`None`: it is gone). Hibernations naming it
    /// see it through this watch while the label watch does not show it; once their first
    /// patch labels it, the label watch takes over (its events and this watch's are never
    /// both handed on, so an older version never follows a newer one).
    fn owned_target_changed(
        &mut self,
        at: &NsName,
        pod: Option<Arc<PodView>>,
        out: &mut Vec<Delivery>,
    ) {
        if !self.targets.contains_key(at) || self.labelled.contains_key(at) {
            return;
        }
        if self.narrow.contains(at) && self.owned_view(at).is_none() {
            return; // followed by name already: that watch tells
        }
        let mut updates = vec![Update::Pod { name: at.1.clone(), pod: pod.clone() }];
        if pod.is_some() {
            updates.push(Update::TargetListed(at.1.clone()));
        }
        self.deliver_to_namers(at, &updates, out);
        self.sync_narrow(at, out);
    }

    fn target_pod(&mut self, target: NsName, event: Event<PodView>) -> Vec<Delivery> {
        let mut out = Vec::new();
        if !self.narrow.contains(&target) {
            return out; // a late event of a watch being stopped
        }
        let mut listed = false;
        let relist = self.relist_targets.entry(target.clone()).or_default();
        let update = match event {
            Event::Init => {
                relist.init();
                None
            }
            Event::InitApply(pod) | Event::Apply(pod) => {
                relist.apply(target.clone());
                let pod = Arc::new(pod);
                self.target_pods.insert(target.clone(), pod.clone());
                Some(Some(pod))
            }
            Event::Delete(_) => {
                relist.delete(&target);
                self.target_pods.remove(&target);
                Some(None)
            }
            Event::InitDone => {
                let vanished = relist.done();
                listed = self.listed_targets.insert(target.clone());
                if vanished.is_empty() {
                    None
                } else {
                    self.target_pods.remove(&target);
                    Some(None)
                }
            }
        };
        let names: Vec<String> =
            self.targets.get(&target).map(|t| t.keys().cloned().collect()).unwrap_or_default();
        for name in names {
            let mut updates = Vec::new();
            if let Some(pod) = &update {
                updates.push(Update::Pod { name: target.1.clone(), pod: pod.clone() });
            }
            if listed {
                updates.push(Update::TargetListed(target.1.clone()));
            }
            if !updates.is_empty() {
                self.deliver_live(ActorKey::hibernation(&target.0, &name), updates, &mut out);
            }
        }
        out
    }

    fn snapshots(&mut self, event: Event<NsSnapshots>) -> Vec<Delivery> {
        // (namespace, entries before, entries now) of every namespace whose entries changed.
        let mut changed: Vec<(String, Arc<Snapshots>, Arc<Snapshots>)> = Vec::new();
        let mut set = |index: &mut Self, ns: String, data: Arc<Snapshots>| {
            let cell = index.snapshot_cell(&ns);
            if *cell.current() != *data {
                let old = cell.replace(data.clone());
                changed.push((ns, old, data));
            }
        };
        match event {
            Event::Init => self.relist_snapshots.init(),
            Event::InitApply(NsSnapshots { namespace, entries })
            | Event::Apply(NsSnapshots { namespace, entries }) => {
                self.relist_snapshots.apply(namespace.clone());
                set(self, namespace, entries);
            }
            Event::Delete(NsSnapshots { namespace, .. }) => {
                self.relist_snapshots.delete(&namespace);
                set(self, namespace, Arc::default());
            }
            Event::InitDone => {
                for ns in self.relist_snapshots.done() {
                    set(self, ns, Arc::default());
                }
            }
        }
        let mut out = Vec::new();
        for (ns, old, data) in changed {
            let mut told: Option<Vec<ActorKey>> = Some(Vec::new());
            for vm in changed_entries(&old, &data) {
                match (self.entry_owners(&ns, vm), told.as_mut()) {
                    (Some(owners), Some(told)) => told.extend(owners),
                    (None, _) => told = None,
                    (Some(_), None) => {}
                }
            }
            let mut keys: Vec<ActorKey> = match told {
                Some(owners) => owners.into_iter().filter(|k| self.live.contains_key(k)).collect(),
                None => self.live.keys().filter(|k| k.namespace == ns).cloned().collect(),
            };
            keys.sort();
            keys.dedup();
            let cell = self.snapshot_cell(&ns);
            for key in keys {
                out.push(Delivery::Update { key, updates: vec![Update::Snapshots(cell.clone())] });
            }
        }
        out
    }

    fn competitors(&self, target: &NsName) -> Vec<Competitor> {
        self.targets
            .get(target)
            .map(|t| {
                t.iter()
                    .map(|(name, created)| Competitor { name: name.clone(), created: *created })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every update a new actor for `key` needs; `None` when its object is gone.
    fn initial_updates(&mut self, key: &ActorKey) -> Option<Vec<Update>> {
        let at = (key.namespace.clone(), key.name.clone());
        let mut updates = Vec::new();
        match key.kind {
            ActorKind::CocoonSet => {
                let set = self.sets.get(&at)?.clone();
                let uid = set.uid();
                let mut pods: Vec<(&NsName, &Arc<PodView>)> = self
                    .owned_pods
                    .iter()
                    .filter(|((ns, _), pod)| *ns == key.namespace && pod.controller_uid == uid)
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
                let target = (key.namespace.clone(), hib.spec.pod_name.clone());
                updates.extend(self.target_updates(&target));
                updates.push(Update::Competitors(self.competitors(&target)));
                updates.push(Update::Hibernation(Some(hib)));
            }
        }
        updates.push(Update::Snapshots(self.snapshot_cell(&key.namespace)));
        Some(updates)
    }
}

#[cfg(test)]
mod tests;
