//! Leader election: two operators, one Lease; only the leader runs actors, and a stopping leader
//! hands over at once by releasing the Lease.

mod common;
mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use cocoon_operator::api::{CocoonSet, CocoonSetPhase};
use cocoon_operator::config::OperatorConfig;
use cocoon_operator::operator::{config_from_kubeconfig, run_until};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use tokio::sync::oneshot;

use common::{cluster, eventually};
use e2e::Env;

const DEADLINE: Duration = Duration::from_secs(90);

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr")
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body
}

struct Candidate {
    metrics: SocketAddr,
    probes: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn candidate(identity: &str, namespace: &str) -> Candidate {
    let (metrics, probes) = (free_addr(), free_addr());
    let config = OperatorConfig {
        leader_elect: true,
        identity: Some(identity.into()),
        lease_namespace: Some(namespace.into()),
        metrics_addr: metrics,
        probe_addr: probes,
        ..OperatorConfig::default()
    };
    let kube_config = config_from_kubeconfig(&cluster().kubeconfig).await.expect("kube config");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = run_until(kube_config, config, shutdown).await {
            panic!("operator ended with an error: {e}");
        }
    });
    Candidate { metrics, probes, stop, task }
}

async fn holder(env: &Env) -> Option<String> {
    let leases = env.ns.api::<Lease>();
    leases
        .get_opt("cocoon-operator-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn wait_holder(env: &Env, who: &str) {
    eventually(DEADLINE, || async {
        match holder(env).await {
            Some(h) if h == who => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{who} never led: {e}"));
}

async fn wait_running(env: &Env, ready: i32) {
    let sets = env.ns.api::<CocoonSet>();
    eventually(DEADLINE, || async {
        let s = sets.get("led").await.map_err(|e| e.to_string())?;
        let st = s.status.unwrap_or_default();
        if st.phase == Some(CocoonSetPhase::Running) && st.ready_agents == ready {
            Ok(())
        } else {
            Err(format!("{:?} {}", st.phase, st.ready_agents))
        }
    })
    .await
    .expect("the leader reconciles the set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_runs_actors_and_a_stopping_leader_hands_over_at_once() {
    let env = Env::without_operator("leader", |_| {}).await;
    let a = candidate("candidate-a", &env.ns.name).await;
    wait_holder(&env, "candidate-a").await;
    let b = candidate("candidate-b", &env.ns.name).await;
    eventually(DEADLINE, || async {
        let ready = http_get(b.probes, "/readyz").await;
        if ready.starts_with("HTTP/1.1 200") { Ok(()) } else { Err(ready) }
    })
    .await
    .expect("a standby is ready");

    env.create_set("led", env.set_spec(0)).await;
    wait_running(&env, 1).await;
    let key = format!("cs/{}/led", env.ns.name);
    assert!(http_get(a.metrics, "/debug/actors").await.contains(&key), "the leader runs the actor");
    assert!(!http_get(b.metrics, "/debug/actors").await.contains(&key), "the standby runs none");
    assert_eq!(holder(&env).await.as_deref(), Some("candidate-a"));

    let _ = a.stop.send(());
    a.task.await.expect("the leader stops cleanly");
    // Released, not expired: the standby takes over within a renew interval or two.
    wait_holder(&env, "candidate-b").await;
    let patch = serde_json::json!({"spec": {"agent": {"replicas": 1}}});
    env.ns
        .api::<CocoonSet>()
        .patch("led", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_running(&env, 2).await;
    let _ = b.stop.send(());
    b.task.await.expect("the second leader stops cleanly");
    assert_eq!(holder(&env).await, None, "the Lease is released on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holder_stopped_renewing_is_taken_over_after_it_expires() {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let env = Env::without_operator("leader-ghost", |_| {}).await;
    // A leader that died holding the Lease: its renewTime never moves again. (Its clock may
    // differ from ours; expiry is judged by how long the record stays unchanged here.)
    let ghost = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("cocoon-operator-leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("ghost".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        }),
    };
    env.ns.api::<Lease>().create(&Default::default(), &ghost).await.unwrap();
    let c = candidate("successor", &env.ns.name).await;
    wait_holder(&env, "successor").await;
    let lease = env.ns.api::<Lease>().get("cocoon-operator-leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    let _ = c.stop.send(());
    c.task.await.expect("stops cleanly");
}
