//! A local OCI registry: the distribution project's `registry` (built from its Go module by
//! `tests/tools/build.sh registry`, cached outside the repository) serving a temporary
//! directory on a loopback port, with deletes enabled. It is the snapshot registry of the
//! cocoonstack dialects in tests, `make demo` and `make bench`; every request it answers is a
//! line of its log ([`LocalRegistry::requests`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::devcluster::{Supervised, free_ports};

/// Environment variable naming a prebuilt `registry` binary.
pub const REGISTRY_BIN_ENV: &str = "COCOON_REGISTRY_BIN";

/// A running registry; stopped and its storage removed on drop.
pub struct LocalRegistry {
    process: Supervised,
    address: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl LocalRegistry {
    /// Builds (or finds) the binary and starts it; returns once it answers.
    pub async fn start() -> Result<Self, BoxError> {
        let binary = binary().await?;
        let dir = tempfile::Builder::new().prefix("cocoon-registry-").tempdir()?;
        let [port] = free_ports::<1>()?;
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let log = dir.path().join("registry.log");
        let args: Vec<OsString> = vec!["serve".into(), config.into()];
        let mut process = Supervised::spawn("registry", &binary, &args, &log)?;
        let address = format!("http://127.0.0.1:{port}");
        let client =
            cocoon_operator::registry::Registry::new(&cocoon_operator::registry::RegistryConfig {
                address: address.clone(),
                auth_file: None,
            })?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.exists("cocoon-probe", "ready").await {
                Ok(_) => break,
                Err(error) if Instant::now() > deadline => {
                    return Err(format!(
                        "registry on {address} did not answer: {error}; log:\n{}",
                        process.log_tail(20)
                    )
                    .into());
                }
                Err(_) => {
                    if let Some(status) = process.exited() {
                        let tail = process.log_tail(20);
                        return Err(format!("registry exited ({status}):\n{tail}").into());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(Self { process, address, log, _dir: dir })
    }

    /// `http://127.0.0.1:<port>`: what `--registry` and the simulator's registry take.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Requests the registry answered so far (its access log), by method.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut by_method = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| l.contains("HTTP/1.1\"")) {
            // Access log lines: `… "GET /v2/… HTTP/1.1" 200 …`
            let method = line.split('"').nth(1).and_then(|r| r.split(' ').next());
            if let Some(method) = method {
                *by_method.entry(method.to_string()).or_insert(0) += 1;
            }
        }
        by_method
    }

    /// Stops it now.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// `$COCOON_REGISTRY_BIN`, else what `tests/tools/build.sh registry` prints (building it once).
pub async fn binary() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os(REGISTRY_BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let script = crate::testing::repo_path("tests/tools/build.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("registry")
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!("{} registry failed", script.display()).into());
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !Path::new(&path).is_file() {
        return Err(format!("{} registry printed no binary: {path:?}", script.display()).into());
    }
    Ok(PathBuf::from(path))
}
