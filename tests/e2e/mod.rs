//! End-to-end harness: one operator per test binary (it watches every namespace, so two would
//! fight), running against the shared control plane; each test starts its own simulator on a
//! node of its own, so fault injection stays per test.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use cocoon_dev::sim::{SimConfig, SimHandle, Simulator};
use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, CocoonSetSpec, CocoonSetStatus, Hibernation, HibernationAction,
    HibernationPhase, HibernationSpec, HibernationStatus,
};
use cocoon_operator::config::OperatorConfig;
use cocoon_operator::operator::{Operator, OperatorProbe, config_from_kubeconfig};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::common::{TestNamespace, cluster, eventually, install_crds};

/// How long an end-to-end test waits for a state.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Waits until the set reports `phase` for its current generation.
pub async fn wait_set(api: &Api<CocoonSet>, name: &str, phase: CocoonSetPhase) -> CocoonSetStatus {
    eventually(DEADLINE, || async {
        let set = api.get(name).await.map_err(|e| e.to_string())?;
        let status = set.status.unwrap_or_default();
        if status.phase == Some(phase) && status.observed_generation == set.metadata.generation {
            Ok(status)
        } else {
            Err(format!(
                "phase {:?}, ready {}/{}, message {:?}",
                status.phase, status.ready_agents, status.desired_agents, status.message
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name} never reached {phase:?}: {e}"))
}

/// Waits until the Hibernation reports `phase` for its current generation.
pub async fn wait_hib(
    api: &Api<Hibernation>,
    name: &str,
    phase: HibernationPhase,
) -> HibernationStatus {
    eventually(DEADLINE, || async {
        let hib = api.get(name).await.map_err(|e| e.to_string())?;
        let status = hib.status.unwrap_or_default();
        if status.phase == Some(phase) && status.observed_generation == hib.metadata.generation {
            Ok(status)
        } else {
            Err(format!("phase {:?} message {:?}", status.phase, status.message))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name} never reached {phase:?}: {e}"))
}

/// Settings of the shared operator: short timeouts so timeout tests finish quickly.
pub fn operator_config() -> OperatorConfig {
    OperatorConfig {
        hibernate_timeout: Duration::from_secs(12),
        wake_timeout: Duration::from_secs(20),
        max_backoff: Duration::from_secs(5),
        ..OperatorConfig::default()
    }
}

pub struct SharedOperator {
    pub probe: OperatorProbe,
    pub metrics_url: String,
    /// The local registry the operator (and the simulators) use, when it runs with one.
    pub registry: Option<String>,
}

static OPERATOR: OnceLock<Result<SharedOperator, String>> = OnceLock::new();

/// The operator of this test binary, started on first use with the CRDs installed.
pub fn operator() -> &'static SharedOperator {
    shared(false)
}

/// The operator of this test binary with a local OCI registry (built from the distribution
/// project) as its `--registry`; every test of the binary must ask for it this way.
pub fn operator_with_registry() -> &'static SharedOperator {
    shared(true)
}

fn shared(registry: bool) -> &'static SharedOperator {
    match OPERATOR.get_or_init(|| start_operator(registry)) {
        Ok(op) => op,
        Err(e) => panic!("{e}"),
    }
}

fn start_operator(with_registry: bool) -> Result<SharedOperator, String> {
    let kubeconfig = cluster().kubeconfig.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("operator".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(format!("operator runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                cocoon_operator::telemetry::init(false);
                install_crds().await;
                // The registry lives as long as this runtime (the test binary).
                let local = if with_registry {
                    match cocoon_dev::registry::LocalRegistry::start().await {
                        Ok(r) => Some(r),
                        Err(e) => {
                            let _ = tx.send(Err(format!("start the registry: {e}")));
                            return;
                        }
                    }
                } else {
                    None
                };
                let registry = local.as_ref().map(|r| r.address().to_string());
                let mut operator_settings = operator_config();
                operator_settings.registry = registry.clone();
                let config = match config_from_kubeconfig(&kubeconfig).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("kube config: {e}")));
                        return;
                    }
                };
                match Operator::start(config, &operator_settings).await {
                    Ok(op) => {
                        let shared = SharedOperator {
                            probe: op.probe(),
                            metrics_url: format!("http://{}", op.metrics_addr()),
                            registry,
                        };
                        let _ = tx.send(Ok(shared));
                        std::future::pending::<()>().await;
                        drop((op, local));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("start the operator: {e}")));
                    }
                }
            });
        })
        .map_err(|e| format!("spawn the operator thread: {e}"))?;
    let shared =
        rx.recv().map_err(|_| "the operator thread ended without an answer".to_string())??;
    Ok(shared)
}

