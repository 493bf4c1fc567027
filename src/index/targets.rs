//! The target follower: what the watches have seen of each pod a Hibernation names, whichever
//! watch shows it. A named pod is seen through the label watch (the operator labels every pod a
//! Hibernation names, `cocoon.cis/hibernation-target`), else through the owned-pod watch (a
//! CocoonSet's pod, until its Hibernation's first patch labels it), else through a narrow watch
//! on its name, which runs only once the watches have synced and only while neither other watch
//! shows the pod (it does not exist yet, or is not labelled yet). The follower is pure: it says
//! what to tell the Hibernations naming a pod ([`Follow::Tell`]) and which narrow watches to
//! start or stop ([`Follow::Command`]); the index delivers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;

use super::relist::{Change, Relist};
use super::{NsName, Update, pod_key, shown_by_owned_watch};
use crate::contract;
use crate::k8s::watch::TargetCommand;
use crate::plan::hibernation::Competitor;
use crate::plan::{PodView, VecMap};

/// The owned-pod watch's pods, by namespace and name (the index's cache of them).
pub type Owned = HashMap<NsName, Arc<PodView>>;

/// A Hibernation naming a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Namer {
    /// Its creationTimestamp (the oldest of competing Hibernations wins).
    created: Option<Timestamp>,
    /// It is being deleted: it takes the label away and needs no following.
    deleting: bool,
}

/// What the follower asks the index to do.
#[derive(Debug)]
pub enum Follow {
    /// Hand every Hibernation naming `target` these updates.
    Tell { target: NsName, updates: Vec<Update> },
    /// Start or stop a narrow watch.
    Command(TargetCommand),
}

/// Every pod some Hibernation names, and what each watch shows of it.
#[derive(Default)]
pub struct Targets {
    /// (namespace, pod) → the Hibernations naming it.
    named: HashMap<NsName, VecMap<Namer>>,
    /// Pods the label watch shows (labelled `cocoon.cis/hibernation-target`), named or not.
    labelled: HashMap<NsName, Arc<PodView>>,
    relist_labelled: Relist<NsName>,
    /// Targets whose narrow watch runs.
    narrow: HashSet<NsName>,
    /// What the narrow watches (or a label watch the pod left) show.
    by_name: HashMap<NsName, Arc<PodView>>,
    relist_narrow: HashMap<NsName, Relist<NsName>>,
    /// Targets whose narrow watch has delivered a complete list at least once.
    listed: HashSet<NsName>,
    /// Every main watch has listed once: a named pod the label watch does not show needs its
    /// narrow watch (before, the label watch may simply not have listed it yet).
    synced: bool,
}

impl Targets {
    /// Whether some Hibernation names `target`.
    pub fn is_named(&self, target: &NsName) -> bool {
        self.named.contains_key(target)
    }

    /// The Hibernations naming `target`.
    pub fn namers(&self, target: &NsName) -> Vec<String> {
        self.named.get(target).map(|t| t.keys().map(str::to_string).collect()).unwrap_or_default()
    }

