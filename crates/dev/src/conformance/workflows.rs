//! The documented workflows, each run once on the real provider and once on the simulator:
//! the same steps, the same checkpoints. On the real provider each also checks what the
//! provider did, from the fake hypervisor's state and call log.

use cocoon_core::contract::dialect::seed;
use serde_json::json;

use super::steps::{Ctx, IMAGE, TOOLBOX_IMAGE, Target};
use crate::api::conditions::{ConditionType, SUSPEND_DEADLINE_EXCEEDED};
use crate::api::{CocoonSetPhase, HibernationAction, HibernationPhase, VmPhase};
use crate::fake_cli::faults::{Failure, Faults};
use cocoon_core::contract::Dialect;

type Fallible<T = ()> = Result<T, String>;

/// A workflow of the conformance run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workflow {
    /// A main, two sub-agents forked from it, a toolbox booted from its image.
    ConvergeWithForks,
    /// A Hibernation hibernates and wakes a set's sub-agent.
    HibernateSetPod,
    /// A Hibernation hibernates and wakes a Deployment's pod.
    HibernateDeploymentPod,
    /// Suspend and resume a set; the provider refuses to hibernate its main.
    SuspendResume,
    /// Suspend with `hibernatePolicy: release`, then resume: each VM restores from its snapshot.
    ReleaseResume,
    /// A warm slot is woken by a scale-up and the pool refills.
    WarmSlots,
    /// Forks fail in the hypervisor: the provider boots the image (`ForkFellBack`); with
    /// `onForkFallback: recreate` they fork again once the main serves again.
    ForkFallback,
    /// The operator is restarted in the middle of a suspend.
    OperatorRestartMidSuspend,
    /// Deleting a set leaves no VM behind.
    Delete,
}

/// Every workflow, in the order they run.
pub const ALL: [Workflow; 9] = [
    Workflow::ConvergeWithForks,
    Workflow::HibernateSetPod,
    Workflow::HibernateDeploymentPod,
    Workflow::SuspendResume,
    Workflow::ReleaseResume,
    Workflow::WarmSlots,
    Workflow::ForkFallback,
    Workflow::OperatorRestartMidSuspend,
    Workflow::Delete,
];

impl Workflow {
    /// Its name in the report (and, shortened, in its namespace).
    pub fn name(self) -> &'static str {
        match self {
            Self::ConvergeWithForks => "converge-with-forks",
            Self::HibernateSetPod => "hibernate-set-pod",
            Self::HibernateDeploymentPod => "hibernate-deployment-pod",
            Self::SuspendResume => "suspend-resume",
            Self::ReleaseResume => "release-resume",
            Self::WarmSlots => "warm-slots",
            Self::ForkFallback => "fork-fallback",
            Self::OperatorRestartMidSuspend => "operator-restart-mid-suspend",
            Self::Delete => "delete",
        }
    }

    /// Forks that fail in the simulator's run (the real run plans them in the hypervisor).
    pub fn simulated_fork_failures(self) -> u32 {
        if self == Self::ForkFallback { 2 } else { 0 }
    }

    /// Why this workflow does not apply to a provider of `dialect`, if it does not.
    pub fn not_applicable(self, dialect: Dialect) -> Option<&'static str> {
        match (self, dialect) {
            (Self::HibernateDeploymentPod, Dialect::V02 | Dialect::Current) => Some(
                "a cocoonstack provider refuses a pod without vm.cocoonstack.io/name, and a \
                 Deployment's pods share one template: its VMs cannot each have their own name",
            ),
            _ => None,
        }
    }
}

/// The snapshot a cocoonstack provider forks VM `vm`'s sub-agents from; the seed names it
/// after the fork (`<vm>-fork`), v0.2 after the source (`fork-<source>`).
fn fork_source(ctx: &Ctx<'_>, vm: &str, main: &str) -> String {
    match ctx.dialect {
        Dialect::Seed => crate::contract::fork_snapshot(vm),
        _ => format!("fork-{main}"),
    }
}

/// What a woken VM was cloned from: the seed's `<vm>-suspend`, v0.2's import of `<vm>:hibernate`.
fn woken_from(ctx: &Ctx<'_>, vm: &str) -> String {
    match ctx.dialect {
        Dialect::Seed => crate::contract::snapshot_value(vm),
        _ => format!("{vm}-hibernate-import"),
    }
}

