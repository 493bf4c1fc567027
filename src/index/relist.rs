//! Tracks the keys one watch stream has shown, so that a re-list (`Init…InitDone`) reports the
//! objects that vanished while the watch was down: deleted events can be lost. [`Relist::fold`]
//! turns any watch event into the changes it means for a cache keyed by `K` (as kubert's
//! `apply`/`delete`/`reset`), so each cache writes only what applying and removing mean to it.

use std::collections::HashSet;
use std::hash::Hash;

use kube::runtime::watcher::Event;

/// What one watch event means for a cache.
#[derive(Debug, PartialEq)]
pub enum Change<K, T> {
    /// The object was listed or changed.
    Apply(K, T),
    /// The object was deleted (with its last state), or a re-list no longer shows it (`None`).
    Delete(K, Option<T>),
    /// A list completed (after the deletions it implies).
    Listed,
}

#[derive(Debug)]
pub struct Relist<K> {
    known: HashSet<K>,
    seen: Option<HashSet<K>>,
}

impl<K: Hash + Eq + Clone> Default for Relist<K> {
    fn default() -> Self {
        Self { known: HashSet::new(), seen: None }
    }
}

impl<K: Hash + Eq + Clone> Relist<K> {
    /// A re-list starts.
    pub fn init(&mut self) {
        self.seen = Some(HashSet::new());
    }

    pub fn apply(&mut self, key: K) {
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(key.clone());
        }
        self.known.insert(key);
    }

    pub fn delete(&mut self, key: &K) {
        self.known.remove(key);
    }

    /// The changes `event` means, keyed by `key`.
    pub fn fold<T>(&mut self, event: Event<T>, key: impl Fn(&T) -> K) -> Vec<Change<K, T>> {
        match event {
            Event::Init => {
                self.init();
                Vec::new()
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                let k = key(&obj);
                self.apply(k.clone());
                vec![Change::Apply(k, obj)]
            }
            Event::Delete(obj) => {
                let k = key(&obj);
                self.delete(&k);
                vec![Change::Delete(k, Some(obj))]
            }
            Event::InitDone => {
                let mut changes: Vec<Change<K, T>> =
                    self.done().into_iter().map(|k| Change::Delete(k, None)).collect();
                changes.push(Change::Listed);
                changes
            }
        }
    }

    /// The re-list is complete: returns the keys that were known but not listed again.
    pub fn done(&mut self) -> Vec<K> {
        let Some(seen) = self.seen.take() else { return Vec::new() };
        let vanished: Vec<K> = self.known.iter().filter(|k| !seen.contains(k)).cloned().collect();
        for k in &vanished {
            self.known.remove(k);
        }
        vanished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_applies_lists_and_changes_deletes_and_reports_what_a_relist_no_longer_shows() {
        let mut r = Relist::default();
        let key = |s: &&str| s.to_string();
        assert_eq!(r.fold(Event::Init, key), vec![]);
        assert_eq!(r.fold(Event::InitApply("a"), key), vec![Change::Apply("a".into(), "a")]);
        assert_eq!(r.fold(Event::InitApply("b"), key), vec![Change::Apply("b".into(), "b")]);
        assert_eq!(r.fold(Event::InitDone, key), vec![Change::Listed]);
        assert_eq!(r.fold(Event::Delete("a"), key), vec![Change::Delete("a".into(), Some("a"))]);
        r.fold(Event::Apply("c"), key);
        r.fold(Event::Init, key);
        r.fold(Event::InitApply("c"), key);
        assert_eq!(
            r.fold(Event::InitDone, key),
            vec![Change::Delete("b".into(), None), Change::Listed],
            "b vanished while the watch was down"
        );
    }

    #[test]
    fn objects_missing_from_a_relist_are_reported_as_deleted() {
        let mut r = Relist::default();
        r.apply("a");
        r.apply("b");
        r.init();
        r.apply("b");
        r.apply("c");
        assert_eq!(r.done(), vec!["a"]);
        r.init();
        assert_eq!(r.done().len(), 2, "b and c vanish in an empty relist");
    }
}
