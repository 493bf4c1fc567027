//! The `cocoon` subcommands vk-cocoon calls (v0.1.1 and v0.2.9), with their output formats and
//! error texts: `vm list/inspect/clone/run/rm/stop/start`, `snapshot save/rm/list/inspect`,
//! `image pull/inspect`. Pure over the state: argv in, output and exit code out.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::state::{Snapshot, State, Vm};

/// What a call prints and returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Output {
    fn ok(stdout: impl Into<String>) -> Self {
        Self { stdout: stdout.into(), ..Default::default() }
    }

    fn fail(message: impl Into<String>) -> Self {
        Self { stderr: format!("Error: {}\n", message.into()), code: 1, ..Default::default() }
    }
}

/// Flags and operands of a call.
struct Args<'a> {
    flags: BTreeMap<&'a str, &'a str>,
    switches: Vec<&'a str>,
    operands: Vec<&'a str>,
}

/// Flags that take no value.
const SWITCHES: [&str; 8] = [
    "--cold",
    "--force",
    "--pull",
    "--on-demand",
    "--no-direct-io",
    "--windows",
    "--fc",
    "--event",
];

fn parse(args: &[String]) -> Args<'_> {
    let mut out = Args { flags: BTreeMap::new(), switches: Vec::new(), operands: Vec::new() };
    let mut it = args.iter().map(String::as_str).peekable();
    while let Some(a) = it.next() {
        if let Some((k, v)) = a.split_once('=').filter(|(k, _)| k.starts_with("--")) {
            out.flags.insert(k, v);
        } else if SWITCHES.contains(&a) {
            out.switches.push(a);
        } else if a.starts_with('-') && a.len() > 1 {
            out.flags.insert(a, it.next().unwrap_or_default());
        } else {
            out.operands.push(a);
        }
    }
    out
}

impl Args<'_> {
    fn flag(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.flags.get(n).copied())
    }

    fn json(&self) -> bool {
        self.flag(&["--format", "-o", "--output"]) == Some("json")
    }
}

/// Bytes of a size argument: `8G`, `512M`, `100Gi`, or a plain number of bytes.
pub fn bytes(size: &str) -> i64 {
    let digits: String = size.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: i64 = digits.parse().unwrap_or(0);
    let unit = match size[digits.len()..].trim_end_matches('i').trim_end_matches('B') {
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => 1,
    };
    n.saturating_mul(unit)
}

/// A VM as `vm list --format json` (v0.1.1) and `vm inspect` / `vm clone --output json`
/// (v0.2.9) print it: the fields of both, with the NIC's `network` null (an address from DHCP).
pub fn vm_json(vm: &Vm) -> Value {
    json!({
        "id": vm.id,
        "name": vm.name,
        "hypervisor": "cloud-hypervisor",
        "state": vm.state,
        "pid": 0,
        "cpu": vm.cpu,
        "memory": bytes(&vm.memory),
        "storage": bytes(&vm.storage),
        "ip": vm.ip,
        "image": vm.source,
        "created": vm.created,
        "config": {
            "name": vm.name,
            "cpu": vm.cpu,
            "memory": bytes(&vm.memory),
            "storage": bytes(&vm.storage),
            "image": vm.source,
            "nics": 1,
        },
        "network_configs": [{"tap": format!("tap-{}", &vm.id[..8.min(vm.id.len())]), "mac": vm.mac, "netns_path": "", "network": null}],
    })
}

fn vm_table(state: &State) -> String {
    if state.vms.is_empty() {
        return "No VMs found.\n".into();
    }
    let mut out = String::from("ID NAME STATE CPU MEMORY STORAGE IP IMAGE CREATED\n");
    for vm in state.vms.values() {
        out.push_str(&format!(
            "{} {} {} {} {} {} {} {} {}\n",
            vm.id, vm.name, vm.state, vm.cpu, vm.memory, vm.storage, vm.ip, vm.source, vm.created
        ));
    }
    out
}

