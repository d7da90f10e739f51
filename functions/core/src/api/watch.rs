//! Keeping a connection whole: its health, a reconcile pass on demand, the
//! API-version upgrade and the alert target. Handlers extract, call
//! [`crate::service`], answer.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{BaseUrl, Json, Path};
use super::views::{ConnectionOut, ErrorBody};
use super::{Reply, ok};
use crate::app::App;
use crate::ids::ConnectionId;
use crate::service::alerts::{self, AlertSetting};
use crate::service::health::{self, ConnectionHealth};
use crate::service::reconcile::{self, PassReport};
use crate::service::upgrade::{self, NewApiVersion};

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/connections/{connection_id}/health", get(read_health))
        .route(
            "/connections/{connection_id}/reconcile",
            post(reconcile_now),
        )
        .route(
            "/connections/{connection_id}/api-version",
            put(set_api_version),
        )
        .route(
            "/connections/{connection_id}/alerts",
            put(set_alerts).delete(remove_alerts),
        )
}

/// The connection's endpoint as Stripe has it now, the newest event, what
/// the reconciler last did and recovered, and the runs that need someone.
#[utoipa::path(get, path = "/connections/{connection_id}/health", tag = "connections", operation_id = "connections_health",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    responses((status = 200, body = ConnectionHealth), (status = 404, body = ErrorBody)))]
async fn read_health(State(app): State<Arc<App>>, Path(id): Path<ConnectionId>) -> Reply {
    Ok(ok(&health::report(&app, &id).await?))
}

/// Run one reconcile pass now (the schedule runs them anyway): repair the
/// managed endpoint, read Stripe's events since the cursor (up to 20
/// pages; `behind: true` says the schedule goes on from there) and store
/// what never arrived.
#[utoipa::path(post, path = "/connections/{connection_id}/reconcile", tag = "connections", operation_id = "connections_reconcile",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    responses((status = 200, body = PassReport), (status = 404, body = ErrorBody)))]
async fn reconcile_now(State(app): State<Arc<App>>, Path(id): Path<ConnectionId>) -> Reply {
    Ok(ok(&reconcile::requested(&app, &id).await?))
}

/// Move the connection to another Stripe API version. A managed endpoint
/// is replaced without a gap: a new one at the new version delivers
/// alongside the old until the switch, then the old one is deleted. An
/// interrupted upgrade is finished by the same request again (or by the
/// reconciler).
#[utoipa::path(put, path = "/connections/{connection_id}/api-version", tag = "connections", operation_id = "connections_set_api_version",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    request_body = NewApiVersion,
    responses((status = 200, body = ConnectionOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "another upgrade is under way, or the account has 16 endpoints already", body = ErrorBody),
        (status = 502, description = "Stripe failed; the upgrade is recorded and this request finishes it", body = ErrorBody)))]
async fn set_api_version(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewApiVersion>,
) -> Reply {
    let v = upgrade::set(&app, &id, body, &base).await?;
    Ok(ok(&ConnectionOut::new(
        &v.connection,
        v.webhook_secrets,
        &base,
    )))
}

/// An alert target as set: its secret is shown here only.
#[derive(Serialize, ToSchema)]
pub struct AlertTargetOut {
    pub connection_id: String,
    pub url: Option<String>,
    /// `whsec_…`: notices are signed with it (Standard Webhooks). Only in
    /// the answer that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The notices sent: `run.dead`, `run.stuck`, `endpoint.disabled`,
    /// `endpoint.repaired`, `events.recovered`, `circuit.opened`.
    pub types: Vec<&'static str>,
}

/// Send this connection's notices (`run.dead`, `run.stuck`,
/// `endpoint.disabled`, `endpoint.repaired`, `events.recovered`,
/// `circuit.opened`) to `url`, signed per Standard Webhooks with a new
/// secret answered once.
#[utoipa::path(put, path = "/connections/{connection_id}/alerts", tag = "connections", operation_id = "connections_set_alerts",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    request_body = AlertSetting,
    responses((status = 200, body = AlertTargetOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_alerts(
    State(app): State<Arc<App>>,
    Path(id): Path<ConnectionId>,
    Json(body): Json<AlertSetting>,
) -> Reply {
    let (c, secret) = alerts::set(&app, &id, body).await?;
    Ok(ok(&AlertTargetOut {
        connection_id: c.id,
        url: c.alerts.map(|a| a.url),
        secret: Some(secret.expose().to_string()),
        types: alerts::KINDS.to_vec(),
    }))
}

/// Stop sending notices.
#[utoipa::path(delete, path = "/connections/{connection_id}/alerts", tag = "connections", operation_id = "connections_remove_alerts",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    responses((status = 200, body = AlertTargetOut), (status = 404, body = ErrorBody)))]
async fn remove_alerts(State(app): State<Arc<App>>, Path(id): Path<ConnectionId>) -> Reply {
    let c = alerts::remove(&app, &id).await?;
    Ok(ok(&AlertTargetOut {
        connection_id: c.id,
        url: None,
        secret: None,
        types: alerts::KINDS.to_vec(),
    }))
}
