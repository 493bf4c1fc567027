//! A stand-in for epoch, the snapshot registry vk-cocoon v0.2 pushes to (PROVIDERS.md §4), on
//! loopback, in memory. It speaks what v0.2.9's client sends — a blob uploaded by one
//! `PUT /v2/<name>/blobs/<digest>` answered `201` (no upload session: no standard registry
//! routes that), manifests put and read by tag or digest — and what the operator and OCI
//! clients send: `HEAD` of a manifest, `DELETE` of a tag, and the standard upload session
//! (`POST …/blobs/uploads/`, `PUT <location>?digest=`). Digests are checked; every request is
//! counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What the stand-in holds.
#[derive(Debug, Default)]
struct Store {
    /// `(repository, tag or digest)` → (media type, manifest).
    manifests: BTreeMap<(String, String), (String, Bytes)>,
    /// Blobs by digest (content-addressed, as epoch keeps them).
    blobs: BTreeMap<String, Bytes>,
    /// Upload sessions in progress: id → bytes so far.
    uploads: BTreeMap<String, Vec<u8>>,
    /// Requests answered, by method.
    requests: BTreeMap<String, u64>,
    next_upload: u64,
}

type Shared = Arc<Mutex<Store>>;

/// A running stand-in; it stops when dropped.
pub struct Epoch {
    address: SocketAddr,
    store: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Epoch {
    /// Serves on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let store = Shared::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(store.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { address, store, task })
    }

    /// `http://127.0.0.1:<port>`: vk-cocoon's `EPOCH_URL`, the operator's `--registry`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Whether `<repository>:<tag>` exists.
    pub fn has(&self, repository: &str, tag: &str) -> bool {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.manifests.contains_key(&(repository.to_string(), tag.to_string()))
    }

    /// Every `<repository>:<tag>` held (tags only, not digests).
    pub fn tags(&self) -> Vec<String> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store
            .manifests
            .keys()
            .filter(|(_, r)| !r.starts_with("sha256:"))
            .map(|(n, r)| format!("{n}:{r}"))
            .collect()
    }

    /// Requests answered so far, by method.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).requests.clone()
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The query parameter `name` of a URI.
fn query(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%3A", ":").replace("%3a", ":"))
    })
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
    *store.requests.entry(method.to_string()).or_insert(0) += 1;
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry path");
    };
    if rest.is_empty() {
        return StatusCode::OK.into_response();
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return manifest(&mut store, &method, name, reference, &headers, body);
    }
    if let Some((name, session)) = rest.split_once("/blobs/uploads") {
        return upload(&mut store, &method, &uri, name, session.trim_start_matches('/'), body);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return blob(&mut store, &method, name, digest, body);
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown route")
}

