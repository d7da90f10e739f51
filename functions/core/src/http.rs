//! HTTP plumbing shared by every function: one error type, one mapping to a
//! status and JSON body, and request-body parsing that names what is wrong.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::stripe::StripeError;

pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Bytes>;

/// Largest JSON body the management and action routes accept.
pub const MAX_JSON_BODY: usize = 256 * 1024;

/// An error answered to the caller: `{"error": {"type", "message", "param"?, "stripe"?}}`.
/// Messages are written for the caller; internal details go to the log only.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// Boxed: it is rare, and keeps `Result<_, ApiError>` small.
    pub stripe: Option<Box<Value>>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            stripe: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::bad_request(message).with_param(param)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    /// A failure of ours or of a dependency (store, secrets). The cause is
    /// logged here; the caller sees a generic message.
    pub fn internal(context: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("{context}; try again"),
        )
    }

    pub fn service_unavailable(context: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("{context}; try again"),
        )
    }

    /// The answer: [`ErrorBody`](crate::api::views::ErrorBody), the one
    /// error shape of the API (and of its OpenAPI document).
    pub fn to_response(&self) -> Response {
        use crate::api::views::{ErrorBody, ErrorDetail};
        json_response(
            self.status,
            &ErrorBody {
                error: ErrorDetail {
                    kind: self.kind.to_string(),
                    message: self.message.clone(),
                    param: self.param.clone(),
                    stripe: self.stripe.as_deref().cloned(),
                },
            },
        )
    }
}

/// How a refusal or failure of Stripe reaches the caller: Stripe's meaning
/// kept (402 card errors, 404 missing objects, 409 conflicts, 429 after
/// retries), its error object and request id passed on; its 5xx and
/// unreachability become 502, its silence 504.
impl From<StripeError> for ApiError {
    fn from(err: StripeError) -> Self {
        let request_id = err.request_id().map(str::to_string);
        match err {
            StripeError::Api { status, error, .. } => {
                let code = match status {
                    400 | 402 | 404 | 409 | 429 => {
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
                    }
                    401 | 403 => StatusCode::BAD_GATEWAY,
                    s if (400..500).contains(&s) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let kind = match status {
                    401 | 403 => "stripe_authentication_error",
                    s if s >= 500 => "stripe_unavailable",
                    _ => "stripe_error",
                };
                let message = match status {
                    401 => "Stripe rejected the connection's API key".to_string(),
                    403 => "the connection's API key lacks permission for this call".to_string(),
                    _ => error
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("Stripe answered {status}")),
                };
                let mut stripe = serde_json::to_value(&error).unwrap_or(Value::Null);
                stripe["status"] = json!(status);
                if let Some(id) = request_id {
                    stripe["request_id"] = json!(id);
                }
                ApiError {
                    status: code,
                    kind,
                    message,
                    param: error.param.clone(),
                    stripe: Some(Box::new(stripe)),
                }
            }
            StripeError::Decode { status, .. } => {
                tracing::warn!(
                    status,
                    request_id = request_id.as_deref(),
                    "unreadable answer from Stripe"
                );
                let mut e = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "stripe_unavailable",
                    format!("Stripe answered HTTP {status} with a body that is not Stripe's JSON"),
                );
                e.stripe = Some(Box::new(
                    json!({"status": status, "request_id": request_id}),
                ));
                e
            }
            StripeError::Timeout(d) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "stripe_timeout",
                format!("Stripe did not answer within {} s", d.as_secs()),
            ),
            StripeError::Transport(e) => {
                tracing::warn!(error = %e, "could not reach Stripe");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "stripe_unreachable",
                    "could not reach Stripe",
                )
            }
            StripeError::InvalidRequest(m) => {
                ApiError::internal("could not build the Stripe request", &m)
            }
            e @ StripeError::Budget(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            }
        }
    }
}

/// An input that breaks an action's rule: 400 naming the field.
impl From<crate::catalog::InvalidInput> for ApiError {
    fn from(e: crate::catalog::InvalidInput) -> Self {
        let err = ApiError::bad_request(e.message);
        match e.param {
            Some(param) => err.with_param(param),
            None => err,
        }
    }
}

/// An action's failure: its input (400), Stripe's answer (as
/// `From<StripeError>`), or the object's state (409 with what to do, and
/// Stripe's refusal when Stripe gave one).
impl From<crate::actions::ActionError> for ApiError {
    fn from(e: crate::actions::ActionError) -> Self {
        use crate::actions::ActionError;
        match e {
            ActionError::Invalid(e) => e.into(),
            ActionError::Stripe(e) => e.into(),
            ActionError::State {
                kind,
                message,
                stripe,
            } => {
                let from_stripe = stripe.map(ApiError::from);
                ApiError {
                    status: StatusCode::CONFLICT,
                    kind,
                    message,
                    param: from_stripe.as_ref().and_then(|e| e.param.clone()),
                    stripe: from_stripe.and_then(|e| e.stripe),
                }
            }
        }
    }
}

