//! Router tests without an API server: events go to the inbox of the actor that owns the object
//! (by controller UID, not by label), re-lists turn vanished objects into deletions, and a
//! burst wakes an actor once.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher::Event;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::inbox::Inbox;
use super::stats::ActorStats;
use super::{ActorHandle, ActorKey, Context, ResourceMsg, Router};
use crate::api::{CocoonSet, CocoonSetSpec};
use crate::k8s::Writer;
use crate::metrics::Metrics;

/// Counts the wake-ups it gets; stands in for a resource actor.
struct Counter;

impl Actor for Counter {
    type Msg = ResourceMsg;
    type State = Arc<Mutex<u32>>;
    type Arguments = Arc<Mutex<u32>>;
    async fn pre_start(
        &self,
        _: ActorRef<ResourceMsg>,
        wakes: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(wakes)
    }
    async fn handle(
        &self,
        _: ActorRef<ResourceMsg>,
        _: ResourceMsg,
        wakes: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        *wakes.lock().unwrap() += 1;
        Ok(())
    }
}

/// Records what the router asks the supervisor to spawn.
struct Spawns;

impl Actor for Spawns {
    type Msg = super::SupervisorMsg;
    type State = Arc<Mutex<Vec<String>>>;
    type Arguments = Arc<Mutex<Vec<String>>>;
    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        seen: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(seen)
    }
    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        seen: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let super::SupervisorMsg::Ensure(key) = msg {
            seen.lock().unwrap().push(key.to_string());
        }
        Ok(())
    }
}

fn context() -> Arc<Context> {
    // A client that is never used: building it opens no connection.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    Arc::new(Context {
        writer: Writer::new(client, None),
        metrics: Metrics::new(),
        resync: Duration::from_secs(15),
        max_backoff: Duration::from_secs(60),
        hibernation: Default::default(),
        table: Arc::new(DashMap::new()),
        synced: Arc::new(AtomicBool::new(true)),
        shutting_down: Default::default(),
    })
}

fn set(name: &str, uid: &str) -> CocoonSet {
    let spec: CocoonSetSpec =
        serde_json::from_value(serde_json::json!({"agent": {"image": "x"}})).unwrap();
    let mut set = CocoonSet::new(name, spec);
    set.metadata.namespace = Some("ns".into());
    set.metadata.uid = Some(uid.into());
    set
}

fn pod(name: &str, owner_uid: &str, label_set: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some(BTreeMap::from([(
                "cocoon.cis/cocoonset".to_string(),
                label_set.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "cocoon.cis/v1alpha1".into(),
                kind: "CocoonSet".into(),
                name: label_set.into(),
                uid: owner_uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn register(ctx: &Context, key: &ActorKey) -> (Arc<Inbox>, Arc<Mutex<u32>>) {
    let wakes = Arc::new(Mutex::new(0));
    let (actor, _) = Actor::spawn(None, Counter, wakes.clone()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    let stats = Arc::new(Mutex::new(ActorStats::default()));
    ctx.table.insert(key.clone(), ActorHandle { actor, inbox: inbox.clone(), stats, restarts: 0 });
    (inbox, wakes)
}

#[tokio::test]
async fn pods_are_routed_by_controller_uid_and_relists_report_vanished_pods() {
    let ctx = context();
    let (targets, _rx) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new(targets);
    let spawns = Arc::new(Mutex::new(Vec::new()));
    let (supervisor, _) = Actor::spawn(None, Spawns, spawns.clone()).await.unwrap();
    router.attach(ctx.clone(), supervisor);
    let key = ActorKey::cocoon_set("ns", "a");
    let (inbox, _wakes) = register(&ctx, &key).await;
    router.cocoon_set_event(Event::Apply(set("a", "uid-a")));
    inbox.drain();

    // A pod labelled for "a" but controlled by another set is not a's; the label lies.
    router.owned_pod_event(Event::Apply(pod("a-0", "uid-a", "a")));
    router.owned_pod_event(Event::Apply(pod("impostor", "uid-other", "a")));
    let pending = inbox.drain();
    assert_eq!(pending.pods.keys().cloned().collect::<Vec<_>>(), vec!["a-0"]);

    // A re-list that no longer shows a-0 delivers its deletion.
    router.owned_pod_event(Event::Init);
    router.owned_pod_event(Event::InitApply(pod("impostor", "uid-other", "a")));
    router.owned_pod_event(Event::InitDone);
    let pending = inbox.drain();
    assert_eq!(pending.pods.get("a-0"), Some(&None), "vanished during the re-list: deleted");
}

#[tokio::test]
async fn a_new_set_asks_for_an_actor_and_a_burst_wakes_a_live_actor_once() {
    let ctx = context();
    let (targets, _rx) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new(targets);
    let spawns = Arc::new(Mutex::new(Vec::new()));
    let (supervisor, _) = Actor::spawn(None, Spawns, spawns.clone()).await.unwrap();
    router.attach(ctx.clone(), supervisor);
    router.cocoon_set_event(Event::Apply(set("fresh", "uid-f")));
    let initial = router.initial_updates(&ActorKey::cocoon_set("ns", "fresh")).expect("cached");
    assert_eq!(initial.len(), 1, "the set itself");

    let key = ActorKey::cocoon_set("ns", "busy");
    let (inbox, wakes) = register(&ctx, &key).await;
    router.cocoon_set_event(Event::Apply(set("busy", "uid-b")));
    for _ in 0..500 {
        router.owned_pod_event(Event::Apply(pod("busy-0", "uid-b", "busy")));
    }
    // Let the actor process everything queued, then stop it, so the count is final.
    let actor = ctx.table.get(&key).map(|h| h.actor.clone()).unwrap();
    actor.drain_and_wait(Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!(*wakes.lock().unwrap(), 1, "one wake-up for the whole burst");
    assert_eq!(inbox.depth(), 2, "the set and one pod entry");
    assert_eq!(*spawns.lock().unwrap(), vec!["cs/ns/fresh".to_string()]);
}
