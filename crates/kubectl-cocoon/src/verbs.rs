//! The verbs: status as a tree, a Hibernation round for one pod, suspend and resume, scale,
//! touch; `--wait` follows the object by watch until it is done or fails.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Resource};

use cocoon_core::api::{
    CocoonSet, CocoonSetPhase, CocoonSetStatus, Hibernation, HibernationAction, HibernationPhase,
    HibernationSpec,
};

use crate::target::{Target, chain};
use crate::{PluginError, PodArgs, Result, SetArgs};

pub async fn status(target: &Target, only: Option<&str>, all: bool, color: bool) -> Result<String> {
    let (sets, hibs): (Api<CocoonSet>, Api<Hibernation>) = if all {
        (Api::all(target.client.clone()), Api::all(target.client.clone()))
    } else {
        (target.api(), target.api())
    };
    let mut sets = sets
        .list(&ListParams::default())
        .await
        .map_err(|e| target.explain(e, "CocoonSet", None))?
        .items;
    let mut hibs = hibs
        .list(&ListParams::default())
        .await
        .map_err(|e| target.explain(e, "Hibernation", None))?
        .items;
    if let Some(name) = only {
        sets.retain(|s| s.metadata.name.as_deref() == Some(name));
        if sets.is_empty() {
            return Err(PluginError(format!(
                "cocoonset \"{name}\" not found in namespace \"{}\"",
                target.namespace
            )));
        }
        let pods: Vec<String> = sets[0]
            .status
            .iter()
            .flat_map(|s| s.agents.iter().map(|a| a.pod_name.clone()))
            .collect();
        hibs.retain(|h| pods.contains(&h.spec.pod_name));
    }
    if sets.is_empty() && hibs.is_empty() {
        let place = if all {
            "any namespace".to_string()
        } else {
            format!("namespace {}", target.namespace)
        };
        return Ok(format!("No CocoonSets or Hibernations in {place}.\n"));
    }
    Ok(crate::tree::render(&sets, &hibs, color))
}

/// The phase a Hibernation reaches when `action` is done.
fn done_phase(action: HibernationAction) -> HibernationPhase {
    match action {
        HibernationAction::Hibernate => HibernationPhase::Hibernated,
        HibernationAction::Wake => HibernationPhase::Active,
    }
}

pub async fn pod_round(target: &Target, args: PodArgs, action: HibernationAction) -> Result<()> {
    let pods: Api<Pod> = target.api();
    let hibs: Api<Hibernation> = target.api();
    let pod =
        pods.get_opt(&args.pod).await.map_err(|e| target.explain(e, "pod", Some(&args.pod)))?;
    let Some(_) = pod else {
        return Err(PluginError(format!(
            "pod \"{}\" not found in namespace \"{}\"",
            args.pod, target.namespace
        )));
    };
    let existing = hibs
        .list(&ListParams::default())
        .await
        .map_err(|e| target.explain(e, "Hibernation", None))?
        .items
        .into_iter()
        .find(|h| h.spec.pod_name == args.pod && h.metadata.deletion_timestamp.is_none());
    let name = match existing {
        Some(hib) => {
            let name = hib.metadata.name.clone().unwrap_or_default();
            if hib.spec.action == action {
                println!(
                    "hibernation/{name}: {} of pod {} already requested",
                    action.as_str(),
                    args.pod
                );
            } else {
                let patch = serde_json::json!({"spec": {"action": action.as_str()}});
                hibs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| target.explain(e, "Hibernation", Some(&name)))?;
                println!("hibernation/{name}: {} of pod {} requested", action.as_str(), args.pod);
            }
            name
        }
        None => {
            let name = args.name.clone().unwrap_or_else(|| args.pod.clone());
            let hib =
                Hibernation::new(&name, HibernationSpec { pod_name: args.pod.clone(), action });
            match hibs.create(&PostParams::default(), &hib).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(PluginError(format!(
                        "hibernation \"{name}\" already exists for another pod; pick a name with --name"
                    )));
                }
                Err(e) => return Err(target.explain(e, "Hibernation", Some(&name))),
            }
            println!("hibernation/{name} created: {} of pod {}", action.as_str(), args.pod);
            name
        }
    };
    if !args.wait {
        return Ok(());
    }
    let want = done_phase(action);
    let follow = follow(&hibs, &name, |hib: &Hibernation| {
        let status = hib.status.clone().unwrap_or_default();
        let current = status.observed_generation == hib.metadata.generation;
        let phase = status.phase.unwrap_or_default();
        let line = format!(
            "hibernation/{name}: {}{}",
            phase.as_str(),
            status.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
        );
        let verdict = match phase {
            p if p == want && current => Verdict::Done,
            HibernationPhase::Failed if current => {
                Verdict::Failed(status.message.unwrap_or_default())
            }
            _ => Verdict::Going,
        };
        (line, verdict)
    });
    wait_for(target, follow, args.timeout, &format!("hibernation/{name}"), "Hibernation", &name)
        .await
}

