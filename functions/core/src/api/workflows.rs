//! Workflows of a connection: create (checked against the trigger's sample
//! event), list, read, switch on or off, delete, test-run; and the runs
//! they made. The managed Stripe endpoint follows the enabled workflows.

use http::{Method, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::connections::{load, store_error, sync_endpoint};
use crate::app::App;
use crate::catalog::{self, Kind};
use crate::http::{ApiError, Request, Response, json_response, ok_json, parse_json};
use crate::ids;
use crate::model::{Step, Target, WebhookMode, Workflow};
use crate::ports::RunQuery;
use crate::workflow::engine::Engine;
use crate::workflow::run::{Run, RunStatus};
use crate::workflow::{filter, signing, template};

const MAX_STEPS: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    trigger: String,
    #[serde(default)]
    filter: Map<String, Value>,
    #[serde(default)]
    target: Option<TargetBody>,
    #[serde(default)]
    steps: Vec<StepBody>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepBody {
    action: String,
    #[serde(default = "empty_object")]
    input: Value,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    #[serde(default)]
    event_id: Option<String>,
}

pub(super) async fn route(
    app: &App,
    method: &Method,
    conn: &str,
    rest: &[&str],
    req: &Request,
) -> Result<Response, ApiError> {
    match (method, rest) {
        (&Method::POST, []) => create(app, conn, req).await,
        (&Method::GET, []) => list(app, conn).await,
        (_, []) => Err(super::method_not_allowed(method)),
        (_, [wid, ..]) if !ids::is_id(wid, "wf_") => Err(ApiError::not_found("unknown workflow")),
        (&Method::GET, [wid]) => Ok(ok_json(&view(&get(app, conn, wid).await?))),
        (&Method::PATCH, [wid]) => patch(app, conn, wid, req).await,
        (&Method::DELETE, [wid]) => delete(app, conn, wid, req).await,
        (&Method::POST, [wid, "test"]) => test(app, conn, wid, req).await,
        (_, [_]) | (_, [_, "test"]) => Err(super::method_not_allowed(method)),
        _ => Err(ApiError::not_found("no such route")),
    }
}

fn view(w: &Workflow) -> Value {
    json!({
        "id": w.id, "object": "workflow", "connection_id": w.connection_id, "trigger": w.trigger,
        "filter": w.filter, "target": w.target.as_ref().map(|t| json!({"url": t.url})),
        "steps": w.steps.iter().map(|s| json!({"action": s.action, "input": s.input})).collect::<Vec<_>>(),
        "enabled": w.enabled, "created_at": w.created_at, "updated_at": w.updated_at,
    })
}

async fn get(app: &App, conn: &str, wid: &str) -> Result<Workflow, ApiError> {
    app.workflows
        .get_workflow(conn, wid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown workflow"))
}

/// Checks a workflow as a user wrote it: known trigger and actions,
/// well-formed filter and templates, and each step's input valid for its
/// action once templates are filled from the trigger's sample event and
/// sample results of the earlier steps.
fn check(body: &CreateBody) -> Result<(), ApiError> {
    if body.trigger != "*" && catalog::trigger(&body.trigger).is_none() {
        return Err(ApiError::invalid_param(
            "trigger",
            format!(
                "unknown trigger {:?}; see GET /catalog, or use * for every event",
                body.trigger
            ),
        ));
    }
    if body.target.is_none() && body.steps.is_empty() {
        return Err(ApiError::invalid_param(
            "steps",
            "a workflow needs a target, steps, or both",
        ));
    }
    filter::check(&body.filter).map_err(|e| ApiError::invalid_param("filter", e.to_string()))?;
    if let Some(target) = &body.target {
        catalog::check_value(&Kind::Url, &json!(target.url), "target.url")?;
    }
    if body.steps.len() > MAX_STEPS {
        return Err(ApiError::invalid_param(
            "steps",
            format!("a workflow has at most {MAX_STEPS} steps"),
        ));
    }
    let sample = catalog::sample_event(if body.trigger == "*" {
        ""
    } else {
        &body.trigger
    });
    let mut results = Vec::new();
    for (i, step) in body.steps.iter().enumerate() {
        let param = format!("steps[{i}]");
        let action = catalog::action_by_key(&step.action).ok_or_else(|| {
            ApiError::invalid_param(
                format!("{param}.action"),
                format!("unknown action {:?}; see GET /catalog", step.action),
            )
        })?;
        let paths = template::paths(&step.input)
            .map_err(|e| ApiError::invalid_param(format!("{param}.input"), e.to_string()))?;
        for path in &paths {
            if let Some(n) = path
                .strip_prefix("steps.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok())
            {
                if n >= i {
                    return Err(ApiError::invalid_param(
                        format!("{param}.input"),
                        format!("{{{{{path}}}}} reads a step that has not run yet"),
                    ));
                }
            }
        }
        let context = json!({"event": sample, "steps": results});
        match template::render(&step.input, &context) {
            Ok(filled) => catalog::validate(action, &filled)
                .map(|_| ())
                .map_err(|mut e| {
                    e.param = Some(
                        format!("{param}.input.{}", e.param.unwrap_or_default())
                            .trim_end_matches('.')
                            .to_string(),
                    );
                    e.message = format!("with the sample {} event: {}", body.trigger, e.message);
                    e
                })?,
            // With `*` the event's shape is not known in advance.
            Err(template::TemplateError::Missing(_)) if body.trigger == "*" => {}
            Err(e) => {
                return Err(ApiError::invalid_param(
                    format!("{param}.input"),
                    format!("{e} (checked with the sample {} event)", body.trigger),
                ));
            }
        }
        results.push(catalog::sample_result(action));
    }
    Ok(())
}

async fn create(app: &App, conn: &str, req: &Request) -> Result<Response, ApiError> {
    let body: CreateBody = parse_json(req.body())?;
    check(&body)?;
    let (mut connection, mut secrets) = load(app, conn).await?;
    let now = app.clock.now();
    let workflow = Workflow {
        id: ids::new_id("wf_"),
        connection_id: conn.to_string(),
        trigger: body.trigger,
        filter: body.filter,
        target: body.target.map(|t| Target { url: t.url }),
        steps: body
            .steps
            .into_iter()
            .map(|s| Step {
                action: s.action,
                input: s.input,
            })
            .collect(),
        enabled: body.enabled,
        created_at: now,
        updated_at: now,
    };
    let target_secret = workflow.target.as_ref().map(|_| signing::generate_secret());
    if let Some(secret) = &target_secret {
        secrets
            .target_secrets
            .insert(workflow.id.clone(), SecretString::from(secret.clone()));
        app.secrets
            .put_secrets(conn, &secrets)
            .await
            .map_err(|e| ApiError::service_unavailable("the secret store failed", &e))?;
    }
    app.workflows
        .insert_workflow(&workflow)
        .await
        .map_err(store_error)?;
    resync(app, &mut connection, &mut secrets, req).await?;
    let mut answer = view(&workflow);
    if let Some(secret) = target_secret {
        // Shown once: deliveries to the target are signed with it.
        answer["target_secret"] = json!(secret);
    }
    tracing::info!(connection = %conn, workflow = %workflow.id, trigger = %workflow.trigger, "workflow created");
    Ok(json_response(StatusCode::CREATED, &answer))
}

async fn list(app: &App, conn: &str) -> Result<Response, ApiError> {
    load(app, conn).await?;
    let all = app
        .workflows
        .list_workflows(conn)
        .await
        .map_err(store_error)?;
    Ok(ok_json(
        &json!({"object": "list", "data": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

async fn patch(app: &App, conn: &str, wid: &str, req: &Request) -> Result<Response, ApiError> {
    let body: PatchBody = parse_json(req.body())?;
    let (mut connection, mut secrets) = load(app, conn).await?;
    let mut workflow = get(app, conn, wid).await?;
    workflow.enabled = body.enabled;
    workflow.updated_at = app.clock.now();
    app.workflows
        .update_workflow(&workflow)
        .await
        .map_err(store_error)?;
    resync(app, &mut connection, &mut secrets, req).await?;
    Ok(ok_json(&view(&workflow)))
}

async fn delete(app: &App, conn: &str, wid: &str, req: &Request) -> Result<Response, ApiError> {
    let (mut connection, mut secrets) = load(app, conn).await?;
    get(app, conn, wid).await?;
    app.workflows
        .delete_workflow(conn, wid)
        .await
        .map_err(store_error)?;
    if secrets.target_secrets.remove(wid).is_some() {
        app.secrets
            .put_secrets(conn, &secrets)
            .await
            .map_err(|e| ApiError::service_unavailable("the secret store failed", &e))?;
    }
    resync(app, &mut connection, &mut secrets, req).await?;
    Ok(ok_json(
        &json!({"id": wid, "object": "workflow", "deleted": true}),
    ))
}

/// Keeps the managed endpoint's events equal to what the connection needs now.
async fn resync(
    app: &App,
    connection: &mut crate::model::Connection,
    secrets: &mut crate::model::ConnectionSecrets,
    req: &Request,
) -> Result<(), ApiError> {
    if connection.webhook_mode == WebhookMode::Managed {
        let base = super::public_base_url(app, req);
        sync_endpoint(app, connection, secrets, &base).await?;
        app.connections
            .update_connection(connection)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

async fn test(app: &App, conn: &str, wid: &str, req: &Request) -> Result<Response, ApiError> {
    let body: TestBody = if req.body().iter().all(u8::is_ascii_whitespace) {
        TestBody { event_id: None }
    } else {
        parse_json(req.body())?
    };
    let workflow = get(app, conn, wid).await?;
    let event = match &body.event_id {
        Some(id) if !ids::is_id(id, "evt_") => {
            return Err(ApiError::invalid_param(
                "event_id",
                "event_id must be an event id (evt_…)",
            ));
        }
        Some(id) => {
            let stored = app
                .events
                .get_event(conn, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApiError::not_found("unknown event"))?;
            stored
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(json!({"id": stored.event_id, "type": stored.event_type}))
        }
        None => catalog::sample_event(if workflow.trigger == "*" {
            "customer.created"
        } else {
            &workflow.trigger
        }),
    };
    let report = Engine::new(app, "test")
        .dry_run(&workflow, &event)
        .await
        .map_err(|e| ApiError::internal("the test run failed", &e))?;
    Ok(ok_json(&report))
}

pub(super) async fn list_runs(app: &App, conn: &str, req: &Request) -> Result<Response, ApiError> {
    let q = |name| super::query_param(req, name);
    let limit = super::limit_param(req, 20)?;
    let status = match q("status") {
        None => None,
        Some(s) => Some(serde_json::from_value::<RunStatus>(json!(s)).map_err(|_| {
            ApiError::invalid_param(
                "status",
                "status must be pending, running, succeeded, retrying or dead",
            )
        })?),
    };
    let event_id = q("event_id");
    if event_id.as_deref().is_some_and(|e| !ids::is_id(e, "evt_")) {
        return Err(ApiError::invalid_param(
            "event_id",
            "event_id must be an event id (evt_…)",
        ));
    }
    let workflow_id = q("workflow_id");
    if workflow_id
        .as_deref()
        .is_some_and(|w| !ids::is_id(w, "wf_"))
    {
        return Err(ApiError::invalid_param(
            "workflow_id",
            "workflow_id must be a workflow id (wf_…)",
        ));
    }
    load(app, conn).await?;
    let runs = app
        .runs
        .list_runs(
            conn,
            &RunQuery {
                status,
                event_id,
                workflow_id,
                limit,
            },
        )
        .await
        .map_err(store_error)?;
    Ok(ok_json(
        &json!({"object": "list", "data": runs.iter().map(run_view).collect::<Vec<_>>()}),
    ))
}

fn run_view(r: &Run) -> Value {
    json!({
        "object": "run", "event_id": r.event_id, "workflow_id": r.workflow_id, "replay": r.replay, "status": r.status,
        "attempts": r.attempts, "last_error": r.last_error, "next_attempt_at": r.next_attempt_at,
        "delivered": r.delivered, "steps": r.steps, "created_at": r.created_at, "updated_at": r.updated_at,
    })
}

/// `POST /connections/{id}/events/{event_id}/replay[?workflow=wf_…]`: runs a
/// stored event again as new runs — for every enabled workflow it matches,
/// or for the one named. Each replay is a new try (its own idempotency keys
/// and target message id). The runs are due at once: the scheduler (the dev
/// server's timer) carries them out; the answer is 202 with the runs made.
pub(super) async fn replay(
    app: &App,
    conn: &str,
    event_id: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    if !ids::is_id(event_id, "evt_") {
        return Err(ApiError::not_found("unknown event"));
    }
    let only = super::query_param(req, "workflow");
    if only.as_deref().is_some_and(|w| !ids::is_id(w, "wf_")) {
        return Err(ApiError::invalid_param(
            "workflow",
            "workflow must be a workflow id (wf_…)",
        ));
    }
    load(app, conn).await?;
    let event = app
        .events
        .get_event(conn, event_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("unknown event"))?;
    let workflows = match &only {
        Some(wid) => vec![get(app, conn, wid).await?],
        None => {
            let body = match &event.body {
                Some(b) => serde_json::from_str(b).unwrap_or(Value::Null),
                None => json!({"id": event.event_id, "type": event.event_type}),
            };
            Engine::new(app, "replay")
                .matching(&event, &body)
                .await
                .map_err(store_error)?
        }
    };
    let now = app.clock.now();
    let mut made = Vec::new();
    for w in workflows {
        let mut run = Run::new(conn, &event.event_id, &w.id, now);
        run.replay = Some(ids::new_id("rpl_"));
        app.runs.create_run(&run).await.map_err(store_error)?;
        made.push(run_view(&run));
    }
    tracing::info!(connection = %conn, event_id, runs = made.len(), "event replayed");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"object": "list", "data": made}),
    ))
}
