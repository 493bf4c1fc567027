//! Coalescing inboxes: the router stores the latest state of each object for an actor and sends
//! one wake-up message; the actor drains everything at once. A burst of pod updates therefore
//! never grows a mailbox: latest state wins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::Hibernation;
use crate::index::{CachedSet, SnapshotCell, Update};
use crate::plan::PodView;
use crate::plan::Snapshots;
use crate::plan::hibernation::Competitor;
use crate::plan::observe::Text;

/// Changes waiting for an actor. `Some(None)` means "deleted".
#[derive(Default, Debug)]
pub struct Pending {
    pub cocoon_set: Option<Option<CachedSet>>,
    pub hibernation: Option<Option<Arc<Hibernation>>>,
    pub pods: BTreeMap<Text, Option<Arc<PodView>>>,
    pub snapshots: Option<Arc<SnapshotCell>>,
    pub competitors: Option<Vec<Competitor>>,
    /// The watch on this pod name delivered its first complete list.
    pub target_listed: Option<Text>,
}

impl Pending {
    pub fn len(&self) -> usize {
        usize::from(self.cocoon_set.is_some())
            + usize::from(self.hibernation.is_some())
            + self.pods.len()
            + usize::from(self.snapshots.is_some())
            + usize::from(self.competitors.is_some())
            + usize::from(self.target_listed.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What both parts keep of the pods and snapshot entries routed to them: the router's views,
/// shared (one copy of each pod, and of each namespace's entries, in the operator), pods
/// sorted by name.
#[derive(Default, Debug)]
pub struct PodsView {
    list: Vec<Arc<PodView>>,
    snapshots: Arc<SnapshotCell>,
    /// The namespace's entries as the plan of this pass reads them, taken from the cell when
    /// the plan begins and let go when it ends: an actor at rest, or a pass awaiting its writes,
    /// keeps no copy alive.
    plan_entries: Option<Arc<Snapshots>>,
}

/// What a view outside a plan reads.
static NO_ENTRIES: Snapshots = Snapshots::new();

impl PodsView {
    /// Takes the pod and snapshot updates out of `pending`.
    pub fn absorb(&mut self, pending: &mut Pending) {
        for (name, pod) in std::mem::take(&mut pending.pods) {
            let at = self.list.binary_search_by(|p| p.name.as_str().cmp(&name));
            match (pod, at) {
                (Some(pod), Ok(i)) => self.list[i] = pod,
                (Some(pod), Err(i)) => self.list.insert(i, pod),
                (None, Ok(i)) => {
                    self.list.remove(i);
                }
                (None, Err(_)) => {}
            }
        }
        if let Some(s) = pending.snapshots.take() {
            self.snapshots = s;
        }
    }

    /// Gives back the list's spare capacity (before the actor rests).
    pub fn compact(&mut self) {
        self.list.shrink_to_fit();
    }

    /// A plan begins: its entries are the namespace's current ones.
    pub fn begin_plan(&mut self) {
        self.plan_entries = Some(self.snapshots.current());
    }

    /// The plan is made: its copy of the entries is let go.
    pub fn end_plan(&mut self) {
        self.plan_entries = None;
    }

    /// The pods, by name, as the core reads them (a copy for one pass).
    pub fn pods(&self) -> Vec<PodView> {
        self.list.iter().map(|p| PodView::clone(p)).collect()
    }

    /// The snapshot entries of the namespace, as the current plan reads them (none outside one).
    pub fn snapshots(&self) -> &Snapshots {
        self.plan_entries.as_deref().unwrap_or(&NO_ENTRIES)
    }

    /// Whether the namespace's snapshot ConfigMap exists.
    pub fn snapshot_record(&self) -> bool {
        self.snapshots.exists()
    }
}

/// The shared half of an actor's mailbox.
#[derive(Default, Debug)]
pub struct Inbox {
    pending: Mutex<Pending>,
    /// [`IDLE`], [`NOTIFIED`] or [`RESTING`].
    state: AtomicU8,
}

/// Nothing waits, and the actor runs.
const IDLE: u8 = 0;
/// Something waits, and its actor was told (a wake-up is on its way, or a revival).
const NOTIFIED: u8 = 1;
/// The actor is at rest: its ractor actor stopped, its bookkeeping parked in the registry.
const RESTING: u8 = 2;

/// What the one who notified an inbox must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Its actor was told already.
    None,
    /// Send its running actor a wake-up.
    Wake,
    /// Its actor is at rest: ask the supervisor to revive it.
    Revive,
}

impl Inbox {
    /// Stores an update; says what to do so that the actor sees it.
    pub fn push(&self, update: Update) -> Signal {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match update {
                Update::CocoonSet(s) => p.cocoon_set = Some(s),
                Update::Hibernation(h) => p.hibernation = Some(h),
                Update::Pod { name, pod } => {
                    p.pods.insert(name, pod);
                }
                Update::Snapshots(s) => p.snapshots = Some(s),
                Update::Competitors(c) => p.competitors = Some(c),
                Update::TargetListed(name) => p.target_listed = Some(name),
            }
        }
        self.nudge()
    }

    /// Asks the actor to look again with nothing new stored (the nodes changed, or the resync
    /// clock); says what to do, as [`Inbox::push`]. Exactly one caller gets `Revive` for each
    /// rest.
    pub fn nudge(&self) -> Signal {
        match self.state.swap(NOTIFIED, Ordering::AcqRel) {
            IDLE => Signal::Wake,
            RESTING => Signal::Revive,
            _ => Signal::None,
        }
    }

    /// Takes everything pending; later pushes wake the actor again.
    pub fn drain(&self) -> Pending {
        self.state.store(IDLE, Ordering::Release);
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The actor goes to rest, if nothing arrived since it drained: from now on the next
    /// notification asks for a revival instead of a wake-up. False when something arrived (a
    /// wake-up is on its way: the actor stays).
    pub fn rest(&self) -> bool {
        self.state.compare_exchange(IDLE, RESTING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether its actor is at rest and nothing asked for it since.
    pub fn is_resting(&self) -> bool {
        self.state.load(Ordering::Acquire) == RESTING
    }

    /// Number of coalesced updates not yet taken.
    pub fn depth(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_updates_to_one_pod_coalesces_into_one_wake_up_and_one_entry() {
        let inbox = Inbox::default();
        let mut wakeups = 0;
        for _ in 0..1000 {
            if inbox.push(Update::Pod { name: "demo-0".into(), pod: None }) == Signal::Wake {
                wakeups += 1;
            }
        }
        assert_eq!(wakeups, 1);
        assert_eq!(inbox.depth(), 1);
        let pending = inbox.drain();
        assert_eq!(pending.pods.len(), 1);
        assert_eq!(
            inbox.push(Update::Snapshots(Arc::default())),
            Signal::Wake,
            "after a drain the next push wakes"
        );
    }

    #[test]
    fn an_actor_rests_only_if_nothing_arrived_and_exactly_one_notifier_revives_it() {
        let inbox = Inbox::default();
        inbox.drain();
        assert_eq!(inbox.push(Update::Snapshots(Arc::default())), Signal::Wake);
        assert!(!inbox.rest(), "an update arrived after the drain: its wake-up is on its way");
        inbox.drain();
        assert!(inbox.rest());
        assert!(inbox.is_resting());
        assert_eq!(inbox.push(Update::Snapshots(Arc::default())), Signal::Revive);
        assert_eq!(inbox.nudge(), Signal::None, "revived once, not twice");
        assert_eq!(inbox.push(Update::Snapshots(Arc::default())), Signal::None);
        assert!(!inbox.is_resting());
        assert_eq!(inbox.drain().len(), 1, "what arrived at rest waits for the revived actor");
        assert!(inbox.rest());
        assert_eq!(inbox.nudge(), Signal::Revive, "the resync clock revives a resting actor");
        inbox.drain();
        assert_eq!(inbox.nudge(), Signal::Wake);
    }

    #[test]
    fn a_view_reads_the_current_entries_for_a_plan_and_keeps_no_copy_after_it() {
        let cell = Arc::new(SnapshotCell::default());
        let inbox = Inbox::default();
        inbox.push(Update::Snapshots(cell.clone()));
        let mut view = PodsView::default();
        view.absorb(&mut inbox.drain());
        let first: Arc<Snapshots> = Arc::new([("vk-ns-a-0".to_string(), "s1".to_string())].into());
        cell.replace(first.clone(), true);
        // Changed after the actor was woken: the plan reads the entries as it begins.
        view.begin_plan();
        assert_eq!(view.snapshots().get("vk-ns-a-0").map(String::as_str), Some("s1"));
        // A change while planning is not seen until the next plan: one plan, one version.
        cell.replace(Arc::new([("vk-ns-a-0".to_string(), "s2".to_string())].into()), true);
        assert_eq!(view.snapshots().get("vk-ns-a-0").map(String::as_str), Some("s1"));
        view.end_plan();
        assert!(view.snapshots().is_empty(), "nothing is read outside a plan");
        assert_eq!(Arc::strong_count(&first), 1, "the plan's old copy is let go when it ends");
        view.begin_plan();
        assert_eq!(view.snapshots().get("vk-ns-a-0").map(String::as_str), Some("s2"));
    }
}
