//! The RBAC of `deploy/deploy.yaml` is enough, and used: the operator runs with a token of the
//! `cocoon-operator` ServiceAccount (not as an admin) through a CocoonSet's life and a
//! Hibernation round trip, with leader election in `cocoon-system`, and is never forbidden.

mod common;
mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, Hibernation, HibernationAction, HibernationPhase,
};
use cocoon_operator::config::OperatorConfig;
use cocoon_operator::operator::{config_from_kubeconfig, run_until};
use kube::api::{DeleteParams, Patch, PatchParams};

use common::{eventually, kubectl, repo_path, token_kubeconfig};
use e2e::Env;

const DEADLINE: Duration = Duration::from_secs(90);

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_works_with_only_the_permissions_deploy_yaml_grants() {
    let env = Env::without_operator("rbac", |_| {}).await;
    let deploy = repo_path("deploy/deploy.yaml");
    kubectl(&["apply", "-f", &deploy.display().to_string()])
        .await
        .expect_success("apply deploy.yaml");
    let token =
        kubectl(&["create", "token", "cocoon-operator", "-n", "cocoon-system", "--duration=1h"])
            .await
            .expect_success("a ServiceAccount token")
            .stdout;
    let dir = tempfile::tempdir().unwrap();
    let kube_config =
        config_from_kubeconfig(&token_kubeconfig(token.trim(), dir.path())).await.unwrap();
    let metrics = free_addr();
    let config = OperatorConfig {
        leader_elect: true,
        lease_namespace: Some("cocoon-system".into()),
        identity: Some("rbac-test".into()),
        metrics_addr: metrics,
        probe_addr: free_addr(),
        ..OperatorConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run_until(kube_config, config, async move {
        let _ = stopped.await;
    }));

    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(1);
    spec.toolboxes =
        vec![serde_json::from_value(serde_json::json!({"name": "box", "image": "img"})).unwrap()];
    env.create_set("least", spec).await;
    eventually(DEADLINE, || async {
        let st = sets.get("least").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if st.phase == Some(CocoonSetPhase::Running) {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", st.phase, st.message))
        }
    })
    .await
    .expect("the set runs under the ServiceAccount");

    let hibs = env.ns.api::<Hibernation>();
    env.create_hibernation("nap", "least-1", HibernationAction::Hibernate).await;
    let phase_is = |want: HibernationPhase| {
        let hibs = hibs.clone();
        move || {
            let hibs = hibs.clone();
            async move {
                let st =
                    hibs.get("nap").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
                if st.phase == Some(want) {
                    Ok(())
                } else {
                    Err(format!("{:?} {:?}", st.phase, st.message))
                }
            }
        }
    };
    eventually(DEADLINE, phase_is(HibernationPhase::Hibernated)).await.expect("hibernated");
    let wake = serde_json::json!({"spec": {"action": "wake"}});
    hibs.patch("nap", &PatchParams::default(), &Patch::Merge(&wake)).await.unwrap();
    eventually(DEADLINE, phase_is(HibernationPhase::Active)).await.expect("woken");
    hibs.delete("nap", &DeleteParams::default()).await.unwrap();
    sets.delete("least", &DeleteParams::default()).await.unwrap();
    eventually(DEADLINE, || async {
        match sets.get_opt("least").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.map(|s| s.status)))),
        }
    })
    .await
    .expect("teardown completes and the finalizer is released");

    let body = http_get(metrics, "/metrics").await;
    assert!(!body.contains("category=\"forbidden\""), "no request was forbidden:\n{body}");
    assert!(!body.contains("result=\"client_error\""), "no request was refused:\n{body}");
    let events = kubectl(&[
        "get",
        "events",
        "-n",
        &env.ns.name,
        "-o",
        "jsonpath={.items[*].reportingComponent}",
    ])
    .await;
    assert!(events.stdout.contains("cocoon-operator"), "Events are recorded: {}", events.stdout);
    let _ = stop.send(());
    operator.await.unwrap().expect("the operator stops cleanly");
}
