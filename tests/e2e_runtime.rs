//! The runtime end to end: the actor tree endpoint, surviving a panicking actor, and metrics.

mod common;
mod e2e;

use std::time::Duration;

use cocoon_operator::actors::ActorKey;
use cocoon_operator::actors::tree::ActorNode;
use cocoon_operator::api::{CocoonSet, CocoonSetPhase, HibernationAction};
use kube::api::{Patch, PatchParams};

use common::eventually;
use e2e::{Env, operator};

const DEADLINE: Duration = Duration::from_secs(90);

async fn http_get(url: &str) -> String {
    // A tiny HTTP/1.1 client over a loopback TCP socket: enough for our own endpoints.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) =
        rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect to the operator");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

async fn running(env: &Env, name: &str) {
    let sets = env.ns.api::<CocoonSet>();
    eventually(DEADLINE, || async {
        let s = sets.get(name).await.map_err(|e| e.to_string())?;
        let st = s.status.unwrap_or_default();
        if st.phase == Some(CocoonSetPhase::Running)
            && st.observed_generation == s.metadata.generation
        {
            Ok(())
        } else {
            Err(format!("{:?}", st.phase))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_tree_lists_every_live_actor_as_json_and_text() {
    let env = Env::new("rt-tree").await;
    env.create_set("alpha", env.set_spec(1)).await;
    env.create_set("beta", env.set_spec(0)).await;
    env.create_pod("lonely").await;
    env.create_hibernation("nap", "lonely", HibernationAction::Hibernate).await;
    running(&env, "alpha").await;
    running(&env, "beta").await;
    let op = operator();
    let ns = env.ns.name.clone();
    let json = eventually(DEADLINE, || async {
        let body = http_get(&format!("{}/debug/actors", op.metrics_url)).await;
        let want = [format!("cs/{ns}/alpha"), format!("cs/{ns}/beta"), format!("hib/{ns}/nap")];
        if want.iter().all(|k| body.contains(k.as_str())) { Ok(body) } else { Err(body) }
    })
    .await
    .expect("every actor is listed");
    assert!(json.contains("\"podCount\":2"), "alpha has two pods: {json}");
    assert!(json.contains("\"mailboxDepth\""), "{json}");
    let text = http_get(&format!("{}/debug/actors?format=text", op.metrics_url)).await;
    assert!(text.contains("supervisor [running]"), "{text}");
    assert!(text.contains(&format!("cs/{ns}/alpha [running] phase=Running")), "{text}");
    assert!(text.contains("└── "), "an indented tree: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_restarted_and_the_others_are_unaffected() {
    let env = Env::new("rt-panic").await;
    env.create_set("victim", env.set_spec(0)).await;
    env.create_set("bystander", env.set_spec(0)).await;
    running(&env, "victim").await;
    running(&env, "bystander").await;
    let op = operator();
    let key = ActorKey::cocoon_set(&env.ns.name, "victim");
    assert!(op.probe.inject_panic(&key), "the actor runs");
    let restarted = eventually(DEADLINE, || async {
        let tree = op.probe.tree();
        match tree.cocoon_sets.iter().find(|n| n.key == key.to_string()) {
            Some(n) if n.restarts >= 1 && n.stats.reconciles > 0 => Ok(n.restarts),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the supervisor restarts the actor");
    assert_eq!(restarted, 1);
    // The restarted actor serves new changes; the bystander was never disturbed.
    let sets = env.ns.api::<CocoonSet>();
    let patch = serde_json::json!({"spec": {"agent": {"replicas": 1}}});
    sets.patch("victim", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    running(&env, "victim").await;
    assert_eq!(sets.get("victim").await.unwrap().status.unwrap().ready_agents, 2);
    let bystander = op
        .probe
        .tree()
        .cocoon_sets
        .into_iter()
        .find(|n| n.name == "bystander" && n.namespace == env.ns.name)
        .unwrap();
    assert_eq!(bystander.restarts, 0);
    let metrics = http_get(&format!("{}/metrics", op.metrics_url)).await;
    assert!(
        metrics.contains("cocoon_operator_actor_restarts_total{kind=\"CocoonSet\"}"),
        "{metrics}"
    );
}

/// The set's node in the actor tree, if listed.
fn tree_node(op: &e2e::SharedOperator, ns: &str, name: &str) -> Option<ActorNode> {
    op.probe.tree().cocoon_sets.into_iter().find(|n| n.name == name && n.namespace == ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_sets_actor_rests_and_an_edit_revives_it_with_what_it_knew() {
    let env = Env::new("rt-rest").await;
    env.create_set("calm", env.set_spec(1)).await;
    running(&env, "calm").await;
    let op = operator();
    let ns = env.ns.name.clone();
    // Its first resync with nothing to do puts it to rest (one period: 15 s).
    let rested = eventually(DEADLINE, || async {
        match tree_node(op, &ns, "calm") {
            Some(n) if n.resting => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the quiet set's actor goes to rest");
    assert_eq!(rested.actor_status, "Resting");
    assert_eq!(rested.stats.phase, Some("Running"), "its bookkeeping is kept: {rested:?}");
    let metrics = http_get(&format!("{}/metrics", op.metrics_url)).await;
    assert!(metrics.contains("cocoon_operator_actors_resting{kind=\"CocoonSet\"}"), "{metrics}");
    // An edit revives it; it serves the change.
    let sets = env.ns.api::<CocoonSet>();
    let patch = serde_json::json!({"spec": {"agent": {"replicas": 2}}});
    sets.patch("calm", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    running(&env, "calm").await;
    let st = sets.get("calm").await.unwrap().status.unwrap();
    assert_eq!(st.ready_agents, 3, "{st:?}");
    let revived = tree_node(op, &ns, "calm").expect("listed");
    assert!(revived.stats.reconciles > rested.stats.reconciles, "{revived:?}");
    // Deleted while at rest: revived to let it go, and it leaves the tree.
    eventually(DEADLINE, || async {
        match tree_node(op, &ns, "calm") {
            Some(n) if n.resting => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("at rest again");
    sets.delete("calm", &Default::default()).await.unwrap();
    eventually(DEADLINE, || async {
        let gone = sets.get_opt("calm").await.map_err(|e| e.to_string())?.is_none();
        match (gone, tree_node(op, &ns, "calm")) {
            (true, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the set is released and its actor ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_the_prefix_and_bounded_labels() {
    let env = Env::new("rt-metrics").await;
    env.create_set("m", env.set_spec(0)).await;
    running(&env, "m").await;
    let body = http_get(&format!("{}/metrics", operator().metrics_url)).await;
    for family in [
        "cocoon_operator_reconciles_total",
        "cocoon_operator_reconcile_duration_seconds",
        "cocoon_operator_actors",
        "cocoon_operator_mailbox_depth",
        "cocoon_operator_api_requests_total",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    assert!(!body.contains(&env.ns.name), "no object names in labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_events_become_one_series_and_different_notes_stay_apart() {
    use cocoon_operator::k8s::writer::events::EventPublisher;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event;
    let ns = common::TestNamespace::new("rt-events").await;
    let publisher = EventPublisher::new(ns.client.clone(), "cocoon-operator", Some("test".into()));
    let regarding = ObjectReference {
        api_version: Some("cocoon.cis/v1alpha1".into()),
        kind: Some("CocoonSet".into()),
        name: Some("demo".into()),
        namespace: Some(ns.name.clone()),
        ..Default::default()
    };
    for _ in 0..3 {
        publisher
            .publish(&regarding, false, "PhaseChanged", "Reconcile", "phase Pending -> Scaling")
            .await
            .unwrap();
    }
    publisher
        .publish(&regarding, false, "PhaseChanged", "Reconcile", "phase Scaling -> Running")
        .await
        .unwrap();
    let events = ns.api::<Event>().list(&Default::default()).await.unwrap().items;
    let mut seen: Vec<(String, i32)> = events
        .iter()
        .map(|e| {
            (e.note.clone().unwrap_or_default(), e.series.as_ref().map(|s| s.count).unwrap_or(1))
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("phase Pending -> Scaling".to_string(), 3),
            ("phase Scaling -> Running".to_string(), 1)
        ]
    );
}
