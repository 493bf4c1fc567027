//! The snapshot registry of a cocoonstack vk-cocoon (PROVIDERS.md §4): where `<vm>:hibernate`
//! and `<vm>:latest` live. The operator probes a snapshot, and deletes the ones it owns that no
//! VM needs any more (a woken VM's `:hibernate`, which vk-cocoon never deletes and which a
//! current provider would restore into the next pod of that name). The distribution protocol
//! (auth challenge, token exchange, manifests, blob uploads) is `oci-client`'s; the delete, which
//! that crate does not offer, is one `DELETE /v2/<repo>/manifests/<tag>` sent with the
//! credentials it negotiated.
//!
//! Addresses are registry-relative, as vk-cocoon's: repository `<prefix>/<vm>` on the registry
//! the operator is pointed at (`--registry host[:port][/prefix]`, or `http://…` for a plain-HTTP
//! registry on a trusted network).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

/// What can go wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address is no registry address.
    #[error("registry address {0:?}: {1}")]
    Address(String, String),
    /// The credentials file cannot be read.
    #[error("registry credentials {0}: {1}")]
    Credentials(String, String),
    /// The registry refused or failed.
    #[error("{0}")]
    Registry(String),
}

/// Result of registry calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Media type of the artefacts vk-cocoon pushes (`epoch@fcafc2d:snapshot/push.go`).
pub const SNAPSHOT_ARTIFACT_TYPE: &str = "application/vnd.cocoonstack.snapshot.v1+json";
/// Manifest annotation: the image the snapshot's VM was booted from.
pub const ANNOTATION_BASE_IMAGE: &str = "cocoonstack.snapshot.baseimage";
/// Manifest annotation: the node that pushed it.
pub const ANNOTATION_FROM_NODE: &str = "cocoonstack.snapshot.from-node";

/// How to reach the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `host[:port][/prefix]`, or with `http://` for plain HTTP (`https://` is the default).
    pub address: String,
    /// Docker `config.json` (a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`,
    /// mounted as a file) with the credentials of the registry's host.
    pub auth_file: Option<std::path::PathBuf>,
}

/// A client of the snapshot registry.
pub struct Registry {
    client: Client,
    http: reqwest::Client,
    /// `http` or `https`.
    scheme: &'static str,
    /// `host[:port]`.
    host: String,
    /// Repository prefix (no slashes at either end), possibly empty.
    prefix: String,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({}://{}/{})", self.scheme, self.host, self.prefix)
    }
}

/// How long one registry request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

