//! Identity of a per-resource actor.

use std::fmt;

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

/// Kind, namespace and name of the object an actor serves.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActorKey {
    pub kind: ActorKind,
    pub namespace: String,
    pub name: String,
}

impl ActorKey {
    pub fn cocoon_set(namespace: &str, name: &str) -> Self {
        Self { kind: ActorKind::CocoonSet, namespace: namespace.into(), name: name.into() }
    }
    pub fn hibernation(namespace: &str, name: &str) -> Self {
        Self { kind: ActorKind::Hibernation, namespace: namespace.into(), name: name.into() }
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
