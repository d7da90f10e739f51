//! Moving a connection to another Stripe API version without a gap.
//!
//! Stripe renders each webhook at its endpoint's API version, which cannot
//! be changed in place. So an upgrade of a managed connection is:
//!
//! 1. **begin** — the upgrade is recorded on the connection (target
//!    version, the endpoint being replaced);
//! 2. **create** — a second endpoint at the new version, same URL and
//!    events; its secret goes first in line and the old one keeps
//!    verifying, so while both endpoints deliver each event arrives twice
//!    and is stored once (the event id is the key);
//! 3. **switch** — the connection's version and endpoint become the new
//!    ones (the old secret verifies for another hour);
//! 4. **retire** — the old endpoint is deleted, and the record cleared.
//!
//! Each step is saved before the next starts and each is safe to repeat
//! (creation carries an idempotency key of the connection and version, so a
//! repeat within Stripe's 24 h gets the same endpoint and secret back), so
//! an interrupted upgrade is finished by the next `PUT …/api-version` of the
//! same version or by the reconciler. It needs one free endpoint of
//! Stripe's 16 while both exist; without one, nothing is changed.

use serde::Deserialize;

use super::connections::{ConnectionView, check_api_version};
use super::lock::{Locked, with_lock};
use super::{Error, Result, endpoint};
use crate::app::App;
use crate::ids::ConnectionId;
use crate::model::{Upgrade, WebhookMode};

/// `PUT /connections/{id}/api-version`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiVersion {
    /// e.g. `2024-06-20`.
    pub api_version: String,
}

/// Moves the connection to `api_version`: its Stripe calls at once, its
/// managed endpoint by the steps above. A manual endpoint is the user's:
/// only the calls' version changes (the answer says the endpoint is theirs
/// to replace).
pub async fn set(
    app: &App,
    id: &ConnectionId,
    body: NewApiVersion,
    base_url: &str,
) -> Result<ConnectionView> {
    check_api_version(&body.api_version)?;
    let to = body.api_version;
    with_lock(app, id, async |locked| {
        if locked.connection.webhook_mode == WebhookMode::Manual {
            if locked.connection.api_version != to {
                locked.connection.api_version = to.clone();
                locked.save().await?;
            }
        } else {
            begin(app, locked, &to, false).await?;
            let url = locked
                .connection
                .webhook_url
                .clone()
                .unwrap_or_else(|| endpoint::webhook_url(&locked.connection, base_url));
            advance(app, locked, &url).await?;
        }
        Ok(ConnectionView {
            connection: locked.connection.clone(),
            webhook_secrets: locked.secrets.as_ref().map(|s| s.webhook_secrets.len()),
        })
    })
    .await
}

/// Step 1: records an upgrade to `to`, unless the connection is there
/// already (`replace_anyway`: its endpoint is not, as the reconciler found)
/// or is on its way to it. One to another version is a 409: it is finished
/// first.
pub async fn begin(
    app: &App,
    locked: &mut Locked<'_>,
    to: &str,
    replace_anyway: bool,
) -> Result<()> {
    match &locked.connection.upgrade {
        Some(u) if u.to == to => return Ok(()),
        Some(u) => {
            return Err(Error::Conflict {
                kind: "upgrade_in_progress",
                message: format!(
                    "an upgrade to {} is under way; PUT that version again to finish it first",
                    u.to
                ),
                stripe: None,
            });
        }
        None => {}
    }
    if locked.connection.api_version == to && !replace_anyway {
        return Ok(());
    }
    locked.connection.upgrade = Some(Upgrade {
        to: to.to_string(),
        old_endpoint_id: locked.connection.webhook_endpoint_id.clone(),
        new_endpoint_id: None,
        started_at: app.clock.now(),
    });
    locked.save().await
}

/// Whether Stripe refused to make the endpoint (so none was made): the
/// 16-endpoint limit, or a 4xx other than 429.
fn refused(e: &Error) -> bool {
    match e {
        Error::Conflict { .. } => true,
        Error::Stripe(e) => e
            .status()
            .is_some_and(|s| (400..500).contains(&s) && s != 429),
        _ => false,
    }
}

/// Steps 2 to 4, from wherever the recorded upgrade stopped.
pub async fn advance(app: &App, locked: &mut Locked<'_>, url: &str) -> Result<()> {
    let Some(mut upgrade) = locked.connection.upgrade.clone() else {
        return Ok(());
    };
    let c = locked.connection.clone();
    let Some(old) = upgrade.old_endpoint_id.clone() else {
        // No endpoint yet: the next one is made at the new version.
        locked.connection.api_version = upgrade.to.clone();
        locked.connection.upgrade = None;
        return locked.save().await;
    };
    if upgrade.new_endpoint_id.is_none() {
        let events = endpoint::subscribed_events(app, &c).await?;
        let key = format!("stripe-connector-upgrade-{}-{}", c.id, upgrade.to);
        match endpoint::create(app, locked, url, &events, &upgrade.to, &key, true).await {
            Ok(id) => {
                tracing::info!(connection = %c.id, endpoint = %id, to = %upgrade.to, "upgrade: new endpoint delivering alongside the old one");
                upgrade.new_endpoint_id = Some(id);
                locked.connection.upgrade = Some(upgrade.clone());
                locked.save().await?;
            }
            Err(e) if refused(&e) => {
                // Stripe said no (no room for a second endpoint, a version
                // it does not know): nothing was made, the connection stays
                // as it was, and another version may be asked for.
                locked.connection.upgrade = None;
                locked.save().await?;
                return Err(e);
            }
            // No answer, or Stripe failed: the endpoint may exist. The
            // upgrade stays recorded; its next try carries the same
            // idempotency key and gets the same endpoint back.
            Err(e) => return Err(e),
        }
    }
    let new = upgrade.new_endpoint_id.clone().unwrap_or_default();
    if locked.connection.webhook_endpoint_id.as_deref() != Some(new.as_str())
        || locked.connection.api_version != upgrade.to
    {
        locked.connection.api_version = upgrade.to.clone();
        locked.connection.webhook_endpoint_id = Some(new.clone());
        locked.save().await?;
        tracing::info!(connection = %c.id, endpoint = %new, to = %upgrade.to, "upgrade: switched");
    }
    if old != new {
        let secrets = locked.secrets()?.clone();
        let stripe = app.stripe_for(&locked.connection, &secrets.api_key);
        endpoint::delete(&stripe, &old).await?;
    }
    locked.connection.upgrade = None;
    locked.save().await?;
    tracing::info!(connection = %c.id, old = %old, to = %upgrade.to, "upgrade: old endpoint deleted; done");
    Ok(())
}
