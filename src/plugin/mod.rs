//! `kubectl cocoon`: see a namespace's sets and Hibernations as a tree, hibernate and wake a pod,
//! suspend, resume and scale a set. It is a client of the user's kubeconfig like kubectl itself
//! (`-n`, `--context`, `--kubeconfig`), never of the operator.

pub mod tree;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use crate::api::{
    CocoonSet, CocoonSetPhase, Hibernation, HibernationAction, HibernationPhase, HibernationSpec,
};

/// Groups of VM pods on Kubernetes: CocoonSets and Hibernations, as kubectl does not show them.
#[derive(Parser, Debug)]
#[command(name = "kubectl-cocoon", bin_name = "kubectl cocoon", version = crate::VERSION, about)]
pub struct PluginCli {
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Colour the phases: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// When to colour the output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Sets (agents with slot, role, phase, VM, IP, fork source; toolboxes) and Hibernations as a tree.
    Status {
        /// Only this CocoonSet.
        set: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Hibernate a pod's VM: create (or flip) the Hibernation that names it.
    Hibernate(PodArgs),
    /// Wake a pod's VM: flip (or create) the Hibernation that names it.
    Wake(PodArgs),
    /// Suspend a CocoonSet (hibernate every VM).
    Suspend(SetArgs),
    /// Resume a suspended CocoonSet (also stamps activity, which wakes an idle-suspended set).
    Resume(SetArgs),
    /// Stamp activity on a CocoonSet now (`cocoon.cis/last-activity`): resets its idle timer and
    /// resumes it if idle auto-suspend suspended it.
    Touch {
        /// The CocoonSet.
        set: String,
    },
    /// Set the number of sub-agents of a CocoonSet (its scale subresource, as `kubectl scale`).
    Scale {
        /// The CocoonSet.
        set: String,
        /// Sub-agents wanted (the main agent is always there).
        replicas: i32,
    },
}

/// Arguments of `hibernate` and `wake`.
#[derive(clap::Args, Debug)]
pub struct PodArgs {
    /// The pod whose VM to hibernate or wake.
    pub pod: String,
    /// Name of the Hibernation to create when none names the pod yet (default: the pod's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Follow the Hibernation until the round is done (or failed).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `suspend` and `resume`.
#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// The CocoonSet.
    pub set: String,
    /// Follow the set until it is Suspended (or Running again).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// A failure, already worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Where the plugin talks to, and how to word what went wrong there.
struct Target {
    client: Client,
    namespace: String,
    server: String,
}

impl Target {
    async fn connect(cli: &PluginCli) -> Result<Self> {
        let options = KubeConfigOptions { context: cli.context.clone(), ..Default::default() };
        let config = match (&cli.kubeconfig, &cli.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    PluginError(format!("cannot read kubeconfig {}: {}", path.display(), chain(&e)))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| {
                    PluginError(format!("kubeconfig {}: {}", path.display(), chain(&e)))
                })?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| PluginError(format!("kubeconfig: {}", chain(&e))))?,
            (None, None) => kube::Config::infer()
                .await
                .map_err(|e| PluginError(format!("no cluster to talk to: {}", chain(&e))))?,
        };
        let mut config = config;
        config.connect_timeout = Some(Duration::from_secs(10));
        let server = config.cluster_url.to_string();
        let namespace = cli.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = crate::k8s::client::prompt_client(config)
            .map_err(|e| PluginError(format!("cannot build a client: {}", chain(&e))))?;
        Ok(Self { client, namespace, server })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Words an API error: what was missing, who may not do what, or that the server is away.
    fn explain(&self, e: kube::Error, kind: &str, name: Option<&str>) -> PluginError {
        let ns = &self.namespace;
        PluginError(match e {
            kube::Error::Api(status) if status.code == 404 => match (name, &status.details) {
                (Some(name), Some(_)) => {
                    format!("{kind} \"{name}\" not found in namespace \"{ns}\"")
                }
                _ => format!(
                    "the {kind} API is not served by {}: are the cocoon-operator CRDs installed? \
                     (kubectl apply -f deploy/crd.yaml -f deploy/cocoonset-crd.yaml)",
                    self.server
                ),
            },
            kube::Error::Api(status) if status.code == 403 => {
                format!("forbidden: {} (check your RBAC with `kubectl auth can-i`)", status.message)
            }
            kube::Error::Api(status) => {
                format!(
                    "the API server refused: {} ({} {})",
                    status.message, status.code, status.reason
                )
            }
            e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => format!(
                "cannot reach the API server at {}: {} (is the cluster up? check --context and --kubeconfig)",
                self.server,
                chain(&e)
            ),
            e => chain(&e),
        })
    }
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

/// Runs one plugin command, writing its output to stdout.
pub async fn run(cli: PluginCli) -> Result<()> {
    let target = Target::connect(&cli).await?;
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    match cli.command {
        PluginCommand::Status { set, all_namespaces } => {
            print!("{}", status(&target, set.as_deref(), all_namespaces, color).await?);
        }
        PluginCommand::Hibernate(args) => {
            pod_round(&target, args, HibernationAction::Hibernate).await?
        }
        PluginCommand::Wake(args) => pod_round(&target, args, HibernationAction::Wake).await?,
        PluginCommand::Suspend(args) => suspend(&target, args, true).await?,
        PluginCommand::Resume(args) => suspend(&target, args, false).await?,
        PluginCommand::Scale { set, replicas } => scale(&target, &set, replicas).await?,
        PluginCommand::Touch { set } => {
            touch(&target, &set).await?;
            println!("cocoonset/{set} touched");
        }
    }
    Ok(())
}

async fn status(target: &Target, only: Option<&str>, all: bool, color: bool) -> Result<String> {
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
    Ok(tree::render(&sets, &hibs, color))
}

/// The phase a Hibernation reaches when `action` is done.
fn done_phase(action: HibernationAction) -> HibernationPhase {
    match action {
        HibernationAction::Hibernate => HibernationPhase::Hibernated,
        HibernationAction::Wake => HibernationPhase::Active,
    }
}

async fn pod_round(target: &Target, args: PodArgs, action: HibernationAction) -> Result<()> {
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
async fn touch(target: &Target, set: &str) -> Result<()> {
    let sets: Api<CocoonSet> = target.api();
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"metadata": {"annotations": {crate::contract::ANN_LAST_ACTIVITY: now.to_string()}}});
    sets.patch(set, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.explain(e, "cocoonset", Some(set)))?;
    Ok(())
}

async fn suspend(target: &Target, args: SetArgs, on: bool) -> Result<()> {
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
        let line = format!(
            "cocoonset/{set_name}: {}  agents {}/{}{}",
            phase.as_str(),
            status.ready_agents,
            status.desired_agents,
            status.message.as_deref().map(|m| format!("  ({m})")).unwrap_or_default()
        );
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

async fn scale(target: &Target, set: &str, replicas: i32) -> Result<()> {
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
