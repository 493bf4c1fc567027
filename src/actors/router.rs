//! The router: turns watch events into updates in the inbox of the actor that owns the object.
//! Pods go to their CocoonSet by controller ownerReference UID, and to Hibernations by
//! namespace/name; snapshot ConfigMaps go to every actor of their namespace. The router also
//! caches the latest objects so a newly spawned actor starts with a complete view.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use ractor::ActorRef;
use tokio::sync::mpsc::UnboundedSender;

use super::inbox::Update;
use super::relist::Relist;
use super::{ActorKey, ActorKind, Context, ResourceMsg, SupervisorMsg};
use crate::api::{CocoonSet, Hibernation};
use crate::plan::Snapshots;
use crate::plan::hibernation::Competitor;

type NsName = (String, String);

/// Start or stop watching one pod that a Hibernation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCommand {
    Watch { namespace: String, pod: String },
    Unwatch { namespace: String, pod: String },
}

#[derive(Default)]
struct State {
    sets: HashMap<NsName, Arc<CocoonSet>>,
    set_by_uid: HashMap<String, NsName>,
    hibernations: HashMap<NsName, Arc<Hibernation>>,
    /// (namespace, pod) → Hibernations naming it (name → creation time).
    targets: HashMap<NsName, BTreeMap<String, Option<k8s_openapi::jiff::Timestamp>>>,
    owned_pods: HashMap<NsName, Arc<Pod>>,
    target_pods: HashMap<NsName, Arc<Pod>>,
    snapshots: HashMap<String, Arc<Snapshots>>,
    relist_sets: Relist<NsName>,
    relist_hibs: Relist<NsName>,
    relist_owned: Relist<NsName>,
    relist_snapshots: Relist<String>,
    relist_targets: HashMap<NsName, Relist<NsName>>,
    /// Targets whose narrow watch has delivered a complete list at least once.
    listed_targets: std::collections::HashSet<NsName>,
}

/// Routes watch events to actors.
pub struct Router {
    state: Mutex<State>,
    ctx: OnceLock<Arc<Context>>,
    supervisor: OnceLock<ActorRef<SupervisorMsg>>,
    targets: UnboundedSender<TargetCommand>,
}

fn key_of<K: ResourceExt>(obj: &K) -> NsName {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn controller_uid(pod: &Pod) -> Option<String> {
    pod.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.clone())
}

fn snapshot_data(cm: &ConfigMap) -> Snapshots {
    cm.data.clone().unwrap_or_default()
}

impl Router {
    pub fn new(targets: UnboundedSender<TargetCommand>) -> Self {
        Self { state: Mutex::default(), ctx: OnceLock::new(), supervisor: OnceLock::new(), targets }
    }

