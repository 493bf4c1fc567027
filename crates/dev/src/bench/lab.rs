//! One column's laboratory at one N: a fresh control plane with an audit log, the CRDs,
//! `deploy/deploy.yaml`'s RBAC, a token kubeconfig per identity, and the simulator.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::api::Flavour;
use super::process::{Contender, OperatorProcess};
use super::{BoxError, OPERATOR, SYSTEM_NS, audit};
use crate::devcluster::{Binaries, DevCluster, DevClusterOptions, client_from_kubeconfig};
use crate::sim::{SimConfig, Simulator};

/// Everything one column's run at one N needs.
pub(crate) struct Lab {
    pub cluster: DevCluster,
    pub admin: Client,
    pub audit: audit::AuditLog,
    pub apiserver_group: u32,
    pub raw_kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    sim: Option<crate::sim::SimHandle>,
    /// The nodes the placement scenario adds, and what starts them.
    fleet: Vec<crate::sim::SimHandle>,
    sim_client: Client,
    sim_config: SimConfig,
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

async fn kubectl_apply(kubectl: &Path, cluster: &DevCluster, file: &Path) -> Result<(), BoxError> {
    let out = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["apply", "-f"])
        .arg(file)
        .output()
        .await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("kubectl apply -f {}: {stderr}", file.display()).into());
    }
    Ok(())
}

async fn ensure_namespace(admin: &Client, name: &str) -> Result<(), BoxError> {
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        ..Default::default()
    };
    match Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The roles of an operator's own manifests, bound to the identity the bench runs it as