/// Runs one `cocoon` call on `state`; `now` is the RFC 3339 time of the call.
pub fn run(state: &mut State, argv: &[String], now: &str) -> Output {
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let rest = |n: usize| &argv[n.min(argv.len())..];
    match words.as_slice() {
        ["vm", "list", ..] => {
            let args = parse(rest(2));
            if args.json() {
                let list: Vec<Value> = state.vms.values().map(vm_json).collect();
                Output::ok(format!("{}\n", Value::Array(list)))
            } else {
                Output::ok(vm_table(state))
            }
        }
        ["vm", "inspect", key, ..] => match state.find_vm(key) {
            Some(vm) => Output::ok(format!("{}\n", vm_json(vm))),
            None => Output::fail(format!("vm not found: {key}")),
        },
        ["vm", "clone", ..] => create(state, rest(2), "clone", now),
        ["vm", "run", ..] => create(state, rest(2), "run", now),
        ["vm", "rm", ..] => {
            let args = parse(rest(2));
            let Some(key) = args.operands.first() else { return Output::fail("vm rm: no VM") };
            match state.vm_id(key) {
                Some(id) => {
                    state.vms.remove(&id);
                    Output::ok(format!("{id}\n"))
                }
                None => Output::fail(format!("vm not found: {key}")),
            }
        }
        ["vm", verb @ ("stop" | "start"), key, ..] => match state.vm_id(key) {
            Some(id) => {
                let to = if *verb == "stop" { "stopped" } else { "running" };
                if let Some(vm) = state.vms.get_mut(&id) {
                    vm.state = to.into();
                }
                Output::ok(format!("{id}\n"))
            }
            None => Output::fail(format!("vm not found: {key}")),
        },
        ["snapshot", "save", ..] => {
            let args = parse(rest(2));
            let (Some(name), Some(key)) = (args.flag(&["--name"]), args.operands.first()) else {
                return Output::fail("snapshot save: --name NAME VM");
            };
            if state.snapshots.contains_key(name) {
                return Output::fail(format!("snapshot {name} already exists"));
            }
            let Some(vm) = state.find_vm(key).cloned() else {
                return Output::fail(format!("vm not found: {key}"));
            };
            if vm.state != "running" {
                return Output::fail(format!("vm {key} is {}, not running", vm.state));
            }
            let id = format!("{:016x}", 0x5000_0000_0000_0000u64 | state.next_serial());
            let image =
                state.snapshots.get(&vm.source).map(|s| s.image.clone()).unwrap_or(vm.source);
            let snapshot = Snapshot {
                id: id.clone(),
                name: name.to_string(),
                from_vm: vm.name,
                image,
                hypervisor: "cloud-hypervisor".into(),
                created: now.into(),
            };
            state.snapshots.insert(name.to_string(), snapshot);
            Output::ok(format!("{id}\n"))
        }
        ["snapshot", "rm", name, ..] => match state.snapshots.remove(*name) {
            Some(s) => Output::ok(format!("{}\n", s.id)),
            None => Output::fail(format!("snapshot not found: {name}")),
        },
        ["snapshot", "list", ..] => {
            let mut out = String::from("ID NAME FROM IMAGE CREATED\n");
            for s in state.snapshots.values() {
                out.push_str(&format!(
                    "{} {} {} {} {}\n",
                    s.id, s.name, s.from_vm, s.image, s.created
                ));
            }
            Output::ok(out)
        }
        ["snapshot", "inspect", name, ..] => match state.snapshots.get(*name) {
            Some(s) => Output::ok(format!(
                "{}\n",
                json!({"id": s.id, "name": s.name, "image": s.image, "image_digest": "",
                       "image_type": "", "hypervisor": s.hypervisor})
            )),
            None => Output::fail(format!("snapshot not found: {name}")),
        },
        ["image", "pull", ..] => {
            let args = parse(rest(2));
            let Some(image) = args.operands.first() else {
                return Output::fail("image pull: IMAGE");
            };
            if !state.images.iter().any(|i| i == image) {
                state.images.push(image.to_string());
            }
            Output::ok(format!("pulled {image}\n"))
        }
        ["image", "inspect", name, ..] => {
            if state.images.iter().any(|i| i == name) {
                Output::ok(format!("{}\n", json!({"name": name})))
            } else {
                Output::fail(format!("image not found: {name}"))
            }
        }
        _ => Output::fail(format!("unknown command: {}", argv.join(" "))),
    }
}

