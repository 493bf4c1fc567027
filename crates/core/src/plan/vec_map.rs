//! A small map with string keys, kept as one sorted vector: for the handful of entries the
//! operator keeps per object (a pod's labels, the Hibernations naming a pod), where a
//! `BTreeMap` would give each of thousands of objects its own eleven-slot node. A key known
//! at compile time (a label key of the operator's) is kept as a reference, not a copy.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// A key: borrowed when it is a constant, owned otherwise.
pub type Key = Cow<'static, str>;

/// A map from strings to `V`, sorted by key, in one vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecMap<V>(Vec<(Key, V)>);

impl<V> Default for VecMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> VecMap<V> {
    fn at(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.at(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.at(key).is_ok()
    }

    /// Sets `key` (a `String`, or a `&'static str` kept without a copy); returns its previous
    /// value.
    pub fn insert(&mut self, key: impl Into<Key>, value: V) -> Option<V> {
        let key = key.into();
        match self.at(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.at(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<V> super::compact::Compact for VecMap<V> {
    fn compact(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<K: Into<Key>, V> FromIterator<(K, V)> for VecMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = Self::default();
        for (k, v) in entries {
            map.insert(k, v);
        }
        map.0.shrink_to_fit();
        map
    }
}

impl<V, W: Into<V>> From<BTreeMap<String, W>> for VecMap<V> {
    fn from(map: BTreeMap<String, W>) -> Self {
        map.into_iter().map(|(k, v)| (k, v.into())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_sorted_by_key_through_inserts_and_removes() {
        let mut map: VecMap<String> = [("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(map.insert("c", "3".into()), None);
        assert_eq!(map.insert("a".to_string(), "one".into()), Some("1".into()));
        assert_eq!(map.get("a").map(String::as_str), Some("one"));
        assert!(map.contains_key("b") && !map.contains_key("d"));
        assert_eq!(map.remove("b"), Some("2".into()));
        assert_eq!(map.remove("b"), None);
        let keys: Vec<&str> = map.keys().collect();
        assert_eq!(keys, vec!["a", "c"]);
        assert_eq!(map.len(), 2);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map, VecMap::default());
    }
}
