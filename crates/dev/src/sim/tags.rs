//! Where a simulated cocoonstack provider keeps its snapshots: `<vm>:hibernate` and
//! `<vm>:latest` (PROVIDERS.md §4). In memory (shared by every simulated node of one process,
//! like the cluster's one registry), or in a real OCI registry (the current dialect), where the
//! snapshots are pushed, probed and deleted as small artefacts.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::error::{Error, Result};

/// A snapshot store.
#[derive(Clone, Debug)]
pub enum Tags {
    /// References `<vm>:<tag>` held in memory.
    Memory(Arc<Mutex<BTreeSet<String>>>),
    /// A registry.
    Registry(Arc<cocoon_operator::registry::Registry>),
}

impl Default for Tags {
    fn default() -> Self {
        Self::Memory(Arc::default())
    }
}

impl Tags {
    fn memory(set: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the snapshot `<vm>:<tag>` (replacing one of that name).
    pub async fn push(&self, vm: &str, tag: &str, node: &str) -> Result<()> {
        match self {
            Self::Memory(set) => {
                Self::memory(set).insert(format!("{vm}:{tag}"));
                Ok(())
            }
            Self::Registry(registry) => registry
                .push_snapshot(vm, tag, node)
                .await
                .map_err(|e| Error::Registry(format!("push {vm}:{tag}: {e}"))),
        }
    }

    /// Whether `<vm>:<tag>` exists.
    pub async fn exists(&self, vm: &str, tag: &str) -> Result<bool> {
        match self {
            Self::Memory(set) => Ok(Self::memory(set).contains(&format!("{vm}:{tag}"))),
            Self::Registry(registry) => registry
                .exists(vm, tag)
                .await
                .map_err(|e| Error::Registry(format!("probe {vm}:{tag}: {e}"))),
        }
    }

    /// Every reference held (memory only; for tests).
    pub fn held(&self) -> Vec<String> {
        match self {
            Self::Memory(set) => Self::memory(set).iter().cloned().collect(),
            Self::Registry(_) => Vec::new(),
        }
    }

    /// Removes `<vm>:<tag>` (memory only: the operator collects registry tags).
    pub fn forget(&self, vm: &str, tag: &str) {
        if let Self::Memory(set) = self {
            Self::memory(set).remove(&format!("{vm}:{tag}"));
        }
    }
}
