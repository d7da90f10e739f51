//! Connections: connect a Stripe account, keep its one webhook endpoint in
//! step with its triggers, rotate its key and webhook secrets, remove it.

use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::catalog;
use crate::http::{ApiError, Request, Response, json_response, ok_json, parse_json};
use crate::ids;
use crate::model::{Connection, ConnectionSecrets, WebhookMode};
use crate::ports::{EventQuery, StoreError};
use crate::stripe::{StripeClient, StripeError};

/// How many webhook secrets verify at once during a rotation.
const MAX_WEBHOOK_SECRETS: usize = 3;

pub(super) async fn route(
    app: &App,
    method: &Method,
    rest: &[&str],
    req: &Request,
) -> Result<Response, ApiError> {
    match (method, rest) {
        (&Method::POST, []) => create(app, req).await,
        (&Method::GET, []) => list(app, req).await,
        (_, []) => Err(super::method_not_allowed(method)),
        (_, [id, ..]) if !ids::is_connection_id(id) => {
            Err(ApiError::not_found("unknown connection"))
        }
        (&Method::GET, [id]) => get(app, id, req).await,
        (&Method::DELETE, [id]) => delete(app, id, req).await,
        (&Method::PUT, [id, "api-key"]) => rotate_key(app, id, req).await,
        (&Method::PUT, [id, "webhook-secret"]) => set_webhook_secret(app, id, req).await,
        (&Method::PUT, [id, "triggers"]) => set_triggers(app, id, req).await,
        (&Method::GET, [id, "events"]) => list_events(app, id, req).await,
        (&Method::GET, [id, "events", event_id]) => get_event(app, id, event_id).await,
        (&Method::POST, [id, "events", event_id, "replay"]) => {
            super::workflows::replay(app, id, event_id, req).await
        }
        (_, [id, "workflows", rest @ ..]) => {
            super::workflows::route(app, method, id, rest, req).await
        }
        (&Method::GET, [id, "runs"]) => super::workflows::list_runs(app, id, req).await,
        (_, [_])
        | (
            _,
            [
                _,
                "api-key" | "webhook-secret" | "triggers" | "events" | "runs",
            ],
        ) => Err(super::method_not_allowed(method)),
        _ => Err(ApiError::not_found("no such route")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    api_key: SecretString,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    webhook: Option<WebhookBody>,
}

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
enum WebhookBody {
    Managed,
    Manual { secret: SecretString },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    api_key: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    secret: SecretString,
    /// Keep verifying with the previous secrets (default), or drop them.
    #[serde(default = "yes")]
    keep_previous: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggersBody {
    triggers: Vec<String>,
}

/// `sk_test_`, `sk_live_`, `rk_test_`, `rk_live_`, then Stripe's charset. The
/// message never repeats the key.
fn check_api_key(key: &SecretString) -> Result<SecretString, ApiError> {
    let key = key.expose_secret().trim();
    let prefix_ok = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
        .iter()
        .any(|p| key.starts_with(p));
    let tail_ok = key.len() > 8
        && key.len() <= 255
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !prefix_ok || !tail_ok {
        return Err(ApiError::invalid_param(
            "api_key",
            "api_key must be a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_test_…, rk_live_…)",
        ));
    }
    Ok(SecretString::from(key.to_string()))
}

fn check_webhook_secret(secret: &SecretString, param: &str) -> Result<SecretString, ApiError> {
    let s = secret.expose_secret().trim();
    let tail = s.strip_prefix("whsec_").unwrap_or_default();
    if tail.is_empty()
        || s.len() > 255
        || !tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be a Stripe webhook signing secret (whsec_…)"),
        ));
    }
    Ok(SecretString::from(s.to_string()))
}

fn check_api_version(v: &str) -> Result<(), ApiError> {
    let b = v.as_bytes();
    let date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    let suffix_ok = v[10.min(v.len())..]
        .strip_prefix('.')
        .map(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_lowercase()))
        .unwrap_or(v.len() == 10);
    if !date || !suffix_ok {
        return Err(ApiError::invalid_param(
            "api_version",
            "api_version must be a Stripe API version such as 2023-08-16",
        ));
    }
    Ok(())
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    ApiError::service_unavailable("the connection store failed", &e)
}

fn secrets_error(e: crate::ports::SecretsError) -> ApiError {
    ApiError::service_unavailable("the secret store failed", &e)
}

