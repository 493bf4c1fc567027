//! The real vk-cocoon under test: built from `../shared/providers` (cached), run as a process
//! against the fake hypervisor CLI, as the virtual node of the dev cluster. It binds `:10250`
//! on all interfaces (virtual-kubelet's default, no setting) and v0.1.1 reads its DHCP leases
//! from a fixed path: one provider at a time, started and stopped by the harness.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

use super::BoxError;
use crate::fake_cli::faults::Faults;
use crate::fake_cli::log::{self, Call};
use crate::fake_cli::state::{Snapshot, StateDir, Vm};
use crate::fake_cli::{LEASE_FORMAT_ENV, LEASES_ENV, STATE_ENV};

/// Where vk-cocoon v0.1.1 reads dnsmasq's leases (hard-coded).
pub const DNSMASQ_LEASES: &str = "/var/lib/misc/dnsmasq.leases";

/// A provider version the harness can build and run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// vk-cocoon v0.1.1: the seed dialect (`cocoon.cis/*`).
    V011,
    /// vk-cocoon v0.2.9: the v0.2 dialect (`vm.cocoonstack.io/*`), snapshots in epoch.
    V029,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Self; 2] = [Self::V011, Self::V029];

    /// The tag `build.sh` takes.
    pub fn tag(self) -> &'static str {
        match self {
            Self::V011 => "v0.1.1",
            Self::V029 => "v0.2.9",
        }
    }

    /// Reads a tag.
    pub fn parse(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.tag() == tag.trim())
    }

    /// The dialect it speaks.
    pub fn dialect(self) -> cocoon_core::contract::Dialect {
        match self {
            Self::V011 => cocoon_core::contract::Dialect::Seed,
            Self::V029 => cocoon_core::contract::Dialect::V02,
        }
    }
}

/// The directory of `../shared/providers` (or `COCOON_PROVIDERS_KIT`), with its `build.sh`.
pub fn kit(repo: &Path) -> Result<PathBuf, BoxError> {
    let dir = std::env::var_os("COCOON_PROVIDERS_KIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("../shared/providers"));
    if !dir.join("build.sh").is_file() {
        return Err(format!(
            "no provider kit at {} (../shared/providers beside the repository, or COCOON_PROVIDERS_KIT): \
             the real vk-cocoon cannot be built",
            dir.display()
        )
        .into());
    }
    Ok(dir)
}

/// Builds (or finds, cached) vk-cocoon `version` with the kit's `build.sh`; its path.
pub async fn build(kit: &Path, version: Version) -> Result<PathBuf, BoxError> {
    let out = tokio::process::Command::new("bash")
        .arg(kit.join("build.sh"))
        .args(["vk-cocoon", version.tag()])
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("build vk-cocoon {}: {}", version.tag(), out.status).into());
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.is_file() {
        return Err(format!("build.sh printed {}, which is no file", path.display()).into());
    }
    Ok(path)
}

/// The fake hypervisor as the harness sees it: its state, faults and calls, and the directory
/// of the names the provider calls it by.
pub struct Hypervisor {
    pub state: StateDir,
    /// `cocoon`, `sudo` and `sshpass`, each a link to `fake-cocoon`.
    pub bin: PathBuf,
    /// The lease file it keeps, and what was there before (put back on drop).
    leases: PathBuf,
    saved_leases: Option<Vec<u8>>,
    /// The format the provider reads them in.
    format: crate::fake_cli::leases::LeaseFormat,
}

