//! `/connections` and `/connections/{id}` with its key, webhook secrets and
//! triggers. Handlers extract, call [`crate::service::connections`], answer.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{BaseUrl, Json, Path, Query};
use super::{Reply, ok, reply};
use crate::app::App;
use crate::ids::ConnectionId;
use crate::model::Connection;
use crate::service::connections::{
    self as service, ConnectionView, NewApiKey, NewConnection, NewWebhookSecret, TriggerSet,
};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/connections", get(list).post(create))
        .route("/connections/{connection_id}", get(read).delete(delete))
        .route("/connections/{connection_id}/api-key", put(rotate_key))
        .route(
            "/connections/{connection_id}/webhook-secret",
            put(set_webhook_secret),
        )
        .route("/connections/{connection_id}/triggers", put(set_triggers))
}

/// What a caller sees of a connection: never a secret.
fn view(c: &Connection, secrets: Option<usize>, base_url: &str) -> Value {
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
            "secrets": secrets.unwrap_or(0),
        },
        "triggers": c.triggers,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

fn answer(v: &ConnectionView, base: &str) -> axum::response::Response {
    ok(&view(&v.connection, v.webhook_secrets, base))
}

async fn create(
    State(app): State<App>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewConnection>,
) -> Reply {
    let made = service::create(&app, body).await?;
    Ok(reply(
        StatusCode::CREATED,
        &view(&made.connection, made.webhook_secrets, &base),
    ))
}

async fn list(State(app): State<App>, BaseUrl(base): BaseUrl) -> Reply {
    let all = service::list(&app).await?;
    let data: Vec<Value> = all.iter().map(|c| view(c, None, &base)).collect();
    Ok(ok(&json!({"object": "list", "data": data})))
}

async fn read(
    State(app): State<App>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
) -> Reply {
    Ok(answer(&service::get(&app, &id).await?, &base))
}

#[derive(Deserialize, Default)]
struct DeleteQuery {
    #[serde(default)]
    force: Option<String>,
}

async fn delete(
    State(app): State<App>,
    Path(id): Path<ConnectionId>,
    Query(q): Query<DeleteQuery>,
) -> Reply {
    let force = q.force.as_deref() == Some("true");
    let endpoint_deleted = service::delete(&app, &id, force).await?;
    Ok(ok(
        &json!({"id": id, "object": "connection", "deleted": true, "webhook_endpoint_deleted": endpoint_deleted}),
    ))
}

async fn rotate_key(
    State(app): State<App>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewApiKey>,
) -> Reply {
    Ok(answer(&service::rotate_key(&app, &id, body).await?, &base))
}

async fn set_webhook_secret(
    State(app): State<App>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewWebhookSecret>,
) -> Reply {
    Ok(answer(
        &service::set_webhook_secret(&app, &id, body).await?,
        &base,
    ))
}

async fn set_triggers(
    State(app): State<App>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<TriggerSet>,
) -> Reply {
    Ok(answer(
        &service::set_triggers(&app, &id, body, &base).await?,
        &base,
    ))
}
