//! Workflows of a connection: create (checked against the trigger's sample
//! event), read, switch on or off, delete, test-run. The managed Stripe
//! endpoint follows the enabled workflows.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::lock::with_lock;
use super::samples::{self, Sample, SampleSource};
use super::{Error, Result, endpoint};
use crate::app::App;
use crate::catalog::{self, InvalidInput};
use crate::ids::{ConnectionId, EventId, WorkflowId};
use crate::model::{Step, Target, TargetSecret, WebhookMode, Workflow};
use crate::workflow::engine::Engine;
use crate::workflow::{filter, signing, template};

const MAX_STEPS: usize = 10;

/// `POST /connections/{id}/workflows`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkflow {
    /// A catalog trigger (`invoice.created`), or `*` for every one.
    pub trigger: String,
    /// `{"event.path": value}` (equality) or `{"event.path": {"exists": bool}}`;
    /// for `*.updated` triggers `{"changed": [fields]}` or
    /// `{"changed": {field: {"to"?, "from"?}}}` (GET /catalog has the schema).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filter: Map<String, Value>,
    #[serde(default)]
    pub target: Option<TargetBody>,
    #[serde(default)]
    pub steps: Vec<StepBody>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub enabled: bool,
    /// Events caused by this workflow's own Stripe writes (recognised by
    /// their idempotency key) do not start it again. `false` lets them.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub ignore_own_writes: bool,
    /// Re-read the event's object from Stripe before delivering and running
    /// steps: the delivery is `{"event", "current"}` and templates read
    /// `{{current.…}}`.
    #[serde(default)]
    pub fetch_latest: bool,
    /// Skip an event older than one this workflow already acted on for the
    /// same object (the run succeeds with `skipped` saying why).
    #[serde(default)]
    pub skip_stale: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    /// An http(s) URL on a public address; deliveries are signed per
    /// Standard Webhooks and follow no redirects.
    pub url: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// A catalog action, e.g. `invoices.finalize`.
    pub action: String,
    /// The action's input; strings may hold `{{event.…}}` and `{{steps.N.…}}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub input: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// `PATCH …/workflows/{wid}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowPatch {
    pub enabled: bool,
}

/// `POST …/workflows/{wid}/test`: a stored event, or the trigger's sample.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRun {
    #[serde(default)]
    pub event_id: Option<String>,
}

pub async fn get(app: &App, conn: &ConnectionId, wid: &WorkflowId) -> Result<Workflow> {
    app.workflows
        .get_workflow(conn, wid)
        .await?
        .ok_or(Error::NotFound("workflow"))
}

/// The breaker of the workflow's target (closed and clean when none was
/// ever written); `None` without a target.
pub async fn target_health(
    app: &App,
    workflow: &Workflow,
) -> Result<Option<crate::workflow::breaker::Breaker>> {
    let Some(target) = &workflow.target else {
        return Ok(None);
    };
    let key = crate::workflow::limits::target_key(&workflow.connection_id, &target.url);
    Ok(Some(app.gates.get_breaker(&key).await?.unwrap_or_default()))
}

/// Checks a workflow as a user wrote it: known trigger and actions,
/// well-formed filter and templates, and each step's input valid for its
/// action once templates are filled from the trigger's sample event and
/// sample results of the earlier steps.
/// Checks a new workflow against its trigger's sample (the one `GET
/// …/triggers/{trigger}/sample` answers), with what a real sample leaves
/// empty filled from the bundled one ([`samples::for_checking`]).
fn check(body: &NewWorkflow, allow_private_targets: bool, sample: &Sample) -> Result<()> {
    let event = samples::for_checking(sample, &body.trigger);
    check_with(body, allow_private_targets, sample.source, &event)
}

fn source_name(source: SampleSource) -> &'static str {
    match source {
        SampleSource::Stored => "latest stored",
        SampleSource::Stripe => "latest Stripe",
        SampleSource::Fixture => "bundled",
    }
}

