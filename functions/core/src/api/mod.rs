//! The HTTP API, one contract for API Gateway and the dev server: one axum
//! [`Router`] built from per-resource routers. Each Lambda serves only its
//! own routes ([`Routes`]); the dev server serves them all. Extractors
//! ([`extract`]) parse ids, bodies and queries once; handlers call a
//! use case in [`crate::service`] and map its answer; 404 and 405 come from
//! the router, the same JSON error everywhere.

mod actions;
mod connections;
mod events;
pub mod extract;
mod ingest;
pub mod openapi;
mod runs;
pub mod views;
mod watch;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::app::App;
use crate::catalog;
use crate::http::{ApiError, MAX_JSON_BODY, Response};

pub use ingest::MAX_WEBHOOK_BODY;

/// Which routes a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `POST /webhooks/{connection_id}` (webhook-ingest).
    Ingest,
    /// Connections, workflows, events, runs and the catalog (connections-api).
    Connections,
    /// The actions of one group (actions-<group>).
    Actions(&'static str),
    /// Everything (the dev server).
    All,
}

/// The router of one function: `/health` plus its own routes, JSON 404 and
/// 405 answers for everything else. Built once per cold start.
pub fn router(routes: Routes) -> Router<Arc<App>> {
    match routes {
        Routes::Ingest => ingest_router(),
        Routes::Connections => connections_router(),
        Routes::Actions(group) => actions_router(group),
        Routes::All => all_routes(),
    }
}

// One constructor per function, so that each Lambda binary links only the
// routes it serves (a runtime `Routes` would keep every handler in each).

/// webhook-ingest's router.
pub fn ingest_router() -> Router<Arc<App>> {
    finish(base().merge(ingest::router()))
}

/// connections-api's router.
pub fn connections_router() -> Router<Arc<App>> {
    finish(base().merge(management()))
}

/// The router of one action group's Lambda.
pub fn actions_router(group: &'static str) -> Router<Arc<App>> {
    finish(base().merge(actions::router(group)))
}

/// Every route (the dev server).
pub fn all_routes() -> Router<Arc<App>> {
    let mut router = base().merge(ingest::router()).merge(management());
    for group in catalog::GROUPS {
        router = router.merge(actions::router(group));
    }
    finish(router)
}

fn base() -> Router<Arc<App>> {
    Router::new().route("/health", get(health))
}

fn finish(router: Router<Arc<App>>) -> Router<Arc<App>> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// connections-api's routes: everything under `/connections` but actions,
/// and the catalog. Bodies up to [`MAX_JSON_BODY`].
fn management() -> Router<Arc<App>> {
    Router::new()
        .route("/catalog", get(catalog_json))
        .route("/openapi.json", get(openapi_json))
        .merge(connections::router())
        .merge(workflows::router())
        .merge(events::router())
        .merge(runs::router())
        .merge(watch::router())
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
}

/// Every (method, path template) a function serves, as API Gateway names
/// its routes (`POST /webhooks/{connection_id}`). The drift tests compare it
/// with template.yaml, the README and docs/openapi.json.
pub fn route_table(routes: Routes) -> Vec<(Method, String)> {
    let mut table: Vec<(Method, String)> = vec![(Method::GET, "/health".into())];
    let manage = [
        (Method::GET, "/catalog"),
        (Method::GET, "/openapi.json"),
        (Method::POST, "/connections"),
        (Method::GET, "/connections"),
        (Method::GET, "/connections/{connection_id}"),
        (Method::DELETE, "/connections/{connection_id}"),
        (Method::PUT, "/connections/{connection_id}/api-key"),
        (Method::PUT, "/connections/{connection_id}/webhook-secret"),
        (Method::PUT, "/connections/{connection_id}/triggers"),
        (Method::POST, "/connections/{connection_id}/workflows"),
        (Method::GET, "/connections/{connection_id}/workflows"),
        (
            Method::GET,
            "/connections/{connection_id}/workflows/{workflow_id}",
        ),
        (
            Method::PATCH,
            "/connections/{connection_id}/workflows/{workflow_id}",
        ),
        (
            Method::DELETE,
            "/connections/{connection_id}/workflows/{workflow_id}",
        ),
        (
            Method::POST,
            "/connections/{connection_id}/workflows/{workflow_id}/test",
        ),
        (Method::GET, "/connections/{connection_id}/events"),
        (
            Method::GET,
            "/connections/{connection_id}/events/{event_id}",
        ),
        (
            Method::POST,
            "/connections/{connection_id}/events/{event_id}/replay",
        ),
        (Method::GET, "/connections/{connection_id}/runs"),
        (Method::GET, "/connections/{connection_id}/health"),
        (Method::POST, "/connections/{connection_id}/reconcile"),
        (Method::PUT, "/connections/{connection_id}/api-version"),
        (Method::PUT, "/connections/{connection_id}/alerts"),
        (Method::DELETE, "/connections/{connection_id}/alerts"),
        (
            Method::GET,
            "/connections/{connection_id}/triggers/{trigger}/sample",
        ),
    ];
    if matches!(routes, Routes::Ingest | Routes::All) {
        table.push((Method::POST, "/webhooks/{connection_id}".into()));
    }
    if matches!(routes, Routes::Connections | Routes::All) {
        table.extend(manage.iter().map(|(m, p)| (m.clone(), (*p).to_string())));
    }
    let groups: Vec<&str> = match routes {
        Routes::Actions(group) => vec![group],
        Routes::All => catalog::GROUPS.to_vec(),
        _ => vec![],
    };
    for group in groups {
        table.push((
            Method::POST,
            format!("/connections/{{connection_id}}/actions/{group}/{{operation}}"),
        ));
    }
    table
}

