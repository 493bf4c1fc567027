//! Idle means zero API requests: after convergence the operator only holds its watches open.

mod common;
mod e2e;

use std::time::{Duration, Instant};

use cocoon_operator::api::{
    CocoonSet, CocoonSetPhase, Hibernation, HibernationAction, HibernationPhase,
};

use common::eventually;
use e2e::{Env, operator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_operator_makes_no_api_requests_for_thirty_seconds() {
    let env = Env::new("idle").await;
    let mut spec = env.set_spec(2);
    spec.toolboxes =
        vec![serde_json::from_value(serde_json::json!({"name": "box", "image": "img"})).unwrap()];
    env.create_set("quiet", spec).await;
    env.create_pod("solo").await;
    env.create_hibernation("nap", "solo", HibernationAction::Hibernate).await;
    let sets = env.ns.api::<CocoonSet>();
    let hibs = env.ns.api::<Hibernation>();
    eventually(Duration::from_secs(90), || async {
        let s = sets.get("quiet").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let h = hibs.get("nap").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.phase == Some(CocoonSetPhase::Running) && h.phase == Some(HibernationPhase::Hibernated)
        {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", s.phase, h.phase))
        }
    })
    .await
    .expect("converged");
    let probe = &operator().probe;
    // Let the last status writes and their watch echoes settle: wait until the counter holds
    // still for a few seconds (bounded), then measure a full window.
    let mut before = probe.api_requests();
    let settle = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = probe.api_requests();
        if now == before || settle.elapsed() > Duration::from_secs(60) {
            break;
        }
        before = now;
    }
    let start = probe.api_requests();
    // Two resync periods (15 s each) fall into this window: resyncs must not call the API.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let end = probe.api_requests();
    eprintln!("API requests during a 30 s idle window: {}", end - start);
    assert_eq!(end - start, 0, "the operator made API requests while idle");
}
