//! The fake hypervisor's state on disk: its VMs, snapshots and imported images, in one JSON file
//! beside a lock file (vk-cocoon runs several CLI calls at once; each mutation holds the lock).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A VM as the fake hypervisor keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Fixed-length hex id (no id is a prefix of another: vk v0.1.1 matches ids by prefix).
    pub id: String,
    pub name: String,
    /// `running`, `stopped`, `error`, `created`.
    pub state: String,
    pub cpu: u32,
    /// As given (`8G`, `4294967296`, ...).
    pub memory: String,
    pub storage: String,
    /// The guest address: a string nothing dials.
    pub ip: String,
    pub mac: String,
    /// What it was cloned or booted from: a snapshot name or an image.
    pub source: String,
    /// `clone` or `run`.
    pub how: String,
    pub created: String,
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    /// The VM it was taken of, or `import`.
    pub from_vm: String,
    /// The image the VM was booted from, as far as known.
    pub image: String,
    pub hypervisor: String,
    pub created: String,
}

/// Everything the fake hypervisor knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub vms: BTreeMap<String, Vm>,
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Images pulled (`image pull`).
    pub images: Vec<String>,
    /// Counter behind ids, MACs and addresses.
    pub serial: u64,
}

impl State {
    /// The VM with this id, id prefix or name.
    pub fn find_vm(&self, key: &str) -> Option<&Vm> {
        self.vms.get(key).or_else(|| self.vms.values().find(|v| v.name == key))
    }

    /// The id of the VM with this id or name.
    pub fn vm_id(&self, key: &str) -> Option<String> {
        self.find_vm(key).map(|v| v.id.clone())
    }

    /// A fresh serial number.
    pub fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// A guest address in 10.88.100.2..=254 no running VM holds (vk v0.1.1 counts only leases in
    /// 10.88.100.0/24), and a MAC to go with it.
    pub fn allocate(&mut self) -> (String, String) {
        let n = self.next_serial();
        let taken: Vec<&str> = self.vms.values().map(|v| v.ip.as_str()).collect();
        let ip = (0..253u64)
            .map(|i| format!("10.88.100.{}", 2 + (n + i) % 253))
            .find(|ip| !taken.contains(&ip.as_str()))
            .unwrap_or_else(|| "10.88.100.254".to_string());
        let mac =
            format!("52:54:00:{:02x}:{:02x}:{:02x}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        (ip, mac)
    }
}

/// The state directory: `state.json`, its lock, the fault plan and the call log.
#[derive(Clone, Debug)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Runs `f` on the state under the lock, and saves what it leaves.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> std::io::Result<T> {
        std::fs::create_dir_all(&self.0)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path("state.lock"))?;
        lock.lock()?;
        let mut state = read(&self.path("state.json"))?;
        let out = f(&mut state);
        write(&self.path("state.json"), &state)?;
        lock.unlock()?;
        Ok(out)
    }

    /// The state as it is now (under the lock, not changed).
    pub fn read(&self) -> std::io::Result<State> {
        self.with(|s| s.clone())
    }
}

fn read(path: &Path) -> std::io::Result<State> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_string(&mut text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(e),
    };
    serde_json::from_str(&text).map_err(std::io::Error::other)
}

fn write(path: &Path, state: &State) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_between_calls_and_addresses_are_not_reused_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir(dir.path().to_path_buf());
        let (a, mac_a) = state.with(|s| s.allocate()).unwrap();
        state
            .with(|s| {
                let vm = Vm {
                    id: "0".repeat(16),
                    name: "vk-ns-a-0".into(),
                    state: "running".into(),
                    cpu: 2,
                    memory: "8G".into(),
                    storage: "100G".into(),
                    ip: a.clone(),
                    mac: mac_a.clone(),
                    source: "img".into(),
                    how: "clone".into(),
                    created: "2026-01-01T00:00:00Z".into(),
                };
                s.vms.insert(vm.id.clone(), vm);
            })
            .unwrap();
        let (b, mac_b) = state.with(|s| s.allocate()).unwrap();
        assert_ne!(a, b);
        assert_ne!(mac_a, mac_b);
        assert!(a.starts_with("10.88.100.") && b.starts_with("10.88.100."));
        assert_eq!(state.read().unwrap().find_vm("vk-ns-a-0").map(|v| v.ip.clone()), Some(a));
    }
}
