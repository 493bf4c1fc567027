//! The calls of vk-cocoon v0.2.9 that stream rather than answer: `vm status --event --format
//! json` (a long-running NDJSON watch of the VMs: `ADDED` for each at start, then `ADDED`,
//! `MODIFIED` and `DELETED` as they change), `snapshot export <name> -o -` (a tar on stdout
//! with `snapshot.json` and the snapshot's files) and `snapshot import --name <name>` (the
//! same tar on stdin, drained to its end).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cocoon::{Output, vm_json};
use super::faults::Faults;
use super::state::{Snapshot, StateDir};

/// How often the watch reads the state.
const POLL: Duration = Duration::from_millis(200);

/// `vm status --event --format json` until stdout closes or the caller goes away.
pub fn watch(dir: &StateDir, out: &mut impl Write) -> i32 {
    let mut known: BTreeMap<String, Value> = BTreeMap::new();
    // VMs gone, with when they went (their DELETED may wait: the fault plan's delay).
    let mut gone: BTreeMap<String, (Value, Instant)> = BTreeMap::new();
    let parent = std::os::unix::process::parent_id();
    loop {
        let now: BTreeMap<String, Value> = dir
            .read()
            .map(|s| s.vms.values().map(|vm| (vm.id.clone(), vm_json(vm))).collect())
            .unwrap_or_else(|_| known.clone());
        let delay = Duration::from_millis(Faults::load(&dir.0).deleted_event_delay_ms);
        let mut lines = Vec::new();
        for (id, vm) in &now {
            match known.get(id) {
                None => lines.push(json!({"event": "ADDED", "vm": vm})),
                Some(before) if changed(before, vm) => {
                    lines.push(json!({"event": "MODIFIED", "vm": vm}))
                }
                Some(_) => {}
            }
        }
        for (id, vm) in &known {
            if !now.contains_key(id) {
                gone.entry(id.clone()).or_insert_with(|| (vm.clone(), Instant::now()));
            }
        }
        let due: Vec<String> = gone
            .iter()
            .filter(|(_, (_, at))| at.elapsed() >= delay)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some((vm, _)) = gone.remove(&id) {
                lines.push(json!({"event": "DELETED", "vm": vm}));
            }
        }
        for line in lines {
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                return 0;
            }
        }
        known = now;
        if std::os::unix::process::parent_id() != parent {
            return 0;
        }
        std::thread::sleep(POLL);
    }
}

/// What upstream's watch compares: the fields a consumer reads.
fn changed(before: &Value, after: &Value) -> bool {
    ["state", "name", "ip", "cpu", "memory", "image"].iter().any(|k| before[k] != after[k])
}

/// `snapshot export <name> -o -`: `snapshot.json` and one small file, as a tar.
pub fn export(dir: &StateDir, name: &str, out: &mut impl Write) -> Output {
    let snapshot = match dir.read() {
        Ok(state) => state.snapshots.get(name).cloned(),
        Err(e) => return failure(format!("state: {e}")),
    };
    let Some(snapshot) = snapshot else {
        return failure(format!("snapshot not found: {name}"));
    };
    let envelope = json!({"version": 1, "config": {
        "id": snapshot.id, "name": snapshot.name, "image": snapshot.image,
        "hypervisor": snapshot.hypervisor,
    }});
    let config = json!({"vm": snapshot.from_vm, "snapshot": snapshot.name});
    let mut builder = tar::Builder::new(Vec::new());
    let files = [("snapshot.json", envelope.to_string()), ("config.json", config.to_string())];
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o640);
        header.set_entry_type(tar::EntryType::Regular);
        if let Err(e) = builder.append_data(&mut header, path, content.as_bytes()) {
            return failure(format!("export {name}: {e}"));
        }
    }
    match builder.into_inner() {
        Ok(bytes) => {
            // The reader may close its end after the end marker: a failed write is no failure.
            let _ = out.write_all(&bytes).and_then(|_| out.flush());
            Output::default()
        }
        Err(e) => failure(format!("export {name}: {e}")),
    }
}

/// `snapshot import --name <name>`: reads the tar on stdin to its end and registers the
/// snapshot its `snapshot.json` describes under `name`.
pub fn import(dir: &StateDir, name: &str, input: &mut impl Read, now: &str) -> Output {
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        return failure(format!("import {name}: read stdin: {e}"));
    }
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut config: Option<Value> = None;
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return failure(format!("import {name}: {e}")),
    };
    for entry in entries {
        let Ok(mut entry) = entry else { return failure(format!("import {name}: bad tar")) };
        let is_envelope = entry.path().ok().is_some_and(|p| p.to_string_lossy() == "snapshot.json");
        if is_envelope {
            let mut text = String::new();
            if entry.read_to_string(&mut text).is_err() {
                return failure(format!("import {name}: snapshot.json unreadable"));
            }
            config = serde_json::from_str::<Value>(&text).ok().map(|v| v["config"].clone());
        }
    }
    let Some(config) = config else {
        return failure(format!("import {name}: snapshot.json not found in the stream"));
    };
    let text = |k: &str| config[k].as_str().unwrap_or_default().to_string();
    let result = dir.with(|state| {
        let id = match text("id") {
            id if id.is_empty() => {
                format!("{:016x}", 0x1000_0000_0000_0000u64 | state.next_serial())
            }
            id => id,
        };
        state.snapshots.insert(
            name.to_string(),
            Snapshot {
                id: id.clone(),
                name: name.to_string(),
                from_vm: "import".into(),
                image: text("image"),
                hypervisor: text("hypervisor"),
                created: now.to_string(),
            },
        );
        id
    });
    match result {
        Ok(id) => Output { stdout: format!("{id}\n"), ..Default::default() },
        Err(e) => failure(format!("import {name}: state: {e}")),
    }
}

fn failure(message: String) -> Output {
    Output { stderr: format!("Error: {message}\n"), code: 1, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_imports_back_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir(dir.path().to_path_buf());
        state
            .with(|s| {
                s.snapshots.insert(
                    "vk-a-b-0".into(),
                    Snapshot {
                        id: "s1".into(),
                        name: "vk-a-b-0".into(),
                        from_vm: "vk-a-b-0".into(),
                        image: "ubuntu-dev-base".into(),
                        hypervisor: "cloud-hypervisor".into(),
                        created: String::new(),
                    },
                );
            })
            .unwrap();
        let mut tar = Vec::new();
        assert_eq!(export(&state, "vk-a-b-0", &mut tar).code, 0);
        let out = import(&state, "vk-a-b-0-hibernate-import", &mut tar.as_slice(), "now");
        assert_eq!(out.code, 0, "{out:?}");
        let imported = state.read().unwrap().snapshots["vk-a-b-0-hibernate-import"].clone();
        assert_eq!((imported.id.as_str(), imported.image.as_str()), ("s1", "ubuntu-dev-base"));
        assert!(export(&state, "nope", &mut Vec::new()).stderr.contains("snapshot not found"));
    }
}
