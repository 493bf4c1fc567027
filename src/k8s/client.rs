//! The operator's kube client: the default stack plus a layer that counts every request by verb
//! and result, so "idle means zero API requests" is measurable.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::{Body, ClientBuilder};

use crate::metrics::{Metrics, VerbResult};

/// Builds a client from `config` whose requests are counted in `metrics`.
pub fn counted_client(
    config: kube::Config,
    metrics: Arc<Metrics>,
) -> Result<kube::Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&CountLayer { metrics }).build())
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
    let watching =
        query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *method {
        http::Method::GET if watching => "watch",
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
}