/// Writes `cocoon.cis/last-activity = now` on the set.
pub async fn touch(target: &Target, set: &str) -> Result<()> {
    let sets: Api<CocoonSet> = target.api();
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"metadata": {"annotations": {cocoon_core::contract::ANN_LAST_ACTIVITY: now.to_string()}}});
    sets.patch(set, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.explain(e, "cocoonset", Some(set)))?;
    Ok(())
}

pub async fn suspend(target: &Target, args: SetArgs, on: bool) -> Result<()> {
    let sets: Api<CocoonSet> = target.api();
    if !on {
        // A set idle auto-suspend holds has `suspend: false` already: new activity wakes it.
        touch(target, &args.set).await?;
    }
    let patch = serde_json::json!({"spec": {"suspend": on}});
    sets.patch(&args.set, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.explain(e, "cocoonset", Some(&args.set)))?;
    println!(
        "cocoonset/{} {}",
        args.set,
        if on { "suspend requested" } else { "resume requested" }
    );
    if !args.wait {
        return Ok(());
    }
    let want = if on { CocoonSetPhase::Suspended } else { CocoonSetPhase::Running };
    let set_name = args.set.clone();
    let follow = follow(&sets, &args.set, |set: &CocoonSet| {
        let status = set.status.clone().unwrap_or_default();
        let current = status.observed_generation == set.metadata.generation;
        let phase = status.phase.unwrap_or_default();
        let line = progress_line(&set_name, &status, "");
        let verdict = match phase {
            p if p == want && current => Verdict::Done,
            CocoonSetPhase::Failed if current => {
                Verdict::Failed(status.message.unwrap_or_default())
            }
            _ => Verdict::Going,
        };
        (line, verdict)
    });
    wait_for(
        target,
        follow,
        args.timeout,
        &format!("cocoonset/{}", args.set),
        "cocoonset",
        &args.set,
    )
    .await
}

/// `migrate SET --to NODE`: points `spec.nodeName` at NODE; the operator moves the VMs.
/// With a timeout, follows the set until its VMs serve on NODE, or it says why it cannot.
pub async fn migrate(target: &Target, set: &str, to: &str, wait: Option<Duration>) -> Result<()> {
    let sets: Api<CocoonSet> = target.api();
    let patch = serde_json::json!({"spec": {"nodeName": to}});
    sets.patch(set, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.explain(e, "cocoonset", Some(set)))?;
    println!("cocoonset/{set} migration to node {to} requested");
    let Some(timeout) = wait else { return Ok(()) };
    let (name, node) = (set.to_string(), to.to_string());
    let follow = follow(&sets, set, move |set: &CocoonSet| {
        let status = set.status.clone().unwrap_or_default();
        let step = status.migration.as_ref().map(|m| format!(" {:?}", m.phase)).unwrap_or_default();
        let place = format!("{step}  node {}", status.node.as_deref().unwrap_or("-"));
        (progress_line(&name, &status, &place), migration_verdict(set, &node))
    });
    wait_for(target, follow, timeout, &format!("cocoonset/{set}"), "cocoonset", set).await
}

/// Where a migration to `to` stands, from the set's typed status: done once the set is on
/// `to` with no migration recorded; refused when the operator saw this spec, records no
/// migration and keeps the set elsewhere (its message says why).
fn migration_verdict(set: &CocoonSet, to: &str) -> Verdict {
    let status = set.status.clone().unwrap_or_default();
    if status.observed_generation != set.metadata.generation {
        return Verdict::Going;
    }
    let on_target = status.node.as_deref() == Some(to);
    match status.phase.unwrap_or_default() {
        CocoonSetPhase::Failed => Verdict::Failed(status.message.unwrap_or_default()),
        CocoonSetPhase::Running | CocoonSetPhase::Suspended
            if on_target && status.migration.is_none() =>
        {
            Verdict::Done
        }
        _ if status.migration.is_none() && status.node.is_some() && !on_target => {
            Verdict::Failed(status.message.unwrap_or_default())
        }
        _ => Verdict::Going,
    }
}

