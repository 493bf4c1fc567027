//! `cocoon-dev dev`: control plane, CRDs, simulator, operator and the example objects in one
//! process, showing progress as the demo converges.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Api, Client, CustomResourceExt};

use crate::api::{CocoonSet, CocoonSetPhase, Hibernation, HibernationPhase};
use crate::config::OperatorConfig;
use crate::contract::FIELD_MANAGER;
use crate::devcluster::{DevCluster, DevClusterOptions};
use crate::operator::{Operator, config_from_kubeconfig};
use crate::sim::{SimConfig, Simulator};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Flags of `cocoon-dev dev`.
#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Exit once the demo has converged (for scripts) instead of running until Ctrl-C.
    #[arg(long, env = "COCOON_DEV_ONCE")]
    pub once: bool,
    /// Where to write the admin kubeconfig.
    #[arg(long, env = "COCOON_DEV_KUBECONFIG", default_value = "target/dev/kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Example objects to apply (every YAML document in the directory).
    #[arg(long, env = "COCOON_DEV_EXAMPLES", default_value = "deploy/examples")]
    pub examples: PathBuf,
    /// Address of /metrics and /debug/actors.
    #[arg(long, env = "COCOON_DEV_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "COCOON_DEV_PROBE_ADDR", default_value = "127.0.0.1:8081")]
    pub probe_addr: SocketAddr,
    /// Give up waiting for convergence after this long.
    #[arg(long, env = "COCOON_DEV_TIMEOUT", default_value = "180s", value_parser = crate::duration::parse_duration)]
    pub timeout: Duration,
}

fn step(text: &str) {
    println!("==> {text}");
}

/// Runs the demo.
pub async fn run(args: DevArgs) -> Result<(), BoxError> {
    let started = Instant::now();
    step("starting a local control plane (etcd, kube-apiserver, kube-controller-manager)");
    let options = DevClusterOptions {
        kubeconfig_out: Some(std::path::absolute(&args.kubeconfig)?),
        ..Default::default()
    };
    let cluster = DevCluster::start(options).await?;
    let kubeconfig = std::path::absolute(&args.kubeconfig)?;
    println!(
        "    API server {} ready in {:.1}s",
        cluster.base_url(),
        cluster.ready_in().as_secs_f64()
    );
    println!(
        "    kubeconfig: {}   (try: kubectl --kubeconfig {} get cocoon,pods -A)",
        kubeconfig.display(),
        kubeconfig.display()
    );
    let client = cluster.client().await?;

    step(
        "installing the CRDs from the Rust types (same as deploy/crd.yaml, deploy/cocoonset-crd.yaml)",
    );
    install_crds(&client).await?;

    step("starting the vk-cocoon simulator on node cocoon-pool");
    let sim_config = SimConfig {
        create_delay: Duration::from_millis(500),
        hibernate_delay: Duration::from_millis(800),
        wake_delay: Duration::from_millis(800),
        delete_delay: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let sim = Simulator::start(client.clone(), sim_config).await?;

    step("starting the operator");
    let config = OperatorConfig {
        metrics_addr: args.metrics_addr,
        probe_addr: args.probe_addr,
        ..Default::default()
    };
    let operator = Operator::start(config_from_kubeconfig(&kubeconfig).await?, &config).await?;
    println!(
        "    metrics: http://{0}/metrics   actor tree: http://{0}/debug/actors?format=text",
        operator.metrics_addr()
    );

    // CocoonSets first; the other examples (a Hibernation of one of their pods) once the sets
    // run, so the demo shows each resource doing its job rather than waiting for a pod.
    step(&format!("applying the CocoonSets in {}", args.examples.display()));
    for line in apply_examples(&client, &args.examples, |kind| kind == "CocoonSet").await? {
        println!("    {line}");
    }
    let mut converged = watch_progress(&client, args.timeout).await;
    if converged.is_ok() {
        step(&format!("applying the other examples in {}", args.examples.display()));
        for line in apply_examples(&client, &args.examples, |kind| kind != "CocoonSet").await? {
            println!("    {line}");
        }
        step("waiting for the demo to converge");
        converged = watch_progress(&client, args.timeout).await;
    }
    println!();
    print_kubectl(&kubeconfig, &["get", "cocoonsets,hibernations,pods", "-A", "-o", "wide"]).await;
    println!(
        "\nactor tree:\n{}",
        cocoon_operator::actors::tree::render_text(&operator.probe().tree())
    );
    match &converged {
        Ok(()) => println!("demo converged in {:.1}s", started.elapsed().as_secs_f64()),
        Err(e) => println!("demo did not converge: {e}"),
    }
    if !args.once {
        println!("\nrunning until Ctrl-C; kubeconfig: {}", kubeconfig.display());
        cocoon_operator::signal::shutdown().await;
    }
    step("stopping");
    operator.shutdown(Duration::from_secs(10)).await;
    sim.shutdown().await;
    drop(cluster);
    converged.map_err(Into::into)
}

/// Installs both CRDs (server-side apply) and waits until they are Established.
pub async fn install_crds(client: &Client) -> Result<(), BoxError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in [Hibernation::crd(), CocoonSet::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
        let established = kube::runtime::conditions::is_crd_established();
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(api.clone(), &name, established),
        )
        .await
        .map_err(|_| format!("CRD {name} not Established within 30s"))??;
        println!("    {name} established");
    }
    Ok(())
}

