//! `DevCluster`: start-up in dependency order, readiness checks with a deadline, teardown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use tempfile::TempDir;
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;

use super::binaries::Binaries;
use super::certs::Pki;
use super::components::{self, AUDIT_POLICY, Audit, Ports};
use super::kubeconfig::{self, client_from_kubeconfig};
use super::process::{Supervised, free_ports};
use super::workdir;
use super::{DevClusterOptions, Error, Result};

/// Lines of a component's log quoted in a start-up error.
const LOG_TAIL_LINES: usize = 40;
/// Time one readiness probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// A running local control plane. Dropping it stops every component and removes its files.
#[derive(Debug)]
pub struct DevCluster {
    base_url: String,
    kubeconfig: PathBuf,
    kubeconfig_out: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    work_dir: PathBuf,
    ready_in: Duration,
    /// In start order (etcd, kube-apiserver, kube-controller-manager); stopped in reverse.
    components: Vec<Supervised>,
    /// How the API server was started, to restart it the same way (etcd kept).
    apiserver: (PathBuf, Vec<std::ffi::OsString>),
    temp_dir: Option<TempDir>,
    /// Delete the temp dir and the kubeconfig copy if this process dies without dropping us.
    janitors: Vec<Supervised>,
}

impl DevCluster {
    /// Starts etcd, kube-apiserver and, if asked, kube-controller-manager, and waits until the
    /// API server is ready, the `default` namespace exists and (with the controller manager)
    /// its `default` ServiceAccount exists.
    pub async fn start(opts: DevClusterOptions) -> Result<Self> {
        let binaries = Binaries::locate(opts.binaries_dir.as_deref()).await?;
        let began = Instant::now();
        let deadline = began + opts.ready_timeout;

        let (work_dir, temp_dir) = workdir::create(opts.work_dir.as_deref())?;
        let mut janitors = Vec::new();
        if let Some(dir) = &temp_dir {
            janitors.push(Supervised::janitor(&[dir.path()])?);
        }

        let pki = Pki::write(&work_dir.join("pki"))?;
        let [etcd_client, etcd_peer, apiserver] = free_ports::<3>()?;
        let ports = Ports { etcd_client, etcd_peer, apiserver };
        let base_url = format!("https://127.0.0.1:{apiserver}");
        let audit = if opts.audit_log {
            let audit = Audit {
                policy: work_dir.join("audit-policy.yaml"),
                log: work_dir.join("audit.log"),
            };
            std::fs::write(&audit.policy, AUDIT_POLICY)
                .map_err(|e| Error::io(format!("write {}", audit.policy.display()), e))?;
            Some(audit)
        } else {
            None
        };

        let admin_path = work_dir.join("kubeconfig");
        let admin = kubeconfig::write_for(
            &admin_path,
            &base_url,
            &pki.ca_cert,
            &pki.admin_cert,
            &pki.admin_key,
        )?;

        // From here on, an early return drops `cluster`, which stops what was started.
        let mut cluster = Self {
            base_url,
            kubeconfig: admin_path,
            kubeconfig_out: None,
            audit_log: audit.as_ref().map(|a| a.log.clone()),
            work_dir: work_dir.clone(),
            ready_in: Duration::ZERO,
            components: Vec::new(),
            apiserver: (PathBuf::new(), Vec::new()),
            temp_dir,
            janitors,
        };

        let etcd_data = work_dir.join("etcd");
        cluster.spawn("etcd", &binaries.etcd, &components::etcd_args(&etcd_data, ports))?;
        // The API server retries etcd until it answers, so both start at once.
        let apiserver_args =
            components::apiserver_args(&pki, ports, opts.controller_manager, audit.as_ref());
        cluster.spawn("kube-apiserver", &binaries.kube_apiserver, &apiserver_args)?;
        cluster.apiserver = (binaries.kube_apiserver.clone(), apiserver_args.clone());

        let client = client_from_kubeconfig(&cluster.kubeconfig).await?;
        cluster
            .wait_until("API server /readyz", "kube-apiserver", deadline, || async {
                let request = axum::http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                client.request_text(request).await.map(drop).map_err(|e| e.to_string())
            })
            .await?;
        cluster
            .wait_until("namespace default", "kube-apiserver", deadline, || async {
                let namespaces = Api::<Namespace>::all(client.clone());
                namespaces.get("default").await.map(drop).map_err(|e| e.to_string())
            })
            .await?;

        if opts.controller_manager {
            let path = work_dir.join("controller-manager.kubeconfig");
            kubeconfig::write_for(
                &path,
                &cluster.base_url,
                &pki.ca_cert,
                &pki.controller_manager_cert,
                &pki.controller_manager_key,
            )?;
            // Started once the API server is ready: its own start-up then never races the API
            // server's bootstrap (it exits if the server stays unhealthy for a while).
            cluster.spawn(
                "kube-controller-manager",
                &binaries.kube_controller_manager,
                &components::controller_manager_args(&path, opts.scheduler),
            )?;
            cluster
                .wait_until(
                    "ServiceAccount default/default",
                    "kube-controller-manager",
                    deadline,
                    || async {
                        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "default");
                        accounts.get("default").await.map(drop).map_err(|e| e.to_string())
                    },
                )
                .await?;
        }