fn manifest(
    store: &mut Store,
    method: &Method,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let key = (name.to_string(), reference.to_string());
    match *method {
        Method::GET | Method::HEAD => match store.manifests.get(&key) {
            Some((media, bytes)) => {
                let digest = sha256(bytes);
                let mut response = if *method == Method::GET {
                    bytes.clone().into_response()
                } else {
                    StatusCode::OK.into_response()
                };
                let h = response.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    media.parse().unwrap_or(HeaderValue::from_static("application/json")),
                );
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                h.insert(
                    "docker-content-digest",
                    digest.parse().unwrap_or(HeaderValue::from_static("")),
                );
                response
            }
            None => error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown"),
        },
        Method::PUT => {
            let media = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                .to_string();
            let digest = sha256(&body);
            store.manifests.insert(key, (media.clone(), body.clone()));
            store.manifests.insert((name.to_string(), digest.clone()), (media, body));
            let mut response = StatusCode::CREATED.into_response();
            let h = response.headers_mut();
            h.insert(
                "docker-content-digest",
                digest.parse().unwrap_or(HeaderValue::from_static("")),
            );
            if let Ok(location) = format!("/v2/{name}/manifests/{digest}").parse() {
                h.insert(header::LOCATION, location);
            }
            response
        }
        Method::DELETE => match store.manifests.remove(&key) {
            Some(_) => StatusCode::ACCEPTED.into_response(),
            None => error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown"),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn blob(store: &mut Store, method: &Method, name: &str, digest: &str, body: Bytes) -> Response {
    match *method {
        Method::GET | Method::HEAD => match store.blobs.get(digest) {
            Some(bytes) => {
                let mut response = if *method == Method::GET {
                    bytes.clone().into_response()
                } else {
                    StatusCode::OK.into_response()
                };
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                response
            }
            None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
        },
        // epoch's monolithic upload: the whole blob at its digest, answered 201.
        Method::PUT => put_blob(store, name, digest, body),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn put_blob(store: &mut Store, name: &str, digest: &str, body: Bytes) -> Response {
    if sha256(&body) != digest {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest does not match content");
    }
    store.blobs.insert(digest.to_string(), body);
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert("docker-content-digest", digest.parse().unwrap_or(HeaderValue::from_static("")));
    if let Ok(location) = format!("/v2/{name}/blobs/{digest}").parse() {
        headers.insert(header::LOCATION, location);
    }
    response
}

fn upload(
    store: &mut Store,
    method: &Method,
    uri: &Uri,
    name: &str,
    session: &str,
    body: Bytes,
) -> Response {
    let session = session.split('?').next().unwrap_or_default().to_string();
    let location = |id: &str| format!("/v2/{name}/blobs/uploads/{id}");
    match *method {
        Method::POST => {
            // A monolithic POST (`?digest=`) completes at once.
            if let Some(digest) = query(uri, "digest") {
                return put_blob(store, name, &digest, body);
            }
            store.next_upload += 1;
            let id = format!("u{}", store.next_upload);
            store.uploads.insert(id.clone(), body.to_vec());
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Ok(l) = location(&id).parse() {
                response.headers_mut().insert(header::LOCATION, l);
            }
            response.headers_mut().insert("range", HeaderValue::from_static("0-0"));
            response
        }
        Method::PATCH => {
            let Some(data) = store.uploads.get_mut(&session) else {
                return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "upload unknown");
            };
            data.extend_from_slice(&body);
            let end = data.len().saturating_sub(1);
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Ok(l) = location(&session).parse() {
                response.headers_mut().insert(header::LOCATION, l);
            }
            if let Ok(range) = format!("0-{end}").parse() {
                response.headers_mut().insert("range", range);
            }
            response
        }
        Method::PUT => {
            let Some(mut data) = store.uploads.remove(&session) else {
                return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "upload unknown");
            };
            data.extend_from_slice(&body);
            let Some(digest) = query(uri, "digest") else {
                return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest");
            };
            put_blob(store, name, &digest, Bytes::from(data))
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_operators_client_probes_pushes_and_deletes_in_the_stand_in() {
        let epoch = Epoch::start().await.expect("start");
        let config =
            cocoon_operator::registry::RegistryConfig { address: epoch.url(), auth_file: None };
        let registry = cocoon_operator::registry::Registry::new(&config).unwrap();
        assert!(!registry.exists("vk-a-b-0", "hibernate").await.unwrap());
        registry.push_snapshot("vk-a-b-0", "hibernate", "n").await.expect("push");
        assert!(epoch.has("vk-a-b-0", "hibernate"));
        assert!(registry.exists("vk-a-b-0", "hibernate").await.unwrap());
        registry.retire("vk-a-b-0", true).await.expect("retire");
        assert_eq!(epoch.tags(), vec!["vk-a-b-0:latest".to_string()]);
        assert!(epoch.requests().contains_key("DELETE"));
    }

    #[tokio::test]
    async fn a_monolithic_blob_put_is_epochs_and_its_digest_is_checked() {
        let mut store = Store::default();
        let body = Bytes::from_static(b"layer");
        let digest = sha256(&body);
        let ok = blob(&mut store, &Method::PUT, "vk-a", &digest, body.clone());
        assert_eq!(ok.status(), StatusCode::CREATED);
        let bad = blob(&mut store, &Method::PUT, "vk-a", "sha256:00", body);
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let head = blob(&mut store, &Method::HEAD, "vk-a", &digest, Bytes::new());
        assert_eq!(head.status(), StatusCode::OK);
    }
}
