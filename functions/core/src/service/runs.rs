//! Runs of a connection, filtered and listed.

use serde_json::json;

use super::{Result, connection};
use crate::app::App;
use crate::catalog::InvalidInput;
use crate::ids::{self, ConnectionId};
use crate::ports::{RunCursor, RunPage, RunQuery};
use crate::workflow::run::RunStatus;

/// Runs filtered by status, event and workflow (each checked first).
pub async fn list(
    app: &App,
    conn: &ConnectionId,
    status: Option<String>,
    event_id: Option<String>,
    workflow_id: Option<String>,
    limit: usize,
    starting_after: Option<String>,
) -> Result<RunPage> {
    let starting_after = match starting_after {
        None => None,
        Some(c) => Some(RunCursor::decode(&c).ok_or_else(|| {
            InvalidInput::at(
                "starting_after",
                "starting_after must be a next_cursor this API answered",
            )
        })?),
    };
    let status = match status {
        None => None,
        Some(s) => Some(serde_json::from_value::<RunStatus>(json!(s)).map_err(|_| {
            InvalidInput::at(
                "status",
                "status must be pending, running, succeeded, retrying, dead or stuck",
            )
        })?),
    };
    if event_id.as_deref().is_some_and(|e| !ids::is_id(e, "evt_")) {
        return Err(InvalidInput::at("event_id", "event_id must be an event id (evt_…)").into());
    }
    if workflow_id
        .as_deref()
        .is_some_and(|w| !ids::is_id(w, "wf_"))
    {
        return Err(
            InvalidInput::at("workflow_id", "workflow_id must be a workflow id (wf_…)").into(),
        );
    }
    connection(app, conn).await?;
    Ok(app
        .runs
        .list_runs(
            conn,
            &RunQuery {
                status,
                event_id,
                workflow_id,
                limit,
                starting_after,
            },
        )
        .await?)
}
