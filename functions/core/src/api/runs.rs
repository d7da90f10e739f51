//! `/connections/{id}/runs`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::extract::{self, Path, Query};
use super::views::{ErrorBody, ListOf, RunOut};
use super::{Reply, ok};
use crate::app::App;
use crate::ids::ConnectionId;
use crate::service::runs as service;

pub(super) fn router() -> Router<Arc<App>> {
    Router::new().route("/connections/{connection_id}/runs", get(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `pending`, `running`, `succeeded`, `retrying` or `dead`.
    status: Option<String>,
    /// Only runs of this event (`evt_…`).
    event_id: Option<String>,
    /// Only runs of this workflow (`wf_…`).
    workflow_id: Option<String>,
    /// 1 to 100 (default 20).
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    starting_after: Option<String>,
}

/// Runs, newest first, with status, attempts, last error, next attempt and
/// each step's input and result. Pages: pass `next_cursor` as
/// `starting_after`; a page may hold fewer than `limit` runs (filters are
/// applied to at most 1,000 runs per request) and still have more.
#[utoipa::path(get, path = "/connections/{connection_id}/runs", tag = "runs", operation_id = "runs_list",
    params(("connection_id" = String, Path, description = "`conn_…`"), ListQuery),
    responses((status = 200, body = ListOf<RunOut>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn list(
    State(app): State<Arc<App>>,
    Path(conn): Path<ConnectionId>,
    Query(q): Query<ListQuery>,
) -> Reply {
    let limit = extract::limit(q.limit.as_deref(), 20)?;
    let page = service::list(
        &app,
        &conn,
        q.status,
        q.event_id,
        q.workflow_id,
        limit,
        q.starting_after,
    )
    .await?;
    let mut list = ListOf::paged(
        page.runs.iter().map(RunOut::from).collect(),
        page.next.is_some(),
    );
    list.next_cursor = page.next.as_ref().map(crate::ports::RunCursor::encode);
    Ok(ok(&list))
}
