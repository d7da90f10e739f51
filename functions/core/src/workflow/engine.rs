//! Fan-out and execution: each stored event reaches every enabled workflow
//! whose trigger and filter match, as one run created with a conditional
//! write; a run is executed under a lease, saving after every step, so a
//! redelivered batch, a second worker or a retry never repeats a side effect.

use std::time::Duration;

use serde_json::{Value, json};

use super::run::{
    Failure, RetryPolicy, Run, RunStatus, StepRecord, TransitionError, classify_action_error,
    classify_delivery,
};
use super::{filter, signing, step_idempotency_key, template};
use crate::actions;
use crate::app::App;
use crate::catalog;
use crate::model::{Connection, ConnectionSecrets, StoredEvent, Workflow};
use crate::ports::StoreError;

/// How long a worker holds a run before another may take it over.
pub const LEASE_SECS: i64 = 300;
/// A target has this long to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of one run execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This worker ran it to this status.
    Finished(RunStatus),
    /// Another worker holds it, it is finished, or it is not due.
    Skipped,
}

/// A run's workflow and event, with the event's JSON.
struct Loaded {
    workflow: Workflow,
    event: StoredEvent,
    body: Value,
    connection: Connection,
    secrets: ConnectionSecrets,
}

pub struct Engine<'a> {
    app: &'a App,
    worker: String,
    policy: RetryPolicy,
}

impl<'a> Engine<'a> {
    pub fn new(app: &'a App, worker: impl Into<String>) -> Self {
        Self {
            app,
            worker: worker.into(),
            policy: RetryPolicy::default(),
        }
    }

    /// The workflows an event starts, in creation order.
    pub async fn matching(
        &self,
        event: &StoredEvent,
        body: &Value,
    ) -> Result<Vec<Workflow>, StoreError> {
        Ok(self
            .subscribed(event)
            .await?
            .into_iter()
            .filter(|w| wants(w, body))
            .collect())
    }

    /// The enabled workflows on the event's trigger, before their filters.
    async fn subscribed(&self, event: &StoredEvent) -> Result<Vec<Workflow>, StoreError> {
        let all = self
            .app
            .workflows
            .list_workflows(&event.connection_id)
            .await?;
        Ok(all
            .into_iter()
            .filter(|w| w.enabled && (w.trigger == "*" || w.trigger == event.event_type))
            .collect())
    }

