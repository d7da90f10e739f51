//! Extractors: each request is parsed once, at the edge, and every way it
//! can be wrong becomes an [`ApiError`] (a JSON 4xx naming the problem),
//! never axum's plain-text rejections.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::http::{ApiError, parse_json};

/// Largest body of a management or action route (`DefaultBodyLimit`).
pub use crate::http::MAX_JSON_BODY;

/// A JSON body: not UTF-8, not JSON, a wrong type, a missing or an unknown
/// field → 400 naming the field as a path in `param`; over the route's
/// `DefaultBodyLimit` → 413.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = RawBody::from_request(req, state).await?.0;
        parse_json(&body).map(Json)
    }
}

/// A JSON body that may be left out: empty (or only white space) reads as
/// `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = RawBody::from_request(req, state).await?.0;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&body).map(OptionalJson)
    }
}

/// The raw body, within the route's `DefaultBodyLimit` (413 past it).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_error)
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is larger than this route accepts",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body could not be read",
        )
    }
}

/// Path parameters into typed ids (`ConnectionId`, `EventId`, `WorkflowId`):
/// one that does not parse names nothing, so it is a 404 ("unknown
/// connection"), as an id that parses but is not stored is.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                Err(match e.into_kind() {
                    ErrorKind::Message(message) => ApiError::not_found(message),
                    _ => ApiError::not_found("no such resource"),
                })
            }
            Err(_) => Err(ApiError::not_found("no such resource")),
        }
    }
}

/// Query parameters into a struct; one that cannot be read is a 400.
/// Parameters the struct does not name are ignored, as HTTP APIs do.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The base URL Stripe reaches this API at: `PUBLIC_BASE_URL`; else, in AWS,
/// the domain API Gateway says it served the request on (its request
/// context, which a client cannot set); else the `Host` header (a request
/// with no such context: in-process tests).
pub struct BaseUrl(pub String);

impl FromRequestParts<Arc<App>> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if let Some(base) = &app.config.public_base_url {
            return Ok(BaseUrl(base.clone()));
        }
        if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
            parts
                .extensions
                .get::<lambda_http::request::RequestContext>()
            && let Some(domain) = context
                .domain_name
                .as_deref()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Ok(BaseUrl(format!("https://{domain}")));
        }
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("localhost");
        let local = host.starts_with("127.0.0.1")
            || host.starts_with("localhost")
            || host.starts_with("[::1]");
        Ok(BaseUrl(format!(
            "{}://{host}",
            if local { "http" } else { "https" }
        )))
    }
}

/// `?limit=`: 1 to 100, or the route's default when absent.
pub fn limit(value: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match value {
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