/// What a recreated (released) VM was cloned from: the seed restores from its entry
/// (`<vm>-suspend`); v0.2 clones its `<vm>:hibernate` pulled from the registry.
fn restored_from(ctx: &Ctx<'_>, vm: &str) -> String {
    match ctx.dialect {
        Dialect::Seed => crate::contract::snapshot_value(vm),
        _ => format!("{vm}:hibernate"),
    }
}

/// Waits until the registry (epoch, real v0.2.9 runs) holds `<vm>:<tag>` or not.
async fn registry_holds(ctx: &Ctx<'_>, vm: &str, tag: &str, present: bool) -> Fallible {
    let Some(epoch) = ctx.epoch else { return Ok(()) };
    super::steps::poll(&format!("{vm}:{tag} present = {present} in epoch"), || async {
        if epoch.has(vm, tag) == present { Ok(Some(())) } else { Err(epoch.tags().join(", ")) }
    })
    .await
}

/// What a workflow needs of the harness beyond its context.
pub trait Harness {
    /// Restarts the operator: SIGKILL, then a new process.
    fn restart_operator(&mut self) -> impl std::future::Future<Output = Fallible> + Send;
}

fn running(ready: i32) -> impl Fn(&crate::api::CocoonSetStatus) -> bool {
    move |s| s.phase == Some(CocoonSetPhase::Running) && s.ready_agents == ready
}

/// The suspend is past its deadline (`Progressing` False, `SuspendDeadlineExceeded`) with the
/// main not hibernated: the provider refuses it.
fn main_refused(s: &crate::api::CocoonSetStatus) -> bool {
    let overdue = ConditionType::Progressing
        .find(&s.conditions)
        .is_some_and(|c| c.status == "False" && c.reason == SUSPEND_DEADLINE_EXCEEDED);
    let main_awake = s
        .agents
        .iter()
        .any(|a| a.slot == 0 && a.pod_name == "demo-0" && a.phase != VmPhase::Hibernated);
    s.phase == Some(CocoonSetPhase::Suspending) && overdue && main_awake
}

/// Suspended as far as the provider goes: the seed refuses the main (named past the
/// deadline); the others hibernate every VM.
fn suspended_as_far_as_it_goes(dialect: Dialect) -> impl Fn(&crate::api::CocoonSetStatus) -> bool {
    move |s| match dialect {
        Dialect::Seed => main_refused(s),
        _ => s.phase == Some(CocoonSetPhase::Suspended),
    }
}

/// Runs `workflow` in `ctx`.
pub async fn run<H: Harness>(workflow: Workflow, ctx: &mut Ctx<'_>, harness: &mut H) -> Fallible {
    match workflow {
        Workflow::ConvergeWithForks => converge(ctx).await,
        Workflow::HibernateSetPod => hibernate_set_pod(ctx).await,
        Workflow::HibernateDeploymentPod => hibernate_deployment_pod(ctx).await,
        Workflow::SuspendResume => suspend_resume(ctx, None::<&mut H>).await,
        Workflow::ReleaseResume => release_resume(ctx).await,
        Workflow::WarmSlots => warm_slots(ctx).await,
        Workflow::ForkFallback => fork_fallback(ctx).await,
        Workflow::OperatorRestartMidSuspend => suspend_resume(ctx, Some(harness)).await,
        Workflow::Delete => delete(ctx).await,
    }
}

async fn converge(ctx: &mut Ctx<'_>) -> Fallible {
    let toolbox = json!({"toolboxes": [{"name": "box", "image": TOOLBOX_IMAGE}]});
    ctx.create_set("demo", 2, toolbox).await?;
    ctx.wait_set("demo", "Running 3/3", |s| {
        running(3)(s) && s.toolboxes.iter().all(|t| t.phase == VmPhase::Running)
    })
    .await?;
    ctx.checkpoint("running", &["demo"], &[]).await?;
    if let Some(hv) = ctx.hypervisor {
        let main = ctx.vm("demo", 0);
        for slot in 1..=2 {
            let vm = ctx.vm("demo", slot);
            let fork = fork_source(ctx, &vm, &main);
            let source = hv.vms().into_iter().find(|v| v.name == vm).map(|v| v.source);
            if source.as_deref() != Some(fork.as_str()) {
                return Err(format!("{vm} was cloned from {source:?}, not the fork {fork}"));
            }
        }
        let toolbox = hv.vms().into_iter().find(|v| v.name.ends_with("-demo-box"));
        if toolbox.as_ref().map(|v| (v.how.as_str(), v.source.as_str()))
            != Some(("run", TOOLBOX_IMAGE))
        {
            return Err(format!("the toolbox VM is {toolbox:?}, not a run of {TOOLBOX_IMAGE}"));
        }
        ctx.verified(
            "sub-agents cloned from fork snapshots of the main; the toolbox booted with vm run",
        );
    }
    Ok(())
}

