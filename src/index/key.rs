//! Identity of a per-resource actor.

use std::fmt;

use crate::plan::observe::Text;

/// Which resource an actor serves.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum ActorKind {
    CocoonSet,
    Hibernation,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CocoonSet => "CocoonSet",
            Self::Hibernation => "Hibernation",
        }
    }
}

/// Kind, namespace and name of the object an actor serves. The names are inline strings: a key
/// is kept in several maps per actor and cloned into every delivery, and a Kubernetes name of
/// up to 24 bytes then needs no allocation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActorKey {
    pub kind: ActorKind,
    pub namespace: Text,
    pub name: Text,
}

impl ActorKey {
    pub fn cocoon_set(namespace: &str, name: &str) -> Self {
        Self { kind: ActorKind::CocoonSet, namespace: namespace.into(), name: name.into() }
    }
    pub fn hibernation(namespace: &str, name: &str) -> Self {
        Self { kind: ActorKind::Hibernation, namespace: namespace.into(), name: name.into() }
    }

    /// Which of `slices` equal parts of the resync period this actor is resynced in: stable for
    /// a key (FNV-1a of kind, namespace and name), spread over the parts.
    pub fn resync_slice(&self, slices: u64) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let kind = [self.kind as u8];
        for part in [&kind[..], self.namespace.as_bytes(), b"/", self.name.as_bytes()] {
            for byte in part {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash % slices.max(1)
    }
}

impl fmt::Display for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = match self.kind {
            ActorKind::CocoonSet => "cs",
            ActorKind::Hibernation => "hib",
        };
        write!(f, "{short}/{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_slices_are_stable_per_key_and_spread_over_the_period() {
        let keys: Vec<ActorKey> =
            (0..1500).map(|i| ActorKey::cocoon_set("prod", &format!("set-{i}"))).collect();
        let mut per_slice = [0u32; 15];
        for key in &keys {
            let slice = key.resync_slice(15);
            assert_eq!(slice, key.clone().resync_slice(15), "stable for a key");
            per_slice[slice as usize] += 1;
        }
        // 100 per slice on average; none empty, none carrying several times its share.
        assert!(per_slice.iter().all(|n| (50..200).contains(n)), "{per_slice:?}");
        let set = ActorKey::cocoon_set("prod", "a");
        let hib = ActorKey::hibernation("prod", "a");
        assert!(set.resync_slice(1) == 0 && hib.resync_slice(0) == 0);
    }
}
