//! `/connections/{id}/events[/{event_id}[/replay]]`.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{self, Path, Query};
use super::runs::run_view;
use super::{Reply, ok, reply};
use crate::app::App;
use crate::ids::{ConnectionId, EventId};
use crate::model::StoredEvent;
use crate::service::events as service;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/connections/{connection_id}/events", get(list))
        .route("/connections/{connection_id}/events/{event_id}", get(read))
        .route(
            "/connections/{connection_id}/events/{event_id}/replay",
            post(replay),
        )
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    starting_after: Option<String>,
    limit: Option<String>,
}

fn view(e: &StoredEvent) -> Value {
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

async fn list(
    State(app): State<App>,
    Path(conn): Path<ConnectionId>,
    Query(q): Query<ListQuery>,
) -> Reply {
    let limit = extract::limit(q.limit.as_deref(), 20)?;
    let (events, has_more) =
        service::list(&app, &conn, q.event_type, q.starting_after, limit).await?;
    let data: Vec<Value> = events.iter().map(view).collect();
    Ok(ok(
        &json!({"object": "list", "data": data, "has_more": has_more}),
    ))
}

async fn read(State(app): State<App>, Path((conn, id)): Path<(ConnectionId, EventId)>) -> Reply {
    let event = service::get(&app, &conn, &id).await?;
    let mut v = view(&event);
    v["event"] = event
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok(ok(&v))
}

#[derive(Deserialize)]
struct ReplayQuery {
    workflow: Option<String>,
}

async fn replay(
    State(app): State<App>,
    Path((conn, id)): Path<(ConnectionId, EventId)>,
    Query(q): Query<ReplayQuery>,
) -> Reply {
    let runs = service::replay(&app, &conn, &id, q.workflow).await?;
    let data: Vec<Value> = runs.iter().map(run_view).collect();
    Ok(reply(
        StatusCode::ACCEPTED,
        &json!({"object": "list", "data": data}),
    ))
}