async fn hibernate_set_pod(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 1, json!({})).await?;
    ctx.wait_set("demo", "Running 2/2", running(2)).await?;
    ctx.create_hib("nap", "demo-1", HibernationAction::Hibernate).await?;
    ctx.wait_hib("nap", HibernationPhase::Hibernated).await?;
    ctx.wait_set("demo", "demo-1 Hibernated", |s| {
        s.agents.iter().any(|a| a.slot == 1 && a.phase == VmPhase::Hibernated)
    })
    .await?;
    ctx.checkpoint("hibernated", &["demo"], &["nap"]).await?;
    if let Some(hv) = ctx.hypervisor {
        let vm = ctx.vm("demo", 1);
        if hv.vms().iter().any(|v| v.name == vm) {
            return Err(format!("{vm} still runs while hibernated"));
        }
        registry_holds(ctx, &vm, "hibernate", true).await?;
        ctx.verified(format!("{vm} removed after its snapshot was taken"));
    }
    ctx.set_action("nap", HibernationAction::Wake).await?;
    ctx.wait_hib("nap", HibernationPhase::Active).await?;
    ctx.wait_set("demo", "Running 2/2 again", running(2)).await?;
    ctx.checkpoint("woken", &["demo"], &["nap"]).await?;
    if let Some(hv) = ctx.hypervisor {
        let vm = ctx.vm("demo", 1);
        let snapshot = woken_from(ctx, &vm);
        let source = hv.vms().into_iter().find(|v| v.name == vm).map(|v| v.source);
        if source.as_deref() != Some(snapshot.as_str()) {
            return Err(format!("{vm} woke from {source:?}, not {snapshot}"));
        }
        ctx.verified(format!("{vm} woken from {snapshot}"));
        if ctx.epoch.is_some() {
            registry_holds(ctx, &vm, "hibernate", false).await?;
            ctx.verified(format!(
                "{vm}:hibernate removed from epoch by the operator after the wake"
            ));
        }
    }
    Ok(())
}

async fn hibernate_deployment_pod(ctx: &mut Ctx<'_>) -> Fallible {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, PostParams};
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "agents"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "agents"}},
            "template": {
                "metadata": {"labels": {"app": "agents"}},
                "spec": {
                    "nodeName": ctx.node,
                    "terminationGracePeriodSeconds": 30,
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "vm", "image": IMAGE}]
                }
            }
        }
    }))
    .map_err(|e| e.to_string())?;
    deployments.create(&PostParams::default(), &deployment).await.map_err(|e| e.to_string())?;
    // The provider names a Deployment's VMs after it and a slot, and never hibernates slot 0:
    // the Hibernation takes the pod of slot 1.
    let slot_one = format!("vk-{}-agents-1", ctx.ns);
    let pods = ctx.pods();
    let target = super::steps::poll("the Deployment's pod of slot 1 serving", || async {
        let list = pods.list(&Default::default()).await.map_err(|e| e.to_string())?.items;
        let serving = |p: &k8s_openapi::api::core::v1::Pod| {
            p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                c.iter().any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True")
            })
        };
        let found = list.iter().find(|p| {
            serving(p)
                && p.metadata.annotations.as_ref().and_then(|a| a.get(seed::KEYS.vm_name))
                    == Some(&slot_one)
        });
        match found {
            Some(p) => Ok(Some(kube::ResourceExt::name_any(p))),
            None => Err(format!("{} pods, none serving as {slot_one}", list.len())),
        }
    })
    .await?;
    ctx.create_hib("nap", &target, HibernationAction::Hibernate).await?;
    ctx.wait_hib("nap", HibernationPhase::Hibernated).await?;
    ctx.checkpoint("hibernated", &[], &["nap"]).await?;
    ctx.set_action("nap", HibernationAction::Wake).await?;
    ctx.wait_hib("nap", HibernationPhase::Active).await?;
    ctx.checkpoint("woken", &[], &["nap"]).await?;
    let left = ctx.pods().list(&Default::default()).await.map_err(|e| e.to_string())?.items.len();
    if left != 2 {
        return Err(format!(
            "the ReplicaSet holds {left} pods, not 2: it replaced the hibernated one"
        ));
    }
    Ok(())
}