/// One progress line of a followed set: phase, `extra`, agents ready, and its message.
fn progress_line(name: &str, status: &CocoonSetStatus, extra: &str) -> String {
    format!(
        "cocoonset/{name}: {}{extra}  agents {}/{}{}",
        status.phase.unwrap_or_default().as_str(),
        status.ready_agents,
        status.desired_agents,
        status.message.as_deref().map(|m| format!("  ({m})")).unwrap_or_default()
    )
}

pub async fn scale(target: &Target, set: &str, replicas: i32) -> Result<()> {
    if replicas < 0 {
        return Err(PluginError(format!("replicas must be 0 or more, not {replicas}")));
    }
    let sets: Api<CocoonSet> = target.api();
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    sets.patch_scale(set, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.explain(e, "cocoonset", Some(set)))?;
    println!("cocoonset/{set} scaled to {replicas} sub-agents");
    Ok(())
}

/// What one look at the followed object says.
enum Verdict {
    Going,
    Done,
    Failed(String),
}

/// A stream of (progress line, verdict) for one named object, from a watch.
fn follow<K, F>(
    api: &Api<K>,
    name: &str,
    mut judge: F,
) -> impl futures::Stream<Item = Result<(String, Verdict), watcher::Error>> + use<K, F>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    F: FnMut(&K) -> (String, Verdict),
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher::watcher(api.clone(), config).try_filter_map(move |event| {
        let seen = match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => Some(judge(&obj)),
            _ => None,
        };
        futures::future::ready(Ok(seen))
    })
}

/// Prints each new progress line until done, failed, gone or out of time.
async fn wait_for<S>(
    target: &Target,
    stream: S,
    timeout: Duration,
    what: &str,
    kind: &str,
    name: &str,
) -> Result<()>
where
    S: futures::Stream<Item = Result<(String, Verdict), watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut last = String::new();
    let outcome = tokio::time::timeout(timeout, async {
        while let Some(item) = stream.next().await {
            match item {
                Ok((line, verdict)) => {
                    if line != last {
                        println!("{line}");
                        last = line;
                    }
                    match verdict {
                        Verdict::Going => {}
                        Verdict::Done => return Ok(()),
                        Verdict::Failed(message) => {
                            return Err(PluginError(format!("{what} failed: {message}")));
                        }
                    }
                }
                Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e)) => {
                    return Err(target.explain(e, kind, Some(name)));
                }
                Err(e) => return Err(PluginError(format!("watching {what}: {}", chain(&e)))),
            }
        }
        Err(PluginError(format!("the watch of {what} ended")))
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(_) => Err(PluginError(format!(
            "{what} not done after {}; last seen: {last}",
            humantime::format_duration(timeout)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::api::{MigrationPhase, MigrationStatus};

    fn set(generation: i64, status: CocoonSetStatus) -> CocoonSet {
        let spec = serde_json::from_value(serde_json::json!({"agent": {"image": "i"}})).unwrap();
        let mut set = CocoonSet::new("demo", spec);
        set.metadata.generation = Some(generation);
        set.status = Some(CocoonSetStatus { observed_generation: Some(2), ..status });
        set
    }

    fn verdict(set: &CocoonSet) -> &'static str {
        match migration_verdict(set, "n2") {
            Verdict::Going => "going",
            Verdict::Done => "done",
            Verdict::Failed(_) => "failed",
        }
    }

    #[test]
    fn a_migration_is_followed_by_typed_status_not_by_its_message() {
        let on = |node: &str, phase, migration: Option<MigrationPhase>| CocoonSetStatus {
            phase: Some(phase),
            node: Some(node.into()),
            migration: migration.map(|phase| MigrationStatus {
                from: "n1".into(),
                to: "n2".into(),
                phase,
            }),
            ..CocoonSetStatus::default()
        };
        let running = CocoonSetPhase::Running;
        assert_eq!(verdict(&set(3, on("n1", running, None))), "going", "spec not seen yet");
        let moving = on("n1", CocoonSetPhase::Migrating, Some(MigrationPhase::Hibernating));
        assert_eq!(verdict(&set(2, moving)), "going");
        let restoring = on("n2", CocoonSetPhase::Migrating, Some(MigrationPhase::Restoring));
        assert_eq!(verdict(&set(2, restoring)), "going");
        assert_eq!(verdict(&set(2, on("n2", running, None))), "done");
        // Seen, no migration recorded, still elsewhere: refused (whatever the message says).
        assert_eq!(verdict(&set(2, on("n1", running, None))), "failed");
    }
}