/// A request body the router takes: `Body::from(bytes)`, or
/// `Body::new(lambda_body)` for an API Gateway request as `lambda_http`
/// hands it over.
pub use axum::body::Body;

/// Answers one request through a function's router: what `lambda_http::run`
/// does with each API Gateway request, for handler tests and harnesses.
pub async fn handle<B: Into<RequestBody>>(
    app: &App,
    req: http::Request<B>,
    routes: Routes,
) -> Response {
    let service = router(routes).with_state(Arc::new(app.clone()));
    let Ok(resp) = service.oneshot(req.map(|b| b.into().0)).await;
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return ApiError::internal("could not write the answer", &e).to_response(),
    };
    http::Response::from_parts(parts, bytes)
}

/// What a handler answers: a JSON body, or an [`ApiError`].
pub(crate) type Reply = Result<axum::response::Response, ApiError>;

/// A JSON answer with a status.
pub(crate) fn reply(status: StatusCode, body: &impl serde::Serialize) -> axum::response::Response {
    crate::http::json_response(status, body).map(axum::body::Body::from)
}

/// A 200 JSON answer.
pub(crate) fn ok(body: &impl serde::Serialize) -> axum::response::Response {
    reply(StatusCode::OK, body)
}

/// What [`handle`] takes as a body: bytes, or an API Gateway request's body.
pub struct RequestBody(Body);

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody(Body::from(bytes))
    }
}

impl From<lambda_http::Body> for RequestBody {
    fn from(body: lambda_http::Body) -> Self {
        RequestBody(Body::new(body))
    }
}

/// docs/openapi.json, as served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

/// Whether the function is up.
#[utoipa::path(get, path = "/health", tag = "meta", operation_id = "meta_health",
    security((), ("sigv4" = [])),
    responses((status = 200, body = views::Health)))]
async fn health() -> axum::response::Response {
    ok(&views::Health { status: "ok" })
}

/// Every trigger, and every action with its input JSON Schema.
#[utoipa::path(get, path = "/catalog", tag = "meta", operation_id = "meta_catalog_json",
    responses((status = 200, description = "{\"triggers\": [...], \"actions\": [...]}", body = Object)))]
async fn catalog_json() -> axum::response::Response {
    ok(&catalog::to_json())
}

/// This document: the connector's own OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "meta_openapi_json",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi_json() -> axum::response::Response {
    // The committed document, which a test keeps equal to the generated
    // one: serving it costs the binaries nothing of the generator.
    let mut resp = axum::response::Response::new(axum::body::Body::from(OPENAPI_JSON));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        self.to_response().map(axum::body::Body::from)
    }
}

#[cfg(test)]
mod route_drift {
    //! The route list exists once in code ([`route_table`]); these tests
    //! hold the router, template.yaml and the README to it.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
    use crate::config::Config;

    type Set = BTreeSet<(String, String)>;

    fn table(routes: Routes) -> Set {
        route_table(routes)
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect()
    }

    fn app() -> App {
        App::new(
            Config::from_lookup(|_| None).unwrap(),
            Arc::new(MemoryStore::default()),
            Arc::new(MemorySecrets::default()),
            Arc::new(FixedClock::at(1_800_000_000)),
        )
    }

    /// A concrete path for a template: well-formed ids, a real operation.
    fn concrete(path: &str) -> String {
        path.replace("{connection_id}", "conn_drift")
            .replace("{workflow_id}", "wf_drift")
            .replace("{event_id}", "evt_drift")
            .replace("{operation}", "find")
            .replace("{trigger}", "invoice.paid")
    }

