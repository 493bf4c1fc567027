//! The operator's kube client: the default stack plus a layer that counts every request by verb
//! and result, so "idle means zero API requests" is measurable, and bounds how many requests
//! (watches aside) are in flight at once.
//!
//! The stack is kube's own (base URI, retry of 429/503/504, auth, extra headers, connect/read/
//! write timeouts, rustls) with one change: its TCP sockets set `TCP_NODELAY`, as Go's client
//! does. kube's connector leaves Nagle's algorithm on, and the first request on a new
//! connection follows the TLS Finished record at once: Nagle holds it until that record is
//! acknowledged, and the API server, having nothing to send, acknowledges it only when its
//! delayed-ACK timer fires, ~40 ms later. strace of the bench at 10 sets showed exactly that:
//! every new connection's first request answered ~50 ms after it was written, the next ones on
//! the same connection in a few ms. A burst opens up to `max_in_flight` connections, so the first
//! writes of a burst paid it.
//!
//! Why the bound: kube's client speaks HTTP/1.1, one request per connection at a time, and its
//! pool opens a new connection (a TCP and TLS handshake on both sides) for every request that
//! finds none idle. A thousand CocoonSets created at once would otherwise open about a thousand
//! connections: buffers in the operator, handshakes and goroutines in the API server, and a
//! tail of first writes waiting on handshakes. With the bound, requests wait their turn (FIFO)
//! and reuse at most `max_in_flight` pooled connections. Watches are long-lived requests and
//! hold their own connection; they never take a turn.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::metrics::{Metrics, VerbResult};

/// Builds a client from `config` whose requests are counted in `metrics` and of which at most
/// `max_in_flight` (watches aside) are in flight at once.
pub fn counted_client(
    config: kube::Config,
    metrics: Arc<Metrics>,
    max_in_flight: usize,
) -> Result<kube::Client, kube::Error> {
    let builder = prompt_client_builder(config)?;
    let turns = Arc::new(Semaphore::new(max_in_flight.max(1)));
    Ok(builder.with_layer(&InFlightLayer { turns }).with_layer(&CountLayer { metrics }).build())
}

/// A plain client on the same stack (no count, no bound): the leader elector's, the tools'.
pub fn prompt_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(prompt_client_builder(config)?.build())
}

type Stack = BoxService<Request<Body>, Response<Box<DynBody>>, BoxError>;

/// kube's default stack (`ClientBuilder::try_from`) on sockets that set `TCP_NODELAY`. Through a
/// proxy it is kube's own builder as it is (kube decides what it supports).
pub fn prompt_client_builder(config: kube::Config) -> Result<ClientBuilder<Stack>, kube::Error> {
    if config.proxy_url.is_some() {
        return ClientBuilder::try_from(config);
    }
    let https = config.rustls_https_connector_with_connector(tcp_connector())?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http)
        .map_response(|response| {
            response.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        });
    Ok(ClientBuilder::new(BoxService::new(service), config.default_namespace.clone()))
}

/// kube's TCP connector (any scheme; TLS is layered on top) with Nagle's algorithm off.
fn tcp_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector
}

#[derive(Clone)]
struct InFlightLayer {
    turns: Arc<Semaphore>,
}

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlightService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightService { inner: Arc::new(Mutex::new(inner)), turns: self.turns.clone() }
    }
}

/// Takes a turn before a request goes out and gives it back when the response body has been
/// read to its end or dropped: until then the request holds its connection.
///
/// The inner service is called only once the turn is ours, so a request waiting its turn holds
/// itself, not the client's future as well (a burst of a thousand status writes would
/// otherwise keep a thousand of those alive). kube's stack is not `Clone`, hence the mutex: it
/// is held only to make the service ready and call it, never across an await.
pub struct InFlightService<S> {
    inner: Arc<Mutex<S>>,
    turns: Arc<Semaphore>,
}

impl<S> Clone for InFlightService<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), turns: self.turns.clone() }
    }
}

impl<S, B> tower::Service<Request<Body>> for InFlightService<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: HttpBody + Unpin,
{
    type Response = Response<TurnBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    /// Always ready: the inner service is made ready when the request has its turn.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let watch = is_watch(request.uri().query());
        let turns = self.turns.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let turn = if watch { None } else { turns.acquire_owned().await.ok() };
            let mut request = Some(request);
            let response = futures::future::poll_fn(|cx| {
                let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
                inner.poll_ready(cx).map_ok(|()| match request.take() {
                    Some(request) => inner.call(request),
                    None => unreachable!("a request is handed on once, when its service is ready"),
                })
            })
            .await?
            .await?;
            Ok(response.map(|body| TurnBody { body, turn }))
        })
    }
}

/// A response body that holds its request's turn until it ends.
pub struct TurnBody<B> {
    body: B,
    turn: Option<OwnedSemaphorePermit>,
}

impl<B: HttpBody + Unpin> HttpBody for TurnBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.turn = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

