//! `/connections/{id}/workflows[/{wid}[/test]]`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::Value;

use super::extract::{BaseUrl, Json, OptionalJson, Path};
use super::views::{Deleted, ErrorBody, ListOf, WorkflowOut};
use super::{Reply, ok, reply};
use crate::app::App;
use crate::ids::{ConnectionId, WorkflowId};
use crate::service::workflows::{self as service, NewWorkflow, TestRun, WorkflowPatch};

pub(super) fn router() -> Router<Arc<App>> {
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

/// Create a workflow, checked against the trigger's sample event first.
/// With a target, the answer holds its signing secret, shown this once.
#[utoipa::path(post, path = "/connections/{connection_id}/workflows", tag = "workflows", operation_id = "workflows_create",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    request_body = NewWorkflow,
    responses((status = 201, body = WorkflowOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn create(
    State(app): State<Arc<App>>,
    Path(conn): Path<ConnectionId>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<NewWorkflow>,
) -> Reply {
    let (workflow, target_secret) = service::create(&app, &conn, body, &base).await?;
    let mut answer = WorkflowOut::from(&workflow);
    // Shown once: deliveries to the target are signed with it.
    answer.target_secret = target_secret;
    Ok(reply(StatusCode::CREATED, &answer))
}

/// The connection's workflows.
#[utoipa::path(get, path = "/connections/{connection_id}/workflows", tag = "workflows", operation_id = "workflows_list",
    params(("connection_id" = String, Path, description = "`conn_…`")),
    responses((status = 200, body = ListOf<WorkflowOut>), (status = 404, body = ErrorBody)))]
async fn list(State(app): State<Arc<App>>, Path(conn): Path<ConnectionId>) -> Reply {
    let all = service::list(&app, &conn).await?;
    Ok(ok(&ListOf::new(
        all.iter().map(WorkflowOut::from).collect(),
    )))
}

/// One workflow, with how its target is doing.
#[utoipa::path(get, path = "/connections/{connection_id}/workflows/{workflow_id}", tag = "workflows", operation_id = "workflows_read",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("workflow_id" = String, Path, description = "`wf_…`")),
    responses((status = 200, body = WorkflowOut), (status = 404, body = ErrorBody)))]
async fn read(
    State(app): State<Arc<App>>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
) -> Reply {
    let workflow = service::get(&app, &conn, &wid).await?;
    let mut answer = WorkflowOut::from(&workflow);
    answer.target_health = service::target_health(&app, &workflow)
        .await?
        .map(Into::into);
    Ok(ok(&answer))
}

/// Switch a workflow on or off; the managed endpoint follows.
#[utoipa::path(patch, path = "/connections/{connection_id}/workflows/{workflow_id}", tag = "workflows", operation_id = "workflows_patch",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("workflow_id" = String, Path, description = "`wf_…`")),
    request_body = WorkflowPatch,
    responses((status = 200, body = WorkflowOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn patch(
    State(app): State<Arc<App>>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
    BaseUrl(base): BaseUrl,
    Json(body): Json<WorkflowPatch>,
) -> Reply {
    Ok(ok(&WorkflowOut::from(
        &service::patch(&app, &conn, &wid, body, &base).await?,
    )))
}

/// Remove a workflow and its target secret.
#[utoipa::path(delete, path = "/connections/{connection_id}/workflows/{workflow_id}", tag = "workflows", operation_id = "workflows_delete",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("workflow_id" = String, Path, description = "`wf_…`")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody)))]
async fn delete(
    State(app): State<Arc<App>>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
    BaseUrl(base): BaseUrl,
) -> Reply {
    service::delete(&app, &conn, &wid, &base).await?;
    Ok(ok(&Deleted {
        id: wid.into(),
        object: "workflow",
        deleted: true,
        webhook_endpoint_deleted: None,
    }))
}

/// Run the workflow once now, on the trigger's sample event or a stored
/// one; answers each step's resolved input and result. Stores no run.
#[utoipa::path(post, path = "/connections/{connection_id}/workflows/{workflow_id}/test", tag = "workflows", operation_id = "workflows_test",
    params(("connection_id" = String, Path, description = "`conn_…`"),
        ("workflow_id" = String, Path, description = "`wf_…`")),
    request_body(content = Option<TestRun>, description = "optional: `{\"event_id\"}`"),
    responses((status = 200, description = "the test run's report", body = Object),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn test(
    State(app): State<Arc<App>>,
    Path((conn, wid)): Path<(ConnectionId, WorkflowId)>,
    OptionalJson(body): OptionalJson<TestRun>,
) -> Reply {
    let report: Value = service::test(&app, &conn, &wid, body).await?;
    Ok(ok(&report))
}
