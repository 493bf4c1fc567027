//! Letting go of spare room in an actor's bookkeeping before it rests. A `BTreeMap` keeps its
//! first node (hundreds of bytes) after its last entry is removed, and a vector its capacity:
//! across ten thousand sets at rest that is megabytes holding nothing.

use std::collections::{BTreeMap, BTreeSet};

/// Bookkeeping that can give back room it holds but does not use.
pub trait Compact {
    /// Frees the room of emptied maps and spare capacity; what it holds is unchanged.
    fn compact(&mut self);
}

impl<K, V> Compact for BTreeMap<K, V> {
    fn compact(&mut self) {
        if self.is_empty() {
            *self = Self::new();
        }
    }
}

impl<K> Compact for BTreeSet<K> {
    fn compact(&mut self) {
        if self.is_empty() {
            *self = Self::new();
        }
    }
}

impl<T> Compact for Vec<T> {
    fn compact(&mut self) {
        self.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What an emptied map holds is not observable from safe code; heaptrack shows it
    // (docs/performance.md). The entries a compacted map keeps, and a vector's capacity, are.
    #[test]
    fn compacting_keeps_every_entry_and_leaves_a_vector_no_spare_capacity() {
        let mut kept = BTreeMap::from([("b".to_string(), 2)]);
        kept.compact();
        assert_eq!(kept.get("b"), Some(&2));
        let mut emptied = BTreeSet::from([1]);
        emptied.remove(&1);
        emptied.compact();
        assert!(emptied.is_empty());
        let mut v = Vec::with_capacity(16);
        v.push(1);
        v.compact();
        assert_eq!((v.len(), v.capacity()), (1, 1));
    }
}
