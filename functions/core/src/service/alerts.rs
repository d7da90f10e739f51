//! Alerts: notices about one connection, POSTed to the alert target its
//! owner set, signed per Standard Webhooks with the target's own secret.
//!
//! Each notice is sent once: it is sent by whoever made the state change it
//! reports, after that change was written under a condition (a run's
//! version, a breaker's version, the connection's lease and version), so
//! two workers can never both report the same change. Its `webhook-id` is
//! derived from what it reports, so a receiver can drop a repeated
//! delivery too. A target that fails is tried [`ATTEMPTS`] times; then the
//! notice waits on the connection (at most [`MAX_PENDING`]) and each
//! reconcile pass tries it again, for a day; after that it is logged and
//! counted as lost. What it reported stays readable in
//! `GET /connections/{id}/health` and the runs API.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::lock::{with_lock, with_record_lock};
use super::{Result, connection};
use crate::app::App;
use crate::catalog::InvalidInput;
use crate::ids::ConnectionId;
use crate::metrics::Measure;
use crate::model::{AlertTarget, Connection, PendingAlert, TargetSecret};
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
        if locked.connection.alerts.take().is_some() || !locked.connection.pending_alerts.is_empty()
        {
            locked.connection.pending_alerts.clear();
            locked.save().await?;
        }
        Ok(locked.connection.clone())
    })
    .await
}

/// Sends one notice to the connection's alert target, if it has one.
/// `key` names what is reported (a run, an endpoint episode, a pass) and
/// makes the `webhook-id`. Tried [`ATTEMPTS`] times; a notice the target
/// did not take is kept on the connection and tried again by each
/// reconcile pass for [`RETRY_FOR_SECS`]. Answers whether it was taken now.
pub async fn notify(
    app: &App,
    connection: &Connection,
    kind: &str,
    key: &str,
    data: Value,
) -> bool {
    if connection.alerts.is_none() {
        return false;
    }
    let mut data = data;
    if let Value::Object(map) = &mut data {
        map.insert("connection_id".into(), json!(connection.id));
    }
    let notice = PendingAlert {
        id: message_id(&connection.id, kind, key),
        kind: kind.to_string(),
        data,
        at: app.clock.now(),
        tries: 0,
    };
    match send(app, connection, &notice, ATTEMPTS).await {
        Sent::Taken => true,
        Sent::Refused => false,
        Sent::Failed => {
            keep(app, &connection.id, notice).await;
            false
        }
    }
}

/// How long a notice the target did not take is tried again.
pub const RETRY_FOR_SECS: i64 = 24 * 3600;
/// Notices kept for another try, per connection (the oldest goes first).
pub const MAX_PENDING: usize = 10;

enum Sent {
    Taken,
    /// Trying again cannot help (the address rule, a 4xx, a bad secret).
    Refused,
    /// Unreachable, 429 or 5xx: worth another try later.
    Failed,
}

/// Up to `attempts` tries of one notice. Its payload is made from what it
/// reports and when it happened, so every try sends the same bytes.
async fn send(app: &App, connection: &Connection, notice: &PendingAlert, attempts: u32) -> Sent {
    let Some(target) = &connection.alerts else {
        return Sent::Refused;
    };
    let (kind, msg_id) = (notice.kind.as_str(), notice.id.as_str());
    let payload =
        json!({"type": kind, "timestamp": rfc3339(notice.at), "data": notice.data}).to_string();
    let url = match crate::target::check_url(&target.url, app.config.private_targets_allowed()) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(connection = %connection.id, kind, error = %e, "alert not sent: the target is refused");
            app.metrics.record(Measure::Alert { outcome: "lost" });
            return Sent::Refused;
        }
    };
    for attempt in 1..=attempts {
        let timestamp = app.clock.now();
        let Ok(signature) = signing::sign(
            target.secret.expose(),
            msg_id,
            timestamp,
            payload.as_bytes(),
        ) else {
            tracing::warn!(connection = %connection.id, kind, "alert not sent: its secret is unusable");
            app.metrics.record(Measure::Alert { outcome: "lost" });
            return Sent::Refused;
        };
        let sent = app
            .targets()
            .post(url.clone())
            .timeout(TIMEOUT)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload.clone())
            .send()
            .await;
        let retry = match &sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(connection = %connection.id, kind, msg_id, "alert sent");
                app.metrics.record(Measure::Alert { outcome: "sent" });
                return Sent::Taken;
            }
            Ok(r) => r.status().as_u16() == 429 || r.status().is_server_error(),
            Err(e) => !crate::target::is_forbidden(e),
        };
        if !retry {
            tracing::error!(connection = %connection.id, kind, msg_id, "alert refused by its target");
            app.metrics.record(Measure::Alert { outcome: "lost" });
            return Sent::Refused;
        }
        if attempt < attempts {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    tracing::warn!(connection = %connection.id, kind, msg_id, "alert not taken; kept for another try");
    Sent::Failed
}

/// Keeps a notice on the connection for the reconciler to try again (once
/// per id; past [`MAX_PENDING`] the oldest is dropped, and counted lost).
async fn keep(app: &App, connection_id: &str, notice: PendingAlert) {
    let kept = with_record_lock(app, connection_id, async |locked| {
        let pending = &mut locked.connection.pending_alerts;
        if pending.iter().any(|p| p.id == notice.id) {
            return Ok(());
        }
        pending.push(notice.clone());
        while pending.len() > MAX_PENDING {
            let dropped = pending.remove(0);
            tracing::error!(connection = %connection_id, kind = %dropped.kind, msg_id = %dropped.id, "alert dropped: too many waiting");
            app.metrics.record(Measure::Alert { outcome: "lost" });
        }
        locked.save().await
    })
    .await;
    if let Err(e) = kept {
        tracing::error!(connection = %connection_id, error = %e, msg_id = %notice.id, "alert not kept for another try: lost");
        app.metrics.record(Measure::Alert { outcome: "lost" });
    }
}

/// The reconciler's turn: each waiting notice tried once more; those taken,
/// refused or past [`RETRY_FOR_SECS`] leave the list (under the lease, so a
/// notice kept meanwhile stays). Answers how many were taken now.
pub async fn retry_pending(app: &App, connection: &Connection) -> usize {
    if connection.pending_alerts.is_empty() {
        return 0;
    }
    let now = app.clock.now();
    let mut done = Vec::new();
    let mut taken = 0;
    for notice in &connection.pending_alerts {
        if now - notice.at > RETRY_FOR_SECS {
            tracing::error!(connection = %connection.id, kind = %notice.kind, msg_id = %notice.id, "alert given up after a day of tries");
            app.metrics.record(Measure::Alert { outcome: "lost" });
            done.push(notice.id.clone());
            continue;
        }
        match send(app, connection, notice, 1).await {
            Sent::Taken => {
                taken += 1;
                done.push(notice.id.clone());
            }
            Sent::Refused => done.push(notice.id.clone()),
            Sent::Failed => {}
        }
    }
    let cleared = with_record_lock(app, &connection.id, async |locked| {
        let before = locked.connection.pending_alerts.len();
        locked
            .connection
            .pending_alerts
            .retain(|p| !done.contains(&p.id));
        for p in &mut locked.connection.pending_alerts {
            p.tries += 1;
        }
        if locked.connection.pending_alerts.len() != before || before > 0 {
            locked.save().await?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = cleared {
        // Taken ones are tried again next pass: the receiver drops them
        // by their webhook-id.
        tracing::warn!(connection = %connection.id, error = %e, "waiting alerts not updated");
    }
    taken
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