/// `vm clone` / `vm run`: a new running VM named `--name`, from a snapshot (clone) or an
/// image (run). A clone source must be a snapshot the hypervisor has (base images are
/// snapshots too: a harness seeds them); a VM of that name must not exist.
fn create(state: &mut State, rest: &[String], how: &str, now: &str) -> Output {
    let args = parse(rest);
    let Some(from) = args.operands.first().copied() else {
        return Output::fail(format!("vm {how}: no source"));
    };
    if how == "clone" && !state.snapshots.contains_key(from) {
        return Output::fail(format!("snapshot not found: {from}"));
    }
    let n = state.next_serial();
    let name = args.flag(&["--name"]).map(str::to_string).unwrap_or_else(|| format!("vm-{n}"));
    if state.find_vm(&name).is_some() {
        return Output::fail(format!("vm {name} already exists"));
    }
    let (ip, mac) = state.allocate();
    let id = format!("{:016x}", 0xc000_0000_0000_0000u64 | state.next_serial());
    let vm = Vm {
        id: id.clone(),
        name,
        state: "running".into(),
        cpu: args.flag(&["--cpu"]).and_then(|c| c.parse().ok()).unwrap_or(2),
        memory: args.flag(&["--memory"]).unwrap_or("8G").to_string(),
        storage: args.flag(&["--storage"]).unwrap_or("100G").to_string(),
        ip,
        mac,
        source: from.to_string(),
        how: how.into(),
        created: now.into(),
    };
    let out = if args.json() { format!("{}\n", vm_json(&vm)) } else { format!("{id}\n") };
    state.vms.insert(id, vm);
    Output::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(state: &mut State, line: &str) -> Output {
        let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
        run(state, &argv, "2026-12-05T00:00:00Z")
    }

    fn seeded() -> State {
        let mut state = State::default();
        state.snapshots.insert(
            "ubuntu-dev-base".into(),
            Snapshot {
                id: "base".into(),
                name: "ubuntu-dev-base".into(),
                from_vm: "import".into(),
                image: "ubuntu-dev-base".into(),
                hypervisor: "cloud-hypervisor".into(),
                created: String::new(),
            },
        );
        state
    }

    #[test]
    fn a_clone_lists_as_v0_1_1_parses_it_and_a_fork_and_a_restore_come_from_snapshots() {
        let mut s = seeded();
        let c =
            "vm clone --cold --name vk-ns-a-0 --cpu 2 --memory 8G --storage 100G ubuntu-dev-base";
        assert_eq!(call(&mut s, c).code, 0);
        let list: Value =
            serde_json::from_str(&call(&mut s, "vm list --format json").stdout).unwrap();
        let vm = &list[0];
        assert_eq!(vm["name"], "vk-ns-a-0");
        assert_eq!(vm["config"]["memory"], 8i64 << 30, "bytes, as an int64");
        assert!(
            vm["network_configs"][0]["mac"].as_str().is_some_and(|m| m.starts_with("52:54:00"))
        );
        assert!(vm["ip"].as_str().is_some_and(|ip| ip.starts_with("10.88.100.")));
        let id = vm["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 16, "fixed length: no id is a prefix of another");
        assert_eq!(call(&mut s, &format!("snapshot save --name vk-ns-a-1-fork {id}")).code, 0);
        let fork =
            "vm clone --cold --name vk-ns-a-1 --cpu 2 --memory 8G --storage 100G vk-ns-a-1-fork";
        assert_eq!(call(&mut s, fork).code, 0);
        assert_eq!(s.find_vm("vk-ns-a-1").map(|v| v.source.as_str()), Some("vk-ns-a-1-fork"));
        let missing = call(&mut s, "vm clone --cold --name vk-ns-a-2 vk-ns-a-2-suspend");
        assert_eq!(missing.code, 1);
        assert!(missing.stderr.contains("snapshot not found"));
    }

    #[test]
    fn error_texts_are_the_ones_v0_2_9_reads() {
        let mut s = seeded();
        let gone = call(&mut s, "vm inspect vk-nope");
        assert_eq!(gone.code, 1);
        assert!(gone.stderr.to_lowercase().contains("vm not found"));
        assert!(call(&mut s, "snapshot rm nope").stderr.contains("snapshot not found"));
        call(&mut s, "vm clone --output json --name v --on-demand ubuntu-dev-base");
        let id = s.vm_id("v").unwrap();
        assert_eq!(call(&mut s, &format!("snapshot save --name v {id}")).code, 0);
        let again = call(&mut s, &format!("snapshot save --name v {id}"));
        assert!(again.code != 0 && again.stderr.contains("already exists"), "{again:?}");
        assert_eq!(call(&mut s, "vm list -o json").code, 0);
        assert_eq!(call(&mut s, &format!("vm rm --force {id}")).code, 0);
        assert_eq!(call(&mut s, "vm list").stdout, "No VMs found.\n");
    }
}
