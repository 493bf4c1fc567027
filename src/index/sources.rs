//! What each watch's events mean for the index: CocoonSets and Hibernations (their actors),
//! the pods the sets own (routed by controller UID), and the snapshot entries (routed by the
//! VM names they key). Each source folds its events through its [`Listing`](super::relist)
//! into applies and deletes, and writes only what those mean to it.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::relist::Change;
use super::{
    ActorKey, CachedSet, Delivery, Index, NsName, Update, key_of, pod_key, shown_by_owned_watch,
    target_of,
};
use crate::api::{CocoonSet, Hibernation};
use crate::contract;
use crate::k8s::snapshot_queue::NsSnapshots;
use crate::plan::observe::Text;
use crate::plan::{NodeSeen, PodView, Snapshots};

/// The entries added, removed or changed between two versions of a namespace's entries.
fn changed_entries<'a>(old: &'a Snapshots, new: &'a Snapshots) -> Vec<&'a str> {
    let mut out: Vec<&str> =
        new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(k, _)| k.as_str()).collect();
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).map(String::as_str));
    out
}

impl Index {
    pub(super) fn cocoon_set(&mut self, event: Event<CocoonSet>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let sets = &self.sets;
        let known = || sets.keys().cloned();
        for change in self.relist_sets.fold(event, key_of, known) {
            match change {
                Change::Apply(at, set) => {
                    let key = ActorKey::cocoon_set(&at.0, &at.1);
                    let set = CachedSet::new(set);
                    let uid = set.object().uid();
                    let old = self.sets.insert(at.clone(), set.clone());
                    if let Some(uid) = &uid {
                        self.set_by_uid.insert(uid.clone(), at.clone());
                    }
                    let old_uid = old.as_ref().and_then(|o| o.object().uid());
                    if old.is_some() && old_uid != uid {
                        // Deleted and recreated while we looked away: a new actor that
                        // inherits nothing.
                        if let Some(uid) = old_uid {
                            self.set_by_uid.remove(&uid);
                        }
                        self.retire(key.clone(), Update::CocoonSet(None), &mut out);
                    }
                    self.deliver(key, vec![Update::CocoonSet(Some(set))], &mut out);
                }
                Change::Delete(at, _) => {
                    if let Some(set) = self.sets.remove(&at)
                        && let Some(uid) = set.object().uid()
                    {
                        self.set_by_uid.remove(&uid);
                    }
                    let key = ActorKey::cocoon_set(&at.0, &at.1);
                    self.retire(key, Update::CocoonSet(None), &mut out);
                }
                Change::Listed => {}
            }
        }
        out
    }

    pub(super) fn hibernation(&mut self, event: Event<Hibernation>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut changed_targets: Vec<NsName> = Vec::new();
        for change in self.relist_hibs.fold(event, key_of) {
            match change {
                Change::Apply(at, hib) => {
                    let key = ActorKey::hibernation(&at.0, &at.1);
                    let hib = Arc::new(hib);
                    let old = self.hibernations.insert(at.clone(), hib.clone());
                    let target = target_of(&at.0, &hib);
                    if let Some(old) = &old {
                        let old_target = target_of(&at.0, old);
                        if old_target != target {
                            let (named, follow) =
                                self.targets.unname(&old_target, &at.1, &self.owned_pods);
                            self.follow_into(follow, &mut out);
                            if named {
                                changed_targets.push(old_target);
                            }
                        }
                        if old.uid() != hib.uid() {
                            self.retire(key.clone(), Update::Hibernation(None), &mut out);
                        }
                    }
                    let created = hib.metadata.creation_timestamp.as_ref().map(|t| t.0);
                    let deleting = hib.metadata.deletion_timestamp.is_some();
                    let follow =
                        self.targets.name(&target, &at.1, created, deleting, &self.owned_pods);
                    self.follow_into(follow, &mut out);
                    changed_targets.push(target.clone());
                    let mut updates = Vec::new();
                    if self.live.contains_key(&key) {
                        // A new target already seen for another Hibernation: hand this one what
                        // the watches have seen, or it would wait for an event forever.
                        updates.extend(self.targets.updates_for(&target, &self.owned_pods));
                    }
                    updates.push(Update::Hibernation(Some(hib)));
                    self.deliver(key, updates, &mut out);
                }
                Change::Delete(at, _) => {
                    if let Some(hib) = self.hibernations.remove(&at) {
                        let target = target_of(&at.0, &hib);
                        let (named, follow) = self.targets.unname(&target, &at.1, &self.owned_pods);
                        self.follow_into(follow, &mut out);
                        if named {
                            changed_targets.push(target);
                        }
                    }
                    let key = ActorKey::hibernation(&at.0, &at.1);
                    self.retire(key, Update::Hibernation(None), &mut out);
                }
                Change::Listed => {}
            }
        }
        // Every Hibernation naming a changed pod learns its competitors.
        for target in changed_targets {
            let list = self.targets.competitors(&target);
            for name in self.targets.namers(&target) {
                let key = ActorKey::hibernation(&target.0, &name);
                self.deliver_live(key, vec![Update::Competitors(list.clone())], &mut out);
            }
        }
        out
    }

    fn owner_of(&self, pod: &PodView) -> Option<ActorKey> {
        let at = self.set_by_uid.get(pod.controller_uid.as_deref()?)?;
        Some(ActorKey::cocoon_set(&at.0, &at.1))
    }

