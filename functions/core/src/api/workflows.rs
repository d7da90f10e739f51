//! `/connections/{id}/workflows[/{wid}[/test]]`.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Value, json};

use super::extract::{BaseUrl, Json, OptionalJson, Path};
use super::{Reply, ok, reply};
use crate::app::App;
use crate::ids::{ConnectionId, WorkflowId};
use crate::model::Workflow;
use crate::service::workflows::{self as service, NewWorkflow, TestRun, WorkflowPatch};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route(
            "/connections/{connection_id}/workflows",
            get(list).post(create),
        )
        .route(
            "/connections/{connection_id}/workflows/{workflow_id}",
            get(read).patch(patch).delete(delete),
        )
        .route(
            "/connections/{connection_id}/workflows/{workflow_id}/test",
            post(test),
        )
}

pub(super) fn view(w: &Workflow) -> Value {
    json!({
        "id": w.id, "object": "workflow", "connection_id": w.connection_id, "trigger": w.trigger,
        "filter": w.filter, "target": w.target.as_ref().map(|t| json!({"url": t.url})),
        "steps": w.steps.iter().map(|s| json!({"action": s.action, "input": s.input})).collect::<Vec<_>>(),
        "enabled": w.enabled, "created_at": w.created_at, "updated_at": w.updated_at,
    })
}

async fn create(
    State(app): State<App>,
    Path(conn): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewWorkflow>,
) -> Reply {
    let (workflow, target_secret) = service::create(&app, &conn, body, &base).await?;
    let mut answer = view(&workflow);
    if let Some(secret) = target_secret {
        // Shown once: deliveries to the target are signed with it.
        answer["target_secret"] = json!(secret);
    }
    Ok(reply(StatusCode::CREATED, &answer))
}

async fn list(State(app): State<App>, Path(conn): Path<ConnectionId>) -> Reply {
    let all = service::list(&app, &conn).await?;
    Ok(ok(
        &json!({"object": "list", "data": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

async fn read(
    State(app): State<App>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
) -> Reply {
    Ok(ok(&view(&service::get(&app, &conn, &wid).await?)))
}

async fn patch(
    State(app): State<App>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<WorkflowPatch>,
) -> Reply {
    Ok(ok(&view(
        &service::patch(&app, &conn, &wid, body, &base).await?,
    )))
}

async fn delete(
    State(app): State<App>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
    BaseUrl(base): BaseUrl,
) -> Reply {
    service::delete(&app, &conn, &wid, &base).await?;
    Ok(ok(
        &json!({"id": wid, "object": "workflow", "deleted": true}),
    ))
}

async fn test(
    State(app): State<App>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
    OptionalJson(body): OptionalJson<TestRun>,
) -> Reply {
    Ok(ok(&service::test(&app, &conn, &wid, body).await?))
}