#[derive(Clone)]
struct CountLayer {
    metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct CountService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Maps a request to the API verb it performs.
pub fn verb_of(method: &http::Method, query: Option<&str>, path: &str) -> &'static str {
    match *method {
        http::Method::GET if is_watch(query) => "watch",
        http::Method::GET => {
            // A collection ends in a plural resource name; an object GET has a name after it.
            // Paths: /api/v1/pods, /api/v1/namespaces/ns/pods, /apis/g/v/namespaces/ns/r/name.
            let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
            let core = segments.first() == Some(&"api");
            let base = if core { 2 } else { 3 };
            let rest = segments.len().saturating_sub(base);
            let namespaced = segments.get(base) == Some(&"namespaces");
            let collection = if namespaced { rest == 3 } else { rest == 1 };
            if collection { "list" } else { "get" }
        }
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

fn result_of(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "ok",
        404 => "not_found",
        409 => "conflict",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

impl<S, B> tower::Service<Request<Body>> for CountService<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let verb = verb_of(request.method(), request.uri().query(), request.uri().path());
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            let result = match &response {
                Ok(r) => result_of(r.status()),
                Err(_) => "transport_error",
            };
            metrics.api_requests.get_or_create(&VerbResult { verb, result }).inc();
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tower::{Layer, Service};

    /// Counts the requests whose future has been polled, i.e. that went out (hyper's client
    /// future is as lazy as this one), and the requests handed to it at all.
    #[derive(Clone, Default)]
    struct Answering(Arc<AtomicUsize>, Arc<AtomicUsize>);

    impl Service<Request<Body>> for Answering {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Response<Body>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<Body>) -> Self::Future {
            self.1.fetch_add(1, Ordering::SeqCst);
            let sent = self.0.clone();
            Box::pin(async move {
                sent.fetch_add(1, Ordering::SeqCst);
                Ok(Response::new(Body::from(b"{}".to_vec())))
            })
        }
    }

    fn get(query: &str) -> Request<Body> {
        Request::get(format!("/api/v1/pods{query}")).body(Body::empty()).unwrap()
    }

    async fn read_to_end<B: HttpBody + Unpin>(mut body: B) {
        while futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await.is_some() {}
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_request_waits_for_a_turn_held_until_the_body_ends_and_a_watch_never_waits() {
        let inner = Answering::default();
        let (sent, handed) = (inner.0.clone(), inner.1.clone());
        let mut service = InFlightLayer { turns: Arc::new(Semaphore::new(1)) }.layer(inner);
        let first = service.call(get("")).await.unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 1);

        let second = tokio::spawn(service.call(get("")));
        settle().await;
        assert_eq!(sent.load(Ordering::SeqCst), 1, "the second request waits for the turn");
        assert_eq!(handed.load(Ordering::SeqCst), 1, "and is not handed to the client meanwhile");

        let watch = service.call(get("?watch=true&resourceVersion=1")).await.unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 2, "a watch takes no turn");

        read_to_end(first.into_body()).await;
        let second = second.await.unwrap().unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 3, "the first body's end gave the turn back");

        let third = tokio::spawn(service.call(get("")));
        settle().await;
        assert_eq!(sent.load(Ordering::SeqCst), 3);
        drop(second);
        third.await.unwrap().unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 4, "a dropped body gives the turn back too");
        drop(watch);
    }

    #[test]
    fn verbs_are_told_apart_by_method_path_and_watch_flag() {
        assert_eq!(
            verb_of(&Method::GET, Some("watch=true&resourceVersion=1"), "/api/v1/pods"),
            "watch"
        );
        assert_eq!(verb_of(&Method::GET, None, "/api/v1/pods"), "list");
        assert_eq!(verb_of(&Method::GET, None, "/api/v1/namespaces/a/pods"), "list");
        assert_eq!(verb_of(&Method::GET, None, "/api/v1/namespaces/a/pods/p"), "get");
        assert_eq!(
            verb_of(&Method::GET, None, "/apis/cocoon.cis/v1alpha1/namespaces/a/cocoonsets"),
            "list"
        );
        assert_eq!(
            verb_of(&Method::GET, None, "/apis/cocoon.cis/v1alpha1/namespaces/a/cocoonsets/x"),
            "get"
        );
        assert_eq!(verb_of(&Method::PATCH, None, "/api/v1/namespaces/a/pods/p"), "patch");
    }

    #[tokio::test]
    async fn the_sockets_to_the_api_server_turn_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: http::Uri = format!("https://{}", listener.local_addr().unwrap()).parse().unwrap();
        let io = tcp_connector().call(uri).await.unwrap();
        assert!(io.inner().nodelay().unwrap(), "TCP_NODELAY is set on the connection");
    }

    #[tokio::test]
    async fn the_prompt_stack_keeps_kubes_base_uri_and_auth() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/base", listener.local_addr().unwrap());
        let mut config = kube::Config::new(url.parse().unwrap());
        config.auth_info.token = Some("sesame".to_string().into());
        let client = prompt_client(config).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            assert!(conn.nodelay().is_ok());
            let mut buf = vec![0; 16 * 1024];
            let n = conn.read(&mut buf).await.unwrap();
            let body = br#"{"major":"1","minor":"36","gitVersion":"v1.36.3","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(body).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.36.3");
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /base/version "), "{request}");
        assert!(request.contains("authorization: bearer sesame"), "{request}");
    }
}
