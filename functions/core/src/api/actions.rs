//! `POST /connections/{id}/actions/{group}/{operation}`: one catalog action.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use http::HeaderMap;
use serde_json::Value;

use super::extract::{OptionalJson, Path};
use super::{Reply, ok};
use crate::app::App;
use crate::catalog;
use crate::http::{ApiError, MAX_JSON_BODY};
use crate::ids::ConnectionId;
use crate::service::load;

/// The routes of one action group (one Lambda).
pub(super) fn router(group: &'static str) -> Router<Arc<App>> {
    Router::new()
        .route(
            &format!("/connections/{{connection_id}}/actions/{group}/{{operation}}"),
            post(
                move |State(app): State<Arc<App>>,
                      Path((conn, operation)): Path<(ConnectionId, String)>,
                      headers: HeaderMap,
                      OptionalJson(input): OptionalJson<Value>| async move {
                    run(&app, &conn, group, &operation, &headers, input).await
                },
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
}

async fn run(
    app: &App,
    conn: &ConnectionId,
    group: &str,
    operation: &str,
    headers: &HeaderMap,
    input: Value,
) -> Reply {
    let action = catalog::action(group, operation).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown action {group}.{operation}; see GET /catalog"
        ))
    })?;
    // An empty body is an empty input (`events.account` needs nothing); it
    // reads as null here, so it becomes {}.
    let input = if input.is_null() {
        Value::Object(Default::default())
    } else {
        input
    };
    // Invalid input is refused before any I/O.
    catalog::validate(action, &input)?;
    let idempotency_key = match headers.get("idempotency-key") {
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
    let (connection, secrets) = load(app, conn).await?;
    let stripe = app.stripe_for(&connection, &secrets.api_key);
    let result = crate::actions::run(action, &input, &stripe, idempotency_key).await?;
    tracing::info!(connection = %conn, action = action.key, "action ran");
    Ok(ok(&result))
}