/// (`cocoon-system/cocoon-operator`): every ClusterRole and Role as written, every binding's
/// subjects replaced by that ServiceAccount; everything else (its Deployment, Namespace,
/// ServiceAccount) left out.
pub(crate) fn rbac_for_operator(files: &[PathBuf]) -> Result<String, BoxError> {
    use serde::Deserialize;
    let subject: serde_yaml::Value = serde_yaml::from_str(&format!(
        "[{{kind: ServiceAccount, name: cocoon-operator, namespace: {SYSTEM_NS}}}]"
    ))?;
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("read RBAC file {}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut value = serde_yaml::Value::deserialize(doc)?;
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "ClusterRole" | "Role" => {}
                "ClusterRoleBinding" | "RoleBinding" => value["subjects"] = subject.clone(),
                _ => continue,
            }
            if kind.starts_with("Role") {
                value["metadata"]["namespace"] = SYSTEM_NS.into();
            }
            docs.push(serde_yaml::to_string(&value)?);
        }
    }
    if docs.is_empty() {
        return Err(format!("no ClusterRole or Role in {files:?}").into());
    }
    Ok(docs.join("---\n"))
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
    /// A fresh control plane (with kube-scheduler, as a cluster has) with an audit log, the
    /// CRDs of the operator's API, its RBAC (ours: `deploy/deploy.yaml`'s; another: its own),
    /// the identities' kubeconfigs and the simulator.
    pub async fn start(subject: &Contender, repo: &Path, sim: SimConfig) -> Result<Self, BoxError> {
        let options = DevClusterOptions { audit_log: true, scheduler: true, ..Default::default() };
        let cluster = DevCluster::start(options).await?;
        let admin = cluster.client().await?;
        let crds = match subject {
            Contender::External { crds, .. } if !crds.is_empty() => crds_from_files(crds)?,
            Contender::External { api, .. } => api.default_crds().ok_or_else(|| {
                format!("the {} API needs its CRDs (--external-crds)", api.as_str())
            })?,
            Contender::Ours(_) => Flavour::CocoonCis.default_crds().unwrap_or_default(),
        };
        apply_crds(&admin, crds).await?;
        let kubectl = Binaries::locate(None).await?.kubectl;
        match subject {
            Contender::Ours(_) => {
                kubectl_apply(&kubectl, &cluster, &repo.join("deploy/deploy.yaml")).await?
            }
            Contender::External { rbac, .. } => {
                ensure_namespace(&admin, SYSTEM_NS).await?;
                if rbac.is_empty() {
                    // No role given: the bench states the one it grants.
                    eprintln!("  the external operator runs as cluster-admin (no --external-rbac)");
                    bind_cluster_admin(&admin, "cocoon-operator").await?;
                } else {
                    let path = cluster.work_dir().join("external-rbac.yaml");
                    std::fs::write(&path, rbac_for_operator(rbac)?)?;
                    kubectl_apply(&kubectl, &cluster, &path).await?;
                }
            }
        }
        let operator_kubeconfig = token_kubeconfig(&cluster, &admin, "cocoon-operator").await?;
        for account in ["cocoon-sim", "bench-raw"] {
            bind_cluster_admin(&admin, account).await?;
        }
        let sim_kubeconfig = token_kubeconfig(&cluster, &admin, "cocoon-sim").await?;
        let raw_kubeconfig = token_kubeconfig(&cluster, &admin, "bench-raw").await?;
        let sim_client = client_from_kubeconfig(&sim_kubeconfig).await?;
        let sim_config = sim.clone();
        let sim = Simulator::start(sim_client.clone(), sim).await?;
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
            fleet: Vec::new(),
            sim_client,
            sim_config,
        })
    }

    /// Waits until `who` has sent no request for half a second (at most 10 s): the end of
    /// the work a scenario caused, whatever its pods already show.
    pub async fn quiesce(&mut self, who: &str) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.audit.catch_up()?;
            let seen = self.audit.events.len();
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.audit.catch_up()?;
            let busy = self.audit.events[seen..].iter().any(|e| e.user.username == who);
            if !busy || Instant::now() > deadline {
                return Ok(());
            }
        }
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

    /// The dialect the lab's simulated provider speaks.
    pub fn dialect(&self) -> cocoon_operator::contract::Dialect {
        self.sim_config.dialect
    }

    /// Grows the simulated provider to `total` nodes (the lab's own, then `<node>-2` …), each
    /// like the first; returns every node's name.
    pub async fn grow_fleet(&mut self, total: usize) -> Result<Vec<String>, BoxError> {
        let first = self.sim_config.node_name.clone();
        let mut names = vec![first.clone()];
        names.extend((2..=total).map(|k| format!("{first}-{k}")));
        for name in names.iter().skip(1 + self.fleet.len()) {
            let config = SimConfig { node_name: name.clone(), ..self.sim_config.clone() };
            self.fleet.push(Simulator::start(self.sim_client.clone(), config).await?);
        }
        // A new node is born with the not-ready NoSchedule taint; the node lifecycle
        // controller lifts it once the node reports Ready. Only then can the scheduler use it.
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        for name in &names {
            loop {
                let node = nodes.get(name).await?;
                let tainted =
                    node.spec.and_then(|s| s.taints).unwrap_or_default().iter().any(|t| {
                        t.key == "node.kubernetes.io/not-ready" && t.effect == "NoSchedule"
                    });
                if !tainted {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("node {name} still not schedulable after 60 s").into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(names)
    }

    pub async fn stop(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
        for sim in self.fleet.drain(..) {
            sim.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_own_roles_are_bound_to_the_identity_the_bench_runs_it_as() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: op, namespace: kube-system}\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: op}\n\
             rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
             metadata: {name: op}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: op}\n\
             subjects: [{kind: ServiceAccount, name: op, namespace: kube-system}]\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op}\n",
        )
        .unwrap();
        let text = rbac_for_operator(&[file]).unwrap();
        let docs: Vec<serde_yaml::Value> =
            text.split("---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["ClusterRole", "ClusterRoleBinding"], "no Deployment, no SA");
        assert_eq!(docs[0]["rules"][0]["verbs"][0], "get", "the role as written");
        let subject = &docs[1]["subjects"][0];
        assert_eq!(subject["name"], "cocoon-operator");
        assert_eq!(subject["namespace"], SYSTEM_NS);
        let none = dir.path().join("none.yaml");
        std::fs::write(&none, "kind: Deployment\n").unwrap();
        assert!(rbac_for_operator(&[none]).is_err(), "a file with no role is an error");
    }
}
