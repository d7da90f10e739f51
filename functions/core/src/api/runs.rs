//! `/connections/{id}/runs`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{self, Path, Query};
use super::{Reply, ok};
use crate::app::App;
use crate::ids::ConnectionId;
use crate::service::runs as service;
use crate::workflow::run::Run;

pub(super) fn router() -> Router<App> {
    Router::new().route("/connections/{connection_id}/runs", get(list))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    event_id: Option<String>,
    workflow_id: Option<String>,
    limit: Option<String>,
}

pub(super) fn run_view(r: &Run) -> Value {
    json!({
        "object": "run", "event_id": r.event_id, "workflow_id": r.workflow_id, "replay": r.replay, "status": r.status,
        "attempts": r.attempts, "last_error": r.last_error, "next_attempt_at": r.next_attempt_at,
        "delivered": r.delivered, "steps": r.steps, "created_at": r.created_at, "updated_at": r.updated_at,
    })
}

async fn list(
    State(app): State<App>,
    Path(conn): Path<ConnectionId>,
    Query(q): Query<ListQuery>,
) -> Reply {
    let limit = extract::limit(q.limit.as_deref(), 20)?;
    let runs = service::list(&app, &conn, q.status, q.event_id, q.workflow_id, limit).await?;
    Ok(ok(
        &json!({"object": "list", "data": runs.iter().map(run_view).collect::<Vec<_>>()}),
    ))
}