/// What a caller sees of a connection: never a secret.
fn view(c: &Connection, secrets: Option<&ConnectionSecrets>, base_url: &str) -> Value {
    json!({
        "id": c.id,
        "object": "connection",
        "name": c.name,
        "account_id": c.account_id,
        "livemode": c.livemode,
        "api_version": c.api_version,
        "webhook_url": format!("{base_url}/webhooks/{}", c.id),
        "webhook": {
            "mode": c.webhook_mode,
            "endpoint_id": c.webhook_endpoint_id,
            "secrets": secrets.map(|s| s.webhook_secrets.len()).unwrap_or(0),
        },
        "triggers": c.triggers,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

/// A connection and its secrets, read together (one round trip, not two;
/// the routes that load both are IAM-authenticated).
pub(super) async fn load(app: &App, id: &str) -> Result<(Connection, ConnectionSecrets), ApiError> {
    let (connection, secrets) = tokio::join!(
        app.connections.get_connection(id),
        app.secrets.get_secrets(id)
    );
    let connection = connection
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown connection"))?;
    let secrets = secrets
        .map_err(secrets_error)?
        .ok_or_else(|| ApiError::internal("the connection has no secrets", &id))?;
    Ok((connection, secrets))
}

/// Asks Stripe who the key belongs to. A refusal is the caller's problem (422).
async fn account_of(client: &StripeClient) -> Result<String, ApiError> {
    match client.get("/v1/account", &json!({})).await {
        Ok(account) => account["id"].as_str().map(str::to_string).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "stripe_error",
                "Stripe's account has no id",
            )
        }),
        Err(
            e @ StripeError::Api {
                status: 400..=499, ..
            },
        ) if e.status() != Some(429) => {
            let mut err = ApiError::from(e);
            err.status = StatusCode::UNPROCESSABLE_ENTITY;
            err.kind = "invalid_api_key";
            err.message = format!(
                "Stripe refused the key: {}",
                err.stripe
                    .as_ref()
                    .and_then(|s| s["message"].as_str())
                    .unwrap_or("unauthorized")
            );
            err.param = Some("api_key".into());
            Err(err)
        }
        Err(e) => Err(e.into()),
    }
}

