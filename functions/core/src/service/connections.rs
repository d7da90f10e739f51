//! Connections: connect a Stripe account, rotate its key and webhook
//! secrets, choose the triggers it stores, remove it.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::lock::{Locked, with_lock};
use super::{Error, Result, endpoint, load};
use crate::app::App;
use crate::catalog::{self, InvalidInput};
use crate::ids::ConnectionId;
use crate::model::{Connection, ConnectionSecrets, WebhookMode};
use crate::stripe::{StripeClient, StripeError};

/// How many webhook secrets verify at once during a rotation.
const MAX_WEBHOOK_SECRETS: usize = 3;

/// `POST /connections`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// 1 to 100 characters.
    pub name: String,
    /// `sk_test_…`, `sk_live_…`, `rk_test_…` or `rk_live_…`; validated with
    /// Stripe, stored in the secret store, never returned.
    #[schema(value_type = String, format = Password)]
    pub api_key: SecretString,
    /// Pinned `Stripe-Version`, e.g. `2023-08-16` (default: the server's).
    #[serde(default)]
    pub api_version: Option<String>,
    /// `managed` (default): the connector keeps the account's endpoint.
    #[serde(default)]
    pub webhook: Option<WebhookSetting>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum WebhookSetting {
    Managed,
    Manual {
        /// The endpoint's signing secret, `whsec_…`.
        #[schema(value_type = String, format = Password)]
        secret: SecretString,
    },
}

/// `PUT /connections/{id}/api-key`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A key of the same account and mode.
    #[schema(value_type = String, format = Password)]
    pub api_key: SecretString,
}

/// `PUT /connections/{id}/webhook-secret`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookSecret {
    /// `whsec_…`
    #[schema(value_type = String, format = Password)]
    pub secret: SecretString,
    /// Keep verifying with the previous secrets (default), or drop them.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub keep_previous: bool,
}

fn yes() -> bool {
    true
}

/// `PUT /connections/{id}/triggers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSet {
    pub triggers: Vec<String>,
}

/// A connection as its caller may see it, with how many webhook secrets
/// verify now (never the secrets).
pub struct ConnectionView {
    pub connection: Connection,
    pub webhook_secrets: Option<usize>,
}

/// `sk_test_`, `sk_live_`, `rk_test_`, `rk_live_`, then Stripe's charset. The
/// message never repeats the key.
fn check_api_key(key: &SecretString) -> Result<SecretString> {
    let key = key.expose_secret().trim();
    let prefix_ok = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
        .iter()
        .any(|p| key.starts_with(p));
    let tail_ok = key.len() > 8
        && key.len() <= 255
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !prefix_ok || !tail_ok {
        return Err(InvalidInput::at(
            "api_key",
            "api_key must be a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_test_…, rk_live_…)",
        ).into());
    }
    Ok(SecretString::from(key.to_string()))
}

fn check_webhook_secret(secret: &SecretString, param: &str) -> Result<SecretString> {
    let s = secret.expose_secret().trim();
    let tail = s.strip_prefix("whsec_").unwrap_or_default();
    if tail.is_empty()
        || s.len() > 255
        || !tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(InvalidInput::at(
            param,
            format!("{param} must be a Stripe webhook signing secret (whsec_…)"),
        )
        .into());
    }
    Ok(SecretString::from(s.to_string()))
}

/// The longest API version taken: Stripe's are a date and a short name
/// (`2024-09-30.acacia`).
const MAX_API_VERSION_LEN: usize = 40;

/// `YYYY-MM-DD`, optionally `.name` in lowercase letters (`2024-09-30.acacia`),
/// at most [`MAX_API_VERSION_LEN`] bytes.
/// Checked byte by byte: no input, however malformed, is sliced.
pub(crate) fn check_api_version(v: &str) -> Result<()> {
    let b = v.as_bytes();
    let date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    let suffix_ok = match b.get(10..) {
        None | Some([]) => true,
        Some([b'.', name @ ..]) => !name.is_empty() && name.iter().all(u8::is_ascii_lowercase),
        Some(_) => false,
    };
    if !date || !suffix_ok || b.len() > MAX_API_VERSION_LEN {
        return Err(InvalidInput::at(
            "api_version",
            "api_version must be a Stripe API version such as 2023-08-16",
        )
        .into());
    }
    Ok(())
}