async fn suspend_resume(ctx: &mut Ctx<'_>, restart: Option<&mut impl Harness>) -> Fallible {
    ctx.create_set("demo", 1, json!({})).await?;
    ctx.wait_set("demo", "Running 2/2", running(2)).await?;
    ctx.patch_set("demo", json!({"suspend": true})).await?;
    if let Some(harness) = restart {
        harness.restart_operator().await?;
    }
    let dialect = ctx.dialect;
    ctx.wait_set(
        "demo",
        "suspended as far as the provider goes",
        suspended_as_far_as_it_goes(dialect),
    )
    .await?;
    ctx.wait_set("demo", "demo-1 Hibernated", |s| {
        s.agents.iter().any(|a| a.slot == 1 && a.phase == VmPhase::Hibernated)
    })
    .await?;
    ctx.checkpoint("suspending", &["demo"], &[]).await?;
    if let Some(hv) = ctx.hypervisor {
        let main = ctx.vm("demo", 0);
        let main_runs = hv.vms().iter().any(|v| v.name == main && v.state == "running");
        match dialect {
            Dialect::Seed if !main_runs => {
                return Err(format!("the main VM {main} was not kept running"));
            }
            Dialect::Seed => ctx.verified(format!(
                "{main} never deleted: the provider refuses to hibernate slot 0"
            )),
            _ if main_runs => return Err(format!("the main VM {main} still runs")),
            _ => {
                registry_holds(ctx, &main, "hibernate", true).await?;
                ctx.verified(format!("{main} hibernated too, into epoch"));
            }
        }
    }
    ctx.patch_set("demo", json!({"suspend": false})).await?;
    ctx.wait_set("demo", "Running 2/2 after resume", running(2)).await?;
    ctx.checkpoint("resumed", &["demo"], &[]).await?;
    Ok(())
}

async fn release_resume(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 2, json!({"hibernatePolicy": "release"})).await?;
    ctx.wait_set("demo", "Running 3/3", running(3)).await?;
    ctx.patch_set("demo", json!({"suspend": true})).await?;
    let dialect = ctx.dialect;
    ctx.wait_set("demo", "released as far as the provider goes", move |s| {
        let agents_released = |from: i32| {
            s.agents.iter().filter(|a| a.slot >= from).all(|a| a.phase == VmPhase::Released)
        };
        match dialect {
            Dialect::Seed => main_refused(s) && agents_released(1),
            _ => s.phase == Some(CocoonSetPhase::Suspended) && agents_released(0),
        }
    })
    .await?;
    ctx.checkpoint("released", &["demo"], &[]).await?;
    ctx.patch_set("demo", json!({"suspend": false})).await?;
    ctx.wait_set("demo", "Running 3/3, restored", running(3)).await?;
    ctx.checkpoint("resumed", &["demo"], &[]).await?;
    if let Some(hv) = ctx.hypervisor {
        for slot in 1..=2 {
            let vm = ctx.vm("demo", slot);
            let snapshot = restored_from(ctx, &vm);
            let source = hv.vms().into_iter().find(|v| v.name == vm).map(|v| v.source);
            if source.as_deref() != Some(snapshot.as_str()) {
                return Err(format!("{vm} came back from {source:?}, not {snapshot}"));
            }
        }
        ctx.verified("each released sub-agent restored from its own snapshot");
    }
    Ok(())
}

async fn warm_slots(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 1, json!({"agent": {"warm": 1}})).await?;
    let warm_hibernated = |slot: i32| {
        move |s: &crate::api::CocoonSetStatus| {
            s.warm_agents.iter().any(|a| a.slot == slot && a.phase == VmPhase::Hibernated)
        }
    };
    ctx.wait_set("demo", "Running 2/2, slot 2 warm", |s| running(2)(s) && warm_hibernated(2)(s))
        .await?;
    ctx.checkpoint("warm", &["demo"], &[]).await?;
    ctx.patch_set("demo", json!({"agent": {"replicas": 2}})).await?;
    ctx.wait_set("demo", "Running 3/3, slot 3 warm", |s| running(3)(s) && warm_hibernated(3)(s))
        .await?;
    ctx.checkpoint("scaled-up", &["demo"], &[]).await?;
    if let Some(hv) = ctx.hypervisor {
        let woken = ctx.vm("demo", 2);
        let snapshot = woken_from(ctx, &woken);
        let source = hv.vms().into_iter().find(|v| v.name == woken).map(|v| v.source);
        if source.as_deref() != Some(snapshot.as_str()) {
            return Err(format!("{woken} came from {source:?}: not woken from {snapshot}"));
        }
        ctx.verified(format!("the scale-up woke {woken} from {snapshot} instead of forking"));
    }
    Ok(())
}