/// A namespace with the operator running and a simulator serving a node of this test's own.
pub struct Env {
    pub ns: TestNamespace,
    pub node: String,
    pub sim: Option<SimHandle>,
}

impl Env {
    pub async fn new(prefix: &str) -> Self {
        Self::with_sim(prefix, |_| {}).await
    }

    pub async fn with_sim(prefix: &str, tweak: impl FnOnce(&mut SimConfig)) -> Self {
        let _ = operator();
        Self::without_operator(prefix, tweak).await
    }

    /// CRDs, a namespace and a simulator, but no shared operator (tests that run their own).
    pub async fn without_operator(prefix: &str, tweak: impl FnOnce(&mut SimConfig)) -> Self {
        install_crds().await;
        let ns = TestNamespace::new(prefix).await;
        let node = format!("node-{}", ns.name);
        let mut config = SimConfig { node_name: node.clone(), ..SimConfig::default() };
        tweak(&mut config);
        let sim = Simulator::start(ns.client.clone(), config).await.expect("start the simulator");
        Self { ns, node, sim: Some(sim) }
    }

    /// A namespace and a simulator of `dialect` (v0.2 and current keep their snapshots in the
    /// operator's registry), with the operator of a binary that runs it with a registry.
    pub async fn with_dialect(prefix: &str, dialect: cocoon_operator::contract::Dialect) -> Self {
        let registry = operator_with_registry().registry.clone();
        Self::without_operator(prefix, |c| {
            c.dialect = dialect;
            c.registry = registry;
        })
        .await
    }

    /// A CocoonSet spec bound to this test's node.
    pub fn set_spec(&self, replicas: i32) -> CocoonSetSpec {
        let mut spec: CocoonSetSpec = serde_json::from_value(serde_json::json!({
            "agent": {"image": "ubuntu-dev-base", "replicas": replicas}
        }))
        .expect("spec");
        spec.node_name = Some(self.node.clone());
        spec
    }

    pub async fn create_set(&self, name: &str, spec: CocoonSetSpec) -> CocoonSet {
        let set = CocoonSet::new(name, spec);
        self.ns
            .api::<CocoonSet>()
            .create(&PostParams::default(), &set)
            .await
            .expect("create CocoonSet")
    }

    pub async fn create_hibernation(
        &self,
        name: &str,
        pod: &str,
        action: HibernationAction,
    ) -> Hibernation {
        let hib = Hibernation::new(name, HibernationSpec { pod_name: pod.into(), action });
        self.ns
            .api::<Hibernation>()
            .create(&PostParams::default(), &hib)
            .await
            .expect("create Hibernation")
    }

    /// A hand-written VM pod bound to this test's node (like a Deployment's pod would be).
    pub async fn create_pod(&self, name: &str) -> Pod {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(BTreeMap::from([(
                    "cocoon.cis/vm-name".to_string(),
                    format!("vk-{}-{name}", self.ns.name),
                )])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(self.node.clone()),
                containers: vec![Container {
                    name: "vm".into(),
                    image: Some("ubuntu-dev-base".into()),
                    ..Default::default()
                }],
                tolerations: Some(vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        };
        self.ns.api::<Pod>().create(&PostParams::default(), &pod).await.expect("create pod")
    }
}
