//! CocoonSet end to end: real control plane, the operator and the vk-cocoon simulator.

mod common;
mod e2e;

use std::sync::{Arc, Mutex};

use cocoon_operator::api::{CocoonSet, CocoonSetPhase, HibernationAction, ToolboxSpec, VmPhase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use common::eventually;
use e2e::{DEADLINE, Env, wait_set as wait_phase};

async fn pod_names(api: &Api<Pod>) -> Vec<String> {
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

/// Records the order in which pods get a deletionTimestamp. Returns once the watch has listed,
/// so that no deletion that follows the call is missed.
async fn record_terminations(
    api: Api<Pod>,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let out = seen.clone();
    let (listed, ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut listed = Some(listed);
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(Ok(event)) = stream.next().await {
            match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::InitApply(pod)
                | watcher::Event::Apply(pod)
                | watcher::Event::Delete(pod)
                    if pod.metadata.deletion_timestamp.is_some() =>
                {
                    let mut seen = out.lock().unwrap();
                    if !seen.contains(&pod.name_any()) {
                        seen.push(pod.name_any());
                    }
                }
                _ => {}
            }
        }
    });
    ready.await.expect("the termination watch lists");
    (seen, task)
}

fn ann(pod: &Pod, key: &str) -> Option<String> {
    pod.annotations().get(key).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_comes_first_and_sub_agents_fork_from_it_once_it_is_running_and_ready() {
    let env = Env::new("cs-fork").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("demo", env.set_spec(2)).await;
    let status = wait_phase(&sets, "demo", CocoonSetPhase::Running).await;
    assert_eq!((status.ready_agents, status.desired_agents), (3, 3));
    let pods = env.ns.api::<Pod>();
    let main = pods.get("demo-0").await.unwrap();
    let main_vm = format!("vk-{}-demo-0", env.ns.name);
    assert_eq!(ann(&main, "cocoon.cis/vm-name").as_deref(), Some(main_vm.as_str()));
    let main_ready_at = main
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.clone())
        .expect("main Ready time")
        .0;
    for slot in 1..=2 {
        let sub = pods.get(&format!("demo-{slot}")).await.unwrap();
        assert_eq!(ann(&sub, "cocoon.cis/fork-from").as_deref(), Some(main_vm.as_str()));
        let vm = ann(&sub, "cocoon.cis/vm-name").expect("its VM name");
        assert_eq!(
            ann(&sub, "cocoon.cis/snapshot-from"),
            Some(format!("{vm}-fork")),
            "cloned from a fork snapshot of the running main, as vk-cocoon names it"
        );
        let created = sub.metadata.creation_timestamp.clone().unwrap().0;
        assert!(
            created >= main_ready_at,
            "sub-agent {slot} created at {created} before the main was ready at {main_ready_at}"
        );
        assert_eq!(sub.labels().get("cocoon.cis/role").map(String::as_str), Some("sub-agent"));
    }
    assert_eq!(status.agents[1].forked_from.as_deref(), Some(main_vm.as_str()));
    assert!(status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_up_and_down_keeps_stable_names_and_removes_the_highest_slot_first() {
    let env = Env::new("cs-scale").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("scale", env.set_spec(1)).await;
    wait_phase(&sets, "scale", CocoonSetPhase::Running).await;
    let first_uid = env.ns.api::<Pod>().get("scale-1").await.unwrap().uid();
    let patch = |replicas: i32| serde_json::json!({"spec": {"agent": {"replicas": replicas}}});
    sets.patch("scale", &PatchParams::default(), &Patch::Merge(&patch(4))).await.unwrap();
    wait_phase(&sets, "scale", CocoonSetPhase::Running).await;
    assert_eq!(
        pod_names(&env.ns.api()).await,
        vec!["scale-0", "scale-1", "scale-2", "scale-3", "scale-4"]
    );
    assert_eq!(
        env.ns.api::<Pod>().get("scale-1").await.unwrap().uid(),
        first_uid,
        "existing VMs are kept"
    );

    let (order, task) = record_terminations(env.ns.api()).await;
    sets.patch("scale", &PatchParams::default(), &Patch::Merge(&patch(1))).await.unwrap();
    let status = wait_phase(&sets, "scale", CocoonSetPhase::Running).await;
    eventually(DEADLINE, || async {
        let names = pod_names(&env.ns.api()).await;
        if names == ["scale-0", "scale-1"] { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await
    .expect("scaled down to two pods");
    task.abort();
    assert_eq!(*order.lock().unwrap(), vec!["scale-4", "scale-3", "scale-2"]);
    assert_eq!((status.ready_agents, status.desired_agents), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolboxes_are_created_when_listed_and_deleted_when_removed() {
    let env = Env::new("cs-toolbox").await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(0);
    spec.toolboxes = vec![
        serde_json::from_value::<ToolboxSpec>(
            serde_json::json!({"name": "browser", "image": "chromium"}),
        )
        .unwrap(),
        serde_json::from_value::<ToolboxSpec>(
            serde_json::json!({"name": "phone", "os": "android", "image": "android-14"}),
        )
        .unwrap(),
    ];
    env.create_set("tools", spec).await;
    let status = wait_phase(&sets, "tools", CocoonSetPhase::Running).await;
    assert_eq!(pod_names(&env.ns.api()).await, vec!["tools-0", "tools-browser", "tools-phone"]);
    let conn: Vec<String> =
        status.toolboxes.iter().map(|t| format!("{}={:?}", t.name, t.conn_type)).collect();
    assert_eq!(conn, vec!["browser=Ssh", "phone=Adb"]);
    let browser = env.ns.api::<Pod>().get("tools-browser").await.unwrap();
    assert_eq!(
        ann(&browser, "cocoon.cis/vm-name"),
        Some(format!("vk-{}-tools-browser", env.ns.name))
    );
    let patch =
        serde_json::json!({"spec": {"toolboxes": [{"name": "browser", "image": "chromium"}]}});
    sets.patch("tools", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually(DEADLINE, || async {
        let names = pod_names(&env.ns.api()).await;
        if names == ["tools-0", "tools-browser"] { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await
    .expect("the removed toolbox's pod is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_hibernates_the_set_and_resume_leaves_a_hibernation_held_pod_alone() {
    let env = Env::new("cs-suspend").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("sus", env.set_spec(2)).await;
    wait_phase(&sets, "sus", CocoonSetPhase::Running).await;
    env.create_hibernation("keep-2", "sus-2", HibernationAction::Hibernate).await;
    eventually(DEADLINE, || async {
        let pod = env.ns.api::<Pod>().get("sus-2").await.map_err(|e| e.to_string())?;
        let by = ann(&pod, "cocoon.cis/hibernated-by");
        if by.as_deref() == Some("keep-2") { Ok(()) } else { Err(format!("hibernated-by {by:?}")) }
    })
    .await
    .expect("the Hibernation marks its pod");

    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    sets.patch("sus", &PatchParams::default(), &Patch::Merge(&suspend(true))).await.unwrap();
    let status = wait_phase(&sets, "sus", CocoonSetPhase::Suspended).await;
    assert_eq!(status.ready_agents, 0);
    let snapshots = env
        .ns
        .api::<k8s_openapi::api::core::v1::ConfigMap>()
        .get("cocoon-vm-snapshots")
        .await
        .unwrap();
    assert_eq!(snapshots.data.unwrap_or_default().len(), 3, "every VM has a snapshot entry");

    sets.patch("sus", &PatchParams::default(), &Patch::Merge(&suspend(false))).await.unwrap();
    let status = wait_phase(&sets, "sus", CocoonSetPhase::Running).await;
    assert_eq!(status.ready_agents, 2, "the held pod stays hibernated");
    let held = env.ns.api::<Pod>().get("sus-2").await.unwrap();
    assert_eq!(ann(&held, "cocoon.cis/hibernate").as_deref(), Some("true"));
    assert_eq!(status.agents[2].phase, VmPhase::Hibernated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_behind_our_back_or_failed_is_recreated_under_the_same_name() {
    let env = Env::new("cs-recreate").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("heal", env.set_spec(1)).await;
    wait_phase(&sets, "heal", CocoonSetPhase::Running).await;
    let pods = env.ns.api::<Pod>();
    let old = pods.get("heal-1").await.unwrap().uid();
    pods.delete("heal-1", &DeleteParams::default()).await.unwrap();
    eventually(DEADLINE, || async {
        let pod = pods.get("heal-1").await.map_err(|e| e.to_string())?;
        let serving = pod.status.as_ref().and_then(|s| s.phase.clone()) == Some("Running".into())
            && pod.metadata.deletion_timestamp.is_none();
        if pod.uid() != old && serving { Ok(()) } else { Err("not yet replaced".to_string()) }
    })
    .await
    .expect("deleted pod recreated");

    let failed = pods.get("heal-1").await.unwrap().uid();
    let status = serde_json::json!({"status": {"phase": "Failed", "reason": "ProviderFailed", "message": "VM crashed"}});
    pods.patch_status("heal-1", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    eventually(DEADLINE, || async {
        let pod = pods.get("heal-1").await.map_err(|e| e.to_string())?;
        let running = pod.status.as_ref().and_then(|s| s.phase.clone()) == Some("Running".into());
        if pod.uid() != failed && running {
            Ok(())
        } else {
            Err("failed pod not yet replaced".to_string())
        }
    })
    .await
    .expect("failed pod recreated");
    wait_phase(&sets, "heal", CocoonSetPhase::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_set_tears_down_sub_agents_and_toolboxes_before_the_main() {
    let env = Env::new("cs-teardown").await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(2);
    spec.toolboxes =
        vec![serde_json::from_value(serde_json::json!({"name": "box", "image": "img"})).unwrap()];
    env.create_set("gone", spec).await;
    wait_phase(&sets, "gone", CocoonSetPhase::Running).await;
    let set = sets.get("gone").await.unwrap();
    assert!(set.finalizers().iter().any(|f| f == "cocoon.cis/teardown"));
    let (order, task) = record_terminations(env.ns.api()).await;
    sets.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually(DEADLINE, || async {
        match sets.get_opt("gone").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("set still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("the set is deleted after its pods");
    assert!(pod_names(&env.ns.api()).await.is_empty());
    task.abort();
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order.last().map(String::as_str), Some("gone-0"), "the main goes last: {order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_with_a_static_windows_toolbox_is_reported_not_rejected() {
    let env = Env::new("cs-seed").await;
    let yaml = common::seed_cocoonset_on(&env.ns.name, &env.node);
    common::kubectl_with_stdin(&["apply", "-f", "-"], &yaml)
        .await
        .expect_success("apply the seed CocoonSet");
    let sets = env.ns.api::<CocoonSet>();
    let status = wait_phase(&sets, "demo", CocoonSetPhase::Running).await;
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("toolbox windows is static but has no staticIP")
    );
    // The toolbox's phase is progress, written in the next status batch: wait for it.
    let toolbox = eventually(DEADLINE, || async {
        let set = sets.get("demo").await.map_err(|e| e.to_string())?;
        let toolbox = set.status.unwrap_or_default().toolboxes.into_iter().next();
        match toolbox {
            Some(t) if t.phase == VmPhase::ProviderFailed => Ok(t),
            other => Err(format!("toolbox status {other:?}")),
        }
    })
    .await
    .expect("the static toolbox without an IP is reported ProviderFailed");
    assert_eq!(toolbox.conn_type, cocoon_operator::api::ConnType::Rdp);
    let limits = env.ns.api::<Pod>().get("demo-0").await.unwrap().spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits["cpu"].0, "2");
    assert_eq!(limits["memory"].0, "4Gi");
    let events = common::event_reasons(&env.ns.name, None, false).await;
    assert!(events.contains("NeedsAttention"), "a Warning Event names the problem: {}", events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_pod_fails_the_set_with_a_clear_message_and_recovers_once_fixed() {
    let env = Env::new("cs-rejected").await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(0);
    spec.agent.service_account_name = Some("agents".into());
    env.create_set("strict", spec).await;
    let status = wait_phase(&sets, "strict", CocoonSetPhase::Failed).await;
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("cannot create pod strict-0") && message.contains("agents"),
        "{message}"
    );
    let events = common::event_reasons(&env.ns.name, Some("strict"), true).await;
    assert!(events.contains("CreateRejected"), "{}", events);
    // The ServiceAccount appears: the backoff retry creates the pod, and the set recovers.
    let account = k8s_openapi::api::core::v1::ServiceAccount {
        metadata: kube::api::ObjectMeta { name: Some("agents".into()), ..Default::default() },
        ..Default::default()
    };
    env.ns
        .api::<k8s_openapi::api::core::v1::ServiceAccount>()
        .create(&Default::default(), &account)
        .await
        .unwrap();
    let status = wait_phase(&sets, "strict", CocoonSetPhase::Running).await;
    assert_eq!(status.message, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_name_held_by_a_foreign_pod_is_waited_on_never_taken_as_done() {
    let env = Env::new("cs-collide").await;
    // Someone else's pod already has the name slot 1 will need.
    env.create_pod("coll-1").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("coll", env.set_spec(1)).await;
    let status = eventually(DEADLINE, || async {
        let st = sets.get("coll").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let msg = st.message.clone().unwrap_or_default();
        if msg.contains("pod coll-1 exists but is not owned by this set") {
            Ok(st)
        } else {
            Err(format!("{:?} {msg}", st.phase))
        }
    })
    .await
    .expect("the conflict is reported");
    assert_ne!(status.phase, Some(CocoonSetPhase::Running), "a missing slot is not Running");
    let events = common::event_reasons(&env.ns.name, Some("coll"), true).await;
    assert!(events.contains("NameConflict"), "{}", events);
    // The foreign pod goes; the set takes the name for its own sub-agent.
    env.ns.api::<Pod>().delete("coll-1", &DeleteParams::default()).await.unwrap();
    let status = wait_phase(&sets, "coll", CocoonSetPhase::Running).await;
    assert_eq!(status.ready_agents, 2);
    let pod = env.ns.api::<Pod>().get("coll-1").await.unwrap();
    assert_eq!(pod.labels().get("cocoon.cis/role").map(String::as_str), Some("sub-agent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_and_kubectl_wait_drive_a_set() {
    let env = Env::new("cs-kubectl-scale").await;
    let sets = env.ns.api::<CocoonSet>();
    env.create_set("sc", env.set_spec(0)).await;
    let ns = env.ns.name.as_str();
    common::kubectl(&["wait", "--for=condition=Ready", "cocoonset/sc", "-n", ns, "--timeout=90s"])
        .await
        .expect_success("kubectl wait for Ready");
    common::kubectl(&["scale", "cocoonset", "sc", "--replicas=2", "-n", ns])
        .await
        .expect_success("kubectl scale");
    let status = wait_phase(&sets, "sc", CocoonSetPhase::Running).await;
    assert_eq!((status.ready_agents, status.desired_agents, status.replicas), (3, 3, 2));
    let selector = status.selector.clone().unwrap_or_default();
    assert_eq!(selector, "cocoon.cis/cocoonset=sc,cocoon.cis/role=sub-agent");
    // The scale subresource reads back what an autoscaler would see.
    let scale = common::kubectl(&[
        "get",
        "--raw",
        &format!("/apis/cocoon.cis/v1alpha1/namespaces/{ns}/cocoonsets/sc/scale"),
    ])
    .await
    .expect_success("get the scale subresource");
    let scale: serde_json::Value = serde_json::from_str(&scale.stdout).expect("scale JSON");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], selector.as_str());
    let patch = serde_json::json!({"spec": {"suspend": true}});
    sets.patch("sc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    common::kubectl(&[
        "wait",
        "--for=condition=Suspended",
        "cocoonset/sc",
        "-n",
        ns,
        "--timeout=90s",
    ])
    .await
    .expect_success("kubectl wait for Suspended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_that_fell_back_to_the_image_is_reported_and_with_recreate_forked_anew() {
    // The provider's first fork fails: that sub-agent boots from the image instead.
    // A wake that takes over a second: pod times have whole seconds, and the main's new Ready
    // time must be later than the sub-agent's creation.
    let env = Env::with_sim("cs-fallback", |c| {
        c.fork_failures = 1;
        c.wake_delay = std::time::Duration::from_millis(1100);
    })
    .await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(1);
    spec.agent.on_fork_fallback = cocoon_operator::api::ForkFallbackPolicy::Recreate;
    env.create_set("fb", spec).await;
    let main_vm = format!("vk-{}-fb-0", env.ns.name);
    let fell = |s: &cocoon_operator::api::CocoonSetStatus| {
        s.conditions.iter().any(|c| c.type_ == "ForkFellBack" && c.status == "True")
    };
    let status = eventually(DEADLINE, || async {
        let status = sets.get("fb").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if fell(&status) { Ok(status) } else { Err(format!("{:?}", status.conditions)) }
    })
    .await
    .expect("the fallback is reported");
    assert_eq!(status.agents[1].forked_from, None, "not forked, whatever was asked");
    assert_eq!(status.agents[1].source.as_deref(), Some("image:ubuntu-dev-base"));
    let events = common::event_reasons(&env.ns.name, Some("fb"), true).await;
    assert!(events.contains("ForkFellBack"), "a Warning Event: {events}");
    let pods = env.ns.api::<Pod>();
    let first_uid = pods.get("fb-1").await.unwrap().metadata.uid;

    // The main served throughout: nothing is retried. Once it serves again (suspend, resume),
    // the sub-agent is recreated without a snapshot and forks.
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    sets.patch("fb", &PatchParams::default(), &Patch::Merge(&suspend(true))).await.unwrap();
    wait_phase(&sets, "fb", CocoonSetPhase::Suspended).await;
    sets.patch("fb", &PatchParams::default(), &Patch::Merge(&suspend(false))).await.unwrap();
    let status = eventually(DEADLINE, || async {
        let status = sets.get("fb").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let forked = status.agents.get(1).and_then(|a| a.forked_from.clone());
        if forked.as_deref() == Some(main_vm.as_str()) && !fell(&status) {
            Ok(status)
        } else {
            let set = sets.get("fb").await.map_err(|e| e.to_string())?;
            let sub = pods.get("fb-1").await.map_err(|e| e.to_string())?;
            let main = pods.get("fb-0").await.map_err(|e| e.to_string())?;
            Err(format!(
                "policy {:?}, conditions {:?}, sub created {:?}, main conditions {:?}, agents {:?}",
                set.spec.agent.on_fork_fallback,
                status.conditions,
                sub.metadata.creation_timestamp,
                main.status.and_then(|s| s.conditions),
                status.agents
            ))
        }
    })
    .await
    .expect("the sub-agent is forked anew");
    assert_eq!(status.agents[1].source, Some(format!("fork:{main_vm}")));
    assert_ne!(pods.get("fb-1").await.unwrap().metadata.uid, first_uid, "a new pod");
    wait_phase(&sets, "fb", CocoonSetPhase::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_set_suspends_itself_and_activity_or_the_users_resume_wakes_it() {
    let env = Env::new("cs-idle-suspend").await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(1);
    spec.idle = Some(cocoon_operator::api::IdleSpec { after: "3s".into() });
    env.create_set("lazy", spec).await;
    wait_phase(&sets, "lazy", CocoonSetPhase::Running).await;
    let suspended_reason = |s: &cocoon_operator::api::CocoonSetStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Suspended" && c.status == "True")
            .map(|c| c.reason.clone())
    };

    // Nobody uses it: it suspends itself at the deadline (a timer: no event arrives).
    let status = wait_phase(&sets, "lazy", CocoonSetPhase::Suspended).await;
    assert_eq!(suspended_reason(&status).as_deref(), Some("Idle"));
    assert!(status.idle.as_ref().and_then(|i| i.suspended_since.as_ref()).is_some());
    assert!(!sets.get("lazy").await.unwrap().spec.suspend, "the user's spec is not touched");
    let events = common::event_reasons(&env.ns.name, Some("lazy"), false).await;
    assert!(events.contains("IdleSuspended"), "{events}");

    // Activity (kubectl cocoon touch writes the stamp) resumes it.
    let touch = tokio::process::Command::new(common::workspace_binary("kubectl-cocoon"))
        .args(["touch", "lazy", "-n", &env.ns.name])
        .arg(format!("--kubeconfig={}", common::cluster().kubeconfig.display()))
        .output()
        .await
        .unwrap();
    assert!(touch.status.success(), "{}", String::from_utf8_lossy(&touch.stderr));
    eventually(DEADLINE, || async {
        let set = sets.get("lazy").await.map_err(|e| e.to_string())?;
        let status = set.status.clone().unwrap_or_default();
        if status.phase == Some(CocoonSetPhase::Running) {
            Ok(())
        } else {
            Err(format!(
                "phase {:?} idle {:?} annotations {:?} conditions {:?}",
                status.phase, status.idle, set.metadata.annotations, status.conditions
            ))
        }
    })
    .await
    .expect("touch resumes the idle set");
    let events = common::event_reasons(&env.ns.name, Some("lazy"), false).await;
    assert!(events.contains("IdleResumed"), "{events}");

    // The user's suspend wins and is the user's: reason Suspended, not Idle.
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    sets.patch("lazy", &PatchParams::default(), &Patch::Merge(&suspend(true))).await.unwrap();
    let status = wait_phase(&sets, "lazy", CocoonSetPhase::Suspended).await;
    assert_eq!(suspended_reason(&status).as_deref(), Some("Suspended"));
    // The user's resume is activity: Running, though the stamp is old; idle again later.
    sets.patch("lazy", &PatchParams::default(), &Patch::Merge(&suspend(false))).await.unwrap();
    wait_phase(&sets, "lazy", CocoonSetPhase::Running).await;
    let status = wait_phase(&sets, "lazy", CocoonSetPhase::Suspended).await;
    assert_eq!(suspended_reason(&status).as_deref(), Some("Idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_frees_every_seat_of_a_suspended_set_and_resume_restores_each_vm() {
    let env = Env::new("cs-release").await;
    let sets = env.ns.api::<CocoonSet>();
    let mut spec = env.set_spec(2);
    spec.hibernate_policy = cocoon_operator::api::HibernatePolicy::Release;
    env.create_set("rel", spec).await;
    wait_phase(&sets, "rel", CocoonSetPhase::Running).await;

    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    sets.patch("rel", &PatchParams::default(), &Patch::Merge(&suspend(true))).await.unwrap();
    let status = eventually(DEADLINE, || async {
        let status = sets.get("rel").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let released =
            status.conditions.iter().any(|c| c.type_ == "Released" && c.status == "True");
        if released && status.phase == Some(CocoonSetPhase::Suspended) {
            Ok(status)
        } else {
            Err(format!("{:?} {:?}", status.phase, status.agents))
        }
    })
    .await
    .expect("every seat is released");
    assert!(pod_names(&env.ns.api()).await.is_empty(), "no pod holds a seat");
    for agent in &status.agents {
        assert_eq!(agent.phase, VmPhase::Released);
        let vm = agent.vm_name.clone().unwrap();
        assert_eq!(agent.snapshot_ref, Some(format!("{vm}-suspend")), "identity and snapshot kept");
    }

    sets.patch("rel", &PatchParams::default(), &Patch::Merge(&suspend(false))).await.unwrap();
    let status = wait_phase(&sets, "rel", CocoonSetPhase::Running).await;
    let sources: Vec<Option<String>> = status.agents.iter().map(|a| a.source.clone()).collect();
    let expected: Vec<Option<String>> = status
        .agents
        .iter()
        .map(|a| Some(format!("restore:{}-suspend", a.vm_name.clone().unwrap())))
        .collect();
    assert_eq!(sources, expected, "each VM restored from its own snapshot");
    assert_eq!(pod_names(&env.ns.api()).await, vec!["rel-0", "rel-1", "rel-2"], "the same names");
    let events = common::event_reasons(&env.ns.name, Some("rel"), false).await;
    assert!(events.contains("ResumingReleased"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_slots_wait_hibernated_and_a_scale_up_wakes_them_instead_of_forking() {
    let env = Env::new("cs-warm").await;
    let sets = env.ns.api::<CocoonSet>();
    let pods = env.ns.api::<Pod>();
    let mut spec = env.set_spec(1);
    spec.agent.warm = 1;
    env.create_set("w", spec).await;
    let warm_hibernated = |slot: i32| {
        let sets = sets.clone();
        async move {
            eventually(DEADLINE, || async {
                let status =
                    sets.get("w").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
                let warm = status.warm_agents.first().cloned();
                match warm {
                    Some(a)
                        if a.slot == slot
                            && a.phase == VmPhase::Hibernated
                            && status.phase == Some(CocoonSetPhase::Running) =>
                    {
                        Ok(status)
                    }
                    other => Err(format!("{:?} warm {other:?}", status.phase)),
                }
            })
            .await
            .expect("the warm slot is forked and hibernated")
        }
    };
    let status = warm_hibernated(2).await;
    assert_eq!((status.ready_agents, status.desired_agents), (2, 2), "warm slots are not serving");
    let warm_pod = pods.get("w-2").await.unwrap();
    let main_vm = format!("vk-{}-w-0", env.ns.name);
    let warm_vm = format!("vk-{}-w-2", env.ns.name);
    assert_eq!(ann(&warm_pod, "cocoon.cis/snapshot-from"), Some(format!("{warm_vm}-fork")));
    let warm_status = status.warm_agents.iter().find(|a| a.slot == 2).expect("slot 2 is warm");
    assert_eq!(warm_status.forked_from.as_deref(), Some(main_vm.as_str()));

    // Scale up: slot 2 is woken (the same pod), and slot 3 refills the pool.
    let patch = serde_json::json!({"spec": {"agent": {"replicas": 2}}});
    sets.patch("w", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let status = wait_phase(&sets, "w", CocoonSetPhase::Running).await;
    assert_eq!((status.ready_agents, status.desired_agents), (3, 3));
    assert_eq!(
        pods.get("w-2").await.unwrap().metadata.uid,
        warm_pod.metadata.uid,
        "woken, not forked anew"
    );
    assert_eq!(status.agents.iter().map(|a| a.slot).collect::<Vec<_>>(), vec![0, 1, 2]);
    warm_hibernated(3).await;
}