    /// Connects the router to the runtime (once, before any event).
    pub fn attach(&self, ctx: Arc<Context>, supervisor: ActorRef<SupervisorMsg>) {
        let _ = self.ctx.set(ctx);
        let _ = self.supervisor.set(supervisor);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts an update into a live actor's inbox and wakes it; when no actor runs and `spawn` is
    /// set, asks the supervisor to start one (it reads its view from the cache).
    fn deliver(&self, key: &ActorKey, update: Update, spawn: bool) {
        let Some(ctx) = self.ctx.get() else { return };
        let woken = ctx.table.get(key).map(|h| (h.inbox.push(update), h.actor.clone()));
        match woken {
            Some((true, actor)) if actor.cast(ResourceMsg::Wake).is_err() => self.spawn(key),
            Some(_) => {}
            None if spawn => self.spawn(key),
            None => {}
        }
    }

    fn spawn(&self, key: &ActorKey) {
        if let Some(s) = self.supervisor.get() {
            let _ = s.cast(SupervisorMsg::Ensure(key.clone()));
        }
    }

    /// Every update a new actor for `key` needs, from the cache; `None` when its object is gone.
    pub fn initial_updates(&self, key: &ActorKey) -> Option<Vec<Update>> {
        initial_updates(&self.lock(), key)
    }

    /// Fills a new actor's inbox from the cache while holding the router's lock, so a delivery
    /// racing with the fill always lands after it. False when the object is gone.
    pub fn fill_inbox(&self, key: &ActorKey, inbox: &super::inbox::Inbox) -> bool {
        let state = self.lock();
        match initial_updates(&state, key) {
            Some(updates) => {
                for update in updates {
                    inbox.push(update);
                }
                true
            }
            None => false,
        }
    }

    /// Wakes every live actor (after the watches synced, every actor plans once).
    pub fn wake_all(&self) {
        let Some(ctx) = self.ctx.get() else { return };
        for entry in ctx.table.iter() {
            let _ = entry.actor.cast(ResourceMsg::Wake);
        }
    }

    pub fn cocoon_set_event(&self, event: Event<CocoonSet>) {
        let mut removed = Vec::new();
        let mut applied = Vec::new();
        {
            let mut st = self.lock();
            match event {
                Event::Init => st.relist_sets.init(),
                Event::InitApply(set) | Event::Apply(set) => {
                    let key = key_of(&set);
                    st.relist_sets.apply(key.clone());
                    if let Some(uid) = set.uid() {
                        st.set_by_uid.insert(uid, key.clone());
                    }
                    let set = Arc::new(set);
                    st.sets.insert(key.clone(), set.clone());
                    applied.push((key, set));
                }
                Event::Delete(set) => {
                    let key = key_of(&set);
                    st.relist_sets.delete(&key);
                    removed.push(key);
                }
                Event::InitDone => removed = st.relist_sets.done(),
            }
            for key in &removed {
                if let Some(set) = st.sets.remove(key)
                    && let Some(uid) = set.uid()
                {
                    st.set_by_uid.remove(&uid);
                }
            }
        }
        for (key, set) in applied {
            self.deliver(&ActorKey::cocoon_set(&key.0, &key.1), Update::CocoonSet(Some(set)), true);
        }
        for key in removed {
            self.deliver(&ActorKey::cocoon_set(&key.0, &key.1), Update::CocoonSet(None), false);
        }
    }

    pub fn hibernation_event(&self, event: Event<Hibernation>) {
        let mut changed_targets = Vec::new();
        let mut deliveries = Vec::new();
        {
            let mut st = self.lock();
            let mut removed = Vec::new();
            match event {
                Event::Init => st.relist_hibs.init(),
                Event::InitApply(hib) | Event::Apply(hib) => {
                    let key = key_of(&hib);
                    st.relist_hibs.apply(key.clone());
                    let hib = Arc::new(hib);
                    let old_target = st
                        .hibernations
                        .insert(key.clone(), hib.clone())
                        .map(|h| h.spec.pod_name.clone());
                    let target = (key.0.clone(), hib.spec.pod_name.clone());
                    if let Some(old) = old_target.filter(|o| *o != target.1) {
                        changed_targets.extend(self.untarget(
                            &mut st,
                            &(key.0.clone(), old),
                            &key.1,
                        ));
                    }
                    let created = hib.metadata.creation_timestamp.as_ref().map(|t| t.0);
                    let entry = st.targets.entry(target.clone()).or_default();
                    let first = entry.is_empty();
                    let joined = entry.insert(key.1.clone(), created).is_none();
                    if joined && !first {
                        // The pod is already watched for another Hibernation: hand this one
                        // what that watch has seen, or it would wait for an event forever.
                        let me = ActorKey::hibernation(&key.0, &key.1);
                        if let Some(pod) = st.target_pods.get(&target) {
                            let update =
                                Update::Pod { name: target.1.clone(), pod: Some(pod.clone()) };
                            deliveries.push((me.clone(), update, false));
                        }
                        if st.listed_targets.contains(&target) {
                            deliveries.push((me, Update::TargetListed(target.1.clone()), false));
                        }
                    }
                    if first {
                        let _ = self.targets.send(TargetCommand::Watch {
                            namespace: target.0.clone(),
                            pod: target.1.clone(),
                        });
                    }
                    changed_targets.push(target);
                    deliveries.push((
                        ActorKey::hibernation(&key.0, &key.1),
                        Update::Hibernation(Some(hib)),
                        true,
                    ));
                }
                Event::Delete(hib) => {
                    let key = key_of(&hib);
                    st.relist_hibs.delete(&key);
                    removed.push(key);
                }
                Event::InitDone => removed = st.relist_hibs.done(),
            }
            for key in removed {
                if let Some(hib) = st.hibernations.remove(&key) {
                    let target = (key.0.clone(), hib.spec.pod_name.clone());
                    changed_targets.extend(self.untarget(&mut st, &target, &key.1));
                }
                deliveries.push((
                    ActorKey::hibernation(&key.0, &key.1),
                    Update::Hibernation(None),
                    false,
                ));
            }
            // Every Hibernation naming a changed pod learns its competitors.
            for target in &changed_targets {
                let list = competitors(&st, target);
                for name in st
                    .targets
                    .get(target)
                    .map(|t| t.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    deliveries.push((
                        ActorKey::hibernation(&target.0, &name),
                        Update::Competitors(list.clone()),
                        false,
                    ));
                }
            }
        }
        for (key, update, spawn) in deliveries {
            self.deliver(&key, update, spawn);
        }
    }

    /// Removes one Hibernation from a target; stops the target's watch when none is left.
    fn untarget(&self, st: &mut State, target: &NsName, hib: &str) -> Option<NsName> {
        let entry = st.targets.get_mut(target)?;
        entry.remove(hib);
        if entry.is_empty() {
            st.targets.remove(target);
            st.target_pods.remove(target);
            st.relist_targets.remove(target);
            st.listed_targets.remove(target);
            let _ = self.targets.send(TargetCommand::Unwatch {
                namespace: target.0.clone(),
                pod: target.1.clone(),
            });
        }
        Some(target.clone())
    }

    /// Events of the watch on pods labelled `cocoon.cis/cocoonset`.
    pub fn owned_pod_event(&self, event: Event<Pod>) {
        let mut deliveries = Vec::new();
        {
            let mut st = self.lock();
            let mut gone: Vec<Arc<Pod>> = Vec::new();
            match event {
                Event::Init => st.relist_owned.init(),
                Event::InitApply(pod) | Event::Apply(pod) => {
                    let key = key_of(&pod);
                    st.relist_owned.apply(key.clone());
                    let pod = Arc::new(pod);
                    st.owned_pods.insert(key.clone(), pod.clone());
                    if let Some(set) =
                        controller_uid(&pod).and_then(|uid| st.set_by_uid.get(&uid).cloned())
                    {
                        deliveries.push((
                            ActorKey::cocoon_set(&set.0, &set.1),
                            Update::Pod { name: key.1, pod: Some(pod) },
                        ));
                    }
                }
                Event::Delete(pod) => {
                    let key = key_of(&pod);
                    st.relist_owned.delete(&key);
                    gone.extend(st.owned_pods.remove(&key).or(Some(Arc::new(pod))));
                }
                Event::InitDone => {
                    for key in st.relist_owned.done() {
                        gone.extend(st.owned_pods.remove(&key));
                    }
                }
            }
            for pod in gone {
                if let Some(set) =
                    controller_uid(&pod).and_then(|uid| st.set_by_uid.get(&uid).cloned())
                {
                    deliveries.push((
                        ActorKey::cocoon_set(&set.0, &set.1),
                        Update::Pod { name: pod.name_any(), pod: None },
                    ));
                }
            }
        }
        for (key, update) in deliveries {
            self.deliver(&key, update, false);
        }
    }

    /// Events of the watch on one pod named by Hibernations.
    pub fn target_pod_event(&self, namespace: &str, name: &str, event: Event<Pod>) {
        let target = (namespace.to_string(), name.to_string());
        let mut deliveries = Vec::new();
        {
            let mut st = self.lock();
            if !st.targets.contains_key(&target) {
                return;
            }
            let mut listed = false;
            let update = match event {
                Event::Init => {
                    st.relist_targets.entry(target.clone()).or_default().init();
                    None
                }
                Event::InitApply(pod) | Event::Apply(pod) => {
                    st.relist_targets.entry(target.clone()).or_default().apply(target.clone());
                    let pod = Arc::new(pod);
                    st.target_pods.insert(target.clone(), pod.clone());
                    Some(Some(pod))
                }
                Event::Delete(_) => {
                    st.relist_targets.entry(target.clone()).or_default().delete(&target);
                    st.target_pods.remove(&target);
                    Some(None)
                }
                Event::InitDone => {
                    let vanished = st.relist_targets.entry(target.clone()).or_default().done();
                    listed = st.listed_targets.insert(target.clone());
                    if vanished.is_empty() {
                        None
                    } else {
                        st.target_pods.remove(&target);
                        Some(None)
                    }
                }
            };
            let hibs: Vec<String> =
                st.targets.get(&target).map(|t| t.keys().cloned().collect()).unwrap_or_default();
            for hib in hibs {
                let key = ActorKey::hibernation(namespace, &hib);
                if let Some(pod) = &update {
                    let update = Update::Pod { name: name.to_string(), pod: pod.clone() };
                    deliveries.push((key.clone(), update));
                }
                if listed {
                    deliveries.push((key, Update::TargetListed(name.to_string())));
                }
            }
        }
        for (key, update) in deliveries {
            self.deliver(&key, update, false);
        }
    }

    /// Events of the watch on `cocoon-vm-snapshots` ConfigMaps.
    pub fn snapshots_event(&self, event: Event<ConfigMap>) {
        let mut changed: Vec<(String, Arc<Snapshots>)> = Vec::new();
        {
            let mut st = self.lock();
            match event {
                Event::Init => st.relist_snapshots.init(),
                Event::InitApply(cm) | Event::Apply(cm) => {
                    let ns = cm.namespace().unwrap_or_default();
                    st.relist_snapshots.apply(ns.clone());
                    let data = Arc::new(snapshot_data(&cm));
                    if st.snapshots.get(&ns).is_none_or(|old| **old != *data) {
                        st.snapshots.insert(ns.clone(), data.clone());
                        changed.push((ns, data));
                    }
                }
                Event::Delete(cm) => {
                    let ns = cm.namespace().unwrap_or_default();
                    st.relist_snapshots.delete(&ns);
                    st.snapshots.remove(&ns);
                    changed.push((ns, Arc::default()));
                }
                Event::InitDone => {
                    for ns in st.relist_snapshots.done() {
                        st.snapshots.remove(&ns);
                        changed.push((ns, Arc::default()));
                    }
                }
            }
        }
        let Some(ctx) = self.ctx.get() else { return };
        for (ns, data) in changed {
            let keys: Vec<ActorKey> = ctx
                .table
                .iter()
                .filter(|e| e.key().namespace == ns)
                .map(|e| e.key().clone())
                .collect();
            for key in keys {
                self.deliver(&key, Update::Snapshots(data.clone()), false);
            }
        }
    }
}

fn competitors(state: &State, target: &NsName) -> Vec<Competitor> {
    state
        .targets
        .get(target)
        .map(|t| {
            t.iter()
                .map(|(name, created)| Competitor { name: name.clone(), created: *created })
                .collect()
        })
        .unwrap_or_default()
}

/// Every update a new actor for `key` needs, from the cache; `None` when its object is gone.
fn initial_updates(state: &State, key: &ActorKey) -> Option<Vec<Update>> {
    let ns_name = (key.namespace.clone(), key.name.clone());
    let mut updates = Vec::new();
    match key.kind {
        ActorKind::CocoonSet => {
            let set = state.sets.get(&ns_name)?.clone();
            let uid = set.uid();
            updates.extend(
                state
                    .owned_pods
                    .iter()
                    .filter(|((ns, _), pod)| *ns == key.namespace && controller_uid(pod) == uid)
                    .map(|((_, name), pod)| Update::Pod {
                        name: name.clone(),
                        pod: Some(pod.clone()),
                    }),
            );
            updates.push(Update::CocoonSet(Some(set)));
        }
        ActorKind::Hibernation => {
            let hib = state.hibernations.get(&ns_name)?.clone();
            let target = (key.namespace.clone(), hib.spec.pod_name.clone());
            if let Some(pod) = state.target_pods.get(&target) {
                updates.push(Update::Pod { name: target.1.clone(), pod: Some(pod.clone()) });
            }
            if state.listed_targets.contains(&target) {
                updates.push(Update::TargetListed(target.1.clone()));
            }
            updates.push(Update::Competitors(competitors(state, &target)));
            updates.push(Update::Hibernation(Some(hib)));
        }
    }
    if let Some(s) = state.snapshots.get(&key.namespace) {
        updates.push(Update::Snapshots(s.clone()));
    }
    Some(updates)
}
