//! Endpoint sync: the connection's ONE managed Stripe webhook endpoint kept
//! equal to what it needs (its triggers ∪ its enabled workflows' triggers).

use secrecy::SecretString;
use serde_json::json;

use super::{Error, Result};
use crate::app::App;
use crate::catalog;
use crate::model::{Connection, ConnectionSecrets, WebhookMode};
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

/// After a workflow changed: a managed endpoint follows, and the connection
/// record keeps its id.
pub async fn resync(
    app: &App,
    connection: &mut Connection,
    secrets: &mut ConnectionSecrets,
    base_url: &str,
) -> Result<()> {
    if connection.webhook_mode == WebhookMode::Managed {
        sync(app, connection, secrets, base_url).await?;
        app.connections.update_connection(connection).await?;
    }
    Ok(())
}

/// Keeps the connection's ONE Stripe endpoint equal to its triggers: none
/// without triggers; created with the pinned API version when first needed
/// (its secret, shown by Stripe only then, goes to the secret store); updated
/// in place afterwards; recreated if it was deleted in Stripe.
pub async fn sync(
    app: &App,
    c: &mut Connection,
    secrets: &mut ConnectionSecrets,
    base_url: &str,
) -> Result<()> {
    let stripe = app.stripe(&secrets.api_key, &c.api_version);
    let url = format!("{base_url}/webhooks/{}", c.id);
    let events = subscribed_events(app, c).await?;
    if events.is_empty() {
        if let Some(endpoint) = c.webhook_endpoint_id.take() {
            if let Err(e) = delete(&stripe, &endpoint).await {
                c.webhook_endpoint_id = Some(endpoint);
                return Err(e.into());
            }
            secrets.webhook_secrets.clear();
            app.secrets.put_secrets(&c.id, secrets).await?;
        }
        return Ok(());
    }
    if let Some(endpoint) = &c.webhook_endpoint_id {
        let update = json!({"enabled_events": events, "url": url});
        match stripe
            .post(&format!("/v1/webhook_endpoints/{endpoint}"), &update, None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.status() == Some(404) => {
                tracing::warn!(connection = %c.id, endpoint = %endpoint, "endpoint gone from Stripe; recreating");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let create = json!({
        "url": url,
        "enabled_events": events,
        "api_version": c.api_version,
        "description": format!("stripe-connector: {}", c.name),
        "metadata": {"connection_id": c.id, "managed_by": "stripe-connector"},
    });
    let endpoint = match stripe.post("/v1/webhook_endpoints", &create, None).await {
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
    c.webhook_endpoint_id = Some(id.to_string());
    secrets.webhook_secrets = vec![SecretString::from(secret.to_string())];
    app.secrets.put_secrets(&c.id, secrets).await?;
    tracing::info!(connection = %c.id, endpoint = %id, "webhook endpoint created");
    Ok(())
}

/// What the endpoint subscribes to: the triggers set on the connection plus
/// those of its enabled workflows (`*` stands for every catalog trigger).
async fn subscribed_events(app: &App, c: &Connection) -> Result<Vec<String>> {
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