fn check_with(
    body: &NewWorkflow,
    allow_private_targets: bool,
    source: SampleSource,
    sample: &Value,
) -> Result<()> {
    samples::check_trigger(&body.trigger)?;
    if body.target.is_none() && body.steps.is_empty() {
        return Err(InvalidInput::at("steps", "a workflow needs a target, steps, or both").into());
    }
    filter::check(&body.filter, &body.trigger).map_err(|e| {
        let param = match e {
            filter::FilterError::BadChanged(_) => "filter.changed",
            _ => "filter",
        };
        InvalidInput::at(param, e.to_string())
    })?;
    if let Some(target) = &body.target {
        crate::target::check_url(&target.url, allow_private_targets)
            .map_err(|e| InvalidInput::at("target.url", e.to_string()))?;
    }
    if body.steps.len() > MAX_STEPS {
        return Err(
            InvalidInput::at("steps", format!("a workflow has at most {MAX_STEPS} steps")).into(),
        );
    }
    let mut results = Vec::new();
    for (i, step) in body.steps.iter().enumerate() {
        let param = format!("steps[{i}]");
        let action = catalog::action_by_key(&step.action).ok_or_else(|| {
            InvalidInput::at(
                format!("{param}.action"),
                format!("unknown action {:?}; see GET /catalog", step.action),
            )
        })?;
        let paths = template::paths(&step.input)
            .map_err(|e| InvalidInput::at(format!("{param}.input"), e.to_string()))?;
        for path in &paths {
            if path.starts_with("current") && !body.fetch_latest {
                return Err(InvalidInput::at(
                    format!("{param}.input"),
                    format!("{{{{{path}}}}} reads the object re-read from Stripe: set \"fetch_latest\": true"),
                )
                .into());
            }
            if let Some(n) = path
                .strip_prefix("steps.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok())
                && n >= i
            {
                return Err(InvalidInput::at(
                    format!("{param}.input"),
                    format!("{{{{{path}}}}} reads a step that has not run yet"),
                )
                .into());
            }
        }
        let context =
            json!({"event": sample, "current": sample["data"]["object"], "steps": results});
        // With `*` the event's shape is not known in advance: a path the
        // sample lacks reads as null, so the input is still filled (and its
        // size bounded), but only validated when nothing was missing.
        let rendered = if body.trigger == "*" {
            template::render_lenient(&step.input, &context)
        } else {
            template::render(&step.input, &context).map(|filled| (filled, false))
        };
        let filled = match rendered {
            Ok((filled, true)) => filled,
            Ok((filled, false)) => {
                catalog::validate(action, &filled)
                    .map(|_| ())
                    .map_err(|mut e| {
                        e.param = Some(
                            format!("{param}.input.{}", e.param.unwrap_or_default())
                                .trim_end_matches('.')
                                .to_string(),
                        );
                        e.message = format!(
                            "with the {} sample {} event: {}",
                            source_name(source),
                            body.trigger,
                            e.message
                        );
                        e
                    })?;
                filled
            }
            Err(e) => {
                return Err(InvalidInput::at(
                    format!("{param}.input"),
                    format!(
                        "{e} (checked with the {} sample {} event)",
                        source_name(source),
                        body.trigger
                    ),
                )
                .into());
            }
        };
        results.push(catalog::sample_result(action, &filled));
    }
    Ok(())
}

/// Creates a workflow: checked, its target secret stored, the endpoint
/// synced. Answers the workflow and, for a target, its signing secret
/// (shown this once).
pub async fn create(
    app: &App,
    conn: &ConnectionId,
    body: NewWorkflow,
    base_url: &str,
) -> Result<(Workflow, Option<String>)> {
    // Checks the trigger first, then that the connection exists.
    let sample = samples::trigger_sample(app, conn, &body.trigger).await?;
    check(&body, app.config.private_targets_allowed(), &sample)?;
    let now = app.clock.now();
    let target_secret = body.target.as_ref().map(|_| signing::generate_secret());
    let workflow = Workflow {
        id: WorkflowId::generate().into(),
        connection_id: conn.to_string(),
        trigger: body.trigger,
        filter: body.filter,
        // The signing secret stays with its workflow: creating one never
        // rewrites the connection's secrets, so concurrent creations cannot
        // lose each other's.
        target: body.target.map(|t| Target {
            url: t.url,
            secret: target_secret.clone().map(TargetSecret::new),
        }),
        steps: body
            .steps
            .into_iter()
            .map(|s| Step {
                action: s.action,
                input: s.input,
            })
            .collect(),
        enabled: body.enabled,
        ignore_own_writes: body.ignore_own_writes,
        fetch_latest: body.fetch_latest,
        skip_stale: body.skip_stale,
        created_at: now,
        updated_at: now,
    };
    app.workflows.insert_workflow(&workflow).await?;
    endpoint::resync(app, conn, base_url).await?;
    tracing::info!(connection = %conn, workflow = %workflow.id, trigger = %workflow.trigger, "workflow created");
    Ok((workflow, target_secret))
}

pub async fn list(app: &App, conn: &ConnectionId) -> Result<Vec<Workflow>> {
    super::connection(app, conn).await?;
    Ok(app.workflows.list_workflows(conn).await?)
}

pub async fn patch(
    app: &App,
    conn: &ConnectionId,
    wid: &WorkflowId,
    body: WorkflowPatch,
    base_url: &str,
) -> Result<Workflow> {
    let mut workflow = get(app, conn, wid).await?;
    workflow.enabled = body.enabled;
    workflow.updated_at = app.clock.now();
    app.workflows.update_workflow(&workflow).await?;
    endpoint::resync(app, conn, base_url).await?;
    Ok(workflow)
}

/// Removes a workflow (its target secret with it), then the endpoint
/// follows. A secret an older version kept in the connection's secrets is
/// removed there too, under the connection's lease.
pub async fn delete(
    app: &App,
    conn: &ConnectionId,
    wid: &WorkflowId,
    base_url: &str,
) -> Result<()> {
    get(app, conn, wid).await?;
    app.workflows.delete_workflow(conn, wid).await?;
    with_lock(app, conn, async |locked| {
        if let Some(secrets) = locked.secrets.clone()
            && secrets.target_secrets.contains_key(wid.as_str())
        {
            let mut kept = secrets;
            kept.target_secrets.remove(wid.as_str());
            locked.save_secrets(kept).await?;
        }
        if locked.connection.webhook_mode == WebhookMode::Managed {
            endpoint::sync(app, locked, base_url).await?;
            locked.save().await?;
        }
        Ok(())
    })
    .await
}

/// Runs the workflow once now on a stored event or the trigger's sample
/// (the same one its creation was checked against);
/// answers each step's resolved input and result. Stores no run.
pub async fn test(
    app: &App,
    conn: &ConnectionId,
    wid: &WorkflowId,
    body: TestRun,
) -> Result<Value> {
    let workflow = get(app, conn, wid).await?;
    let event = match body.event_id {
        Some(id) => {
            let id = EventId::try_from(id).map_err(|_| {
                InvalidInput::at("event_id", "event_id must be an event id (evt_…)")
            })?;
            let stored = app
                .events
                .get_event(conn, &id)
                .await?
                .ok_or(Error::NotFound("event"))?;
            stored
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(json!({"id": stored.event_id, "type": stored.event_type}))
        }
        None => {
            samples::trigger_sample(app, conn, &workflow.trigger)
                .await?
                .event
        }
    };
    Engine::new(app, "test")
        .dry_run(&workflow, &event)
        .await
        .map_err(|e| Error::Internal(format!("the test run failed: {e}")))
}