impl Hypervisor {
    /// Installs the fake under `dir`, keeping the leases at `leases` in the format `version`
    /// reads (v0.1.1: dnsmasq's at a fixed path; v0.2.9: cocoon-net's JSON).
    pub fn install(
        dir: &Path,
        fake: &Path,
        leases: &Path,
        version: Version,
    ) -> Result<Self, BoxError> {
        let format = match version {
            Version::V011 => crate::fake_cli::leases::LeaseFormat::Dnsmasq,
            Version::V029 => crate::fake_cli::leases::LeaseFormat::Json,
        };
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin)?;
        for name in ["cocoon", "sudo", "sshpass"] {
            let link = bin.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(fake, &link)?;
        }
        if let Some(parent) = leases.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                format!("cannot create {} for the provider's leases: {e}", parent.display())
            })?;
        }
        let saved_leases = std::fs::read(leases).ok();
        let empty = if format == crate::fake_cli::leases::LeaseFormat::Json { "[]" } else { "" };
        std::fs::write(leases, empty).map_err(|e| {
            format!(
                "cannot write {} (the provider's lease file; run as root): {e}",
                leases.display()
            )
        })?;
        let state = StateDir(dir.join("state"));
        std::fs::create_dir_all(&state.0)?;
        Ok(Self { state, bin, leases: leases.to_path_buf(), saved_leases, format })
    }

    /// The environment the provider runs with, so that it finds the fake.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        vec![
            ("PATH".into(), path),
            ("COCOON_BIN".into(), self.bin.join("cocoon").display().to_string()),
            ("VK_COCOON_BIN".into(), self.bin.join("cocoon").display().to_string()),
            ("VK_LEASES_PATH".into(), self.leases.display().to_string()),
            (STATE_ENV.into(), self.state.0.display().to_string()),
            (LEASES_ENV.into(), self.leases.display().to_string()),
            (LEASE_FORMAT_ENV.into(), self.format.as_str().into()),
        ]
    }

    /// Base images are snapshots to the hypervisor: a clone of an image clones its snapshot.
    pub fn seed_images(&self, images: &[&str]) -> Result<(), BoxError> {
        self.state.with(|s| {
            for image in images {
                s.snapshots.insert(
                    image.to_string(),
                    Snapshot {
                        id: format!("image-{image}"),
                        name: image.to_string(),
                        from_vm: "import".into(),
                        image: image.to_string(),
                        hypervisor: "cloud-hypervisor".into(),
                        created: String::new(),
                    },
                );
            }
        })?;
        Ok(())
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, faults: &Faults) -> Result<(), BoxError> {
        Ok(faults.save(&self.state.0)?)
    }

    /// Every VM it runs now.
    pub fn vms(&self) -> Vec<Vm> {
        self.state.read().map(|s| s.vms.into_values().collect()).unwrap_or_default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        log::read(&self.state.0)
    }

    /// Rewrites the lease file from the state and the current fault plan (the provider only
    /// reads the file; the fake rewrites it on each of its calls).
    pub fn refresh_leases(&self) -> Result<(), BoxError> {
        let faults = Faults::load(&self.state.0);
        let state = self.state.read()?;
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let text = crate::fake_cli::leases::render(&state, &faults, self.format, now);
        Ok(crate::fake_cli::leases::write(&self.leases, &text)?)
    }

    /// Stops a VM, as if it died under the provider.
    pub fn stop_vm(&self, name: &str) -> Result<(), BoxError> {
        self.state.with(|s| {
            if let Some(id) = s.vm_id(name)
                && let Some(vm) = s.vms.get_mut(&id)
            {
                vm.state = "stopped".into();
            }
        })?;
        Ok(())
    }
}

impl Drop for Hypervisor {
    fn drop(&mut self) {
        let _ = match &self.saved_leases {
            Some(content) => std::fs::write(&self.leases, content),
            None => std::fs::remove_file(&self.leases),
        };
    }
}

/// A running vk-cocoon.
pub struct Provider {
    child: tokio::process::Child,
    pub node: String,
    pub log: PathBuf,
}

impl Provider {
    /// How far the provider's log has been written (to read what it logs from here on).
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The pods of `namespace` the provider deleted as "VM gone" since `from` (a
    /// [`Provider::log_len`]), in order, a pod once per deletion.
    pub fn evicted_since(&self, from: u64, namespace: &str) -> Vec<String> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        evicted_pods(&String::from_utf8_lossy(&text[start..]), namespace)
    }

