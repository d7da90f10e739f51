//! Alerts: notices about one connection, POSTed to the alert target its
//! owner set, signed per Standard Webhooks with the target's own secret.
//!
//! Each notice is sent once: it is sent by whoever made the state change it
//! reports, after that change was written under a condition (a run's
//! version, a breaker's version, the connection's lease and version), so
//! two workers can never both report the same change. Its `webhook-id` is
//! derived from what it reports, so a receiver can drop a repeated
//! delivery too. A target that fails is tried [`ATTEMPTS`] times, then the
//! notice is logged as lost; what it reported stays readable in
//! `GET /connections/{id}/health` and the runs API.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::lock::with_lock;
use super::{Result, connection};
use crate::app::App;
use crate::catalog::InvalidInput;
use crate::ids::ConnectionId;
use crate::metrics::Measure;
use crate::model::{AlertTarget, Connection, TargetSecret};
use crate::workflow::signing;

pub const RUN_DEAD: &str = "run.dead";
pub const RUN_STUCK: &str = "run.stuck";
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
pub const ENDPOINT_REPAIRED: &str = "endpoint.repaired";
pub const EVENTS_RECOVERED: &str = "events.recovered";
pub const CIRCUIT_OPENED: &str = "circuit.opened";

/// Every notice type, as the docs and the OpenAPI document list them.
pub const KINDS: [&str; 6] = [
    RUN_DEAD,
    RUN_STUCK,
    ENDPOINT_DISABLED,
    ENDPOINT_REPAIRED,
    EVENTS_RECOVERED,
    CIRCUIT_OPENED,
];

/// Tries per notice; a timeout or a 429/5xx answer is tried again.
pub const ATTEMPTS: u32 = 3;
/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `PUT /connections/{id}/alerts`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSetting {
    /// A public `https://` URL (the same rule as workflow targets).
    pub url: String,
}

/// Sets (or replaces) the connection's alert target with a new signing
/// secret, answered once here.
pub async fn set(
    app: &App,
    id: &ConnectionId,
    body: AlertSetting,
) -> Result<(Connection, TargetSecret)> {
    let url = crate::target::check_url(&body.url, app.config.private_targets_allowed())
        .map_err(|e| InvalidInput::at("url", e.to_string()))?;
    let secret = TargetSecret::new(signing::generate_secret());
    with_lock(app, id, async |locked| {
        locked.connection.alerts = Some(AlertTarget {
            url: url.to_string(),
            secret: secret.clone(),
        });
        locked.save().await?;
        tracing::info!(connection = %id, "alert target set");
        Ok((locked.connection.clone(), secret.clone()))
    })
    .await
}

/// Removes the alert target (no notices from now on).
pub async fn remove(app: &App, id: &ConnectionId) -> Result<Connection> {
    connection(app, id).await?;
    with_lock(app, id, async |locked| {
        if locked.connection.alerts.take().is_some() {
            locked.save().await?;
        }
        Ok(locked.connection.clone())
    })
    .await
}

/// Sends one notice to the connection's alert target, if it has one.
/// `key` names what is reported (a run, an endpoint episode, a pass) and
/// makes the `webhook-id`. Answers whether the target took it.
pub async fn notify(
    app: &App,
    connection: &Connection,
    kind: &str,
    key: &str,
    data: Value,
) -> bool {
    let Some(target) = &connection.alerts else {
        return false;
    };
    let msg_id = message_id(&connection.id, kind, key);
    let now = app.clock.now();
    let mut data = data;
    if let Value::Object(map) = &mut data {
        map.insert("connection_id".into(), json!(connection.id));
    }
    let payload = json!({"type": kind, "timestamp": rfc3339(now), "data": data}).to_string();
    let url = match crate::target::check_url(&target.url, app.config.private_targets_allowed()) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(connection = %connection.id, kind, error = %e, "alert not sent: the target is refused");
            return false;
        }
    };
    for attempt in 1..=ATTEMPTS {
        let timestamp = app.clock.now();
        let Ok(signature) = signing::sign(
            target.secret.expose(),
            &msg_id,
            timestamp,
            payload.as_bytes(),
        ) else {
            tracing::warn!(connection = %connection.id, kind, "alert not sent: its secret is unusable");
            return false;
        };
        let sent = app
            .targets()
            .post(url.clone())
            .timeout(TIMEOUT)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload.clone())
            .send()
            .await;
        let retry = match &sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(connection = %connection.id, kind, msg_id, "alert sent");
                app.metrics.record(Measure::Alert { outcome: "sent" });
                return true;
            }
            Ok(r) => r.status().as_u16() == 429 || r.status().is_server_error(),
            Err(e) => !crate::target::is_forbidden(e),
        };
        if !retry {
            break;
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    tracing::error!(connection = %connection.id, kind, msg_id, "alert not delivered");
    app.metrics.record(Measure::Alert { outcome: "lost" });
    false
}

/// The notice's `webhook-id`: the same for the same report, whoever sends it.
pub fn message_id(connection_id: &str, kind: &str, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [connection_id, kind, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("msg_{}", &hex::encode(h.finalize())[..32])
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Standard Webhooks' payload
/// `timestamp`). Days to a civil date by Howard Hinnant's algorithm: six
/// lines, where a date crate would be a dependency for one format.
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_300_000), "2026-12-03T12:13:20Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn message_ids_name_the_report() {
        let a = message_id("conn_a", RUN_DEAD, "evt_1/wf_1");
        assert_eq!(a, message_id("conn_a", RUN_DEAD, "evt_1/wf_1"));
        assert_ne!(a, message_id("conn_a", RUN_STUCK, "evt_1/wf_1"));
        assert_ne!(a, message_id("conn_b", RUN_DEAD, "evt_1/wf_1"));
        assert_eq!(a.len(), 36);
    }
}
