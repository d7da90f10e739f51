//! Endpoint sync: the connection's ONE managed Stripe webhook endpoint kept
//! equal to what it needs (its triggers ∪ its enabled workflows' triggers).

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::lock::{Locked, with_lock};
use super::{Error, Result};
use crate::app::App;
use crate::catalog;
use crate::model::{Connection, WebhookMode};
use crate::stripe::{StripeClient, StripeError};

/// Deletes an endpoint in Stripe: `Ok(true)` deleted, `Ok(false)` already gone.
pub async fn delete(stripe: &StripeClient, endpoint: &str) -> Result<bool, StripeError> {
    match stripe
        .delete(&format!("/v1/webhook_endpoints/{endpoint}"), &json!({}))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.status() == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// After a workflow changed: under the connection's lease, a managed
/// endpoint follows and the connection record keeps its id.
pub async fn resync(app: &App, connection_id: &str, base_url: &str) -> Result<()> {
    with_lock(app, connection_id, async |locked| {
        if locked.connection.webhook_mode == WebhookMode::Managed {
            sync(app, locked, base_url).await?;
            locked.save().await?;
        }
        Ok(())
    })
    .await
}

/// How long the webhook secrets of a replaced endpoint keep verifying:
/// deliveries Stripe signed with them just before the switch may still
/// arrive (what they carry, the reconciler reads from Stripe's list too).
pub const SECRET_GRACE_SECS: i64 = 3600;

/// The URL the connection's managed endpoint posts to.
pub fn webhook_url(c: &Connection, base_url: &str) -> String {
    format!("{base_url}/webhooks/{}", c.id)
}

/// Keeps the connection's ONE Stripe endpoint equal to what it needs: none
/// without triggers; created with the pinned API version when first needed
/// (its secret, shown by Stripe only then, goes to the secret store);
/// updated in place afterwards; recreated if it was deleted in Stripe.
///
/// Runs under the connection's lease (so two requests never both create
/// one) and leaves saving the connection record to the caller. Creation
/// carries an idempotency key of the connection's id and version, so a
/// retry after a crash gets the same endpoint (and its secret) back from
/// Stripe; endpoints of this connection left behind anyway (made more than
/// Stripe's 24 h of idempotency ago) are found by their metadata and deleted.
pub async fn sync(app: &App, locked: &mut Locked<'_>, base_url: &str) -> Result<()> {
    // An unfinished API-version upgrade is carried on first, so the
    // endpoint synced is the one the connection keeps. If it cannot be
    // now, the one in use is synced and the reconciler finishes it (and
    // brings the other endpoint's events along).
    if locked.connection.upgrade.is_some() {
        let url = webhook_url(&locked.connection, base_url);
        if let Err(e) = super::upgrade::advance(app, locked, &url).await {
            tracing::warn!(connection = %locked.connection.id, error = %e, "unfinished upgrade not carried on now");
        }
    }
    let secrets = locked.secrets()?.clone();
    let c = locked.connection.clone();
    let stripe = app.stripe_for(&c, &secrets.api_key);
    let url = webhook_url(&c, base_url);
    let events = subscribed_events(app, &c).await?;
    if events.is_empty() {
        if let Some(endpoint) = &c.webhook_endpoint_id {
            delete(&stripe, endpoint).await?;
            locked.connection.webhook_endpoint_id = None;
            let mut cleared = secrets;
            cleared.webhook_secrets.clear();
            locked.save_secrets(cleared).await?;
        }
        return Ok(());
    }
    if let Some(endpoint) = &c.webhook_endpoint_id {
        let update = json!({"enabled_events": events, "url": url});
        match stripe
            .post(&format!("/v1/webhook_endpoints/{endpoint}"), &update, None)
            .await
        {
            Ok(_) => {
                locked.connection.webhook_url = Some(url);
                return Ok(());
            }
            Err(e) if e.status() == Some(404) => {
                tracing::warn!(connection = %c.id, endpoint = %endpoint, "endpoint gone from Stripe; recreating");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let key = creation_key(&c);
    let replacing = c.webhook_endpoint_id.is_some();
    let id = create(app, locked, &url, &events, &c.api_version, &key, replacing).await?;
    locked.connection.webhook_endpoint_id = Some(id.clone());
    sweep_orphans(&stripe, &c.id, Some(&id)).await;
    Ok(())
}

/// The idempotency key of a managed endpoint's creation: the connection
/// and its version, so a retry of the same change gets the same endpoint
/// (and its secret) back from Stripe within its 24 h.
pub fn creation_key(c: &Connection) -> String {
    format!("stripe-connector-endpoint-{}-v{}", c.id, c.version)
}

/// Creates a managed endpoint for `url` at `api_version` and stores its
/// secret first in line (the secret store, before the caller saves the
/// record). `replacing`: the secrets of the endpoint it replaces keep
/// verifying for [`SECRET_GRACE_SECS`]; else they are dropped. The caller
/// sets the record's endpoint id. Stripe's 16-endpoint limit is a 409.
pub async fn create(
    app: &App,
    locked: &mut Locked<'_>,
    url: &str,
    events: &[String],
    api_version: &str,
    idempotency_key: &str,
    replacing: bool,
) -> Result<String> {
    let secrets = locked.secrets()?.clone();
    let c = locked.connection.clone();
    let stripe = app.stripe_for(&c, &secrets.api_key);
    let create = json!({
        "url": url,
        "enabled_events": events,
        "api_version": api_version,
        "description": format!("stripe-connector: {}", c.name),
        "metadata": {"connection_id": c.id, "managed_by": "stripe-connector", "api_version": api_version},
    });
    let endpoint = match stripe
        .post("/v1/webhook_endpoints", &create, Some(idempotency_key))
        .await
    {
        Ok(endpoint) => endpoint,
        Err(e) if is_endpoint_limit(&e) => {
            return Err(Error::Conflict {
                kind: "webhook_endpoint_limit",
                message: "the Stripe account already has the maximum of 16 webhook endpoints; delete one in Stripe, or connect with {\"webhook\": {\"mode\": \"manual\"}} and reuse an endpoint".into(),
                stripe: Some(Box::new(e)),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let (Some(id), Some(secret)) = (endpoint["id"].as_str(), endpoint["secret"].as_str()) else {
        return Err(Error::UnexpectedStripeAnswer(
            "Stripe created the endpoint without an id or secret",
        ));
    };
    let mut renewed = secrets;
    let mut list = vec![SecretString::from(secret.to_string())];
    if replacing {
        list.extend(
            renewed
                .webhook_secrets
                .iter()
                .filter(|s| s.expose_secret() != secret)
                .cloned(),
        );
        list.truncate(MAX_MANAGED_SECRETS);
        locked.connection.retire_secrets_at = Some(app.clock.now() + SECRET_GRACE_SECS);
    }
    renewed.webhook_secrets = list;
    locked.save_secrets(renewed).await?;
    locked.connection.webhook_url = Some(url.to_string());
    tracing::info!(connection = %c.id, endpoint = %id, api_version, "webhook endpoint created");
    Ok(id.to_string())
}

/// How many secrets verify while endpoints are replaced: the new one, the
/// one it replaces and one before that.
const MAX_MANAGED_SECRETS: usize = 3;

/// A managed endpoint as Stripe has it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub disabled: bool,
    pub url: Option<String>,
    pub api_version: Option<String>,
    /// Sorted, to compare with [`subscribed_events`].
    pub enabled_events: Vec<String>,
}

/// Reads the endpoint from Stripe: `None` when Stripe has no such endpoint
/// (deleted).
pub async fn observe(
    stripe: &StripeClient,
    endpoint: &str,
) -> Result<Option<Observed>, StripeError> {
    let found = match stripe
        .get(&format!("/v1/webhook_endpoints/{endpoint}"), &json!({}))
        .await
    {
        Ok(found) => found,
        Err(e) if e.status() == Some(404) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut enabled_events: Vec<String> = found["enabled_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    enabled_events.sort();
    Ok(Some(Observed {
        disabled: found["status"].as_str() == Some("disabled"),
        url: found["url"].as_str().map(str::to_string),
        api_version: found["api_version"].as_str().map(str::to_string),
        enabled_events,
    }))
}

/// Deletes this connection's endpoints in Stripe (found by their metadata)
/// but `keep`. Best effort: a failure is logged, and the next sweep retries.
pub async fn sweep_orphans(stripe: &StripeClient, connection_id: &str, keep: Option<&str>) {
    let listed = match stripe
        .get("/v1/webhook_endpoints", &json!({"limit": 100}))
        .await
    {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(connection = %connection_id, error = %e, "could not list webhook endpoints to sweep");
            return;
        }
    };
    let orphans = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["metadata"]["connection_id"].as_str() == Some(connection_id))
        .filter_map(|e| e["id"].as_str())
        .filter(|id| Some(*id) != keep);
    for orphan in orphans {
        match delete(stripe, orphan).await {
            Ok(_) => {
                tracing::warn!(connection = %connection_id, endpoint = %orphan, "orphaned endpoint deleted");
            }
            Err(e) => {
                tracing::warn!(connection = %connection_id, endpoint = %orphan, error = %e, "orphaned endpoint not deleted");
            }
        }
    }
}

/// What the endpoint subscribes to: the triggers set on the connection plus
/// those of its enabled workflows (`*` stands for every catalog trigger).
pub async fn subscribed_events(app: &App, c: &Connection) -> Result<Vec<String>> {
    let workflows = app.workflows.list_workflows(&c.id).await?;
    let mut events: Vec<String> = c.triggers.clone();
    for w in workflows.iter().filter(|w| w.enabled) {
        if w.trigger == "*" {
            events.extend(catalog::TRIGGERS.iter().map(|t| t.key.to_string()));
        } else {
            events.push(w.trigger.clone());
        }
    }
    events.sort();
    events.dedup();
    Ok(events)
}

fn is_endpoint_limit(e: &StripeError) -> bool {
    e.status() == Some(400)
        && e.api_error()
            .and_then(|a| a.message.as_deref())
            .map(str::to_ascii_lowercase)
            .is_some_and(|m| {
                m.contains("webhook endpoints") && (m.contains("maximum") || m.contains("limit"))
            })
}
