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
use crate::sim::SimConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Simulated vk-cocoon nodes of the demo: a small fleet, so that placement shows.
const DEMO_NODES: u32 = 3;

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
    /// Print the logs on stderr instead of into `dev.log` beside the kubeconfig.
    #[arg(short, long, env = "COCOON_DEV_VERBOSE")]
    pub verbose: bool,
}

impl DevArgs {
    /// The log file of a run without `--verbose`: `dev.log` beside the kubeconfig.
    pub fn log_file(&self) -> PathBuf {
        self.kubeconfig.parent().unwrap_or(std::path::Path::new(".")).join("dev.log")
    }
}

fn step(text: &str) {
    println!("==> {text}");
}

/// Runs the demo.
pub async fn run(args: DevArgs) -> Result<(), BoxError> {
    let started = Instant::now();
    if !args.verbose {
        let log = std::path::absolute(args.log_file())?;
        println!("logs: {}   (or run with --verbose to see them here)", log.display());
    }
    step(
        "starting a local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)",
    );
    let options = DevClusterOptions {
        kubeconfig_out: Some(std::path::absolute(&args.kubeconfig)?),
        scheduler: true,
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

    let sim_config = SimConfig {
        nodes: DEMO_NODES,
        create_delay: Duration::from_millis(500),
        hibernate_delay: Duration::from_millis(800),
        wake_delay: Duration::from_millis(800),
        delete_delay: Duration::from_millis(300),
        ..SimConfig::default()
    };
    step(&format!(
        "starting the vk-cocoon simulator on {DEMO_NODES} nodes ({}); the scheduler places each set",
        sim_config.fleet_names().join(", ")
    ));
    let sims = crate::sim::start_fleet(client.clone(), sim_config).await?;

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
    // A set writes progress (counts, one agent's phase) once per status batch: let the last
    // batch land so the views below agree with the pods.
    tokio::time::sleep(config.status_batch + Duration::from_millis(200)).await;
    println!();
    print_kubectl(&kubeconfig, &["get", "cocoonsets,hibernations,pods", "-A", "-o", "wide"]).await;
    println!();
    print_next_steps(&client, &kubeconfig).await;
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
    for sim in sims {
        sim.shutdown().await;
    }
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

/// One row of the progress table.
#[derive(Clone, PartialEq)]
struct Row {
    phase: String,
    ready: String,
    note: String,
    settled: bool,
    changed: Duration,
}

/// The progress table: one row per object, columns padded to the widest cell.
fn progress_table(state: &std::collections::BTreeMap<(String, String), Row>) -> Vec<String> {
    let mut rows =
        vec![["NAMESPACE", "OBJECT", "PHASE", "READY", "SINCE", "MESSAGE"].map(String::from)];
    for ((ns, object), row) in state {
        let mut note = row.note.clone();
        if note.chars().count() > 60 {
            note = note.chars().take(57).collect::<String>() + "...";
        }
        rows.push([
            ns.clone(),
            object.clone(),
            row.phase.clone(),
            row.ready.clone(),
            format!("{:.1}s", row.changed.as_secs_f64()),
            note,
        ]);
    }
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> =
                r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            format!("    {}", cells.join("  ").trim_end())
        })
        .collect()
}

