//! Quirks of vk-cocoon v0.1.1 the operator must survive, each checked on the real provider
//! (PROVIDERS.md §6): it refuses to hibernate a main VM; it re-runs its guest injection on
//! every update of a running pod; it never reports a VM that died; and its 30-second poll can
//! wake a VM a second time, replacing the woken VM with one booted from its image.

use std::time::{Duration, Instant};

use kube::Client;
use serde::Serialize;
use serde_json::json;

use super::provider::Hypervisor;
use super::steps::{Ctx, Target};
use crate::api::conditions::ConditionType;
use crate::api::{CocoonSetPhase, HibernationAction, HibernationPhase};
use crate::fake_cli::faults::Faults;
use cocoon_core::plan::hibernation::FailureKind;

/// One quirk's check.
#[derive(Clone, Debug, Serialize)]
pub struct QuirkReport {
    pub quirk: &'static str,
    pub passed: bool,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<String>,
}

type Fallible<T = ()> = Result<T, String>;

fn running(s: &crate::api::CocoonSetStatus, ready: i32) -> bool {
    s.phase == Some(CocoonSetPhase::Running) && s.ready_agents == ready
}

/// Runs every quirk check, each in a namespace of its own on the real provider's node.
pub async fn run_all(client: &Client, hypervisor: &Hypervisor) -> Vec<QuirkReport> {
    let mut out = Vec::new();
    let checks: [(&'static str, u8); 4] = [
        ("refused-main-hibernation", 0),
        ("no-reinjection-at-rest", 1),
        ("dead-vm", 2),
        ("double-wake", 3),
    ];
    for (name, which) in checks {
        eprintln!("conformance: quirk {name}");
        let started = Instant::now();
        let ns = format!("q-{name}");
        let mut ctx = Ctx {
            client: client.clone(),
            ns: ns.clone(),
            node: "cocoon-pool".into(),
            target: Target::Real,
            dialect: cocoon_core::contract::Dialect::Seed,
            hypervisor: Some(hypervisor),
            epoch: None,
            checkpoints: Vec::new(),
            verified: Vec::new(),
        };
        let outcome = match super::namespace(client, &ns).await {
            Err(e) => Err(e.to_string()),
            Ok(()) => match which {
                0 => refused_main_hibernation(&mut ctx).await,
                1 => no_reinjection_at_rest(&mut ctx).await,
                2 => dead_vm(&mut ctx).await,
                _ => double_wake(&mut ctx).await,
            },
        };
        let _ = hypervisor.set_faults(&Faults::default());
        out.push(QuirkReport {
            quirk: name,
            passed: outcome.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            error: outcome.err(),
            verified: ctx.verified,
        });
    }
    out
}

fn hypervisor<'a>(ctx: &Ctx<'a>) -> Fallible<&'a Hypervisor> {
    ctx.hypervisor.ok_or_else(|| "no hypervisor".to_string())
}

/// A Hibernation of a main (slot 0) fails by its deadline, naming the pod; the VM is never
/// deleted (nothing without a snapshot is).
async fn refused_main_hibernation(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 0, json!({})).await?;
    ctx.wait_set("demo", "Running 1/1", |s| running(s, 1)).await?;
    ctx.create_hib("nap", "demo-0", HibernationAction::Hibernate).await?;
    let status = ctx.wait_hib("nap", HibernationPhase::Failed).await?;
    let reason = ConditionType::Ready.find(&status.conditions).map(|c| c.reason.as_str());
    if reason != Some(FailureKind::Timeout.reason()) {
        return Err(format!("the failure is not the deadline's: Ready reason {reason:?}"));
    }
    if status.vm_name.as_deref() != Some(ctx.vm("demo", 0).as_str()) {
        return Err(format!("the failure is not about the main's VM: {:?}", status.vm_name));
    }
    let message = status.message.unwrap_or_default();
    let main = ctx.vm("demo", 0);
    if !hypervisor(ctx)?.vms().iter().any(|v| v.name == main && v.state == "running") {
        return Err(format!("{main} was not kept running"));
    }
    ctx.verified(format!(
        "Hibernation Failed by its deadline (Timeout: {message}); {main} kept running"
    ));
    Ok(())
}

