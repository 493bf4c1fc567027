//! Folds one watch stream's events into the changes they mean for a cache, so that a re-list
//! (`Init…InitDone`) reports the objects that vanished while the watch was down: deleted events
//! can be lost. [`Listing::fold`] turns any watch event into the changes it means for a cache
//! keyed by `K` (as kubert's `apply`/`delete`/`reset`), so each cache writes only what applying
//! and removing mean to it. A cache that holds every key its stream shows (the sets, the owned
//! pods: thousands of keys) names them when a re-list completes and keeps no second copy;
//! [`Relist`] keeps that copy for the caches that do not hold each key they are shown.

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

/// The keys a re-list in progress has shown.
#[derive(Debug)]
pub struct Listing<K> {
    seen: Option<HashSet<K>>,
}

impl<K> Default for Listing<K> {
    fn default() -> Self {
        Self { seen: None }
    }
}

impl<K: Hash + Eq + Clone> Listing<K> {
    /// The changes `event` means, keyed by `key`. `known` names, when a re-list completes, the
    /// keys the cache holds of this stream (shown and not deleted since): those the re-list did
    /// not show are deleted.
    pub fn fold<T, I>(
        &mut self,
        event: Event<T>,
        key: impl Fn(&T) -> K,
        known: impl FnOnce() -> I,
    ) -> Vec<Change<K, T>>
    where
        I: IntoIterator<Item = K>,
    {
        match event {
            Event::Init => {
                self.seen = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                let k = key(&obj);
                if let Some(seen) = self.seen.as_mut() {
                    seen.insert(k.clone());
                }
                vec![Change::Apply(k, obj)]
            }
            Event::Delete(obj) => vec![Change::Delete(key(&obj), Some(obj))],
            Event::InitDone => {
                let mut changes: Vec<Change<K, T>> = match self.seen.take() {
                    None => Vec::new(),
                    Some(seen) => known()
                        .into_iter()
                        .filter(|k| !seen.contains(k))
                        .map(|k| Change::Delete(k, None))
                        .collect(),
                };
                changes.push(Change::Listed);
                changes
            }
        }
    }
}

/// A [`Listing`] that keeps the keys its stream has shown itself.
#[derive(Debug)]
pub struct Relist<K> {
    known: HashSet<K>,
    listing: Listing<K>,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Self { known: HashSet::new(), listing: Listing::default() }
    }
}

impl<K: Hash + Eq + Clone> Relist<K> {
    /// The changes `event` means, keyed by `key`.
    pub fn fold<T>(&mut self, event: Event<T>, key: impl Fn(&T) -> K) -> Vec<Change<K, T>> {
        let listed = &self.known;
        let changes = self.listing.fold(event, key, || listed.iter().cloned());
        let known = &mut self.known;
        for change in &changes {
            match change {
                Change::Apply(k, _) => {
                    known.insert(k.clone());
                }
                Change::Delete(k, _) => {
                    known.remove(k);
                }
                Change::Listed => {}
            }
        }
        changes
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
        r.fold(Event::Init, key);
        assert_eq!(
            r.fold(Event::InitDone, key),
            vec![Change::Delete("c".into(), None), Change::Listed],
            "b is no longer known: only c vanishes in an empty relist"
        );
    }

    #[test]
    fn a_listing_deletes_what_the_cache_names_and_the_relist_did_not_show() {
        let mut l = Listing::default();
        let key = |s: &&str| s.to_string();
        let none = Vec::<String>::new;
        assert_eq!(l.fold(Event::InitDone, key, none), vec![Change::Listed], "no re-list began");
        l.fold(Event::Init, key, none);
        l.fold(Event::InitApply("b"), key, none);
        let cache = || vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            l.fold(Event::InitDone, key, cache),
            vec![Change::Delete("a".into(), None), Change::Listed],
            "a is held by the cache and was not listed again"
        );
        // The keys are asked for only when a re-list completes.
        let asked = std::cell::Cell::new(false);
        l.fold(Event::Apply("c"), key, || {
            asked.set(true);
            Vec::new()
        });
        assert!(!asked.get());
    }
}