    /// Every Hibernation naming `target`, as each of them learns its competitors.
    pub fn competitors(&self, target: &NsName) -> Vec<Competitor> {
        self.named
            .get(target)
            .map(|t| {
                t.iter()
                    .map(|(name, n)| Competitor { name: name.to_string(), created: n.created })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The watches have synced: follow every named pod no watch shows.
    pub fn synced(&mut self, owned: &Owned) -> Vec<Follow> {
        self.synced = true;
        let mut targets: Vec<NsName> = self.named.keys().cloned().collect();
        targets.sort();
        targets.iter().filter_map(|t| self.sync_narrow(t, owned)).collect()
    }

    /// Hibernation `hib` (created at `created`, being deleted or not) names `target`.
    pub fn name(
        &mut self,
        target: &NsName,
        hib: &str,
        created: Option<Timestamp>,
        deleting: bool,
        owned: &Owned,
    ) -> Option<Follow> {
        let namer = Namer { created, deleting };
        self.named.entry(target.clone()).or_default().insert(hib.to_string(), namer);
        self.sync_narrow(target, owned)
    }

    /// Hibernation `hib` no longer names `target`; its narrow watch stops with the last one.
    /// Whether it named it.
    pub fn unname(&mut self, target: &NsName, hib: &str, owned: &Owned) -> (bool, Option<Follow>) {
        let Some(entry) = self.named.get_mut(target) else { return (false, None) };
        entry.remove(hib);
        let follow = if entry.is_empty() {
            self.named.remove(target);
            self.sync_narrow(target, owned)
        } else {
            None
        };
        (true, follow)
    }

    /// Starts or stops following `target` by name: only for a named pod that neither the label
    /// watch nor the owned-pod watch shows, once the watches have synced. A CocoonSet's pod
    /// needs no following of its own: its Hibernation sees it through the owned-pod watch until
    /// its own first patch labels it (one pod write per new Hibernation, not a label patch and
    /// then the Hibernation's).
    fn sync_narrow(&mut self, target: &NsName, owned: &Owned) -> Option<Follow> {
        let want = self.synced
            && self.named_live(target)
            && !self.labelled.contains_key(target)
            && owned_view(owned, target).is_none();
        let running = self.narrow.contains(target);
        let (namespace, pod) = (target.0.to_string(), target.1.to_string());
        let command = if want && !running {
            self.narrow.insert(target.clone());
            Some(TargetCommand::Watch { namespace, pod })
        } else if !want && running {
            self.narrow.remove(target);
            self.by_name.remove(target);
            self.relist_narrow.remove(target);
            self.listed.remove(target);
            Some(TargetCommand::Unwatch { namespace, pod })
        } else {
            None
        };
        if !self.named.contains_key(target) {
            self.by_name.remove(target);
        }
        command.map(Follow::Command)
    }

    /// Whether a Hibernation that is not being deleted names `target`. One named only by
    /// Hibernations being deleted needs no following: they are taking its label away.
    fn named_live(&self, target: &NsName) -> bool {
        self.named.get(target).is_some_and(|t| t.iter().any(|(_, n)| !n.deleting))
    }

    /// What the watches have seen of a named pod, as updates for a Hibernation actor: the label
    /// watch's view, else the owned-pod watch's, else what its narrow watch has seen.
    pub fn updates_for(&self, target: &NsName, owned: &Owned) -> Vec<Update> {
        let mut updates = Vec::new();
        let (pod, listed) = match self.labelled.get(target).or_else(|| owned_view(owned, target)) {
            Some(pod) => (Some(pod), true),
            None => (self.by_name.get(target), self.listed.contains(target)),
        };
        if let Some(pod) = pod {
            updates.push(Update::Pod { name: target.1.clone(), pod: Some(pod.clone()) });
        }
        if listed {
            updates.push(Update::TargetListed(target.1.clone()));
        }
        updates
    }

    /// An event of the label watch on pods Hibernations name.
    pub fn labelled_event(&mut self, event: Event<PodView>, owned: &Owned) -> Vec<Follow> {
        let mut out = Vec::new();
        for change in self.relist_labelled.fold(event, pod_key) {
            match change {
                Change::Apply(at, pod) => {
                    let pod = Arc::new(pod);
                    self.labelled.insert(at.clone(), pod.clone());
                    if self.named.contains_key(&at) {
                        let updates = vec![
                            Update::Pod { name: at.1.clone(), pod: Some(pod) },
                            Update::TargetListed(at.1.clone()),
                        ];
                        out.push(Follow::Tell { target: at.clone(), updates });
                    }
                    out.extend(self.sync_narrow(&at, owned));
                }
                Change::Delete(at, last) => {
                    // A deleted event's own object, else (a re-list no longer shows it) the
                    // cached one.
                    let cached = self.labelled.remove(&at);
                    let Some(pod) = last.or_else(|| cached.map(|p| (*p).clone())) else {
                        continue;
                    };
                    out.extend(self.left_label_watch(at, pod, owned));
                }
                Change::Listed => {}
            }
        }
        out
    }

    /// A named pod the label watch no longer shows: gone, or only unlabelled (a user's edit).
    /// Following it by name tells which; meanwhile an unlabelled pod stays in view without the
    /// label, so that it is labelled again. Hibernations being deleted took the label away
    /// themselves (or the pod went): for them it is gone, which is all they wait for.
    fn left_label_watch(&mut self, at: NsName, pod: PodView, owned: &Owned) -> Vec<Follow> {
        if !self.named.contains_key(&at) {
            return Vec::new();
        }
        let update = if pod.gone_when_deleted() || !self.named_live(&at) {
            self.by_name.remove(&at);
            Update::Pod { name: at.1.clone(), pod: None }
        } else if let Some(now) = owned_view(owned, &at) {
            // Its set's watch still shows it, as it is now.
            Update::Pod { name: at.1.clone(), pod: Some(now.clone()) }
        } else {
            let unlabelled = pod.left_the_watch(contract::LABEL_HIBERNATION_TARGET).unwrap_or(pod);
            let unlabelled = Arc::new(unlabelled);
            self.by_name.insert(at.clone(), unlabelled.clone());
            Update::Pod { name: at.1.clone(), pod: Some(unlabelled) }
        };
        let mut out = vec![Follow::Tell { target: at.clone(), updates: vec![update] }];
        out.extend(self.sync_narrow(&at, owned));
        out
    }

    /// A pod the owned-pod watch showed changed (`None`: it is gone). Hibernations naming it
    /// see it through this watch while the label watch does not show it; once their first
    /// patch labels it, the label watch takes over (its events and this watch's are never
    /// both handed on, so an older version never follows a newer one).
    pub fn owned_changed(
        &mut self,
        at: &NsName,
        pod: Option<Arc<PodView>>,
        owned: &Owned,
    ) -> Vec<Follow> {
        if !self.named.contains_key(at) || self.labelled.contains_key(at) {
            return Vec::new();
        }
        if self.narrow.contains(at) && owned_view(owned, at).is_none() {
            return Vec::new(); // followed by name already: that watch tells
        }
        let mut updates = vec![Update::Pod { name: at.1.clone(), pod: pod.clone() }];
        if pod.is_some() {
            updates.push(Update::TargetListed(at.1.clone()));
        }
        let mut out = vec![Follow::Tell { target: at.clone(), updates }];
        out.extend(self.sync_narrow(at, owned));
        out
    }

    /// An event of the narrow watch on `target`.
    pub fn narrow_event(&mut self, target: NsName, event: Event<PodView>) -> Vec<Follow> {
        if !self.narrow.contains(&target) {
            return Vec::new(); // a late event of a watch being stopped
        }
        let relist = self.relist_narrow.entry(target.clone()).or_default();
        let mut updates = Vec::new();
        for change in relist.fold(event, pod_key) {
            match change {
                Change::Apply(_, pod) => {
                    let pod = Arc::new(pod);
                    self.by_name.insert(target.clone(), pod.clone());
                    updates.push(Update::Pod { name: target.1.clone(), pod: Some(pod) });
                }
                Change::Delete(..) => {
                    self.by_name.remove(&target);
                    updates.push(Update::Pod { name: target.1.clone(), pod: None });
                }
                Change::Listed => {
                    if self.listed.insert(target.clone()) {
                        updates.push(Update::TargetListed(target.1.clone()));
                    }
                }
            }
        }
        if updates.is_empty() {
            return Vec::new();
        }
        vec![Follow::Tell { target, updates }]
    }
}

/// The owned-pod watch's current view of `target`, while that watch shows it (a pod that left
/// it is kept for its set without the label, and is no longer followed there).
fn owned_view<'a>(owned: &'a Owned, target: &NsName) -> Option<&'a Arc<PodView>> {
    owned.get(target).filter(|pod| shown_by_owned_watch(pod))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pod: &str) -> NsName {
        ("ns".into(), pod.into())
    }

