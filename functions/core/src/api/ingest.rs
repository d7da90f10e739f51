//! `POST /webhooks/{connection_id}`: verify, check, store once, answer fast.

use serde::Deserialize;
use serde_json::json;

use crate::adapters::dynamo::MAX_STORED_BODY;
use crate::app::App;
use crate::http::{ApiError, Request, Response, check_size, ok_json};
use crate::ids;
use crate::model::{InsertOutcome, StoredEvent};
use crate::webhook::{self, DEFAULT_TOLERANCE_SECS};

/// Stripe events are far smaller; anything larger is refused unread.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
/// How long a stored event is kept.
pub const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// The part of a Stripe event the connector reads; the rest stays raw.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    livemode: bool,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    account: Option<String>,
}

pub(super) async fn receive(
    app: &App,
    connection_id: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let unknown = || ApiError::not_found("unknown connection");
    if !ids::is_connection_id(connection_id) {
        return Err(unknown());
    }
    let body = req.body();
    check_size(body, MAX_WEBHOOK_BODY)?;
    let connection = app
        .connections
        .get_connection(connection_id)
        .await
        .map_err(|e| ApiError::service_unavailable("could not read the connection", &e))?
        .ok_or_else(unknown)?;
    let secrets = app
        .secrets
        .get_secrets(connection_id)
        .await
        .map_err(|e| ApiError::service_unavailable("could not read the webhook secrets", &e))?
        .map(|s| s.webhook_secrets)
        .unwrap_or_default();
    let header =
        match req.headers().get("stripe-signature") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                signature_error(webhook::SignatureError::MalformedHeader("not ASCII"))
            })?),
        };
    webhook::verify(
        body,
        header,
        &secrets,
        app.clock.now(),
        DEFAULT_TOLERANCE_SECS,
    )
    .map_err(signature_error)?;

    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_event",
            format!("body is not a Stripe event: {e}"),
        )
    })?;
    if !ids::is_id(&envelope.id, "evt_") {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_event",
            "event id must look like evt_…",
        )
        .with_param("id"));
    }
    if envelope.event_type.is_empty()
        || envelope.event_type.len() > 100
        || !envelope
            .event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_event",
            "event type is not a Stripe event type",
        )
        .with_param("type"));
    }
    if envelope.livemode != connection.livemode {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "livemode_mismatch",
            format!(
                "a {} event was sent to a {} connection",
                if envelope.livemode { "live" } else { "test" },
                if connection.livemode { "live" } else { "test" }
            ),
        ));
    }
    let now = app.clock.now();
    let too_large = body.len() > MAX_STORED_BODY;
    let event = StoredEvent {
        connection_id: connection.id.clone(),
        event_id: envelope.id,
        event_type: envelope.event_type,
        created: envelope.created,
        livemode: envelope.livemode,
        api_version: envelope.api_version,
        account: envelope.account,
        // JSON that parsed is UTF-8.
        body: if too_large {
            None
        } else {
            Some(String::from_utf8_lossy(body).into_owned())
        },
        body_omitted: too_large,
        received_at: now,
        expires_at: now + EVENT_RETENTION_SECS,
    };
    let outcome = app
        .events
        .insert_event(&event)
        .await
        .map_err(|e| ApiError::service_unavailable("could not store the event", &e))?;
    let duplicate = outcome == InsertOutcome::Duplicate;
    if !duplicate && app.inline_fanout {
        let (app, event) = (app.clone(), event.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::workflow::engine::Engine::new(&app, "dev-server")
                .fan_out(&event)
                .await
            {
                tracing::error!(error = %e, event_id = %event.event_id, "fan-out failed; the retry timer picks up its runs");
            }
        });
    }
    tracing::info!(
        connection = %event.connection_id, event_id = %event.event_id, event_type = %event.event_type,
        duplicate, body_omitted = too_large, "webhook received"
    );
    Ok(ok_json(&json!({"received": true, "duplicate": duplicate})))
}

fn signature_error(e: webhook::SignatureError) -> ApiError {
    ApiError::new(http::StatusCode::BAD_REQUEST, e.code(), e.to_string())
}
