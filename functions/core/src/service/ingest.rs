//! Ingest: verify a Stripe delivery, then store it once. The same code in
//! both hosts; what happens after a new event is stored (the table's stream
//! in AWS, an in-process queue on the dev server) is the event store's
//! business, not ingest's.

use serde::Deserialize;

use super::{Error, Result};
use crate::adapters::dynamo::MAX_STORED_BODY;
use crate::app::App;
use crate::ids::{self, ConnectionId};
use crate::model::{Connection, InsertOutcome, StoredEvent};
use crate::webhook::{self, DEFAULT_TOLERANCE_SECS};

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

/// A delivery whose signature matched one of the connection's webhook
/// secrets, whose body is a Stripe event and whose mode is the connection's.
pub struct VerifiedEvent {
    connection: Connection,
    envelope: Envelope,
    body: bytes::Bytes,
}

/// Checks one delivery: unknown connection → 404; bad or missing signature,
/// a body that is not a Stripe event, or a live event on a test connection
/// (or the reverse) → 400. Reads only; nothing is stored.
pub async fn verify(
    app: &App,
    connection_id: &ConnectionId,
    signature: Option<&http::HeaderValue>,
    body: bytes::Bytes,
) -> Result<VerifiedEvent> {
    let (connection, secrets) = tokio::join!(
        app.connections.get_connection(connection_id),
        app.secrets.get_secrets(connection_id)
    );
    let connection = connection?.ok_or(Error::NotFound("connection"))?;
    let secrets = secrets?.map(|s| s.webhook_secrets).unwrap_or_default();
    let header = match signature {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| webhook::SignatureError::MalformedHeader("not ASCII"))?,
        ),
    };
    webhook::verify(
        &body,
        header,
        &secrets,
        app.clock.now(),
        DEFAULT_TOLERANCE_SECS,
    )?;

    // The whole body must be readable: UTF-8 (it is stored as text, and a
    // lossy copy would not be what Stripe signed) and JSON within serde's
    // nesting limit (else fan-out could never read it).
    if std::str::from_utf8(&body).is_err() {
        return Err(Error::InvalidEvent {
            param: None,
            message: "body is not UTF-8".into(),
        });
    }
    if nesting(&body) > MAX_NESTING {
        return Err(Error::InvalidEvent {
            param: None,
            message: format!("body is nested deeper than {MAX_NESTING} levels"),
        });
    }
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| Error::InvalidEvent {
        param: None,
        message: format!("body is not a Stripe event: {e}"),
    })?;
    check_envelope(&envelope)?;
    if envelope.livemode != connection.livemode {
        return Err(Error::LivemodeMismatch(format!(
            "a {} event was sent to a {} connection",
            if envelope.livemode { "live" } else { "test" },
            if connection.livemode { "live" } else { "test" }
        )));
    }
    Ok(VerifiedEvent {
        connection,
        envelope,
        body,
    })
}

/// Stores a verified event unless (connection, event id) is stored already;
/// answers whether it was a duplicate. An event too large for one record is
/// stored without its body (fetched from Stripe when a run needs it).
pub async fn store(app: &App, verified: VerifiedEvent) -> Result<bool> {
    let VerifiedEvent {
        connection,
        envelope,
        body,
    } = verified;
    let outcome = put(app, &connection.id, envelope, &body, false).await?;
    Ok(outcome == InsertOutcome::Duplicate)
}

/// Stores an event read from Stripe's event list (the reconciler) through
/// the same exactly-once write as a webhook delivery, marked `recovered`:
/// `Inserted` only when no delivery (or other pass) stored it first. An
/// event that is not the connection's (another mode, a malformed id) is
/// refused.
pub async fn store_recovered(
    app: &App,
    connection: &Connection,
    event: &serde_json::Value,
) -> Result<InsertOutcome> {
    let envelope = Envelope::deserialize(event).map_err(|e| Error::InvalidEvent {
        param: None,
        message: format!("Stripe listed something that is not an event: {e}"),
    })?;
    check_envelope(&envelope)?;
    if envelope.livemode != connection.livemode {
        return Err(Error::LivemodeMismatch(
            "Stripe listed an event of the other mode".into(),
        ));
    }
    let body = serde_json::to_vec(event).map_err(|e| Error::Internal(e.to_string()))?;
    put(app, &connection.id, envelope, &body, true).await
}

async fn put(
    app: &App,
    connection_id: &str,
    envelope: Envelope,
    body: &[u8],
    recovered: bool,
) -> Result<InsertOutcome> {
    let now = app.clock.now();
    let too_large = body.len() > MAX_STORED_BODY;
    let event = StoredEvent {
        connection_id: connection_id.to_string(),
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
        recovered,
    };
    let outcome = app.events.insert_event(&event).await?;
    let duplicate = outcome == InsertOutcome::Duplicate;
    if recovered {
        tracing::info!(
            connection = %event.connection_id, event_id = %event.event_id, event_type = %event.event_type,
            duplicate, "event read from Stripe's list"
        );
    } else {
        tracing::info!(
            connection = %event.connection_id, event_id = %event.event_id, event_type = %event.event_type,
            duplicate, body_omitted = too_large, "webhook received"
        );
    }
    Ok(outcome)
}

/// An event id and type the connector can key and route by.
fn check_envelope(envelope: &Envelope) -> Result<()> {
    if !ids::is_id(&envelope.id, "evt_") {
        return Err(Error::InvalidEvent {
            param: Some("id"),
            message: "event id must look like evt_…".into(),
        });
    }
    if envelope.event_type.is_empty()
        || envelope.event_type.len() > 100
        || !envelope
            .event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(Error::InvalidEvent {
            param: Some("type"),
            message: "event type is not a Stripe event type".into(),
        });
    }
    Ok(())
}

/// The deepest nesting serde_json reads (its recursion limit of 128 counts
/// the document itself): deeper, fan-out could not read the event back.
const MAX_NESTING: usize = 127;

/// How deep a JSON document nests (arrays and objects), counted over its
/// bytes without building it. Parsing the event into a `Value` only to
/// learn this cost a tenth of the dev server's ingest throughput; the
/// syntax itself is checked by the envelope's parse.
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::nesting;

    #[test]
    fn nesting_counts_brackets_outside_strings_only() {
        assert_eq!(nesting(br#"{"a": 1}"#), 1);
        assert_eq!(nesting(br#"{"a": [{"b": [1]}]}"#), 4);
        assert_eq!(nesting(br#"{"a": "[[[{{{", "b": "\"[["}"#), 1);
        assert_eq!(nesting(br#"[[], [[]], []]"#), 3);
        let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(nesting(deep.as_bytes()), 128);
        // Agrees with serde_json: 127 levels read, 128 do not.
        let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(nesting(ok.as_bytes()), super::MAX_NESTING);
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
    }
}
