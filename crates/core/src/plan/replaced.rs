//! VMs the provider replaced under a serving pod, unasked. A pod's VM id changes when its VM
//! boots or wakes; while the pod serves and nobody asked to hibernate it, a change means the
//! provider put another VM there. vk-cocoon v0.1.x does that when its 30 s poll wakes a VM a
//! second time: the second wake finds the snapshot entry taken, removes the first wake's VM and
//! boots the image, so the pod serves a VM without its hibernated state. Nothing else on the
//! pod tells (the provider does not update `snapshot-from` on a wake), so the replacement is
//! what the operator can report.

use super::compact::Compact;
use super::observe::{PodView, Text};

/// A replacement seen: the pod, its VM id before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The pod.
    pub pod: String,
    /// The VM id it served with.
    pub before: String,
    /// The VM id it serves with now.
    pub after: String,
}

impl Replaced {
    /// The status message and Event note.
    pub fn message(&self) -> String {
        format!(
            "the VM of pod {} was replaced while it served (vm-id {} -> {}) without a request: \
             the provider may have woken it twice and booted it from its image, losing its \
             hibernated state",
            self.pod, self.before, self.after
        )
    }
}

/// The VM each serving pod runs, by pod name (with a fingerprint of the pod's UID: a new pod
/// is a new VM). A vector sorted by name: a set's handful of pods in one allocation, each
/// entry without an allocation of its own (names and VM ids are inline; a UID is 36 bytes,
/// and only its sameness is read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmWatch {
    serving: Vec<(Text, u64, Text)>,
}

impl Compact for VmWatch {
    fn compact(&mut self) {
        self.serving.compact();
    }
}

/// A pod's UID, fingerprinted: equal for the same pod, different (but for a 2^-64 chance)
/// for a pod recreated under the same name.
fn fingerprint(uid: Option<&str>) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    uid.hash(&mut hasher);
    hasher.finish()
}

impl VmWatch {
    /// Folds what `pods` show; returns the replacements seen now. The VM of a serving pod is
    /// compared with the one it served before; a pod awake but not serving (starting, or its
    /// provider briefly unsure) keeps what it served; a pod asked to hibernate, reporting
    /// hibernated, being deleted or gone is forgotten: its next VM is a wake's (or none).
    pub fn observe<'a>(&mut self, pods: impl IntoIterator<Item = &'a PodView>) -> Vec<Replaced> {
        let mut kept: Vec<(Text, u64, Text)> = Vec::new();
        let mut replaced = Vec::new();
        for pod in pods {
            if pod.hibernate_requested || pod.hibernated || pod.terminating {
                continue;
            }
            let uid = fingerprint(pod.uid.as_deref());
            let before = self
                .serving
                .binary_search_by(|(name, ..)| name.as_str().cmp(pod.name.as_str()))
                .ok()
                .map(|i| &self.serving[i])
                .filter(|(_, was, _)| *was == uid)
                .map(|(.., id)| id.clone());
            let now = pod.vm_id.clone().filter(|_| pod.is_serving());
            match (before, now) {
                (Some(before), Some(after)) if before != after => {
                    replaced.push(Replaced {
                        pod: pod.name.to_string(),
                        before: before.to_string(),
                        after: after.to_string(),
                    });
                    kept.push((pod.name.clone(), uid, after));
                }
                (_, Some(id)) | (Some(id), None) => kept.push((pod.name.clone(), uid, id)),
                (None, None) => {}
            }
        }
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        kept.dedup_by(|a, b| a.0 == b.0);
        self.serving = kept;
        replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{agent, hibernated};

    #[test]
    fn a_vm_id_that_changes_while_the_pod_serves_unasked_is_a_replacement() {
        let mut watch = VmWatch::default();
        let mut pod = agent(1);
        pod.uid = Some("u1".into());
        pod.vm_id = Some("a".into());
        assert!(watch.observe([&pod]).is_empty(), "first seen");
        assert!(watch.observe([&pod]).is_empty(), "unchanged");
        pod.vm_id = Some("b".into());
        let replaced = watch.observe([&pod]);
        assert_eq!(
            replaced,
            vec![Replaced { pod: "demo-1".into(), before: "a".into(), after: "b".into() }]
        );
        assert!(replaced[0].message().contains("a -> b"));
        assert!(watch.observe([&pod]).is_empty(), "told once");
    }

    #[test]
    fn a_pod_that_starts_or_stops_serving_keeps_the_vm_it_served() {
        let mut watch = VmWatch::default();
        let mut pod = agent(1);
        pod.vm_id = Some("a".into());
        watch.observe([&pod]);
        let mut unsure = crate::plan::fixtures::starting(pod.clone());
        unsure.vm_id = Some("b".into());
        assert!(watch.observe([&unsure]).is_empty(), "not serving: not compared yet");
        pod.vm_id = Some("b".into());
        assert_eq!(watch.observe([&pod]).len(), 1, "serving another VM than before");
    }

    #[test]
    fn a_wake_a_new_pod_or_a_pause_in_view_is_no_replacement() {
        let mut watch = VmWatch::default();
        let mut pod = agent(1);
        pod.uid = Some("u1".into());
        pod.vm_id = Some("a".into());
        watch.observe([&pod]);
        // Hibernated (the annotation keeps the old id), the request taken off while it still
        // reports hibernated, then woken with a new VM.
        let mut asleep = hibernated(pod.clone(), 0);
        asleep.hibernate_requested = true;
        watch.observe([&asleep]);
        asleep.hibernate_requested = false;
        watch.observe([&asleep]);
        pod.vm_id = Some("b".into());
        assert!(watch.observe([&pod]).is_empty(), "a wake's new VM");
        // A new pod of the same name.
        let mut recreated = pod.clone();
        recreated.uid = Some("u2".into());
        recreated.vm_id = Some("c".into());
        assert!(watch.observe([&recreated]).is_empty(), "a new pod's VM");
        // Asked to hibernate while still serving: the next VM is a wake's.
        let mut asked = recreated.clone();
        asked.hibernate_requested = true;
        watch.observe([&asked]);
        recreated.vm_id = Some("d".into());
        assert!(watch.observe([&recreated]).is_empty());
    }
}
