//! The fake hypervisor CLI as vk-cocoon runs it: through `sudo` (with v0.1.1's `env K=V`
//! prefix), by the names it is linked under, with its state, leases and call log on disk; and
//! what it must never do (edit /etc/hosts, reach a guest).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cocoon_dev::fake_cli::log;

struct Fake {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    state: PathBuf,
    leases: PathBuf,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["cocoon", "sudo", "sshpass"] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_fake-cocoon"), bin.join(name)).unwrap();
        }
        let state = dir.path().join("state");
        let leases = dir.path().join("dnsmasq.leases");
        let fake = Self { _dir: dir, bin, state, leases };
        // Base images are snapshots to the hypervisor.
        cocoon_dev::fake_cli::state::StateDir(fake.state.clone())
            .with(|s| {
                s.snapshots.insert(
                    "ubuntu-dev-base".into(),
                    cocoon_dev::fake_cli::state::Snapshot {
                        id: "base".into(),
                        name: "ubuntu-dev-base".into(),
                        from_vm: "import".into(),
                        image: "ubuntu-dev-base".into(),
                        hypervisor: "cloud-hypervisor".into(),
                        created: String::new(),
                    },
                );
            })
            .unwrap();
        fake
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(self.bin.join(program))
            .args(args)
            .env("COCOON_FAKE_STATE", &self.state)
            .env("COCOON_FAKE_LEASES", &self.leases)
            .env("COCOON_BIN", self.bin.join("cocoon"))
            .output()
            .unwrap()
    }

    fn cocoon_path(&self) -> String {
        self.bin.join("cocoon").display().to_string()
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vk_v0_1_1s_sudo_env_prefix_reaches_the_cli_and_a_clone_gets_a_lease_it_can_read() {
    let fake = Fake::new();
    let cocoon = fake.cocoon_path();
    let clone = [
        "env",
        "COCOON_DNS=1.1.1.1",
        &cocoon,
        "vm",
        "clone",
        "--cold",
        "--name",
        "vk-ns-a-0",
        "--cpu",
        "2",
        "--memory",
        "8G",
        "--storage",
        "100G",
        "ubuntu-dev-base",
    ];
    let out = fake.run("sudo", &clone);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "nothing on stderr: v0.1.1 parses stdout and stderr as one");
    let list = fake.run("sudo", &[&cocoon, "vm", "list", "--format", "json"]);
    let vms: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let mac = vms[0]["network_configs"][0]["mac"].as_str().unwrap().to_string();
    let ip = vms[0]["ip"].as_str().unwrap().to_string();
    let leases = std::fs::read_to_string(&fake.leases).unwrap();
    let fields: Vec<&str> = leases.lines().next().unwrap().split_whitespace().collect();
    assert_eq!((fields[1], fields[2], fields[3]), (mac.as_str(), ip.as_str(), "vk-ns-a-0"));
    let expiry: i64 = fields[0].parse().unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(expiry > now, "a fresh lease: v0.1.1 takes only leases not older than a minute");
    assert!(ip.starts_with("10.88.100."), "the only leases v0.1.1 counts");
    let calls = log::read(&fake.state);
    assert_eq!(calls.iter().map(|c| c.command()).collect::<Vec<_>>(), ["vm clone", "vm list"]);
}

#[test]
fn the_host_is_never_touched_and_a_guest_never_dialled() {
    let fake = Fake::new();
    let hosts_before = std::fs::read("/etc/hosts").ok();
    let edit = fake.run("sudo", &["bash", "-c", "sudo sed -i '/demo/d' /etc/hosts 2>/dev/null"]);
    assert!(edit.status.success(), "the provider ignores the result; it must not fail loudly");
    assert_eq!(std::fs::read("/etc/hosts").ok(), hosts_before, "/etc/hosts untouched");
    let socket =
        fake.run("sudo", &["test", "-S", "/var/lib/cocoon/run/cloudhypervisor/x/api.sock"]);
    assert_eq!(socket.status.code(), Some(1), "no hypervisor socket: no curl follows");
    let started = Instant::now();
    let ssh = fake
        .run("sshpass", &["-p", "", "ssh", "-o", "ConnectTimeout=5", "root@10.88.100.2", "true"]);
    assert_eq!(ssh.status.code(), Some(255));
    assert!(started.elapsed() < Duration::from_secs(2), "fails at once, without a connection");
    let programs: Vec<String> = log::read(&fake.state).into_iter().map(|c| c.program).collect();
    assert_eq!(programs, ["sudo", "sudo", "sshpass"], "each logged");
}

#[test]
fn planned_faults_fail_matching_calls_and_withhold_leases() {
    let fake = Fake::new();
    let plan = cocoon_dev::fake_cli::faults::Faults {
        failures: vec![cocoon_dev::fake_cli::faults::Failure {
            pattern: "snapshot save --name *-fork *".into(),
            message: "save failed".into(),
            code: 3,
        }],
        no_lease: vec!["vk-ns-a-1".into()],
        ..Default::default()
    };
    plan.save(Path::new(&fake.state)).unwrap();
    fake.run("cocoon", &["vm", "clone", "--cold", "--name", "vk-ns-a-0", "ubuntu-dev-base"]);
    fake.run("cocoon", &["vm", "clone", "--cold", "--name", "vk-ns-a-1", "ubuntu-dev-base"]);
    let list: serde_json::Value =
        serde_json::from_str(&text(&fake.run("cocoon", &["vm", "list", "--format", "json"])))
            .unwrap();
    let id = list[0]["id"].as_str().unwrap();
    let save = fake.run("cocoon", &["snapshot", "save", "--name", "vk-ns-a-2-fork", id]);
    assert_eq!(save.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&save.stderr).trim(), "save failed");
    let leases = std::fs::read_to_string(&fake.leases).unwrap();
    assert!(leases.contains("vk-ns-a-0") && !leases.contains("vk-ns-a-1"), "{leases}");
}
