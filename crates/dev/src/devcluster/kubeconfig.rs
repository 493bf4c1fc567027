//! Kubeconfig files for a dev cluster (certificates referenced by absolute path) and kube
//! clients built from them.

use std::path::Path;

use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use super::{Error, Result};

/// Name of the cluster, user and context in every kubeconfig written here.
pub const CONTEXT: &str = "cocoon-dev";

/// A kubeconfig for `server`, trusting `ca` and authenticating with a client certificate.
fn render(server: &str, ca: &Path, cert: &Path, key: &Path) -> Result<String> {
    let path = |p: &Path| Some(p.display().to_string());
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT.to_string(),
            cluster: Some(Cluster {
                server: Some(server.to_string()),
                certificate_authority: path(ca),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: CONTEXT.to_string(),
            auth_info: Some(AuthInfo {
                client_certificate: path(cert),
                client_key: path(key),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: CONTEXT.to_string(),
            context: Some(Context {
                cluster: CONTEXT.to_string(),
                user: Some(CONTEXT.to_string()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(CONTEXT.to_string()),
        kind: Some("Config".to_string()),
        api_version: Some("v1".to_string()),
        ..Kubeconfig::default()
    };
    serde_yaml::to_string(&config).map_err(Error::RenderKubeconfig)
}

/// Writes `text` to `path` (creating parent directories), readable by the owner only.
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}

/// Renders the kubeconfig of one identity (`cert`, `key`) for `server` and writes it to
/// `path`; returns its text.
pub fn write_for(path: &Path, server: &str, ca: &Path, cert: &Path, key: &Path) -> Result<String> {
    let text = render(server, ca, cert, key)?;
    write(path, &text)?;
    Ok(text)
}

/// A kube client for the kubeconfig at `path`. Build one per tokio runtime: a client's
/// connection pool lives on the runtime that created it.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(Error::Kubeconfig)?;
    cocoon_operator::k8s::client::prompt_client(config).map_err(Error::Client)
}