async fn create(app: &App, req: &Request) -> Result<Response, ApiError> {
    let body: CreateBody = parse_json(req.body())?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_param(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    let api_key = check_api_key(&body.api_key)?;
    let api_version = body
        .api_version
        .unwrap_or_else(|| app.config.stripe_api_version.clone());
    check_api_version(&api_version)?;
    let (mode, webhook_secrets) = match body.webhook {
        None | Some(WebhookBody::Managed) => (WebhookMode::Managed, vec![]),
        Some(WebhookBody::Manual { secret }) => (
            WebhookMode::Manual,
            vec![check_webhook_secret(&secret, "webhook.secret")?],
        ),
    };
    let account_id = account_of(&app.stripe(&api_key, &api_version)).await?;
    let livemode = api_key.expose_secret().contains("_live_");
    let now = app.clock.now();
    let connection = Connection {
        id: ids::new_id("conn_"),
        name,
        account_id,
        livemode,
        api_version,
        webhook_mode: mode,
        webhook_endpoint_id: None,
        triggers: vec![],
        created_at: now,
        updated_at: now,
    };
    let secrets = ConnectionSecrets {
        target_secrets: Default::default(),
        api_key,
        webhook_secrets,
    };
    // Secrets first: a connection record never exists without its secrets.
    app.secrets
        .put_secrets(&connection.id, &secrets)
        .await
        .map_err(secrets_error)?;
    app.connections
        .insert_connection(&connection)
        .await
        .map_err(store_error)?;
    tracing::info!(connection = %connection.id, account = %connection.account_id, livemode, "connection created");
    Ok(json_response(
        StatusCode::CREATED,
        &view(
            &connection,
            Some(&secrets),
            &super::public_base_url(app, req),
        ),
    ))
}

async fn list(app: &App, req: &Request) -> Result<Response, ApiError> {
    let all = app
        .connections
        .list_connections()
        .await
        .map_err(store_error)?;
    let base = super::public_base_url(app, req);
    let data: Vec<Value> = all.iter().map(|c| view(c, None, &base)).collect();
    Ok(ok_json(&json!({"object": "list", "data": data})))
}

async fn get(app: &App, id: &str, req: &Request) -> Result<Response, ApiError> {
    let (c, secrets) = load(app, id).await?;
    Ok(ok_json(&view(
        &c,
        Some(&secrets),
        &super::public_base_url(app, req),
    )))
}

async fn delete(app: &App, id: &str, req: &Request) -> Result<Response, ApiError> {
    let (c, secrets) = load(app, id).await?;
    let force = super::query_param(req, "force").as_deref() == Some("true");
    let mut endpoint_deleted = false;
    if let (WebhookMode::Managed, Some(endpoint)) = (c.webhook_mode, &c.webhook_endpoint_id) {
        let stripe = app.stripe(&secrets.api_key, &c.api_version);
        match stripe
            .delete(&format!("/v1/webhook_endpoints/{endpoint}"), &json!({}))
            .await
        {
            Ok(_) => endpoint_deleted = true,
            Err(e) if e.status() == Some(404) => {}
            Err(e) if force => {
                tracing::warn!(connection = %c.id, error = %e, "endpoint not deleted; forced")
            }
            Err(e) => {
                let mut err = ApiError::from(e);
                err.message = format!(
                    "could not delete the Stripe webhook endpoint ({}); retry, or pass ?force=true to delete the connection anyway",
                    err.message
                );
                return Err(err);
            }
        }
    }
    app.connections
        .delete_connection(id)
        .await
        .map_err(store_error)?;
    app.secrets
        .delete_secrets(id)
        .await
        .map_err(secrets_error)?;
    tracing::info!(connection = %id, endpoint_deleted, "connection deleted");
    Ok(ok_json(
        &json!({"id": id, "object": "connection", "deleted": true, "webhook_endpoint_deleted": endpoint_deleted}),
    ))
}

async fn rotate_key(app: &App, id: &str, req: &Request) -> Result<Response, ApiError> {
    let body: KeyBody = parse_json(req.body())?;
    let api_key = check_api_key(&body.api_key)?;
    let (mut c, mut secrets) = load(app, id).await?;
    if api_key.expose_secret().contains("_live_") != c.livemode {
        return Err(ApiError::invalid_param(
            "api_key",
            "the new key's mode (test or live) differs from the connection's",
        ));
    }
    let account = account_of(&app.stripe(&api_key, &c.api_version)).await?;
    if account != c.account_id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_api_key",
            format!(
                "the new key belongs to {account}, not to the connection's account {}",
                c.account_id
            ),
        )
        .with_param("api_key"));
    }
    secrets.api_key = api_key;
    app.secrets
        .put_secrets(id, &secrets)
        .await
        .map_err(secrets_error)?;
    c.updated_at = app.clock.now();
    app.connections
        .update_connection(&c)
        .await
        .map_err(store_error)?;
    tracing::info!(connection = %id, "api key rotated");
    Ok(ok_json(&view(
        &c,
        Some(&secrets),
        &super::public_base_url(app, req),
    )))
}

async fn set_webhook_secret(app: &App, id: &str, req: &Request) -> Result<Response, ApiError> {
    let body: SecretBody = parse_json(req.body())?;
    let secret = check_webhook_secret(&body.secret, "secret")?;
    let (c, mut secrets) = load(app, id).await?;
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
    app.secrets
        .put_secrets(id, &secrets)
        .await
        .map_err(secrets_error)?;
    tracing::info!(connection = %id, active = secrets.webhook_secrets.len(), "webhook secrets changed");
    Ok(ok_json(&view(
        &c,
        Some(&secrets),
        &super::public_base_url(app, req),
    )))
}

async fn set_triggers(app: &App, id: &str, req: &Request) -> Result<Response, ApiError> {
    let body: TriggersBody = parse_json(req.body())?;
    let mut triggers = Vec::new();
    for (i, t) in body.triggers.iter().enumerate() {
        if catalog::trigger(t).is_none() {
            return Err(ApiError::invalid_param(
                format!("triggers[{i}]"),
                format!("unknown trigger {t:?}; see GET /catalog"),
            ));
        }
        triggers.push(t.clone());
    }
    triggers.sort();
    triggers.dedup();
    let (mut c, mut secrets) = load(app, id).await?;
    let base = super::public_base_url(app, req);
    c.triggers = triggers;
    if c.webhook_mode == WebhookMode::Managed {
        sync_endpoint(app, &mut c, &mut secrets, &base).await?;
    }
    c.updated_at = app.clock.now();
    app.connections
        .update_connection(&c)
        .await
        .map_err(store_error)?;
    Ok(ok_json(&view(&c, Some(&secrets), &base)))
}

