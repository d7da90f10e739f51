//! `/connections` and `/connections/{id}` with its key, webhook secrets and
//! triggers. Handlers extract, call [`crate::service::connections`], answer.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use http::StatusCode;
use serde::Deserialize;

use super::extract::{BaseUrl, Json, Path, Query};
use super::views::{ConnectionOut, Deleted, ErrorBody, ListOf};
use super::{Reply, ok, reply};
use crate::app::App;
use crate::ids::ConnectionId;
use crate::service::connections::{
    self as service, ConnectionView, NewApiKey, NewConnection, NewWebhookSecret, TriggerSet,
};

pub(super) fn router() -> Router<Arc<App>> {
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

fn answer(v: &ConnectionView, base: &str) -> axum::response::Response {
    ok(&ConnectionOut::new(&v.connection, v.webhook_secrets, base))
}

/// Connect a Stripe account: the key is checked with Stripe (`GET
/// /v1/account`) before anything is stored.
#[utoipa::path(post, path = "/connections", tag = "connections", operation_id = "connections_create",
    request_body = NewConnection,
    responses(
        (status = 201, body = ConnectionOut),
        (status = 400, description = "a field is missing or malformed", body = ErrorBody),
        (status = 422, description = "Stripe refused the key", body = ErrorBody),
        (status = 502, description = "Stripe failed", body = ErrorBody),
    ))]
async fn create(
    State(app): State<Arc<App>>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewConnection>,
) -> Reply {
    let made = service::create(&app, body).await?;
    Ok(reply(
        StatusCode::CREATED,
        &ConnectionOut::new(&made.connection, made.webhook_secrets, &base),
    ))
}

/// Every connection.
#[utoipa::path(get, path = "/connections", tag = "connections", operation_id = "connections_list",
    responses((status = 200, body = ListOf<ConnectionOut>)))]
async fn list(State(app): State<Arc<App>>, BaseUrl(base): BaseUrl) -> Reply {
    let all = service::list(&app).await?;
    Ok(ok(&ListOf::new(
        all.iter()
            .map(|c| ConnectionOut::new(c, None, &base))
            .collect(),
    )))
}

/// One connection.
#[utoipa::path(get, path = "/connections/{connection_id}", tag = "connections", operation_id = "connections_read",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    responses((status = 200, body = ConnectionOut), (status = 404, body = ErrorBody)))]
async fn read(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
) -> Reply {
    Ok(answer(&service::get(&app, &id).await?, &base))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// `true`: delete even if Stripe cannot be reached to remove the endpoint.
    #[serde(default)]
    force: Option<String>,
}

/// Remove a connection, its managed endpoint in Stripe and its secrets.
#[utoipa::path(delete, path = "/connections/{connection_id}", tag = "connections", operation_id = "connections_delete",
    params(("connection_id" = String, Path, description = "`conn_…`"), DeleteQuery),
    responses(
        (status = 200, body = Deleted),
        (status = 404, body = ErrorBody),
        (status = 502, description = "Stripe could not be reached; retry or force", body = ErrorBody),
    ))]
async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    Query(q): Query<DeleteQuery>,
) -> Reply {
    let force = q.force.as_deref() == Some("true");
    let endpoint_deleted = service::delete(&app, &id, force).await?;
    Ok(ok(&Deleted {
        id: id.into(),
        object: "connection",
        deleted: true,
        webhook_endpoint_deleted: Some(endpoint_deleted),
    }))
}

/// Rotate the API key (same account and mode, checked with Stripe first).
#[utoipa::path(put, path = "/connections/{connection_id}/api-key", tag = "connections", operation_id = "connections_rotate_key",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    request_body = NewApiKey,
    responses((status = 200, body = ConnectionOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rotate_key(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewApiKey>,
) -> Reply {
    Ok(answer(&service::rotate_key(&app, &id, body).await?, &base))
}

/// Add a webhook signing secret; the previous ones keep verifying unless
/// `keep_previous` is false.
#[utoipa::path(put, path = "/connections/{connection_id}/webhook-secret", tag = "connections", operation_id = "connections_set_webhook_secret",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    request_body = NewWebhookSecret,
    responses((status = 200, body = ConnectionOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_webhook_secret(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewWebhookSecret>,
) -> Reply {
    Ok(answer(
        &service::set_webhook_secret(&app, &id, body).await?,
        &base,
    ))
}

/// Events to receive and store even without a workflow; the managed
/// endpoint follows.
#[utoipa::path(put, path = "/connections/{connection_id}/triggers", tag = "connections", operation_id = "connections_set_triggers",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    request_body = TriggerSet,
    responses((status = 200, body = ConnectionOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the account has 16 endpoints already", body = ErrorBody)))]
async fn set_triggers(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<TriggerSet>,
) -> Reply {
    Ok(answer(
        &service::set_triggers(&app, &id, body, &base).await?,
        &base,
    ))
}