/// Every use case's failure, as the caller sees it. Store and secret-store
/// failures are logged here and answered 503 without their detail.
impl From<crate::service::Error> for ApiError {
    fn from(e: crate::service::Error) -> Self {
        use crate::service::Error;
        match e {
            Error::NotFound(what) => ApiError::not_found(format!("unknown {what}")),
            Error::Invalid(e) => e.into(),
            Error::KeyRefused { message, stripe } => {
                let from_stripe = stripe.map(|e| ApiError::from(*e));
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    kind: "invalid_api_key",
                    message,
                    param: Some("api_key".into()),
                    stripe: from_stripe.and_then(|e| e.stripe),
                }
            }
            Error::Conflict {
                kind,
                message,
                stripe,
            } => {
                let from_stripe = stripe.map(|e| ApiError::from(*e));
                ApiError {
                    status: StatusCode::CONFLICT,
                    kind,
                    message,
                    param: None,
                    stripe: from_stripe.and_then(|e| e.stripe),
                }
            }
            Error::EndpointNotDeleted(stripe) => {
                let mut err = ApiError::from(*stripe);
                err.message = format!(
                    "could not delete the Stripe webhook endpoint ({}); retry, or pass ?force=true to delete the connection anyway",
                    err.message
                );
                err
            }
            Error::UnexpectedStripeAnswer(message) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "stripe_error", message)
            }
            Error::Stripe(e) => (*e).into(),
            Error::Action(e) => (*e).into(),
            Error::Signature(e) => ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
            Error::InvalidEvent { param, message } => {
                let err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", message);
                match param {
                    Some(p) => err.with_param(p),
                    None => err,
                }
            }
            Error::LivemodeMismatch(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "livemode_mismatch", message)
            }
            Error::Busy => ApiError::service_unavailable(
                "the connection is being changed by another request",
                &"lease wait timed out",
            ),
            Error::Store(e) => ApiError::service_unavailable("the store failed", &e),
            Error::Secrets(e) => ApiError::service_unavailable("the secret store failed", &e),
            Error::Internal(cause) => {
                ApiError::internal("the request could not be completed", &cause)
            }
        }
    }
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = http::Response::new(Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn ok_json(body: &impl Serialize) -> Response {
    json_response(StatusCode::OK, body)
}

/// Checks a body against a size limit: over it is a 413.
pub fn check_size(body: &[u8], limit: usize) -> Result<(), ApiError> {
    if body.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is {} bytes; the limit is {limit}", body.len()),
        ));
    }
    Ok(())
}

/// Parses a JSON request body into `T`: over 256 KiB → 413, not UTF-8 or not
/// JSON → 400, a wrong type, a missing or an unknown field → 400 naming the
/// field as a JSON path in `param`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    check_size(body, MAX_JSON_BODY)?;
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "request body is not UTF-8",
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "request body is empty; expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("malformed JSON: {inner}"),
            );
        }
        let message = without_position(&inner.to_string());
        // The path names the offending field, an unknown one included.
        let param = (path != ".").then_some(path);
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        err.param = param;
        err
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// serde's messages end with " at line L column C"; for a field error the
/// caller gets the field's path instead. Syntax errors keep the position.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        count: u32,
    }

    fn err(body: &[u8]) -> ApiError {
        parse_json::<Body>(body).unwrap_err()
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let e = err(br#"{"name": "x", "colour": "red"}"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("colour"));
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_nested_field_is_named_by_path() {
        let e = err(br#"{"name": "x", "nested": {"count": 1, "extra": 2}}"#);
        assert_eq!(e.param.as_deref(), Some("nested.extra"));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = err(br#"{"name": "x", "nested": {"count": "one"}}"#);
        assert_eq!(e.param.as_deref(), Some("nested.count"));
        assert_eq!(e.kind, "invalid_request");
    }

    #[test]
    fn missing_field_is_reported() {
        let e = err(br#"{}"#);
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
    }

    #[test]
    fn malformed_json_and_non_utf8_and_empty() {
        assert_eq!(err(br#"{"name": "#).kind, "invalid_json");
        assert_eq!(err(br#"{"name": "x"} trailing"#).kind, "invalid_json");
        assert_eq!(err(&[0xff, 0xfe]).kind, "invalid_body");
        assert_eq!(err(b"  ").kind, "invalid_body");
    }

    #[test]
    fn oversized_body_is_413() {
        let big = vec![b' '; MAX_JSON_BODY + 1];
        assert_eq!(err(&big).status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn error_response_shape() {
        let resp = ApiError::invalid_param("email", "not an email").to_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(
            v,
            json!({"error": {"type": "invalid_request", "message": "not an email", "param": "email"}})
        );
    }

    #[test]
    fn stripe_refusals_keep_their_meaning() {
        use crate::stripe::{StripeApiError, StripeError};
        let api = |status| StripeError::Api {
            status,
            error: StripeApiError {
                kind: "card_error".into(),
                code: Some("card_declined".into()),
                message: Some("Your card was declined.".into()),
                decline_code: Some("insufficient_funds".into()),
                ..Default::default()
            },
            request_id: Some("req_123".into()),
            should_retry: None,
            retry_after: None,
        };
        for (stripe, ours) in [
            (402, 402),
            (404, 404),
            (409, 409),
            (429, 429),
            (400, 400),
            (500, 502),
            (503, 502),
            (401, 502),
        ] {
            let e = ApiError::from(api(stripe));
            assert_eq!(e.status.as_u16(), ours, "Stripe {stripe}");
            let s = e.stripe.unwrap();
            assert_eq!(s["request_id"], "req_123");
            assert_eq!(s["code"], "card_declined");
            assert_eq!(s["type"], "card_error");
        }
        let e = ApiError::from(api(402));
        assert_eq!(e.message, "Your card was declined.");
        assert_eq!(e.stripe.unwrap()["decline_code"], "insufficient_funds");
    }
}
