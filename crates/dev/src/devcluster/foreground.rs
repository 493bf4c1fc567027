//! `cocoon-operator cluster`: a dev cluster in the foreground until SIGTERM or Ctrl-C.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use super::{DevCluster, DevClusterOptions, Error, Result};

/// Starts a cluster, writes its admin kubeconfig to `kubeconfig_out`, prints how to use it and
/// runs until SIGTERM or SIGINT; then stops every component and removes the kubeconfig.
pub async fn run_foreground(mut opts: DevClusterOptions, kubeconfig_out: &Path) -> Result<()> {
    let kubeconfig_out = std::path::absolute(kubeconfig_out)
        .map_err(|e| Error::io(format!("resolve {}", kubeconfig_out.display()), e))?;
    opts.kubeconfig_out = Some(kubeconfig_out.clone());
    // Listen before starting: a stop request during start-up must not be lost.
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| Error::io("listen for SIGTERM", e))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("listen for SIGINT", e))?;

    let cluster = tokio::select! {
        started = DevCluster::start(opts) => started?,
        _ = terminate.recv() => return Ok(()),
        _ = interrupt.recv() => return Ok(()),
    };

    let kubeconfig = kubeconfig_out.display();
    println!("control plane ready in {:.1}s", cluster.ready_in().as_secs_f64());
    println!("  API server:  {}", cluster.base_url());
    println!("  kubeconfig:  {kubeconfig}");
    println!("  work dir:    {}", cluster.work_dir().display());
    for (name, log) in cluster.component_logs() {
        println!("  {name:<24} log {}", log.display());
    }
    if let Some(audit) = cluster.audit_log_path() {
        println!("  audit log:   {}", audit.display());
    }
    println!("use it with:");
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  kubectl get namespaces");
    println!("stop with Ctrl-C or SIGTERM (pid {})", std::process::id());

    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    println!("stopping the control plane ...");
    drop(cluster);
    println!("stopped; removed {kubeconfig}");
    Ok(())
}