    fn commands(follows: impl IntoIterator<Item = Follow>) -> Vec<TargetCommand> {
        follows
            .into_iter()
            .filter_map(|f| match f {
                Follow::Command(c) => Some(c),
                Follow::Tell { .. } => None,
            })
            .collect()
    }

    fn watch(pod: &str) -> TargetCommand {
        TargetCommand::Watch { namespace: "ns".into(), pod: pod.into() }
    }

    fn labelled(pod: &str) -> PodView {
        let mut p = PodView::new(pod);
        p.namespace = "ns".into();
        p.labels
            .insert(contract::LABEL_HIBERNATION_TARGET, contract::HIBERNATION_TARGET_VALUE.into());
        p
    }

    #[test]
    fn a_named_pod_no_watch_shows_is_followed_by_name_only_once_the_watches_synced() {
        let (mut t, owned) = (Targets::default(), Owned::new());
        assert!(t.name(&target("bot"), "h1", None, false, &owned).is_none(), "not synced yet");
        assert_eq!(commands(t.synced(&owned)), vec![watch("bot")]);
        assert!(t.name(&target("bot"), "h2", None, false, &owned).is_none(), "one watch per pod");
        assert!(commands(t.unname(&target("bot"), "h1", &owned).1).is_empty(), "h2 still names it");
        let (named, last) = t.unname(&target("bot"), "h2", &owned);
        assert!(named);
        assert_eq!(
            commands(last),
            vec![TargetCommand::Unwatch { namespace: "ns".into(), pod: "bot".into() }]
        );
        assert!(!t.is_named(&target("bot")));
    }