    async fn answer(app: &App, method: &Method, path: &str, routes: Routes) -> (u16, String) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Bytes::new())
            .unwrap();
        let resp = handle(app, req, routes).await;
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        (
            resp.status().as_u16(),
            body["error"]["message"].as_str().unwrap_or_default().into(),
        )
    }

    /// Each table entry reaches a handler (not the router's 404 or 405);
    /// every other method on its path is the router's JSON 405.
    #[tokio::test]
    async fn the_router_serves_exactly_the_table() {
        let app = app();
        for routes in [
            Routes::Ingest,
            Routes::Connections,
            Routes::Actions("customers"),
            Routes::All,
        ] {
            let table = route_table(routes);
            for (method, path) in &table {
                let uri = concrete(path);
                let (status, message) = answer(&app, method, &uri, routes).await;
                assert!(
                    status != 405 && !message.starts_with("no route for"),
                    "{routes:?}: {method} {path} is not routed ({status} {message})"
                );
                for other in [
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ] {
                    if table.iter().any(|(m, p)| *m == other && p == path) {
                        continue;
                    }
                    let (status, _) = answer(&app, &other, &uri, routes).await;
                    assert_eq!(status, 405, "{routes:?}: {other} {path}");
                }
            }
        }
        // A function does not serve another's routes.
        let (status, _) = answer(
            &app,
            &Method::POST,
            "/webhooks/conn_drift",
            Routes::Connections,
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = answer(
            &app,
            &Method::POST,
            "/connections/conn_drift/actions/prices/find",
            Routes::Actions("customers"),
        )
        .await;
        assert_eq!(status, 404);
    }

    /// template.yaml routes each (method, path) to the function that serves
    /// it, and routes all of them. `/health` is served by every router but
    /// routed to connections-api only.
    #[test]
    fn template_yaml_routes_match_the_router() {
        let text = include_str!("../../../../template.yaml");
        // CloudFormation's short tags (!Ref, !Sub …) read as plain strings.
        let text = text.replace(" !", " ");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let resources = doc["Resources"].as_mapping().unwrap();
        let mut all = Set::new();
        for (_, resource) in resources {
            let Some(events) = resource["Properties"]["Events"].as_mapping() else {
                continue;
            };
            let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_default();
            let mut served = Set::new();
            for (_, event) in events {
                if event["Type"].as_str() != Some("HttpApi") {
                    continue;
                }
                let p = &event["Properties"];
                served.insert((
                    p["Method"].as_str().unwrap().to_uppercase(),
                    p["Path"].as_str().unwrap().to_string(),
                ));
            }
            if served.is_empty() {
                continue;
            }
            let routes = match binary {
                "webhook-ingest" => Routes::Ingest,
                "connections-api" => Routes::Connections,
                other => {
                    let group = other.strip_prefix("actions-").unwrap_or_else(|| {
                        panic!("{other} has HttpApi events but serves no routes")
                    });
                    Routes::Actions(
                        catalog::GROUPS
                            .iter()
                            .find(|g| **g == group)
                            .unwrap_or_else(|| panic!("no action group {group}")),
                    )
                }
            };
            let mut expected = table(routes);
            if routes != Routes::Connections {
                expected.remove(&("GET".into(), "/health".into()));
            }
            assert_eq!(served, expected, "{binary}: template.yaml vs its router");
            all.extend(served);
        }
        assert_eq!(all, table(Routes::All), "template.yaml vs every route");
    }

    /// The README's route table lists every route, one per row, and no other.
    #[test]
    fn readme_route_table_matches_the_router() {
        let readme = include_str!("../../../../README.md");
        let section = readme
            .split("## HTTP API")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let listed: Set = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter_map(|route| route.split_once(' '))
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(listed, table(Routes::All));
    }
}

#[cfg(test)]
mod openapi_drift {
    use std::collections::BTreeSet;

    use super::*;

    /// docs/openapi.json is the document the code generates.
    #[test]
    fn docs_openapi_json_is_generated_from_the_code() {
        let committed = include_str!("../../../../docs/openapi.json");
        assert!(
            committed.trim_end() == openapi::document(),
            "docs/openapi.json is stale: run `cargo run -p connector-core --example openapi_json > docs/openapi.json`"
        );
    }

    /// The document describes every route the router serves, and no other;
    /// each with its JSON error answer, and each but /health and the
    /// webhook behind authentication.
    #[test]
    fn the_document_covers_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(&openapi::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut described = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                described.insert((method.to_uppercase(), path.clone()));
                let public = path == "/health" || path.starts_with("/webhooks/");
                let security = op["security"]
                    .as_array()
                    .or(doc["security"].as_array())
                    .unwrap();
                let open = security.iter().any(|s| s.as_object().unwrap().is_empty());
                assert_eq!(open, public, "{method} {path}: security {security:?}");
                if path != "/health" && path != "/catalog" && path != "/openapi.json" {
                    let responses = op["responses"].as_object().unwrap();
                    assert!(
                        responses
                            .keys()
                            .any(|k| k.starts_with('4') || k.starts_with('5')),
                        "{method} {path} documents no error"
                    );
                }
            }
        }
        let served: BTreeSet<(String, String)> = route_table(Routes::All)
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        assert_eq!(described, served);
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert!(schemes.contains_key("sigv4") && schemes.contains_key("bearer"));
    }

    /// The error shape in the document is the one errors are answered with.
    #[tokio::test]
    async fn errors_are_answered_in_the_documented_shape() {
        let doc: serde_json::Value = serde_json::from_str(&openapi::document()).unwrap();
        let detail = &doc["components"]["schemas"]["ErrorDetail"];
        let documented: BTreeSet<&str> = detail["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let e = ApiError::invalid_param("email", "not an email").to_response();
        let v: serde_json::Value = serde_json::from_slice(e.body()).unwrap();
        for key in v["error"].as_object().unwrap().keys() {
            assert!(documented.contains(key.as_str()), "{key} is not documented");
        }
        let required: BTreeSet<&str> = detail["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(required, BTreeSet::from(["type", "message"]));
    }
}
