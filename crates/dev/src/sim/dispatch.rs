//! Watches the pods bound to the node and feeds each one to its own task; rebuilds the VM table
//! from the first full listing before any pod is acted on.
//!
//! RBAC: `pods` list, watch (cluster-wide, field selector `spec.nodeName`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::restore::restore;
use super::worker::{self, SimContext, pod_key};

/// Pod tasks by pod UID, and the listing in progress after a watch (re)start.
struct Dispatcher {
    ctx: Arc<SimContext>,
    feeds: HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    tasks: JoinSet<()>,
    /// Snapshot entries read at start, for the first rebuild only.
    snapshots: Option<HashSet<(String, String)>>,
    /// Pods of the first listing, held back until the VM table is rebuilt from all of them.
    initial: Vec<Pod>,
    /// UIDs seen in the current (re)listing; tasks of pods missing from it are ended.
    listed: HashSet<String>,
}

/// Runs until `shutdown` fires (or its sender is dropped), then stops every pod task.
pub async fn run(
    ctx: Arc<SimContext>,
    snapshots: HashSet<(String, String)>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.config.node_name);
    let mut events =
        watcher(api, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut dispatcher = Dispatcher {
        ctx,
        feeds: HashMap::new(),
        tasks: JoinSet::new(),
        snapshots: Some(snapshots),
        initial: Vec::new(),
        listed: HashSet::new(),
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = dispatcher.tasks.join_next(), if !dispatcher.tasks.is_empty() => {
                if let Err(error) = done {
                    // Its feed stays in the table; the pod's next event starts a fresh task.
                    warn!(%error, "pod task ended abnormally");
                }
            }
            event = events.try_next() => match event {
                Ok(Some(event)) => dispatcher.handle(event),
                Ok(None) => break,
                Err(error) => warn!(%error, "pod watch failed; retrying with backoff"),
            },
        }
    }
    dispatcher.tasks.shutdown().await;
}

impl Dispatcher {
    fn handle(&mut self, event: watcher::Event<Pod>) {
        let restored = self.snapshots.is_none();
        match event {
            watcher::Event::Init => {
                self.listed.clear();
                self.initial.clear();
            }
            watcher::Event::InitApply(pod) if !restored => self.initial.push(pod),
            watcher::Event::InitApply(pod) => {
                self.listed.extend(pod.metadata.uid.clone());
                self.feed(pod);
            }
            watcher::Event::InitDone => {
                if let Some(snapshots) = self.snapshots.take() {
                    self.rebuild(&snapshots);
                    for pod in std::mem::take(&mut self.initial) {
                        self.listed.extend(pod.metadata.uid.clone());
                        self.feed(pod);
                    }
                }
                // Pods deleted while the watch was down never sent a Delete event.
                let gone: Vec<String> =
                    self.feeds.keys().filter(|uid| !self.listed.contains(*uid)).cloned().collect();
                for uid in gone {
                    self.end(&uid);
                }
            }
            watcher::Event::Apply(pod) => self.feed(pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.end(uid);
                }
            }
        }
    }

    /// Restores the VM table from the first listing: the simulator may have been restarted.
    fn rebuild(&self, snapshots: &HashSet<(String, String)>) {
        let mut table = self.ctx.table();
        for pod in &self.initial {
            let (Some(uid), Some(restored)) =
                (pod.metadata.uid.as_ref(), restore(pod, snapshots, self.ctx.config.dialect))
            else {
                continue;
            };
            if restored.snapshot_missing {
                warn!(pod = %restored.record.pod_key, vm = %restored.record.name, "hibernated pod has no snapshot entry");
            }
            debug!(pod = %restored.record.pod_key, vm = %restored.record.name, state = ?restored.record.state, "VM restored");
            table.insert(uid.clone(), restored.record);
        }
        info!(node = %self.ctx.config.node_name, pods = self.initial.len(), vms = table.count(), "VM table rebuilt");
    }

    /// Hands the latest pod to its task, starting one for a new pod.
    fn feed(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            warn!(pod = %pod_key(&pod), "pod without a UID ignored");
            return;
        };
        let pod = Arc::new(pod);
        if let Some(feed) = self.feeds.get(&uid)
            && feed.send(Some(pod.clone())).is_ok()
        {
            return;
        }
        let (sender, receiver) = watch::channel(Some(pod));
        self.feeds.insert(uid.clone(), sender);
        self.tasks.spawn(worker::run(self.ctx.clone(), uid, receiver));
    }

    /// Tells the pod's task that the pod is gone.
    fn end(&mut self, uid: &str) {
        if let Some(feed) = self.feeds.remove(uid) {
            // An error means the task already ended; nothing left to tell.
            let _ = feed.send(None);
        }
    }
}