/// Keeps the connection's ONE Stripe endpoint equal to its triggers: none
/// without triggers; created with the pinned API version when first needed
/// (its secret, shown by Stripe only then, goes to the secret store); updated
/// in place afterwards; recreated if it was deleted in Stripe.
pub(crate) async fn sync_endpoint(
    app: &App,
    c: &mut Connection,
    secrets: &mut ConnectionSecrets,
    base_url: &str,
) -> Result<(), ApiError> {
    let stripe = app.stripe(&secrets.api_key, &c.api_version);
    let url = format!("{base_url}/webhooks/{}", c.id);
    let events = subscribed_events(app, c).await?;
    if events.is_empty() {
        if let Some(endpoint) = c.webhook_endpoint_id.take() {
            match stripe
                .delete(&format!("/v1/webhook_endpoints/{endpoint}"), &json!({}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => {
                    c.webhook_endpoint_id = Some(endpoint);
                    return Err(e.into());
                }
            }
            secrets.webhook_secrets.clear();
            app.secrets
                .put_secrets(&c.id, secrets)
                .await
                .map_err(secrets_error)?;
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
            let mut err = ApiError::from(e);
            err.status = StatusCode::CONFLICT;
            err.kind = "webhook_endpoint_limit";
            err.message = "the Stripe account already has the maximum of 16 webhook endpoints; delete one in Stripe, or connect with {\"webhook\": {\"mode\": \"manual\"}} and reuse an endpoint".into();
            return Err(err);
        }
        Err(e) => return Err(e.into()),
    };
    let (Some(id), Some(secret)) = (endpoint["id"].as_str(), endpoint["secret"].as_str()) else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "stripe_error",
            "Stripe created the endpoint without an id or secret",
        ));
    };
    c.webhook_endpoint_id = Some(id.to_string());
    secrets.webhook_secrets = vec![SecretString::from(secret.to_string())];
    app.secrets
        .put_secrets(&c.id, secrets)
        .await
        .map_err(secrets_error)?;
    tracing::info!(connection = %c.id, endpoint = %id, "webhook endpoint created");
    Ok(())
}

/// What the endpoint subscribes to: the triggers set on the connection plus
/// those of its enabled workflows (`*` stands for every catalog trigger).
async fn subscribed_events(app: &App, c: &Connection) -> Result<Vec<String>, ApiError> {
    let workflows = app
        .workflows
        .list_workflows(&c.id)
        .await
        .map_err(store_error)?;
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
            .map(|m| m.to_ascii_lowercase())
            .is_some_and(|m| {
                m.contains("webhook endpoints") && (m.contains("maximum") || m.contains("limit"))
            })
}

async fn list_events(app: &App, id: &str, req: &Request) -> Result<Response, ApiError> {
    let limit = super::limit_param(req, 20)?;
    let event_type = super::query_param(req, "type");
    if let Some(t) = &event_type {
        if catalog::trigger(t).is_none() && t.len() > 100 {
            return Err(ApiError::invalid_param("type", "type is not an event type"));
        }
    }
    let starting_after = super::query_param(req, "starting_after");
    if let Some(s) = &starting_after {
        if !ids::is_id(s, "evt_") {
            return Err(ApiError::invalid_param(
                "starting_after",
                "starting_after must be an event id (evt_…)",
            ));
        }
    }
    app.connections
        .get_connection(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown connection"))?;
    let query = EventQuery {
        event_type,
        limit: limit + 1,
        starting_after,
    };
    let mut events = app
        .events
        .list_events(id, &query)
        .await
        .map_err(store_error)?;
    let has_more = events.len() > limit;
    events.truncate(limit);
    let data: Vec<Value> = events.iter().map(event_view).collect();
    Ok(ok_json(
        &json!({"object": "list", "data": data, "has_more": has_more}),
    ))
}

async fn get_event(app: &App, id: &str, event_id: &str) -> Result<Response, ApiError> {
    if !ids::is_id(event_id, "evt_") {
        return Err(ApiError::not_found("unknown event"));
    }
    let event = app
        .events
        .get_event(id, event_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown event"))?;
    let mut v = event_view(&event);
    v["event"] = event
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok(ok_json(&v))
}

fn event_view(e: &crate::model::StoredEvent) -> Value {
    json!({
        "id": e.event_id,
        "type": e.event_type,
        "created": e.created,
        "livemode": e.livemode,
        "api_version": e.api_version,
        "account": e.account,
        "received_at": e.received_at,
        "body_omitted": e.body_omitted,
    })
}