/// Shows every CocoonSet and Hibernation as a live table (from watches, not polling) until all
/// are settled: redrawn in place on a terminal, one line per change otherwise.
async fn watch_progress(client: &Client, timeout: Duration) -> Result<(), String> {
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::runtime::watcher::{self, Event};
    use std::io::{IsTerminal, Write};
    // One event at a time passes through: its size does not matter.
    #[allow(clippy::large_enum_variant)]
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
    let tty = std::io::stdout().is_terminal();
    let began = Instant::now();
    let mut state: std::collections::BTreeMap<(String, String), Row> = Default::default();
    let mut drawn = 0usize;
    let mut listed = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let event = match next {
            Err(_) => {
                let waiting: Vec<String> = state
                    .iter()
                    .filter(|(_, r)| !r.settled)
                    .map(|((ns, o), r)| format!("{ns}/{o} {}", r.phase))
                    .collect();
                return Err(format!("not settled within {timeout:?}: {}", waiting.join(", ")));
            }
            Ok(None) => return Err("the watch ended".into()),
            Ok(Some(Err(e))) => {
                println!("    (watch error: {e}; retrying)");
                drawn = 0;
                continue;
            }
            Ok(Some(Ok(event))) => event,
        };
        let (key, mut row) = match event {
            Seen::Set(Event::Apply(set) | Event::InitApply(set)) => {
                let status = set.status.clone().unwrap_or_default();
                let phase = status.phase.unwrap_or_default();
                let current = status.observed_generation == set.metadata.generation;
                let row = Row {
                    phase: phase.as_str().to_string(),
                    ready: format!(
                        "{}/{} agents, {}/{} toolboxes",
                        status.ready_agents,
                        status.desired_agents,
                        status.ready_toolboxes,
                        set.spec.toolboxes.len()
                    ),
                    note: status.message.clone().unwrap_or_default(),
                    settled: current
                        && matches!(phase, CocoonSetPhase::Running | CocoonSetPhase::Suspended),
                    changed: Duration::ZERO,
                };
                (
                    (set.namespace().unwrap_or_default(), format!("cocoonset/{}", set.name_any())),
                    row,
                )
            }
            Seen::Hib(Event::Apply(hib) | Event::InitApply(hib)) => {
                let status = hib.status.clone().unwrap_or_default();
                let phase = status.phase.unwrap_or_default();
                let row = Row {
                    phase: phase.as_str().to_string(),
                    ready: format!("pod {}", hib.spec.pod_name),
                    note: status.message.clone().unwrap_or_default(),
                    settled: status.observed_generation == hib.metadata.generation
                        && matches!(phase, HibernationPhase::Hibernated | HibernationPhase::Active),
                    changed: Duration::ZERO,
                };
                (
                    (
                        hib.namespace().unwrap_or_default(),
                        format!("hibernation/{}", hib.name_any()),
                    ),
                    row,
                )
            }
            Seen::Set(Event::InitDone) | Seen::Hib(Event::InitDone) => {
                listed += 1;
                continue;
            }
            _ => continue,
        };
        let unchanged = state.get(&key).is_some_and(|old| {
            (&old.phase, &old.ready, &old.note) == (&row.phase, &row.ready, &row.note)
        });
        if !unchanged {
            row.changed = began.elapsed();
            state.insert(key.clone(), row);
            let table = progress_table(&state);
            let mut out = std::io::stdout().lock();
            if tty {
                // Redraw in place: up over the last table, clear to the end of the screen.
                if drawn > 0 {
                    let _ = write!(out, "\x1b[{drawn}A\x1b[J");
                }
                for line in &table {
                    let _ = writeln!(out, "{line}");
                }
                drawn = table.len();
            } else {
                // One line per change: the header once, then the row that changed.
                if drawn == 0 {
                    let _ = writeln!(out, "{}", table[0]);
                    drawn = 1;
                }
                let at = state.keys().position(|k| *k == key).map_or(0, |i| i + 1);
                let _ = writeln!(out, "{}", table[at]);
            }
            let _ = out.flush();
        }
        // Judge only once both watches have listed everything: a half-listed view is not settled.
        if listed >= 2 && !state.is_empty() && state.values().all(|r| r.settled) {
            return Ok(());
        }
    }
}

/// The commands to try once the demo runs, with the demo's own names.
async fn print_next_steps(client: &Client, kubeconfig: &std::path::Path) {
    let sets = Api::<CocoonSet>::all(client.clone()).list(&Default::default()).await;
    let hibs = Api::<Hibernation>::all(client.clone()).list(&Default::default()).await;
    let (Ok(sets), Ok(hibs)) = (sets, hibs) else { return };
    println!("$ kubectl cocoon status -A");
    print!("{}", kubectl_cocoon::tree::render(&sets.items, &hibs.items, false));
    let Some(set) = sets.items.first() else { return };
    let name = kube::ResourceExt::name_any(set);
    let ns = kube::ResourceExt::namespace(set).unwrap_or_else(|| "default".into());
    let status = set.status.clone().unwrap_or_default();
    let sub = status.agents.iter().find(|a| a.slot > 0).map(|a| a.pod_name.clone());
    let bin = std::path::absolute("target/debug").unwrap_or_else(|_| "target/debug".into());
    println!("\nTry it (in another terminal):");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  export PATH={}:$PATH   # kubectl-cocoon (or: make install)", bin.display());
    println!("  kubectl get cocoonsets,hibernations,pods -n {ns}");
    println!("  kubectl cocoon status -n {ns}");
    println!("  kubectl scale cocoonset {name} -n {ns} --replicas={}", status.desired_agents);
    println!("  kubectl wait --for=condition=Ready cocoonset/{name} -n {ns} --timeout=60s");
    if let Some(pod) = sub {
        println!("  kubectl cocoon hibernate {pod} -n {ns} --wait");
        println!("  kubectl cocoon wake {pod} -n {ns} --wait");
    }
    println!("  kubectl cocoon suspend {name} -n {ns} --wait");
    println!("  kubectl cocoon resume {name} -n {ns} --wait");
    println!("  kubectl describe cocoonset {name} -n {ns}");
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