/// Asks Stripe who the key belongs to. A refusal is the caller's problem (422).
async fn account_of(client: &StripeClient) -> Result<String> {
    match client.get("/v1/account", &json!({})).await {
        Ok(account) => account["id"]
            .as_str()
            .map(str::to_string)
            .ok_or(Error::UnexpectedStripeAnswer("Stripe's account has no id")),
        Err(
            e @ StripeError::Api {
                status: 400..=499, ..
            },
        ) if e.status() != Some(429) => Err(Error::KeyRefused {
            message: format!(
                "Stripe refused the key: {}",
                e.api_error()
                    .and_then(|a| a.message.as_deref())
                    .unwrap_or("unauthorized")
            ),
            stripe: Some(Box::new(e)),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Connects an account: input checked, key validated with Stripe, secrets
/// stored, then the connection record.
pub async fn create(app: &App, body: NewConnection) -> Result<ConnectionView> {
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(InvalidInput::at("name", "name must be 1 to 100 characters").into());
    }
    let api_key = check_api_key(&body.api_key)?;
    let api_version = body
        .api_version
        .unwrap_or_else(|| app.config.stripe_api_version.clone());
    check_api_version(&api_version)?;
    let (mode, webhook_secrets) = match body.webhook {
        None | Some(WebhookSetting::Managed) => (WebhookMode::Managed, vec![]),
        Some(WebhookSetting::Manual { secret }) => (
            WebhookMode::Manual,
            vec![check_webhook_secret(&secret, "webhook.secret")?],
        ),
    };
    let account_id = account_of(&app.stripe(&api_key, &api_version)).await?;
    let livemode = api_key.expose_secret().contains("_live_");
    let now = app.clock.now();
    let connection = Connection {
        id: ConnectionId::generate().into(),
        name,
        account_id,
        livemode,
        api_version,
        webhook_mode: mode,
        webhook_endpoint_id: None,
        triggers: vec![],
        created_at: now,
        updated_at: now,
        version: 0,
        ..Default::default()
    };
    let secrets = ConnectionSecrets {
        target_secrets: Default::default(),
        api_key,
        webhook_secrets,
    };
    // Secrets first: a connection record never exists without its secrets.
    app.secrets.put_secrets(&connection.id, &secrets).await?;
    app.connections.insert_connection(&connection).await?;
    tracing::info!(connection = %connection.id, account = %connection.account_id, livemode, "connection created");
    Ok(ConnectionView {
        webhook_secrets: Some(secrets.webhook_secrets.len()),
        connection,
    })
}

pub async fn get(app: &App, id: &ConnectionId) -> Result<ConnectionView> {
    let (connection, secrets) = load(app, id).await?;
    Ok(ConnectionView {
        connection,
        webhook_secrets: Some(secrets.webhook_secrets.len()),
    })
}

pub async fn list(app: &App) -> Result<Vec<Connection>> {
    Ok(app.connections.list_connections().await?)
}

/// Removes the connection, its managed endpoint in Stripe (and any orphan
/// of it) and its secrets. Answers whether the endpoint was deleted. Stripe
/// unreachable → the error, unless `force`. The secrets go before the
/// record: a failure between the two leaves a record that a retried
/// delete removes, never a key that no API can reach.
pub async fn delete(app: &App, id: &ConnectionId, force: bool) -> Result<bool> {
    with_lock(app, id, async |locked| {
        delete_locked(app, locked, force).await
    })
    .await
}

async fn delete_locked(app: &App, locked: &Locked<'_>, force: bool) -> Result<bool> {
    let c = &locked.connection;
    let mut endpoint_deleted = false;
    if let (WebhookMode::Managed, Some(secrets)) = (c.webhook_mode, &locked.secrets) {
        let stripe = app.stripe_for(c, &secrets.api_key);
        if let Some(endpoint) = &c.webhook_endpoint_id {
            match endpoint::delete(&stripe, endpoint).await {
                Ok(deleted) => endpoint_deleted = deleted,
                Err(e) if force => {
                    tracing::warn!(connection = %c.id, error = %e, "endpoint not deleted; forced");
                }
                Err(e) => return Err(Error::EndpointNotDeleted(Box::new(e))),
            }
        }
        endpoint::sweep_orphans(&stripe, &c.id, None).await;
    }
    app.secrets.delete_secrets(&c.id).await?;
    // Its workflows go with it (its events and runs expire with their TTL).
    for w in app.workflows.list_workflows(&c.id).await? {
        app.workflows.delete_workflow(&c.id, &w.id).await?;
    }
    app.connections.delete_connection(&c.id).await?;
    tracing::info!(connection = %c.id, endpoint_deleted, "connection deleted");
    Ok(endpoint_deleted)
}

/// Rotates the API key: same mode, same account, validated with Stripe first.
pub async fn rotate_key(app: &App, id: &ConnectionId, body: NewApiKey) -> Result<ConnectionView> {
    let api_key = check_api_key(&body.api_key)?;
    let c = super::connection(app, id).await?;
    if api_key.expose_secret().contains("_live_") != c.livemode {
        return Err(InvalidInput::at(
            "api_key",
            "the new key's mode (test or live) differs from the connection's",
        )
        .into());
    }
    let account = account_of(&app.stripe(&api_key, &c.api_version)).await?;
    if account != c.account_id {
        return Err(Error::KeyRefused {
            message: format!(
                "the new key belongs to {account}, not to the connection's account {}",
                c.account_id
            ),
            stripe: None,
        });
    }
    with_lock(app, id, async |locked| {
        let mut secrets = locked.secrets()?.clone();
        secrets.api_key = api_key;
        locked.save_secrets(secrets).await?;
        locked.save().await?;
        tracing::info!(connection = %id, "api key rotated");
        Ok(view(locked))
    })
    .await
}

/// Adds a webhook secret first in line; the previous ones keep verifying
/// (at most [`MAX_WEBHOOK_SECRETS`]) unless `keep_previous` is false.
pub async fn set_webhook_secret(
    app: &App,
    id: &ConnectionId,
    body: NewWebhookSecret,
) -> Result<ConnectionView> {
    let secret = check_webhook_secret(&body.secret, "secret")?;
    with_lock(app, id, async |locked| {
        let mut secrets = locked.secrets()?.clone();
        let mut list = vec![secret.clone()];
        if body.keep_previous {
            list.extend(
                secrets
                    .webhook_secrets
                    .iter()
                    .filter(|s| s.expose_secret() != secret.expose_secret())
                    .cloned(),
            );
        }
        list.truncate(MAX_WEBHOOK_SECRETS);
        secrets.webhook_secrets = list;
        locked.save_secrets(secrets).await?;
        tracing::info!(connection = %id, active = locked.secrets()?.webhook_secrets.len(), "webhook secrets changed");
        Ok(view(locked))
    })
    .await
}

/// Sets the events stored even without a workflow; the managed endpoint
/// follows.
pub async fn set_triggers(
    app: &App,
    id: &ConnectionId,
    body: TriggerSet,
    base_url: &str,
) -> Result<ConnectionView> {
    let mut triggers = Vec::new();
    for (i, t) in body.triggers.iter().enumerate() {
        if catalog::trigger(t).is_none() {
            return Err(InvalidInput::at(
                format!("triggers[{i}]"),
                format!("unknown trigger {t:?}; see GET /catalog"),
            )
            .into());
        }
        triggers.push(t.clone());
    }
    triggers.sort();
    triggers.dedup();
    with_lock(app, id, async |locked| {
        locked.connection.triggers = triggers;
        if locked.connection.webhook_mode == WebhookMode::Managed {
            endpoint::sync(app, locked, base_url).await?;
        }
        locked.save().await?;
        Ok(view(locked))
    })
    .await
}

fn view(locked: &Locked<'_>) -> ConnectionView {
    ConnectionView {
        connection: locked.connection.clone(),
        webhook_secrets: locked.secrets.as_ref().map(|s| s.webhook_secrets.len()),
    }
}