        if opts.scheduler {
            let program = binaries.kube_scheduler.clone().ok_or_else(|| {
                Error::Binaries(
                    "no kube-scheduler beside kube-apiserver (tests/control-plane/build.sh \
                     builds it)"
                        .to_string(),
                )
            })?;
            let path = work_dir.join("scheduler.kubeconfig");
            kubeconfig::write_for(
                &path,
                &cluster.base_url,
                &pki.ca_cert,
                &pki.scheduler_cert,
                &pki.scheduler_key,
            )?;
            cluster.spawn("kube-scheduler", &program, &components::scheduler_args(&path))?;
        }

        if let Some(out) = &opts.kubeconfig_out {
            kubeconfig::write(out, &admin)?;
            cluster.kubeconfig_out = Some(out.clone());
            // Only now: a file that was there before start belongs to someone else.
            cluster.janitors.push(Supervised::janitor(&[out.as_path()])?);
        }
        cluster.ready_in = began.elapsed();
        Ok(cluster)
    }

    /// Stops kube-apiserver and starts it again on the same port with the same etcd (every
    /// object kept), then waits until it is ready: what an API server upgrade or crash looks
    /// like to the operator (its watches break and resume).
    pub async fn restart_apiserver(&mut self, timeout: Duration) -> Result<()> {
        let Some(at) = self.components.iter().position(|c| c.name() == "kube-apiserver") else {
            return Ok(());
        };
        self.components[at].stop();
        let (program, args) = self.apiserver.clone();
        let log = self.work_dir.join("kube-apiserver.log");
        self.components[at] = Supervised::spawn("kube-apiserver", &program, &args, &log)?;
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        self.wait_until(
            "API server /readyz",
            "kube-apiserver",
            Instant::now() + timeout,
            || async {
                let request = axum::http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                client.request_text(request).await.map(drop).map_err(|e| e.to_string())
            },
        )
        .await
    }

    /// The admin kubeconfig (user in `system:masters`) inside the work dir.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new admin client for this cluster, bound to the calling tokio runtime.
    pub async fn client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The audit log, when [`DevClusterOptions::audit_log`] was set.
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// Directory with the PKI, kubeconfigs, component logs and etcd data.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The process group of a running component (`etcd`, `kube-apiserver`, ...): its wrapper's
    /// pid.
    pub fn component_group(&self, name: &str) -> Option<u32> {
        self.components.iter().find(|c| c.name() == name).and_then(Supervised::pid)
    }

    /// Log file of each running component, by component name.
    pub fn component_logs(&self) -> Vec<(&'static str, &Path)> {
        self.components.iter().filter_map(|c| Some((c.name(), c.log_path()?))).collect()
    }

    /// Time from starting the first component to the cluster being ready.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    fn spawn(
        &mut self,
        name: &'static str,
        program: &Path,
        args: &[std::ffi::OsString],
    ) -> Result<()> {
        let log = self.work_dir.join(format!("{name}.log"));
        self.components.push(Supervised::spawn(name, program, args, &log)?);
        Ok(())
    }

    /// Polls `probe` until it succeeds, failing fast when a component exits and with the tail of
    /// `blame`'s log when `deadline` passes.
    async fn wait_until<F, Fut>(
        &mut self,
        step: &'static str,
        blame: &'static str,
        deadline: Instant,
        mut probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let began = Instant::now();
        loop {
            for component in &mut self.components {
                if let Some(status) = component.exited() {
                    return Err(Error::Exited {
                        component: component.name(),
                        status,
                        log: log_name(component),
                        tail: component.log_tail(LOG_TAIL_LINES),
                    });
                }
            }
            // Without a subscriber: kube logs every failed request at ERROR, and failures are
            // expected here until the server is up; the last one goes into our error instead.
            let attempt = probe().with_subscriber(NoSubscriber::default());
            let last_error = match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                let component = self.components.iter().find(|c| c.name() == blame);
                return Err(Error::NotReady {
                    step,
                    waited: began.elapsed(),
                    last_error,
                    component: blame,
                    log: component.map(log_name).unwrap_or_default(),
                    tail: component.map(|c| c.log_tail(LOG_TAIL_LINES)).unwrap_or_default(),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

fn log_name(component: &Supervised) -> String {
    component.log_path().map(|p| p.display().to_string()).unwrap_or_default()
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        while let Some(mut component) = self.components.pop() {
            component.stop();
        }
        if let Some(out) = self.kubeconfig_out.take() {
            let _ = std::fs::remove_file(out);
        }
        drop(self.temp_dir.take());
        for mut janitor in self.janitors.drain(..) {
            janitor.stop();
        }
    }
}
