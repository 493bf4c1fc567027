//! Where the plugin talks to (a client of the user's kubeconfig and a namespace), and how to
//! word what went wrong there.

use std::fmt::Write as _;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};

use crate::{PluginCli, PluginError, Result};

/// Where the plugin talks to, and how to word what went wrong there.
pub struct Target {
    pub client: Client,
    pub namespace: String,
    server: String,
}

impl Target {
    pub async fn connect(cli: &PluginCli) -> Result<Self> {
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
        let client = Client::try_from(config)
            .map_err(|e| PluginError(format!("cannot build a client: {}", chain(&e))))?;
        Ok(Self { client, namespace, server })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Words an API error: what was missing, who may not do what, or that the server is away.
    pub fn explain(&self, e: kube::Error, kind: &str, name: Option<&str>) -> PluginError {
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
pub fn chain(e: &dyn std::error::Error) -> String {
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
