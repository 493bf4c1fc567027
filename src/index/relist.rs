//! Tracks the keys one watch stream has shown, so that a re-list (`Init…InitDone`) reports the
//! objects that vanished while the watch was down: deleted events can be lost.

use std::collections::HashSet;
use std::hash::Hash;

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