impl Registry {
    /// A client for `config`; reads the credentials file once.
    pub fn new(config: &RegistryConfig) -> Result<Self> {
        // rustls needs a process-wide provider; kube's is ring too. Already set is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (scheme, rest) = match config.address.split_once("://") {
            Some(("http", rest)) => ("http", rest),
            Some(("https", rest)) => ("https", rest),
            Some((other, _)) => {
                let why = format!("scheme {other} is neither http nor https");
                return Err(Error::Address(config.address.clone(), why));
            }
            None => ("https", config.address.as_str()),
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(Error::Address(config.address.clone(), "no host".into()));
        }
        let auth = match &config.auth_file {
            Some(path) => auth_from_docker_config(path, host)?,
            None => RegistryAuth::Anonymous,
        };
        let protocol = if scheme == "http" { ClientProtocol::Http } else { ClientProtocol::Https };
        let client = Client::new(ClientConfig {
            protocol,
            read_timeout: Some(TIMEOUT),
            connect_timeout: Some(Duration::from_secs(5)),
            ..ClientConfig::default()
        });
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| Error::Registry(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            http,
            scheme,
            host: host.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            auth,
        })
    }

    /// The repository of VM `vm`.
    fn repository(&self, vm: &str) -> String {
        if self.prefix.is_empty() { vm.to_string() } else { format!("{}/{vm}", self.prefix) }
    }

    fn reference(&self, vm: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), self.repository(vm), tag.to_string())
    }

    /// Whether `<vm>:<tag>` exists (a HEAD of its manifest).
    pub async fn exists(&self, vm: &str, tag: &str) -> Result<bool> {
        let reference = self.reference(vm, tag);
        match self.client.fetch_manifest_digest(&reference, &self.auth).await {
            Ok(_) => Ok(true),
            Err(e) if is_absent(&e) => Ok(false),
            Err(e) => Err(Error::Registry(format!("probe {vm}:{tag}: {e}"))),
        }
    }

    /// Deletes `<vm>:<tag>`; one that does not exist is deleted already. The tag is deleted,
    /// not the manifest it points to: another tag of the same content stays.
    pub async fn delete(&self, vm: &str, tag: &str) -> Result<()> {
        let reference = self.reference(vm, tag);
        let token = self
            .client
            .auth(&reference, &self.auth, RegistryOperation::Push)
            .await
            .map_err(|e| Error::Registry(format!("authorize delete of {vm}:{tag}: {e}")))?;
        let url =
            format!("{}://{}/v2/{}/manifests/{tag}", self.scheme, self.host, self.repository(vm));
        let request = self.http.delete(&url);
        let request = match (&token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, RegistryAuth::Bearer(token)) => request.bearer_auth(token),
            (None, RegistryAuth::Anonymous) => request,
        };
        let response =
            request.send().await.map_err(|e| Error::Registry(format!("delete {vm}:{tag}: {e}")))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(Error::Registry(format!("delete {vm}:{tag}: {status}: {}", body.trim())))
    }

    /// Retires `<vm>:hibernate`: with `keep`, its manifest is first put under `<vm>:latest`
    /// (the snapshot stays, under the name no provider restores by itself); then the tag goes.
    pub async fn retire(&self, vm: &str, keep: bool) -> Result<()> {
        use crate::contract::dialect::{TAG_HIBERNATE, TAG_LATEST};
        if keep {
            let from = self.reference(vm, TAG_HIBERNATE);
            let pulled = self.client.pull_manifest_raw(&from, &self.auth, MANIFEST_TYPES).await;
            match pulled {
                Ok((manifest, _digest)) => {
                    let to = self.reference(vm, TAG_LATEST);
                    let media = media_type(&manifest);
                    self.client.auth(&to, &self.auth, RegistryOperation::Push).await.map_err(
                        |e| Error::Registry(format!("authorize push of {vm}:latest: {e}")),
                    )?;
                    self.client.push_manifest_raw(&to, manifest.to_vec(), media).await.map_err(
                        |e| Error::Registry(format!("keep {vm}:hibernate as :latest: {e}")),
                    )?;
                }
                Err(e) if is_absent(&e) => return Ok(()),
                Err(e) => return Err(Error::Registry(format!("read {vm}:hibernate: {e}"))),
            }
        }
        self.delete(vm, TAG_HIBERNATE).await
    }

    /// Pushes a small snapshot artefact as `<vm>:<tag>`, annotated as vk-cocoon annotates its
    /// snapshots (the simulator's part: a real provider pushes the VM's memory and disks).
    pub async fn push_snapshot(&self, vm: &str, tag: &str, node: &str) -> Result<()> {
        let reference = self.reference(vm, tag);
        let config = serde_json::json!({ "vm": vm, "tag": tag, "node": node });
        let config = Config::new(
            serde_json::to_vec(&config).unwrap_or_default(),
            SNAPSHOT_ARTIFACT_TYPE.to_string(),
            None,
        );
        let layer = ImageLayer::new(
            format!("simulated snapshot of {vm}:{tag} from {node}\n").into_bytes(),
            "application/octet-stream".to_string(),
            None,
        );
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        manifest.artifact_type = Some(SNAPSHOT_ARTIFACT_TYPE.to_string());
        manifest.annotations = Some(BTreeMap::from([
            (ANNOTATION_FROM_NODE.to_string(), node.to_string()),
            (ANNOTATION_BASE_IMAGE.to_string(), String::new()),
        ]));
        self.client
            .push(&reference, &[layer], config, &self.auth, Some(manifest))
            .await
            .map_err(|e| Error::Registry(format!("push {vm}:{tag}: {e}")))?;
        Ok(())
    }
}