    /// Creates the event's runs (at most one per workflow, however often this
    /// is called) and executes each. Answers what each execution came to.
    pub async fn fan_out(
        &self,
        event: &StoredEvent,
    ) -> Result<Vec<(String, Outcome)>, EngineError> {
        // An event no workflow subscribes to is neither parsed nor fetched.
        let subscribed = self.subscribed(event).await?;
        if subscribed.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.event_body(event).await;
        let body = match body {
            Ok(b) => b,
            Err(reason) => {
                tracing::error!(connection = %event.connection_id, event_id = %event.event_id, %reason, "event body unavailable");
                return Err(EngineError::Store(StoreError::Unavailable(reason)));
            }
        };
        let now = self.app.clock.now();
        let mut outcomes = Vec::new();
        // Read once for all of the event's new runs.
        let mut connection: Option<(Connection, ConnectionSecrets)> = None;
        let matching = subscribed.into_iter().filter(|w| wants(w, &body));
        for workflow in matching {
            // Created already claimed by this worker: the conditional create
            // is the claim, one write instead of two. Should this worker stop,
            // the run falls due when its lease ends and the scheduler takes it.
            let mut run = Run::new(&event.connection_id, &event.event_id, &workflow.id, now);
            if run
                .claim(&self.worker, now, LEASE_SECS, self.policy.max_attempts())
                .is_err()
            {
                continue;
            }
            let id = workflow.id.clone();
            let outcome = if self.app.runs.create_run(&run).await? {
                tracing::info!(connection = %event.connection_id, event_id = %event.event_id, workflow = %id, "run created");
                if connection.is_none() {
                    connection = self.connection_of(&event.connection_id).await.ok();
                }
                // What fan-out holds already is not read again; without the
                // connection the attempt reads it and reports why it failed.
                let loaded = connection.clone().map(|(connection, secrets)| Loaded {
                    workflow,
                    event: event.clone(),
                    body: body.clone(),
                    connection,
                    secrets,
                });
                self.execute_run(run, loaded, true).await?
            } else {
                // Made by an earlier delivery of this batch: it may still be pending.
                self.execute(&event.connection_id, &event.event_id, &id)
                    .await?
            };
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// Executes every run that is due now (the retry scheduler's tick).
    pub async fn run_due(&self, limit: usize) -> Result<Vec<Outcome>, EngineError> {
        let now = self.app.clock.now();
        let mut outcomes = Vec::new();
        for run in self.app.runs.due_runs(now, limit).await? {
            // One run the store fails on must not hold up the others: it
            // stays due, and the next tick takes it again.
            match self
                .execute(&run.connection_id, &run.event_id, &run.run_key())
                .await
            {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    tracing::error!(connection = %run.connection_id, event_id = %run.event_id, workflow = %run.workflow_id, error = %e, "run not executed; due again next tick");
                }
            }
        }
        Ok(outcomes)
    }

    /// Claims one run and carries it as far as it goes now.
    pub async fn execute(
        &self,
        connection_id: &str,
        event_id: &str,
        workflow_id: &str,
    ) -> Result<Outcome, EngineError> {
        match self
            .app
            .runs
            .get_run(connection_id, event_id, workflow_id)
            .await?
        {
            Some(run) => self.execute_run(run, None, false).await,
            None => Ok(Outcome::Skipped),
        }
    }

    async fn execute_run(
        &self,
        mut run: Run,
        loaded: Option<Loaded>,
        claimed: bool,
    ) -> Result<Outcome, EngineError> {
        let (connection_id, event_id, workflow_id) = (
            run.connection_id.clone(),
            run.event_id.clone(),
            run.workflow_id.clone(),
        );
        if !claimed {
            let read = run.version;
            match run.claim(
                &self.worker,
                self.app.clock.now(),
                LEASE_SECS,
                self.policy.max_attempts(),
            ) {
                Ok(()) => {}
                Err(TransitionError::Exhausted(attempts)) => {
                    tracing::warn!(connection = %run.connection_id, event_id = %run.event_id, workflow = %run.workflow_id, attempts, "run dead: attempts used up");
                    return match self.app.runs.save_run(&run, read).await {
                        Ok(()) => Ok(Outcome::Finished(RunStatus::Dead)),
                        Err(StoreError::Conflict) => Ok(Outcome::Skipped),
                        Err(e) => Err(e.into()),
                    };
                }
                Err(_) => return Ok(Outcome::Skipped),
            }
            match self.app.runs.save_run(&run, read).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Ok(Outcome::Skipped),
                Err(e) => return Err(e.into()),
            }
        }
        let result = self.attempt(&mut run, loaded).await;
        let now = self.app.clock.now();
        let before = run.version;
        let transition = match result {
            Ok(()) => run.succeed(&self.worker, now),
            Err(Some(failure)) => {
                let unit = rand::random::<f64>() * 2.0 - 1.0;
                run.fail(&self.worker, failure, now, &self.policy, unit)
            }
            // The lease was lost mid-run: the new holder finishes it.
            Err(None) => return Ok(Outcome::Skipped),
        };
        if transition.is_err() {
            return Ok(Outcome::Skipped);
        }
        match self.app.runs.save_run(&run, before).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Ok(Outcome::Skipped),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            connection = %connection_id, %event_id, workflow = %workflow_id, status = ?run.status,
            attempts = run.attempts, error = run.last_error.as_deref(), "run attempt finished"
        );
        Ok(Outcome::Finished(run.status))
    }

    /// One attempt: deliver to the target (once), then the steps not yet
    /// done. `Err(None)` when the lease was lost.
    async fn attempt(&self, run: &mut Run, loaded: Option<Loaded>) -> Result<(), Option<Failure>> {
        let perm = |m: String| Some(Failure::Permanent(m));
        let Loaded {
            workflow,
            event,
            body,
            connection,
            secrets,
        } = match loaded {
            Some(l) => l,
            None => self.load(run).await?,
        };

        let transient = |m: String| Some(Failure::Transient(m));
        // Stripe does not order events: one older than an event this
        // workflow already acted on for the same object is skipped.
        if workflow.skip_stale {
            if let Some(object_id) = body["data"]["object"]["id"].as_str() {
                let current = self
                    .app
                    .runs
                    .advance_object(&run.connection_id, &workflow.id, object_id, event.created)
                    .await
                    .map_err(|e| transient(format!("could not check the event's order: {e}")))?;
                if !current {
                    run.skipped = Some(format!(
                        "stale: a newer event for {object_id} was already handled by this workflow"
                    ));
                    return Ok(());
                }
            }
        }
        let stripe = self.app.stripe(&secrets.api_key, &connection.api_version);
        // The object as it is now, when the workflow asks for it.
        let current = if workflow.fetch_latest {
            Some(self.current_object(&stripe, &body).await.map_err(Some)?)
        } else {
            None
        };

        if let (Some(target), false) = (&workflow.target, run.delivered) {
            let secret = target_secret(target, &workflow.id, &secrets)
                .ok_or_else(|| perm("the target has no signing secret".into()))?;
            // The event as Stripe sent it: fetched back from Stripe when it
            // was too large to store, never a stub.
            let payload = match (&current, &event.body) {
                (Some(current), _) => json!({"event": body, "current": current}).to_string(),
                (None, Some(stored)) => stored.clone(),
                (None, None) => body.to_string(),
            };
            let status = self
                .deliver(&target.url, secret, run, payload)
                .await
                .map_err(&perm)?;
            if let Some(failure) = classify_delivery(status) {
                return Err(Some(failure));
            }
            if workflow.steps.len() > run.steps.len() {
                // Saved at once when steps follow: a failing step must not
                // deliver again.
                let before = run.version;
                run.record_delivery(&self.worker, self.app.clock.now())
                    .map_err(|_| None)?;
                self.save(run, before).await?;
            } else {
                // Without steps the run's final save records it.
                run.delivered = true;
            }
        }

        for (index, step) in workflow.steps.iter().enumerate().skip(run.steps.len()) {
            let context = json!({"event": body, "current": current, "steps": run.steps.iter().map(|s| s.result.clone()).collect::<Vec<_>>()});
            let input = template::render(&step.input, &context)
                .map_err(|e| perm(format!("step {index}: {e}")))?;
            let action = catalog::action_by_key(&step.action)
                .ok_or_else(|| perm(format!("step {index}: unknown action {}", step.action)))?;
            let key = step_idempotency_key(&run.event_id, &run.run_key(), index);
            let result = match actions::run(action, &input, &stripe, Some(&key)).await {
                // A delete retried after its first try went through (the
                // answer was lost): the object is gone, as the step wanted.
                Err(e) if run.attempts > 1 && already_deleted(action, &e) => {
                    json!({"id": input.get("id"), "deleted": true, "already_deleted": true})
                }
                other => other.map_err(|e| {
                    Some(match classify_action_error(&e) {
                        Failure::Permanent(m) => {
                            Failure::Permanent(format!("step {index} ({}): {m}", step.action))
                        }
                        Failure::Transient(m) => {
                            Failure::Transient(format!("step {index} ({}): {m}", step.action))
                        }
                    })
                })?,
            };
            let before = run.version;
            // Kept within the run record's bound (DynamoDB holds 400 KB an
            // item): a large input or result is stored as a note of its size.
            let record = StepRecord {
                action: step.action.clone(),
                input: bounded(input, MAX_STORED_INPUT),
                result: bounded(result, MAX_STORED_RESULT),
            };
            run.record_step(&self.worker, record, self.app.clock.now())
                .map_err(|_| None)?;
            self.save(run, before).await?;
        }
        Ok(())
    }

    /// Runs a workflow once, now, on `event`, without storing a run: each
    /// step's resolved input and result (or error), so a user can check the
    /// mapping before switching the workflow on. Writes carry fresh
    /// idempotency keys: a test is a new try every time.
    pub async fn dry_run(&self, workflow: &Workflow, event: &Value) -> Result<Value, EngineError> {
        let secrets = self
            .app
            .secrets
            .get_secrets(&workflow.connection_id)
            .await
            .map_err(|e| EngineError::Store(StoreError::Unavailable(e.to_string())))?
            .ok_or(EngineError::Store(StoreError::Conflict))?;
        let connection = self
            .app
            .connections
            .get_connection(&workflow.connection_id)
            .await?
            .ok_or(EngineError::Store(StoreError::Conflict))?;
        let event_id = event["id"].as_str().unwrap_or("evt_sample").to_string();
        let mut report = json!({"workflow_id": workflow.id, "event_id": event_id, "status": "succeeded", "steps": []});
        let mut failed = false;
        if let Some(target) = &workflow.target {
            let (status, refused) = match target_secret(target, &workflow.id, &secrets) {
                Some(secret) => {
                    let mut run = Run::new(
                        &workflow.connection_id,
                        &event_id,
                        &workflow.id,
                        self.app.clock.now(),
                    );
                    // A test is its own try: its own `webhook-id`, so a target
                    // that dedupes on it never drops the real run's delivery.
                    run.replay = Some(crate::ids::new_id("tst_"));
                    match self
                        .deliver(&target.url, secret, &run, event.to_string())
                        .await
                    {
                        Ok(status) => (status, None),
                        Err(refused) => (None, Some(refused)),
                    }
                }
                None => (None, None),
            };
            let delivered = refused.is_none() && classify_delivery(status).is_none();
            failed |= !delivered;
            report["target"] = json!({"url": target.url, "status": status, "delivered": delivered, "error": refused});
        }
        let stripe = self.app.stripe(&secrets.api_key, &connection.api_version);
        let test_id = uuid::Uuid::new_v4();
        let mut results: Vec<Value> = Vec::new();
        for (index, step) in workflow.steps.iter().enumerate() {
            if failed {
                break;
            }
            let context = json!({"event": event, "steps": results});
            let mut entry = json!({"action": step.action});
            let outcome = match (
                template::render(&step.input, &context),
                catalog::action_by_key(&step.action),
            ) {
                (Err(e), _) => Err(json!({"message": e.to_string(), "retryable": false})),
                (_, None) => Err(
                    json!({"message": format!("unknown action {}", step.action), "retryable": false}),
                ),
                (Ok(input), Some(action)) => {
                    entry["input"] = input.clone();
                    let key = format!("test-{test_id}-{index}");
                    actions::run(action, &input, &stripe, Some(&key)).await.map_err(|e| {
                        let retryable = matches!(classify_action_error(&e), Failure::Transient(_));
                        let e = crate::http::ApiError::from(e);
                        json!({"message": e.message, "type": e.kind, "param": e.param, "stripe": e.stripe,
                               "retryable": retryable})
                    })
                }
            };
            match outcome {
                Ok(result) => {
                    entry["result"] = result.clone();
                    results.push(result);
                }
                Err(error) => {
                    entry["error"] = error;
                    failed = true;
                }
            }
            if let Some(steps) = report["steps"].as_array_mut() {
                steps.push(entry);
            }
        }
        if failed {
            report["status"] = json!("failed");
        }
        Ok(report)
    }

    /// What an attempt needs that fan-out did not hand over: read for a retry.
    async fn load(&self, run: &Run) -> Result<Loaded, Option<Failure>> {
        let transient = |e: StoreError| Some(Failure::Transient(e.to_string()));
        let workflow = self
            .app
            .workflows
            .get_workflow(&run.connection_id, &run.workflow_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| Some(Failure::Permanent("the workflow was deleted".into())))?;
        let event = self
            .app
            .events
            .get_event(&run.connection_id, &run.event_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| Some(Failure::Permanent("the event is no longer stored".into())))?;
        let body = self
            .event_body(&event)
            .await
            .map_err(|m| Some(Failure::Transient(m)))?;
        let (connection, secrets) = self.connection_of(&run.connection_id).await?;
        Ok(Loaded {
            workflow,
            event,
            body,
            connection,
            secrets,
        })
    }

    /// A connection and its secrets; gone is permanent, a store failure transient.
    async fn connection_of(
        &self,
        id: &str,
    ) -> Result<(Connection, ConnectionSecrets), Option<Failure>> {
        // Both at once: one round trip instead of two.
        match tokio::join!(
            self.app.connections.get_connection(id),
            self.app.secrets.get_secrets(id),
        ) {
            (Ok(Some(c)), Ok(Some(s))) => Ok((c, s)),
            (Ok(None), _) | (_, Ok(None)) => Err(Some(Failure::Permanent(
                "the connection was deleted".into(),
            ))),
            (Err(e), _) => Err(Some(Failure::Transient(e.to_string()))),
            (_, Err(e)) => Err(Some(Failure::Transient(e.to_string()))),
        }
    }

    async fn save(&self, run: &Run, before: u64) -> Result<(), Option<Failure>> {
        match self.app.runs.save_run(run, before).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(None),
            Err(e) => Err(Some(Failure::Transient(e.to_string()))),
        }
    }

    /// POSTs the event to a target, signed per Standard Webhooks. The
    /// message id is stable across retries so the target can dedupe too.
    /// Answers the target's status (`None`: unreachable, worth a retry), or
    /// an error when the address rule refuses the target (retrying cannot
    /// help). Redirects are not followed: a 3xx is the target's answer.
    async fn deliver(
        &self,
        url: &str,
        secret: &str,
        run: &Run,
        payload: String,
    ) -> Result<Option<u16>, String> {
        let allow_private = self.app.config.private_targets_allowed();
        let url = crate::target::check_url(url, allow_private).map_err(|e| e.to_string())?;
        let msg_id = format!(
            "msg_{}",
            super::key_hash(&run.event_id, &run.run_key(), usize::MAX)
        );
        let timestamp = self.app.clock.now();
        let Ok(signature) = signing::sign(secret, &msg_id, timestamp, payload.as_bytes()) else {
            return Err("the target's signing secret is unusable".into());
        };
        let response = self
            .app
            .targets()
            .post(url)
            .timeout(DELIVERY_TIMEOUT)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload)
            .send()
            .await;
        match response {
            Ok(r) => Ok(Some(r.status().as_u16())),
            Err(e) if crate::target::is_forbidden(&e) => {
                Err(crate::target::ForbiddenAddress.to_string())
            }
            Err(e) => {
                tracing::warn!(workflow = %run.workflow_id, error = %e.without_url(), "target unreachable");
                Ok(None)
            }
        }
    }

    /// The event's object as Stripe has it now (`null` once deleted).
    async fn current_object(
        &self,
        stripe: &crate::stripe::StripeClient,
        body: &Value,
    ) -> Result<Value, Failure> {
        let object = &body["data"]["object"];
        let path = crate::catalog::object_path(
            object["object"].as_str().unwrap_or_default(),
            object["id"].as_str().unwrap_or_default(),
        )
        .ok_or_else(|| {
            Failure::Permanent("fetch_latest: this event's object cannot be read back".into())
        })?;
        match stripe.get(&path, &json!({})).await {
            Ok(current) => Ok(current),
            Err(e) if e.status() == Some(404) => Ok(Value::Null),
            Err(e) if e.is_transient() => Err(Failure::Transient(format!("fetch_latest: {e}"))),
            Err(e) => Err(Failure::Permanent(format!("fetch_latest: {e}"))),
        }
    }

    /// The event as Stripe sent it; fetched from Stripe when it was too
    /// large to store.
    async fn event_body(&self, event: &StoredEvent) -> Result<Value, String> {
        if let Some(body) = &event.body {
            return serde_json::from_str(body)
                .map_err(|e| format!("stored event is not JSON: {e}"));
        }
        let secrets = self
            .app
            .secrets
            .get_secrets(&event.connection_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the connection was deleted")?;
        let version = event
            .api_version
            .clone()
            .unwrap_or_else(|| self.app.config.stripe_api_version.clone());
        let mut stripe = self.app.stripe(&secrets.api_key, &version);
        if let Some(account) = &event.account {
            stripe = stripe.with_account(account);
        }
        stripe
            .get(&format!("/v1/events/{}", event.event_id), &json!({}))
            .await
            .map_err(|e| e.to_string())
    }
}