    #[test]
    fn a_pod_the_label_watch_shows_needs_no_narrow_watch_and_is_handed_on_as_listed() {
        let (mut t, owned) = (Targets::default(), Owned::new());
        t.synced(&owned);
        t.labelled_event(Event::Apply(labelled("bot")), &owned);
        assert!(t.name(&target("bot"), "h1", None, false, &owned).is_none());
        let updates = t.updates_for(&target("bot"), &owned);
        assert!(matches!(
            updates.as_slice(),
            [Update::Pod { pod: Some(_), .. }, Update::TargetListed(_)]
        ));
        // The label taken off (a user's edit): followed by name, kept in view without it.
        let follows = t.labelled_event(Event::Delete(labelled("bot")), &owned);
        let kept = follows.iter().find_map(|f| match f {
            Follow::Tell { updates, .. } => updates.iter().find_map(|u| match u {
                Update::Pod { pod: Some(pod), .. } => Some(pod.clone()),
                _ => None,
            }),
            Follow::Command(_) => None,
        });
        assert!(kept.is_some_and(|p| !p.labels.contains_key(contract::LABEL_HIBERNATION_TARGET)));
        assert_eq!(commands(follows), vec![watch("bot")]);
    }

    #[test]
    fn a_pod_named_only_by_hibernations_being_deleted_is_not_followed() {
        let (mut t, owned) = (Targets::default(), Owned::new());
        t.synced(&owned);
        assert!(t.name(&target("bot"), "h1", None, true, &owned).is_none());
        assert_eq!(t.competitors(&target("bot")).len(), 1, "it still competes until it is gone");
    }

    #[test]
    fn a_sets_pod_is_seen_through_the_owned_pod_watch_without_a_narrow_watch() {
        let mut t = Targets::default();
        let mut pod = PodView::new("demo-1");
        pod.namespace = "ns".into();
        pod.labels.insert(contract::LABEL_COCOONSET, "demo".into());
        let owned = Owned::from([(target("demo-1"), Arc::new(pod))]);
        t.synced(&owned);
        assert!(t.name(&target("demo-1"), "h1", None, false, &owned).is_none());
        let updates = t.updates_for(&target("demo-1"), &owned);
        assert!(matches!(
            updates.as_slice(),
            [Update::Pod { pod: Some(_), .. }, Update::TargetListed(_)]
        ));
    }
}
