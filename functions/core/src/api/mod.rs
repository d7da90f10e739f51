//! The HTTP API, one contract for API Gateway and the dev server. Each Lambda
//! serves its own routes; the dev server serves them all.

mod actions;
mod connections;
mod ingest;
mod workflows;

use http::{Method, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::catalog;
use crate::http::{ApiError, Request, Response, ok_json};

/// Which routes a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `POST /webhooks/{connection_id}` (webhook-ingest).
    Ingest,
    /// Connections, triggers, events and the catalog (connections-api).
    Connections,
    /// The actions of one group (actions-<group>).
    Actions(&'static str),
    /// Everything (the dev server).
    All,
}

/// Answers one request. Never panics on any input; every failure is a JSON error.
pub async fn handle(app: &App, req: Request, routes: Routes) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ingest = matches!(routes, Routes::Ingest | Routes::All);
    let manage = matches!(routes, Routes::Connections | Routes::All);
    let serves_group = |group: &str| match routes {
        Routes::All => true,
        Routes::Actions(g) => g == group,
        _ => false,
    };
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => Ok(ok_json(&json!({"status": "ok"}))),
        (&Method::POST, ["webhooks", id]) if ingest => ingest::receive(app, id, &req).await,
        (&Method::GET, ["catalog"]) if manage => Ok(ok_json(&catalog::to_json())),
        (&Method::POST, ["connections", id, "actions", group, operation])
            if serves_group(group) =>
        {
            if !crate::ids::is_connection_id(id) {
                return ApiError::not_found("unknown connection").to_response();
            }
            actions::run(app, id, group, operation, &req).await
        }
        (_, ["connections", _, "actions", group, _]) if serves_group(group) => {
            Err(method_not_allowed(&method))
        }
        (_, ["connections", ..]) if manage => {
            connections::route(app, &method, &segments[1..], &req).await
        }
        (_, ["health"]) => Err(method_not_allowed(&method)),
        (_, ["catalog"]) if manage => Err(method_not_allowed(&method)),
        (_, ["webhooks", _]) if ingest => Err(method_not_allowed(&method)),
        _ => Err(ApiError::not_found(format!("no route for {method} {path}"))),
    };
    result.unwrap_or_else(|e| e.to_response())
}

pub(crate) fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}

/// The base URL Stripe reaches this API at: configured, or else the host the
/// request came to (API Gateway's domain).
pub(crate) fn public_base_url(app: &App, req: &Request) -> String {
    if let Some(base) = &app.config.public_base_url {
        return base.clone();
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let local =
        host.starts_with("127.0.0.1") || host.starts_with("localhost") || host.starts_with("[::1]");
    format!("{}://{host}", if local { "http" } else { "https" })
}

/// Reads one query parameter.
pub(crate) fn query_param(req: &Request, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `?limit=`: 1 to 100, or the default when absent.
pub(crate) fn limit_param(req: &Request, default: usize) -> Result<usize, ApiError> {
    match query_param(req, "limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_param("limit", "limit must be a whole number from 1 to 100")
            }),
    }
}
