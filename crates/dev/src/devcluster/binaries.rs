//! Finds the `etcd`, `kube-apiserver`, `kube-controller-manager` and `kubectl` binaries: an explicit
//! directory, `COCOON_CONTROL_PLANE_BIN`, or the (cached) build of `tests/control-plane/`.

use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Environment variable naming a directory that holds the three binaries.
pub const BIN_DIR_ENV: &str = "COCOON_CONTROL_PLANE_BIN";

/// Absolute paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    /// `kube-scheduler`, if the directory has one (caches built before it joined have not).
    pub kube_scheduler: Option<PathBuf>,
    /// The kubectl built with the control plane (same version as the API server), or plain
    /// `kubectl` from `PATH` when the directory has none.
    pub kubectl: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`, checking that each exists.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let binaries = Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kube_scheduler: Some(dir.join("kube-scheduler")).filter(|s| s.is_file()),
            kubectl: Some(dir.join("kubectl"))
                .filter(|k| k.is_file())
                .unwrap_or_else(|| "kubectl".into()),
        };
        for path in [&binaries.etcd, &binaries.kube_apiserver, &binaries.kube_controller_manager] {
            if !path.is_file() {
                return Err(Error::Binaries(format!("{} does not exist", path.display())));
            }
        }
        Ok(binaries)
    }

    /// `dir` if given, else `$COCOON_CONTROL_PLANE_BIN`, else whatever
    /// `tests/control-plane/build.sh` prints (it builds once, then answers from its cache).
    pub async fn locate(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            return Self::in_dir(dir);
        }
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
            return Self::in_dir(Path::new(&dir));
        }
        Self::in_dir(&build().await?)
    }
}

/// Runs the build script and returns the directory it prints. Its progress goes to our stderr:
/// a cold build takes many minutes and should not look like a hang.
async fn build() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/control-plane/build.sh");
    if !script.is_file() {
        return Err(Error::Binaries(format!(
            "{} not found; set {BIN_DIR_ENV} to a directory with etcd, kube-apiserver and \
             kube-controller-manager",
            script.display()
        )));
    }
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| Error::io(format!("run {}", script.display()), e))?;
    if !output.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({}); see its output above",
            script.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Err(Error::Binaries(format!("{} printed no directory", script.display()))),
    }
}