/// Server-side applies every object of the directory whose kind `wanted` accepts.
async fn apply_examples(
    client: &Client,
    dir: &std::path::Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, BoxError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut applied = Vec::new();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject = serde_json::from_value(value)?;
            let types = object.types.clone().ok_or("example without apiVersion/kind")?;
            let gvk = GroupVersionKind::try_from(&types)?;
            if !wanted(&gvk.kind) {
                continue;
            }
            let resource = ApiResource::from_gvk(&gvk);
            let namespace = object.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = object.metadata.name.clone().ok_or("example without a name")?;
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            api.patch(&name, &params, &Patch::Apply(&object)).await?;
            applied.push(format!("{} {namespace}/{name} (from {})", gvk.kind, file.display()));
        }
    }
    Ok(applied)
}

/// Prints each phase change of every CocoonSet and Hibernation (from watches, not polling)
/// until all are settled.
async fn watch_progress(client: &Client, timeout: Duration) -> Result<(), String> {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    enum Seen {
        Set(Event<CocoonSet>),
        Hib(Event<Hibernation>),
    }
    let sets = watcher::watcher(Api::<CocoonSet>::all(client.clone()), watcher::Config::default())
        .map(|e| e.map(Seen::Set));
    let hibs =
        watcher::watcher(Api::<Hibernation>::all(client.clone()), watcher::Config::default())
            .map(|e| e.map(Seen::Hib));
    let mut events = std::pin::pin!(futures::stream::select(sets, hibs));
    let mut state: std::collections::BTreeMap<String, (String, bool)> = Default::default();
    let mut last = String::new();
    let mut listed = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let event = match next {
            Err(_) => return Err(format!("not settled within {timeout:?}: {last}")),
            Ok(None) => return Err("the watch ended".into()),
            Ok(Some(Err(e))) => {
                println!("    (watch error: {e}; retrying)");
                continue;
            }
            Ok(Some(Ok(event))) => event,
        };
        match event {
            Seen::Set(Event::Apply(set) | Event::InitApply(set)) => {
                let status = set.status.clone().unwrap_or_default();
                let phase = status.phase.unwrap_or_default();
                let line =
                    format!("{} {}/{}", phase.as_str(), status.ready_agents, status.desired_agents);
                let settled = matches!(phase, CocoonSetPhase::Running | CocoonSetPhase::Suspended);
                state.insert(format!("cs/{}", kube::ResourceExt::name_any(&set)), (line, settled));
            }
            Seen::Hib(Event::Apply(hib) | Event::InitApply(hib)) => {
                let phase = hib.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
                let settled =
                    matches!(phase, HibernationPhase::Hibernated | HibernationPhase::Active);
                state.insert(
                    format!("hib/{}", kube::ResourceExt::name_any(&hib)),
                    (phase.as_str().to_string(), settled),
                );
            }
            Seen::Set(Event::InitDone) | Seen::Hib(Event::InitDone) => listed += 1,
            _ => continue,
        }
        let line =
            state.iter().map(|(k, (v, _))| format!("{k} {v}")).collect::<Vec<_>>().join("   ");
        if line != last {
            println!("    {line}");
            last = line;
        }
        // Judge only once both watches have listed everything: a half-listed view is not settled.
        if listed >= 2 && !state.is_empty() && state.values().all(|(_, settled)| *settled) {
            return Ok(());
        }
    }
}

async fn print_kubectl(kubeconfig: &std::path::Path, args: &[&str]) {
    // The kubectl built with the control plane matches the API server's version.
    let kubectl = match crate::devcluster::Binaries::locate(None).await {
        Ok(b) => b.kubectl,
        Err(_) => PathBuf::from("kubectl"),
    };
    let out = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await;
    match out {
        Ok(o) => {
            println!("$ kubectl {}", args.join(" "));
            print!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
        Err(e) => println!("(could not run kubectl: {e})"),
    }
}