/// vk-cocoon v0.1.1 re-runs its guest injection (SSH) on every update of a running pod: a set
/// at rest must not update its pods. Over an idle window, no injection runs.
async fn no_reinjection_at_rest(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 1, json!({})).await?;
    ctx.wait_set("demo", "Running 2/2", |s| running(s, 2)).await?;
    // The injections that follow creation (retried for 45 s) are the provider's own.
    tokio::time::sleep(Duration::from_secs(50)).await;
    let hv = hypervisor(ctx)?;
    let before = hv.calls().iter().filter(|c| c.program == "sshpass").count();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = hv.calls().iter().filter(|c| c.program == "sshpass").count();
    if after != before {
        return Err(format!("{} injection attempts while the set was at rest", after - before));
    }
    ctx.verified("no guest injection over 20 s at rest: the operator did not update its pods");
    Ok(())
}

/// A VM that dies: vk-cocoon v0.1.1 never reports it (no notify from its poll), so nothing
/// the operator sees changes, and it deletes nothing.
async fn dead_vm(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 1, json!({})).await?;
    ctx.wait_set("demo", "Running 2/2", |s| running(s, 2)).await?;
    let vm = ctx.vm("demo", 1);
    let uid = ctx.pods().get("demo-1").await.map_err(|e| e.to_string())?.metadata.uid;
    hypervisor(ctx)?.stop_vm(&vm).map_err(|e| e.to_string())?;
    // Past one 30 s poll of the provider.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let pod = ctx.pods().get("demo-1").await.map_err(|e| e.to_string())?;
    if pod.metadata.uid != uid || pod.metadata.deletion_timestamp.is_some() {
        return Err("the pod of the dead VM was deleted".into());
    }
    ctx.verified(format!(
        "{vm} stopped under the provider: no report reached the pod, and the operator deleted nothing"
    ));
    Ok(())
}

/// vk-cocoon v0.1.1 keeps a VM marked hibernated until its wake has an address; its 30 s poll
/// then wakes it again: the second wake finds no snapshot entry (the first took it), removes
/// the first wake's VM and boots the image. The woken pod ends on a VM without its hibernated
/// state; the operator must not call that a silent success.
async fn double_wake(ctx: &mut Ctx<'_>) -> Fallible {
    ctx.create_set("demo", 1, json!({})).await?;
    ctx.wait_set("demo", "Running 2/2", |s| running(s, 2)).await?;
    ctx.create_hib("nap", "demo-1", HibernationAction::Hibernate).await?;
    ctx.wait_hib("nap", HibernationPhase::Hibernated).await?;
    let vm = ctx.vm("demo", 1);
    let hv = hypervisor(ctx)?;
    // The woken VM's address does not come: the first wake waits, and the poll wakes again.
    hv.set_faults(&Faults { no_lease: vec![vm.clone()], ..Default::default() })
        .map_err(|e| e.to_string())?;
    let calls_before = hv.calls().len();
    ctx.set_action("nap", HibernationAction::Wake).await?;
    let clones_of = |hv: &Hypervisor| {
        hv.calls()
            .into_iter()
            .skip(calls_before)
            .filter(|c| c.command() == "vm clone" && c.argv.contains(&vm))
            .count()
    };
    super::steps::poll("a second wake of the VM", || async {
        let n = clones_of(hv);
        if n >= 2 { Ok(Some(())) } else { Err(format!("{n} clone(s) so far")) }
    })
    .await?;
    hv.set_faults(&Faults::default()).map_err(|e| e.to_string())?;
    hv.refresh_leases().map_err(|e| e.to_string())?;
    let lost = hv.vms().into_iter().find(|v| v.name == vm).map(|v| v.source);
    if lost.as_deref() != Some(super::steps::IMAGE) {
        return Err(format!("the second wake did not boot the image: {vm} came from {lost:?}"));
    }
    ctx.verified(format!(
        "the provider woke {vm} twice; it runs from the image {}",
        super::steps::IMAGE
    ));
    // The operator says so: a Warning on the Hibernation, and its status (Active, with a
    // message while the replacement is news).
    super::steps::poll("a VMReplaced Warning on the Hibernation", || async {
        let events = ctx.event_reasons().await?;
        let warned = events.contains("Hibernation/nap Warning VMReplaced");
        if warned { Ok(Some(())) } else { Err(format!("no VMReplaced Warning: {events:?}")) }
    })
    .await?;
    let hibs = ctx.hibs();
    super::steps::poll("the Hibernation Active on the replaced VM", || async {
        let hib = hibs.get("nap").await.map_err(|e| e.to_string())?;
        let status = hib.status.unwrap_or_default();
        let active = status.phase == Some(HibernationPhase::Active)
            && status.vm_name.as_deref() == Some(vm.as_str());
        if active { Ok(Some(())) } else { Err(format!("{:?} {:?}", status.phase, status.vm_name)) }
    })
    .await?;
    ctx.verified(
        "the Hibernation reports the replaced VM (a VMReplaced Warning; Active on the new VM)",
    );
    Ok(())
}