/// A target's signing secret: kept with its workflow, or (workflows made by
/// older versions) in the connection's secrets.
fn target_secret<'a>(
    target: &'a crate::model::Target,
    workflow_id: &str,
    secrets: &'a crate::model::ConnectionSecrets,
) -> Option<&'a str> {
    target
        .secret
        .as_ref()
        .map(crate::model::TargetSecret::expose)
        .or_else(|| {
            secrets
                .target_secrets
                .get(workflow_id)
                .map(secrecy::ExposeSecret::expose_secret)
        })
}

/// Most bytes of a step's input and result kept in its run: with at most
/// ten steps a run record stays far below DynamoDB's 400 KB.
pub const MAX_STORED_INPUT: usize = 8 * 1024;
pub const MAX_STORED_RESULT: usize = 24 * 1024;

/// `value`, or a note of what it was when its JSON is over `limit` bytes
/// (the object's `id` and `object` kept, so later steps can still use them).
fn bounded(value: Value, limit: usize) -> Value {
    let size = serde_json::to_vec(&value).map_or(0, |v| v.len());
    if size <= limit {
        return value;
    }
    json!({
        "truncated": true,
        "bytes": size,
        "id": value.get("id").cloned().unwrap_or(Value::Null),
        "object": value.get("object").cloned().unwrap_or(Value::Null),
    })
}

/// A delete (or cancel) answered 404: what it should remove is gone.
fn already_deleted(action: &crate::catalog::Action, e: &actions::ActionError) -> bool {
    matches!(action.operation, "delete" | "cancel")
        && matches!(e, actions::ActionError::Stripe(s) if s.status() == Some(404))
}

/// Whether a subscribed workflow runs on this event: its filter holds, and
/// the event is not the echo of the workflow's own Stripe write (its
/// `request.idempotency_key` names the workflow), unless the workflow asked
/// to see its own writes. Without this, a workflow that updates a customer
/// on `customer.updated` would run forever.
fn wants(workflow: &Workflow, body: &Value) -> bool {
    if !filter::matches(&workflow.filter, body) {
        return false;
    }
    let caused_by = body["request"]["idempotency_key"]
        .as_str()
        .and_then(super::workflow_of_key);
    if workflow.ignore_own_writes && caused_by == Some(workflow.id.as_str()) {
        tracing::info!(workflow = %workflow.id, event_id = body["id"].as_str().unwrap_or_default(), "event caused by the workflow's own write; not run again");
        return false;
    }
    true
}
