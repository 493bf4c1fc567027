//! The operator under chaos: a child process with a metrics port, SIGKILLed on demand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::BoxError;

/// The operator child process.
pub struct Operator {
    child: tokio::process::Child,
    metrics: String,
}

impl Operator {
    /// Starts the operator; with `log`, every incarnation appends its log there (at
    /// `RUST_LOG`, else info), else it logs nothing.
    pub async fn start_with(
        bin: &PathBuf,
        kubeconfig: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> Result<Self, BoxError> {
        let port = free_port()?;
        let (level, stderr) = match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
                (level, std::process::Stdio::from(file))
            }
            None => ("warn".to_string(), std::process::Stdio::null()),
        };
        let child = tokio::process::Command::new(bin)
            .args(["run", "--resync", "5s", "--hibernate-timeout", "20s", "--wake-timeout", "20s"])
            .args(extra)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--probe-addr")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--max-backoff")
            .arg("5s")
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", level)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        Ok(Self { child, metrics: format!("127.0.0.1:{port}") })
    }

    /// Requests the operator has sent so far (its own counter), if it answers.
    pub async fn requests(&self) -> Option<f64> {
        let body = http_get(&self.metrics, "/metrics").await?;
        let total = body
            .lines()
            .filter(|l| l.starts_with("cocoon_operator_api_requests_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(total)
    }

    /// SIGKILL: no shutdown, no Lease release, whatever was in flight is cut.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}