/// Manifest media types read back for a copy.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The media type a manifest declares (an OCI manifest when it declares none).
fn media_type(manifest: &[u8]) -> reqwest::header::HeaderValue {
    let declared = serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|m| m.get("mediaType").and_then(|t| t.as_str()).map(str::to_string));
    let text = declared.unwrap_or_else(|| MANIFEST_TYPES[0].to_string());
    reqwest::header::HeaderValue::from_str(&text)
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(MANIFEST_TYPES[0]))
}

/// Whether a registry answer means "no such manifest".
fn is_absent(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .all(|e| matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown)),
        _ => false,
    }
}

/// The credentials of `host` in a Docker `config.json` (`auths.<host>.auth`, base64 of
/// `user:password`, or `username`/`password`).
fn auth_from_docker_config(path: &Path, host: &str) -> Result<RegistryAuth> {
    use base64::Engine;
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Credentials(shown.clone(), e.to_string()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Credentials(shown.clone(), e.to_string()))?;
    let auths = config.get("auths").and_then(|a| a.as_object());
    let entry = auths.and_then(|auths| {
        auths.iter().find_map(|(key, value)| {
            let key = key.trim_start_matches("https://").trim_start_matches("http://");
            (key.trim_end_matches('/') == host).then_some(value)
        })
    });
    let Some(entry) = entry else {
        let why = format!("no entry for {host} under auths");
        return Err(Error::Credentials(shown, why));
    };
    let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    if let (Some(user), Some(password)) = (field("username"), field("password")) {
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    if let Some(token) = field("registrytoken").or_else(|| field("identitytoken")) {
        return Ok(RegistryAuth::Bearer(token.to_string()));
    }
    let Some(encoded) = field("auth") else {
        return Err(Error::Credentials(shown, format!("the entry for {host} has no credentials")));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| Error::Credentials(shown.clone(), format!("auth of {host}: {e}")))?;
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    match decoded.split_once(':') {
        Some((user, password)) => Ok(RegistryAuth::Basic(user.to_string(), password.to_string())),
        None => Err(Error::Credentials(shown, format!("auth of {host} is not user:password"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_scheme_host_and_prefix() {
        let registry = |address: &str| {
            Registry::new(&RegistryConfig { address: address.into(), auth_file: None })
        };
        let r = registry("http://127.0.0.1:5000").unwrap();
        assert_eq!((r.scheme, r.host.as_str(), r.prefix.as_str()), ("http", "127.0.0.1:5000", ""));
        assert_eq!(r.repository("vk-a-b-0"), "vk-a-b-0");
        let r = registry("registry.example.com/cocoon/snapshots/").unwrap();
        assert_eq!((r.scheme, r.host.as_str()), ("https", "registry.example.com"));
        assert_eq!(r.repository("vk-a-b-0"), "cocoon/snapshots/vk-a-b-0");
        assert!(matches!(registry("ftp://x"), Err(Error::Address(..))));
        assert!(matches!(registry("https://"), Err(Error::Address(..))));
    }

    #[test]
    fn credentials_come_from_a_docker_config_of_the_registrys_host() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        let text = serde_json::json!({ "auths": {
            "https://registry.example.com": { "auth": encoded },
            "other.example.com": { "username": "u", "password": "p" },
        }});
        std::fs::write(&path, text.to_string()).unwrap();
        let basic = auth_from_docker_config(&path, "registry.example.com").unwrap();
        assert!(matches!(basic, RegistryAuth::Basic(u, p) if u == "robot" && p == "s3cret"));
        let plain = auth_from_docker_config(&path, "other.example.com").unwrap();
        assert!(matches!(plain, RegistryAuth::Basic(u, _) if u == "u"));
        let missing = auth_from_docker_config(&path, "nowhere.example.com").unwrap_err();
        assert!(missing.to_string().contains("no entry for nowhere.example.com"), "{missing}");
    }
}