    /// Starts `binary` (of `version`) as node `node` of the cluster `kubeconfig` names, against
    /// `hypervisor` (and, for v0.2.9, the epoch at `epoch`); returns once its node is Ready.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        binary: &Path,
        version: Version,
        kubeconfig: &Path,
        hypervisor: &Hypervisor,
        node: &str,
        work: &Path,
        epoch: Option<&str>,
        client: &Client,
    ) -> Result<Self, BoxError> {
        let log = work.join(format!("vk-cocoon-{node}.log"));
        let file = std::fs::File::create(&log)?;
        let root = work.join("cocoon-root");
        std::fs::create_dir_all(&root)?;
        let tmp = work.join("vk-tmp");
        std::fs::create_dir_all(&tmp)?;
        // v0.2.9 probes a VM's readiness by ICMP when it may open a raw socket: without
        // CAP_NET_RAW it takes every VM as answering, and nothing dials a guest address.
        let mut command = match version {
            Version::V011 => tokio::process::Command::new(binary),
            Version::V029 => {
                let mut c = tokio::process::Command::new("setpriv");
                c.args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--"]).arg(binary);
                c
            }
        };
        command
            .env("KUBECONFIG", kubeconfig)
            .env("VK_NODE_NAME", node)
            .env("VK_NODE_IP", "127.0.0.1")
            .env("COCOON_ROOT", &root)
            .env("COCOON_ROOT_DIR", &root)
            .env("VK_METRICS_ADDR", "127.0.0.1:0")
            .env("TMPDIR", &tmp)
            .env("HOME", work)
            .envs(hypervisor.env())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        if let Some(epoch) = epoch {
            command.env("EPOCH_URL", epoch);
        }
        // The ten pass-through variables of v0.1.1 would put `env K=V` into every call.
        let passed_through = [
            "COCOON_ROOT_DIR",
            "COCOON_RUN_DIR",
            "COCOON_LOG_DIR",
            "COCOON_CNI_CONF_DIR",
            "COCOON_CNI_BIN_DIR",
            "COCOON_DNS",
            "COCOON_BALLOON_ENABLED",
            "COCOON_ROOT_PASSWORD",
            "COCOON_CH_BINARY",
            "COCOON_WINDOWS_CH_BINARY",
        ];
        if version == Version::V011 {
            for key in passed_through {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().map_err(|e| format!("start {}: {e}", binary.display()))?;
        let nodes: Api<Node> = Api::all(client.clone());
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(
                    format!("vk-cocoon exited at once ({status}); see {}", log.display()).into()
                );
            }
            let ready =
                nodes.get_opt(node).await?.and_then(|n| n.status).and_then(|s| s.conditions);
            if ready.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")) {
                break;
            }
            if started.elapsed() > Duration::from_secs(90) {
                return Err(
                    format!("node {node} not Ready within 90s; see {}", log.display()).into()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(Self { child, node: node.to_string(), log })
    }

    /// SIGTERM, then SIGKILL after a grace.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The pods of `namespace` a vk-cocoon log says it deleted because their VM was gone
/// (v0.2.9: "vm <id> confirmed gone, deleting pod <ns>/<name>", quirk 14 among others).
pub fn evicted_pods(log: &str, namespace: &str) -> Vec<String> {
    let marker = format!("confirmed gone, deleting pod {namespace}/");
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find(&marker)? + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod eviction_tests {
    use super::evicted_pods;

    #[test]
    fn evictions_are_read_per_namespace_in_order() {
        let log = "\
2026-12-05T10:00:00Z INFO Provider.handleVMGone vm 8f1 confirmed gone, deleting pod r4-warm/demo-2
2026-12-05T10:00:01Z INFO something else about r4-warm/demo-1
{\"msg\":\"vm 9a2 confirmed gone, deleting pod r4-warm/demo-1\"}
vm 1 confirmed gone, deleting pod r5-other/demo-2
";
        assert_eq!(evicted_pods(log, "r4-warm"), vec!["demo-2", "demo-1"]);
        assert_eq!(evicted_pods(log, "r5-other"), vec!["demo-2"]);
        assert!(evicted_pods(log, "r4").is_empty(), "a namespace is matched whole");
    }
}