    pub(super) fn owned_pod(&mut self, event: Event<PodView>) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut gone: Vec<Arc<PodView>> = Vec::new();
        let owned = &self.owned_pods;
        let known = || {
            let shown = owned.iter().filter(|(_, pod)| shown_by_owned_watch(pod));
            shown.map(|(at, _)| at.clone())
        };
        for change in self.relist_owned.fold(event, pod_key, known) {
            match change {
                Change::Apply(at, pod) => {
                    let pod = Arc::new(pod);
                    let before = self.owned_pods.insert(at.clone(), pod.clone());
                    // A pod whose controller changed leaves its former owner's view.
                    let was = before.as_deref().and_then(|p| self.owner_of(p));
                    let now = self.owner_of(&pod);
                    if let Some(was) = was.filter(|w| Some(w) != now.as_ref()) {
                        let update = Update::Pod { name: at.1.clone(), pod: None };
                        self.deliver_live(was, vec![update], &mut out);
                    }
                    if let Some(owner) = now {
                        let update = Update::Pod { name: at.1.clone(), pod: Some(pod.clone()) };
                        self.deliver_live(owner, vec![update], &mut out);
                    }
                    let follows = self.targets.owned_changed(&at, Some(pod), &self.owned_pods);
                    self.follow_into(follows, &mut out);
                }
                Change::Delete(at, last) => {
                    // Deleted from the label watch: gone, or only unlabelled (the core's rule);
                    // one of a set stays in its view without the label, so that the set writes
                    // it back.
                    let owner = last.as_ref().and_then(|p| self.owner_of(p));
                    let kept =
                        last.as_ref().and_then(|p| p.left_the_watch(contract::LABEL_COCOONSET));
                    let (Some(owner), Some(kept)) = (owner, kept) else {
                        gone.extend(self.owned_pods.remove(&at).or(last.map(Arc::new)));
                        continue;
                    };
                    let kept = Arc::new(kept);
                    self.owned_pods.insert(at.clone(), kept.clone());
                    let update = Update::Pod { name: at.1.clone(), pod: Some(kept.clone()) };
                    self.deliver_live(owner, vec![update], &mut out);
                    // Left the watch, or deleted at once: following it by name tells which.
                    let follows = self.targets.owned_changed(&at, Some(kept), &self.owned_pods);
                    self.follow_into(follows, &mut out);
                }
                Change::Listed => {}
            }
        }
        for pod in gone {
            if let Some(owner) = self.owner_of(&pod) {
                let update = Update::Pod { name: pod.name.clone(), pod: None };
                self.deliver_live(owner, vec![update], &mut out);
            }
            let follows = self.targets.owned_changed(&pod_key(&pod), None, &self.owned_pods);
            self.follow_into(follows, &mut out);
        }
        out
    }

    /// The live actors whose VMs own the entry `vm` of `namespace` (by the VM names of the
    /// contract, read backwards); `None` when the name follows no known actor (then every actor
    /// of the namespace is told).
    fn entry_owners(&self, namespace: &str, vm: &str) -> Option<Vec<ActorKey>> {
        let named = contract::vm_name_owners(namespace, vm)?;
        let mut owners = Vec::new();
        for set in named.sets {
            if self.sets.contains_key(&(Text::from(namespace), Text::from(set))) {
                owners.push(ActorKey::cocoon_set(namespace, set));
            }
        }
        let pod = (Text::from(namespace), Text::from(named.pod));
        for name in self.targets.namers(&pod) {
            owners.push(ActorKey::hibernation(namespace, &name));
        }
        (!owners.is_empty()).then_some(owners)
    }

    pub(super) fn snapshots(&mut self, event: Event<NsSnapshots>) -> Vec<Delivery> {
        // (namespace, entries before, entries now) of every namespace whose entries changed.
        let mut changed: Vec<(String, Arc<Snapshots>, Arc<Snapshots>)> = Vec::new();
        for change in self.relist_snapshots.fold(event, |s| s.namespace.clone()) {
            let (ns, data, exists): (String, Arc<Snapshots>, bool) = match change {
                Change::Apply(ns, snapshots) => (ns, snapshots.entries, snapshots.exists),
                Change::Delete(ns, _) => (ns, Arc::default(), false),
                Change::Listed => continue,
            };
            let cell = self.snapshot_cell(&ns);
            if *cell.current() != *data || cell.exists() != exists {
                let old = cell.replace(data.clone(), exists);
                changed.push((ns, old, data));
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

    /// A provider node was listed, changed or deleted: its dialect and CPU class go into the
    /// shared cell; if that changed anything, every actor plans again (a set on that node
    /// builds its pods in the node's dialect).
    pub(super) fn node(&mut self, event: Event<NodeSeen>) -> Vec<Delivery> {
        let mut changed = false;
        for change in self.relist_nodes.fold(event, |n| n.name.clone()) {
            changed |= match change {
                Change::Apply(name, seen) => {
                    let info = seen.info;
                    let (dialect, ready) = (info.dialect, info.ready);
                    let now = self.nodes.update(|nodes| nodes.set(&name, info));
                    if now {
                        tracing::info!(node = %name, %dialect, ready, how = ?seen.how, "provider node");
                    }
                    now
                }
                Change::Delete(name, _) => self.nodes.update(|nodes| nodes.remove(&name)),
                Change::Listed => false,
            };
        }
        if changed { vec![Delivery::WakeAll] } else { Vec::new() }
    }
}