async fn fork_fallback(ctx: &mut Ctx<'_>) -> Fallible {
    if ctx.dialect != Dialect::Seed {
        return fork_refused(ctx).await;
    }
    let failing = Faults {
        failures: vec![Failure {
            pattern: "snapshot save --name *-fork *".into(),
            message: "fake-cocoon: snapshot save failed (injected)".into(),
            code: 1,
        }],
        ..Default::default()
    };
    if let Some(hv) = ctx.hypervisor {
        hv.set_faults(&failing).map_err(|e| e.to_string())?;
    }
    ctx.create_set("demo", 2, json!({"agent": {"onForkFallback": "recreate"}})).await?;
    let fell_back =
        |s: &crate::api::CocoonSetStatus| ConditionType::ForkFellBack.is_true(&s.conditions);
    ctx.wait_set("demo", "Running with ForkFellBack", |s| running(3)(s) && fell_back(s)).await?;
    ctx.checkpoint("fell-back", &["demo"], &[]).await?;
    if let Some(hv) = ctx.hypervisor {
        hv.set_faults(&Faults::default()).map_err(|e| e.to_string())?;
    }
    // The main serves again (a user deleted it; it comes back restored): the sub-agents that
    // booted from the image are recreated and fork.
    ctx.delete_pod("demo-0").await?;
    ctx.wait_set("demo", "Running, forked again", |s| {
        running(3)(s)
            && !fell_back(s)
            && s.agents.iter().filter(|a| a.slot > 0).all(|a| a.forked_from.is_some())
    })
    .await?;
    ctx.checkpoint("forked-again", &["demo"], &[]).await?;
    if ctx.target == Target::Real {
        ctx.verified("failed fork snapshots booted the image; recreated sub-agents forked once the main served again");
    }
    Ok(())
}

/// v0.2: a fork that cannot be made fails the create (no image fallback); the provider's words
/// reach the set, and the provider's retry forks once it can.
async fn fork_refused(ctx: &mut Ctx<'_>) -> Fallible {
    let failing = Faults {
        failures: vec![Failure {
            pattern: "snapshot save --name fork-* *".into(),
            message: "fake-cocoon: snapshot save failed (injected)".into(),
            code: 1,
        }],
        ..Default::default()
    };
    if let Some(hv) = ctx.hypervisor {
        hv.set_faults(&failing).map_err(|e| e.to_string())?;
        ctx.create_set("demo", 1, json!({})).await?;
        let status = ctx
            .wait_set("demo", "the sub-agent ProviderFailed in the status", |s| {
                s.agents.iter().any(|a| a.slot == 1 && a.phase == VmPhase::ProviderFailed)
            })
            .await?;
        ctx.verified(format!(
            "the refused fork reached the set's status: demo-1 ProviderFailed ({})",
            status.message.unwrap_or_default()
        ));
        hv.set_faults(&Faults::default()).map_err(|e| e.to_string())?;
    } else {
        ctx.create_set("demo", 1, json!({})).await?;
    }
    ctx.wait_set("demo", "Running, forked", |s| {
        running(2)(s) && s.agents.iter().filter(|a| a.slot > 0).all(|a| a.forked_from.is_some())
    })
    .await?;
    ctx.checkpoint("forked", &["demo"], &[]).await?;
    Ok(())
}

async fn delete(ctx: &mut Ctx<'_>) -> Fallible {
    let toolbox = json!({"toolboxes": [{"name": "box", "image": TOOLBOX_IMAGE}]});
    ctx.create_set("demo", 1, toolbox).await?;
    ctx.wait_set("demo", "Running 2/2", running(2)).await?;
    ctx.sets().delete("demo", &Default::default()).await.map_err(|e| e.to_string())?;
    ctx.wait_no_pods().await?;
    let sets = ctx.sets();
    super::steps::poll("the set gone", || async {
        match sets.get_opt("demo").await.map_err(|e| e.to_string())? {
            None => Ok(Some(())),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await?;
    if let Some(hv) = ctx.hypervisor {
        let ns = format!("vk-{}-", ctx.ns);
        let left: Vec<String> =
            hv.vms().into_iter().map(|v| v.name).filter(|n| n.starts_with(&ns)).collect();
        if !left.is_empty() {
            return Err(format!("VMs left in the hypervisor: {left:?}"));
        }
        ctx.verified("no VM of the set left in the hypervisor");
    }
    Ok(())
}
