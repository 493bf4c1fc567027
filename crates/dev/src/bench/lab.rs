//! One column's laboratory at one N: a fresh control plane with an audit log, the CRDs,
//! `deploy/deploy.yaml`'s RBAC, a token kubeconfig per identity, and the simulator.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};

use super::process::{Contender, OperatorProcess};
use super::{BoxError, OPERATOR, SYSTEM_NS, audit};
use crate::devcluster::{Binaries, DevCluster, DevClusterOptions, client_from_kubeconfig};
use crate::sim::{SimConfig, Simulator};
use cocoon_operator::api::{CocoonSet, Hibernation};

/// Everything one column's run at one N needs.
pub(crate) struct Lab {
    pub cluster: DevCluster,
    pub admin: Client,
    pub audit: audit::AuditLog,
    pub apiserver_group: u32,
    pub raw_kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    sim: Option<crate::sim::SimHandle>,
}

async fn token_kubeconfig(
    cluster: &DevCluster,
    admin: &Client,
    account: &str,
) -> Result<PathBuf, BoxError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), SYSTEM_NS);
    if accounts.get_opt(account).await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(account.into()), ..Default::default() },
            ..Default::default()
        };
        accounts.create(&PostParams::default(), &sa).await?;
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(24 * 3600), ..Default::default() }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or("no token in the TokenRequest answer")?;
    let admin_text = std::fs::read_to_string(cluster.kubeconfig_path())?;
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin_text)?;
    let users = config["users"].as_sequence_mut().ok_or("kubeconfig without users")?;
    users[0]["user"] = serde_yaml::from_str(&format!("{{token: {token}}}"))?;
    let path = cluster.work_dir().join(format!("{account}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

async fn bind_cluster_admin(admin: &Client, account: &str) -> Result<(), BoxError> {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(format!("bench-{account}")), ..Default::default() },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(SYSTEM_NS.into()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            &format!("bench-{account}"),
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&binding),
        )
        .await?;
    Ok(())
}

async fn apply_crds(admin: &Client, crds: Vec<CustomResourceDefinition>) -> Result<(), BoxError> {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await?;
        kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::conditions::is_crd_established(),
        )
        .await?;
    }
    Ok(())
}

fn crds_from_files(files: &[PathBuf]) -> Result<Vec<CustomResourceDefinition>, BoxError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("read CRD file {}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            out.push(serde_yaml::from_value(value)?);
        }
    }
    Ok(out)
}

impl Lab {
    /// A fresh control plane with an audit log, the CRDs, `deploy/deploy.yaml`'s RBAC, the
    /// identities' kubeconfigs and the simulator.
    pub async fn start(subject: &Contender, repo: &Path, sim: SimConfig) -> Result<Self, BoxError> {
        let cluster =
            DevCluster::start(DevClusterOptions { audit_log: true, ..Default::default() }).await?;
        let admin = cluster.client().await?;
        let crds = match subject {
            Contender::External { crds, .. } if !crds.is_empty() => crds_from_files(crds)?,
            _ => vec![Hibernation::crd(), CocoonSet::crd()],
        };
        apply_crds(&admin, crds).await?;
        let kubectl = Binaries::locate(None).await?.kubectl;
        let deploy = repo.join("deploy/deploy.yaml");
        let out = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig_path())
            .args(["apply", "-f"])
            .arg(&deploy)
            .output()
            .await?;
        if !out.status.success() {
            return Err(format!(
                "kubectl apply -f {}: {}",
                deploy.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let operator_kubeconfig = token_kubeconfig(&cluster, &admin, "cocoon-operator").await?;
        for account in ["cocoon-sim", "bench-raw"] {
            bind_cluster_admin(&admin, account).await?;
        }
        let sim_kubeconfig = token_kubeconfig(&cluster, &admin, "cocoon-sim").await?;
        let raw_kubeconfig = token_kubeconfig(&cluster, &admin, "bench-raw").await?;
        let sim_client = client_from_kubeconfig(&sim_kubeconfig).await?;
        let sim = Simulator::start(sim_client, sim).await?;
        let audit_path = cluster.audit_log_path().ok_or("no audit log")?.to_path_buf();
        let apiserver_group =
            cluster.component_group("kube-apiserver").ok_or("no kube-apiserver process")?;
        Ok(Self {
            cluster,
            admin,
            audit: audit::AuditLog::new(&audit_path),
            apiserver_group,
            raw_kubeconfig,
            operator_kubeconfig,
            sim: Some(sim),
        })
    }

    pub(crate) async fn namespace(&self, name: &str) -> Result<(), BoxError> {
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(self.admin.clone()).create(&PostParams::default(), &ns).await?;
        Ok(())
    }

    /// Waits until the operator has opened its watches, then until it has been quiet for a
    /// second (its start-up lists are done).
    pub async fn wait_operator_ready(
        &mut self,
        process: &mut OperatorProcess,
    ) -> Result<(), BoxError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("the operator exited: {status}").into());
            }
            self.audit.catch_up()?;
            let watches = audit::open_watches(&self.audit.events, OPERATOR);
            if watches >= 2 {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the operator opened no watches within 60s (see operator.log)".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }

    pub async fn stop(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}
