//! Stored events: list, read one, replay one as new runs.

use serde_json::{Value, json};

use super::{Error, Result, connection, workflows};
use crate::app::App;
use crate::catalog::{self, InvalidInput};
use crate::ids::{self, ConnectionId, EventId, WorkflowId};
use crate::model::StoredEvent;
use crate::ports::{EventQuery, RunRef};
use crate::workflow::engine::Engine;
use crate::workflow::run::Run;

/// A page of events, newest first, and whether more follow.
pub async fn list(
    app: &App,
    conn: &ConnectionId,
    event_type: Option<String>,
    starting_after: Option<String>,
    limit: usize,
) -> Result<(Vec<StoredEvent>, bool)> {
    if let Some(t) = &event_type
        && catalog::trigger(t).is_none()
        && t.len() > 100
    {
        return Err(InvalidInput::at("type", "type is not an event type").into());
    }
    if let Some(s) = &starting_after
        && !ids::is_id(s, "evt_")
    {
        return Err(InvalidInput::at(
            "starting_after",
            "starting_after must be an event id (evt_…)",
        )
        .into());
    }
    connection(app, conn).await?;
    let query = EventQuery {
        event_type,
        limit: limit + 1,
        starting_after,
    };
    let mut events = app.events.list_events(conn, &query).await?;
    let has_more = events.len() > limit;
    events.truncate(limit);
    Ok((events, has_more))
}

/// One stored event of a connection that still exists (a deleted
/// connection's events are not served, though they wait out their TTL).
pub async fn get(app: &App, conn: &ConnectionId, id: &EventId) -> Result<StoredEvent> {
    connection(app, conn).await?;
    app.events
        .get_event(conn, id)
        .await?
        .ok_or(Error::NotFound("event"))
}

/// Runs a stored event again as new runs — for every enabled workflow it
/// matches, or for the one named. Each replay is a new try (its own
/// idempotency keys and target message id). The runs are queued at once.
pub async fn replay(
    app: &App,
    conn: &ConnectionId,
    event_id: &EventId,
    only: Option<String>,
) -> Result<Vec<Run>> {
    let only =
        match only {
            None => None,
            Some(w) => Some(WorkflowId::try_from(w).map_err(|_| {
                InvalidInput::at("workflow", "workflow must be a workflow id (wf_…)")
            })?),
        };
    connection(app, conn).await?;
    let event = get(app, conn, event_id).await?;
    let matching = match &only {
        Some(wid) => {
            let workflow = workflows::get(app, conn, wid).await?;
            if !workflow.enabled {
                return Err(InvalidInput::at(
                    "workflow",
                    format!("workflow {wid} is switched off; switch it on to replay into it"),
                )
                .into());
            }
            if workflow.trigger != "*" && workflow.trigger != event.event_type {
                return Err(InvalidInput::at(
                    "workflow",
                    format!(
                        "workflow {wid} runs on {}, not on {} events",
                        workflow.trigger, event.event_type
                    ),
                )
                .into());
            }
            vec![workflow]
        }
        None => {
            let body = match &event.body {
                Some(b) => serde_json::from_str(b).unwrap_or(Value::Null),
                None => json!({"id": event.event_id, "type": event.event_type}),
            };
            Engine::new(app, "replay").matching(&event, &body).await?
        }
    };
    let now = app.clock.now();
    let mut made = Vec::new();
    for w in matching {
        let mut run = Run::new(conn, &event.event_id, &w.id, now);
        run.replay = Some(ids::new_id("rpl_"));
        app.runs.create_run(&run).await?;
        made.push(run);
    }
    // Queued at once; should this fail, the runs are due and the
    // scheduler's overdue sweep queues them.
    let refs: Vec<RunRef> = made.iter().map(RunRef::of).collect();
    if let Err(e) = app.queue.send(&refs, 0).await {
        tracing::warn!(connection = %conn, event_id = %event_id, error = %e, "replayed runs not queued; the scheduler queues them");
    }
    tracing::info!(connection = %conn, event_id = %event_id, runs = made.len(), "event replayed");
    Ok(made)
}
