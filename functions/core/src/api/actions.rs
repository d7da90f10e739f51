//! `POST /connections/{id}/actions/{group}/{operation}`: one catalog action.

use serde_json::Value;

use crate::app::App;
use crate::catalog;
use crate::http::{ApiError, Request, Response, ok_json, parse_json};

pub(super) async fn run(
    app: &App,
    connection_id: &str,
    group: &str,
    operation: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let action = catalog::action(group, operation).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown action {group}.{operation}; see GET /catalog"
        ))
    })?;
    // An empty body is an empty input: `events.account` needs nothing.
    let input: Value = if req.body().iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        parse_json(req.body())?
    };
    // Invalid input is refused before any I/O.
    catalog::validate(action, &input)?;
    let idempotency_key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "Idempotency-Key",
                        "Idempotency-Key must be 1 to 255 printable ASCII characters",
                    )
                })?,
        ),
    };
    let (connection, secrets) = super::connections::load(app, connection_id).await?;
    let stripe = app.stripe(&secrets.api_key, &connection.api_version);
    let result = crate::actions::run(action, &input, &stripe, idempotency_key).await?;
    tracing::info!(connection = %connection_id, action = action.key, "action ran");
    Ok(ok_json(&result))
}
