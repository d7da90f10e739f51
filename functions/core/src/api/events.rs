//! `/connections/{id}/events[/{event_id}[/replay]]`, and a trigger's
//! sample event `/connections/{id}/triggers/{trigger}/sample`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{self, Path, Query};
use super::views::{ErrorBody, EventOut, ListOf, RunOut};
use super::{Reply, ok, reply};
use crate::app::App;
use crate::ids::{ConnectionId, EventId};
use crate::service::events as service;
use crate::service::samples;

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/connections/{connection_id}/events", get(list))
        .route("/connections/{connection_id}/events/{event_id}", get(read))
        .route(
            "/connections/{connection_id}/events/{event_id}/replay",
            post(replay),
        )
        .route(
            "/connections/{connection_id}/triggers/{trigger}/sample",
            get(sample),
        )
}

/// A trigger's sample event: the latest of its type this connection
/// received, else the latest in the Stripe account, else the bundled one;
/// `source` says which. Workflow creation checks templates against the
/// same sample, and a test run uses it. `*` samples any event.
#[utoipa::path(get, path = "/connections/{connection_id}/triggers/{trigger}/sample", tag = "events", operation_id = "events_trigger_sample",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("trigger" = String, Path, description = "a trigger key (`invoice.paid`) or `*`")),
    responses((status = 200, body = crate::service::samples::Sample), (status = 404, body = ErrorBody)))]
async fn sample(
    State(app): State<Arc<App>>,
    Path((conn, trigger)): Path<(ConnectionId, String)>,
) -> Reply {
    if samples::check_trigger(&trigger).is_err() {
        return Err(crate::service::Error::NotFound("trigger").into());
    }
    let sample = samples::trigger_sample(&app, &conn, &trigger).await?;
    Ok(ok(&sample))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// An event id: the page after it (older).
    starting_after: Option<String>,
    /// 1 to 100 (default 20).
    limit: Option<String>,
}

/// Stored events, newest first.
#[utoipa::path(get, path = "/connections/{connection_id}/events", tag = "events", operation_id = "events_list",
    params(("connection_id" = String, Path, description = "`conn_…`"), ListQuery),
    responses((status = 200, body = ListOf<EventOut>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn list(
    State(app): State<Arc<App>>,
    Path(conn): Path<ConnectionId>,
    Query(q): Query<ListQuery>,
) -> Reply {
    let limit = extract::limit(q.limit.as_deref(), 20)?;
    let (events, has_more) =
        service::list(&app, &conn, q.event_type, q.starting_after, limit).await?;
    Ok(ok(&ListOf::paged(
        events.iter().map(EventOut::from).collect(),
        has_more,
    )))
}

/// One stored event, with its body.
#[utoipa::path(get, path = "/connections/{connection_id}/events/{event_id}", tag = "events", operation_id = "events_read",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("event_id" = String, Path, description = "`evt_…`")),
    responses((status = 200, body = EventOut), (status = 404, body = ErrorBody)))]
async fn read(
    State(app): State<Arc<App>>,
    Path((conn, id)): Path<(ConnectionId, EventId)>,
) -> Reply {
    let event = service::get(&app, &conn, &id).await?;
    let mut out = EventOut::from(&event);
    out.event = Some(
        event
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null),
    );
    Ok(ok(&out))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReplayQuery {
    /// Only this workflow (`wf_…`); default: every enabled one that matches.
    workflow: Option<String>,
}

/// Run a stored event again, as new runs (their own idempotency keys).
#[utoipa::path(post, path = "/connections/{connection_id}/events/{event_id}/replay", tag = "events", operation_id = "events_replay",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("event_id" = String, Path, description = "`evt_…`"), ReplayQuery),
    responses((status = 202, description = "the runs made; they run at once", body = ListOf<RunOut>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn replay(
    State(app): State<Arc<App>>,
    Path((conn, id)): Path<(ConnectionId, EventId)>,
    Query(q): Query<ReplayQuery>,
) -> Reply {
    let runs = service::replay(&app, &conn, &id, q.workflow).await?;
    Ok(reply(
        StatusCode::ACCEPTED,
        &ListOf::new(runs.iter().map(RunOut::from).collect()),
    ))
}
