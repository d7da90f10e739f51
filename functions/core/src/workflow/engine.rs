//! Fan-out and execution: each stored event reaches every enabled workflow
//! whose trigger and filter match, as one run created with a conditional
//! write; a run is executed under a lease, saving after every step, so a
//! redelivered batch, a second worker or a retry never repeats a side effect.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use serde_json::{Value, json};

use super::breaker::{Admission, BreakerPolicy, Transition};
use super::run::{
    Failure, RetryPolicy, Run, RunStatus, StepRecord, TransitionError, classify_action_error,
    classify_delivery,
};
use super::{filter, limits, signing, step_idempotency_key, template};
use crate::actions;
use crate::adapters::local_queue::LocalQueue;
use crate::app::App;
use crate::catalog;
use crate::metrics::Measure;
use crate::model::{Connection, ConnectionSecrets, StoredEvent, Workflow};
use crate::ports::{MAX_QUEUE_DELAY, QueueError, RunRef, StoreError};
use crate::service::alerts;

/// How long a worker holds a run before another may take it over.
pub const LEASE_SECS: i64 = 300;
/// A target has this long to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// The scheduler queues runs falling due this far ahead (under SQS's
/// 15-minute delay, with a minute to spare for a late tick).
pub const SCHEDULE_AHEAD: i64 = 840;
const SCHEDULE_PAGE: usize = 1000;
const SCHEDULE_PAGES: usize = 10;
/// A run due this long ago without a worker lost its message: queued again.
pub const OVERDUE_AFTER: i64 = 1800;
const OVERDUE_PAGE: usize = 100;
/// The store mark of how far ahead the scheduler has queued.
pub const SCHEDULER_HORIZON: &str = "scheduler_horizon";
/// A message received more often than this marks its run stuck (SQS moves
/// it to the dead-letter queue one receive later).
pub const STUCK_AFTER_RECEIVES: u32 = 5;
/// How long a failed message of an in-process queue stays hidden.
const LOCAL_VISIBILITY: u32 = 30;
/// A 429 without `Retry-After` puts the run back for this many seconds.
const RATE_LIMIT_BACKOFF: i64 = 2;
/// How long a delivery waits for a slot of its target before its run is
/// put back.
const SLOT_WAIT: Duration = Duration::from_millis(250);
/// A wait this long is written on the run (its API shows why it waits).
const POSTPONE_RECORDED_AFTER: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What became of one run execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This worker ran it to this status.
    Finished(RunStatus),
    /// Another worker holds it, it is finished, or it is not due.
    Skipped,
    /// The limits said not now (Stripe's budget or 429, the target's
    /// breaker or cap): queued again for this time, no attempt spent.
    Deferred(i64),
}

/// Why an attempt stopped short of success.
enum AttemptError {
    /// Another worker took the run over.
    LeaseLost,
    Fail(Failure),
    /// Not the run's fault: try again at `until` without counting this.
    Defer {
        until: i64,
        reason: String,
    },
}

impl From<Failure> for AttemptError {
    fn from(f: Failure) -> Self {
        Self::Fail(f)
    }
}

/// May a delivery go?
enum Gate {
    /// `clean`: closed without a failure, as read (a success then needs
    /// no write, nor a second read).
    Go {
        clean: bool,
    },
    Wait {
        until: i64,
        reason: String,
    },
}

/// A slot of a target's concurrency cap, held for one delivery.
struct Slot {
    key: String,
    slot: u32,
    owner: String,
}

/// Whether a delivery's result says the target is unwell: no answer, a
/// 5xx, 429 or 408. A 4xx is the target's considered answer.
fn breaker_failure(status: Option<u16>) -> bool {
    matches!(status, None | Some(408 | 429 | 500..=599))
}

/// Whether an attempt of `run` starts with a Stripe call (nothing left to
/// deliver, then `fetch_latest` or a step): `Some(search)` for the class of
/// that call.
fn first_stripe_call(workflow: &Workflow, run: &Run) -> Option<bool> {
    if workflow.target.is_some() && !run.delivered {
        return None;
    }
    if workflow.fetch_latest {
        return Some(false);
    }
    let step = workflow.steps.get(run.steps.len())?;
    Some(catalog::action_by_key(&step.action).is_some_and(|a| a.operation == "search"))
}

/// Seconds from `now` to `at`, as a queue delay.
fn delay_until(at: i64, now: i64) -> u32 {
    u32::try_from((at - now).clamp(0, i64::from(MAX_QUEUE_DELAY))).unwrap_or(0)
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
    breaker_policy: BreakerPolicy,
}

impl<'a> Engine<'a> {
    pub fn new(app: &'a App, worker: impl Into<String>) -> Self {
        Self {
            app,
            worker: worker.into(),
            policy: RetryPolicy::default(),
            breaker_policy: BreakerPolicy::default(),
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
    /// An event the reconciler recovered starts only the workflows that
    /// existed when it happened: a workflow made later was never owed it
    /// (a live delivery starts every workflow there is when it arrives).
    async fn subscribed(&self, event: &StoredEvent) -> Result<Vec<Workflow>, StoreError> {
        let all = self
            .app
            .workflows
            .list_workflows(&event.connection_id)
            .await?;
        Ok(all
            .into_iter()
            .filter(|w| w.enabled && (w.trigger == "*" || w.trigger == event.event_type))
            .filter(|w| !event.recovered || w.created_at <= event.created)
            .collect())
    }

    /// Creates the event's runs — one per matching workflow, however often
    /// this is called — then queues them all at once. Neither a target nor
    /// Stripe is called: a stream batch takes milliseconds whatever the
    /// targets do. Answers the runs queued.
    ///
    /// An event too large to store is not fetched here: each subscribed
    /// workflow gets a run, and the executor, which fetches the event,
    /// applies the filter (a run whose filter does not hold succeeds as
    /// skipped).
    pub async fn fan_out(&self, event: &StoredEvent) -> Result<Vec<RunRef>, EngineError> {
        let subscribed = self.subscribed(event).await?;
        if subscribed.is_empty() {
            return Ok(Vec::new());
        }
        let matching: Vec<Workflow> = match &event.body {
            Some(body) => {
                let body: Value = serde_json::from_str(body).map_err(|e| {
                    tracing::error!(connection = %event.connection_id, event_id = %event.event_id, error = %e, "stored event is not JSON");
                    EngineError::Store(StoreError::Corrupt(format!("stored event is not JSON: {e}")))
                })?;
                subscribed.into_iter().filter(|w| wants(w, &body)).collect()
            }
            None => subscribed,
        };
        let now = self.app.clock.now();
        let mut refs = Vec::with_capacity(matching.len());
        // Every run is made before any is queued: a crash between the two
        // leaves runs that the redelivered batch (or the dev server's
        // outbox) queues; none is ever missing.
        for workflow in &matching {
            let run = Run::new(&event.connection_id, &event.event_id, &workflow.id, now);
            if self.app.runs.create_run(&run).await? {
                tracing::info!(connection = %event.connection_id, event_id = %event.event_id, workflow = %workflow.id, "run created");
            }
            // Made by an earlier try of this batch or not: queued again, and
            // an executor skips it if it is finished.
            refs.push(RunRef::of(&run));
        }
        self.app.queue.send(&refs, 0).await?;
        Ok(refs)
    }

    /// The scheduler's tick: queues, with a delay, every run that falls due
    /// within the next [`SCHEDULE_AHEAD`] seconds and was not queued by an
    /// earlier tick (the store keeps the horizon already covered); and
    /// queues again the few runs overdue by more than [`OVERDUE_AFTER`],
    /// whose message was lost. Answers how many runs it queued.
    pub async fn enqueue_due(&self) -> Result<usize, EngineError> {
        let now = self.app.clock.now();
        let mut horizon = self.app.gates.get_mark(SCHEDULER_HORIZON).await?;
        let until = now + SCHEDULE_AHEAD;
        let mut queued = 0;
        for _ in 0..SCHEDULE_PAGES {
            let from = horizon.map_or(i64::MIN, |h| h + 1);
            if from > until {
                break;
            }
            let due = self.app.runs.due_runs(from, until, SCHEDULE_PAGE).await?;
            let full = due.len() == SCHEDULE_PAGE;
            let last = due.last().and_then(Run::due_at);
            queued += self.send_delayed(&due, now).await?;
            // Runs are sent before the horizon moves: a crash in between
            // sends some twice (harmless), never none.
            let covered = match (full, last) {
                // A full page ends inside `last`'s second: that second again next time.
                (true, Some(last)) if last > from => last - 1,
                _ => until,
            };
            if !self
                .app
                .gates
                .set_mark(SCHEDULER_HORIZON, horizon, covered)
                .await?
            {
                // Another tick moved it: that tick covers the rest.
                return Ok(queued);
            }
            horizon = Some(covered);
            if !full {
                break;
            }
        }
        let lost = self
            .app
            .runs
            .due_runs(i64::MIN, now - OVERDUE_AFTER, OVERDUE_PAGE)
            .await?;
        if !lost.is_empty() {
            tracing::warn!(
                runs = lost.len(),
                "runs overdue by more than {OVERDUE_AFTER} s; queued again"
            );
        }
        queued += self.send_delayed(&lost, now).await?;
        Ok(queued)
    }

    /// After a restart of a host whose queue lived in its memory (the dev
    /// server): queues every unfinished run again, each for when it is due.
    pub async fn requeue_all(&self) -> Result<usize, EngineError> {
        let now = self.app.clock.now();
        let mut from = i64::MIN;
        let mut queued = 0;
        loop {
            let due = self
                .app
                .runs
                .due_runs(from, now + SCHEDULE_AHEAD, SCHEDULE_PAGE)
                .await?;
            queued += self.send_delayed(&due, now).await?;
            match due.last().and_then(Run::due_at) {
                Some(last) if due.len() == SCHEDULE_PAGE && last + 1 > from => from = last,
                _ => break,
            }
            if from == due.first().and_then(Run::due_at).unwrap_or(from) {
                // A whole page in one second: step past it.
                from += 1;
            }
        }
        let _ = self
            .app
            .gates
            .set_mark(SCHEDULER_HORIZON, None, now + SCHEDULE_AHEAD)
            .await;
        Ok(queued)
    }

    /// Sends runs, each delayed until it is due (grouped by delay).
    async fn send_delayed(&self, runs: &[Run], now: i64) -> Result<usize, EngineError> {
        let mut by_delay: std::collections::BTreeMap<u32, Vec<RunRef>> = Default::default();
        for run in runs {
            let delay = run.due_at().map_or(0, |at| delay_until(at, now));
            by_delay.entry(delay).or_default().push(RunRef::of(run));
        }
        for (delay, refs) in &by_delay {
            self.app.queue.send(refs, *delay).await?;
        }
        Ok(runs.len())
    }

    /// Queues the run again for `at`, when that is within a queue's delay;
    /// later ones wait in the due index for the scheduler.
    async fn requeue_at(&self, run: &RunRef, at: i64) -> Result<(), EngineError> {
        let now = self.app.clock.now();
        if at - now <= i64::from(MAX_QUEUE_DELAY) {
            self.app
                .queue
                .send(std::slice::from_ref(run), delay_until(at, now))
                .await?;
        }
        Ok(())
    }

    /// One queue message: marks the run stuck when the message came back
    /// more than [`STUCK_AFTER_RECEIVES`] times (every earlier try crashed
    /// or timed out), else executes it. An error leaves the message for
    /// another try.
    pub async fn handle_message(
        &self,
        run: &RunRef,
        receives: u32,
    ) -> Result<Outcome, EngineError> {
        // Every line logged while carrying the run names it.
        let span = tracing::info_span!(
            "run",
            connection = %run.connection_id,
            event_id = %run.event_id,
            run = %run.run_key
        );
        let outcome = async {
            if receives > STUCK_AFTER_RECEIVES {
                return self.mark_stuck(run, receives).await;
            }
            self.execute(run).await
        }
        .instrument(span)
        .await;
        if let Ok(outcome) = &outcome
            && let Some(name) = outcome_name(outcome)
        {
            self.app.metrics.record(Measure::Run { outcome: name });
        }
        if let Ok(Outcome::Finished(status @ (RunStatus::Dead | RunStatus::Stuck))) = &outcome {
            self.alert_lost_run(run, *status).await;
        }
        outcome
    }

    /// `run.dead` / `run.stuck` to the connection's alert target. Sent by
    /// the worker whose versioned save ended the run, so once.
    async fn alert_lost_run(&self, r: &RunRef, status: RunStatus) {
        let (Ok(Some(connection)), Ok(Some(run))) = tokio::join!(
            self.app.connections.get_connection(&r.connection_id),
            self.run_of(r)
        ) else {
            return;
        };
        if connection.alerts.is_none() {
            return;
        }
        let kind = if status == RunStatus::Dead {
            alerts::RUN_DEAD
        } else {
            alerts::RUN_STUCK
        };
        let data = serde_json::json!({
            "event_id": run.event_id,
            "workflow_id": run.workflow_id,
            "run": r.run_key,
            "status": run.status,
            "attempts": run.attempts,
            "last_error": run.last_error,
        });
        let key = format!("{}/{}", r.event_id, r.run_key);
        alerts::notify(self.app, &connection, kind, &key, data).await;
    }

    /// Carries out every message of an in-process queue visible now, in
    /// order (tests and one-shot tools; the dev server's workers wait on
    /// the queue instead).
    pub async fn work_ready(&self, queue: &LocalQueue) -> Vec<(RunRef, Outcome)> {
        let mut out = Vec::new();
        // Bounded: a run put back at once forever must not spin here.
        for _ in 0..10_000 {
            let Some(message) = queue.try_recv() else {
                break;
            };
            let run = message.run.clone();
            if let Some(outcome) = self.handle_local(queue, message, LOCAL_VISIBILITY).await {
                out.push((run, outcome));
            }
        }
        out
    }

    /// One message of an in-process queue. A message whose run could not be
    /// carried on goes back, visible again after `visibility` seconds, as
    /// SQS would return it; `None` then.
    pub async fn handle_local(
        &self,
        queue: &LocalQueue,
        message: crate::adapters::local_queue::Message,
        visibility: u32,
    ) -> Option<Outcome> {
        match self.handle_message(&message.run, message.receives).await {
            Ok(outcome) => Some(outcome),
            Err(e) => {
                tracing::warn!(error = %e, event_id = %message.run.event_id, "run not carried on; its message comes back");
                if let Err(e) = queue.put(message, visibility) {
                    tracing::error!(error = %e, "message not put back; the scheduler's overdue sweep finds the run");
                }
                None
            }
        }
    }

    /// The run a message names, as stored.
    async fn run_of(&self, r: &RunRef) -> Result<Option<Run>, StoreError> {
        self.app
            .runs
            .get_run(&r.connection_id, &r.event_id, &r.run_key)
            .await
    }

    async fn mark_stuck(&self, r: &RunRef, receives: u32) -> Result<Outcome, EngineError> {
        let Some(mut run) = self.run_of(r).await? else {
            return Ok(Outcome::Skipped);
        };
        let before = run.version;
        let reason = format!(
            "its queue message was received {receives} times without the run finishing (the executor crashed or timed out each time); replay the event to run it again"
        );
        if run.mark_stuck(reason, self.app.clock.now()).is_err() {
            return Ok(Outcome::Skipped);
        }
        match self.app.runs.save_run(&run, before).await {
            Ok(()) => {
                tracing::error!(connection = %r.connection_id, event_id = %r.event_id, workflow = %run.workflow_id, receives, "run stuck");
                Ok(Outcome::Finished(RunStatus::Stuck))
            }
            Err(StoreError::Conflict) => Ok(Outcome::Skipped),
            Err(e) => Err(e.into()),
        }
    }

    /// Claims one run and carries it as far as it goes now. A run not due
    /// yet (or leased to a live worker) is queued again for when it is; a
    /// target whose breaker is open or whose slots are all taken puts the
    /// run back without spending an attempt.
    pub async fn execute(&self, r: &RunRef) -> Result<Outcome, EngineError> {
        let Some(mut run) = self.run_of(r).await? else {
            return Ok(Outcome::Skipped);
        };
        let now = self.app.clock.now();
        let max = self.policy.max_attempts();
        match run.clone().claim(&self.worker, now, LEASE_SECS, max) {
            Err(TransitionError::NotDue(at) | TransitionError::Leased(at)) => {
                self.requeue_at(r, at).await?;
                return Ok(Outcome::Skipped);
            }
            Err(TransitionError::NotClaimable(_) | TransitionError::NotLeaseHolder) => {
                return Ok(Outcome::Skipped);
            }
            Err(TransitionError::Exhausted(_)) | Ok(()) => {}
        }
        let workflow = self.workflow_of(&run).await;
        // The target's breaker, before an attempt is spent on it (and
        // before the event and the connection are read for it).
        let mut breaker_clean = false;
        if let (Ok(w), false) = (&workflow, run.delivered)
            && let Some(target) = &w.target
        {
            match self.admit_target(&run, &target.url).await? {
                Gate::Go { clean } => breaker_clean = clean,
                Gate::Wait { until, reason } => {
                    return self.postpone(r, run, until, reason).await;
                }
            }
        }
        let loaded = match workflow {
            Ok(w) => self.load(&run, w).await,
            Err(f) => Err(f),
        };
        // The connection's Stripe budget, for the attempt's Stripe calls.
        // When the attempt starts with one (nothing to deliver first), its
        // place is taken now: a full second puts the run back unclaimed.
        let budget = loaded.as_ref().ok().map(|l| self.budget_for(&l.connection));
        if let (Ok(l), Some(budget)) = (&loaded, &budget)
            && let Some(search) = first_stripe_call(&l.workflow, &run)
            && let Err(wait) = budget.reserve(search).await
        {
            let until = now + i64::try_from(wait.as_secs()).unwrap_or(1).max(1);
            return self
                .postpone(
                    r,
                    run,
                    until,
                    "the connection's Stripe request budget is used up for now".into(),
                )
                .await;
        }
        let read = run.version;
        let due = run.due_at();
        match run.claim(&self.worker, now, LEASE_SECS, max) {
            Ok(()) => {
                // How late the attempt starts: the scheduling's health.
                tracing::info!(
                    connection = %run.connection_id, event_id = %run.event_id, workflow = %run.workflow_id,
                    attempts = run.attempts, late_secs = due.map_or(0, |d| (now - d).max(0)),
                    "run attempt started"
                );
            }
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
        let result = match (loaded, budget) {
            (Ok(loaded), Some(budget)) => {
                self.attempt(&mut run, loaded, budget, breaker_clean).await
            }
            (Err(failure), _) => Err(AttemptError::Fail(failure)),
            (Ok(_), None) => return Ok(Outcome::Skipped),
        };
        let now = self.app.clock.now();
        let before = run.version;
        let deferred = matches!(result, Err(AttemptError::Defer { .. }));
        let transition = match result {
            Ok(()) => run.succeed(&self.worker, now),
            Err(AttemptError::Fail(failure)) => {
                let unit = rand::random::<f64>() * 2.0 - 1.0;
                run.fail(&self.worker, failure, now, &self.policy, unit)
            }
            Err(AttemptError::Defer { until, reason }) => {
                tracing::info!(connection = %run.connection_id, event_id = %run.event_id, workflow = %run.workflow_id, until, %reason, "run put back without spending an attempt");
                run.defer(&self.worker, until, reason, now)
            }
            // The lease was lost mid-run: the new holder finishes it.
            Err(AttemptError::LeaseLost) => return Ok(Outcome::Skipped),
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
            connection = %run.connection_id, event_id = %run.event_id, workflow = %run.workflow_id, status = ?run.status,
            attempts = run.attempts, error = run.last_error.as_deref(), "run attempt finished"
        );
        // Saved first, then queued: if queueing fails, this message is
        // tried again, finds the run not due and queues it then.
        if let Some(at) = run.due_at() {
            self.requeue_at(r, at).await?;
            if deferred {
                return Ok(Outcome::Deferred(at));
            }
        }
        Ok(Outcome::Finished(run.status))
    }

    /// Leaves a run that may not go now (its target's breaker is open or
    /// its slots are taken) for `until`: recorded on the run when the wait
    /// is long enough to show (the due index then says when), queued again.
    async fn postpone(
        &self,
        r: &RunRef,
        mut run: Run,
        until: i64,
        reason: String,
    ) -> Result<Outcome, EngineError> {
        let now = self.app.clock.now();
        let before = run.version;
        if until - now >= POSTPONE_RECORDED_AFTER && run.postpone(until, reason, now).is_ok() {
            match self.app.runs.save_run(&run, before).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Ok(Outcome::Skipped),
                Err(e) => return Err(e.into()),
            }
        }
        self.requeue_at(r, until).await?;
        Ok(Outcome::Deferred(until))
    }

    /// Whether a delivery to `url` may go now: its breaker, then a slot of
    /// its concurrency cap.
    async fn admit_target(&self, run: &Run, url: &str) -> Result<Gate, EngineError> {
        let key = limits::target_key(&run.connection_id, url);
        let now = self.app.clock.now();
        let mut breaker = self.app.gates.get_breaker(&key).await?.unwrap_or_default();
        let clean = breaker.failures == 0;
        match breaker.admit(&self.worker, now, &self.breaker_policy) {
            Admission::Go => {}
            Admission::Wait(until) => {
                return Ok(Gate::Wait {
                    until,
                    reason: format!(
                        "the target failed repeatedly; its circuit is open until {until}"
                    ),
                });
            }
            Admission::Probe => match self.app.gates.save_breaker(&key, &breaker).await {
                Ok(()) => {
                    tracing::info!(connection = %run.connection_id, workflow = %run.workflow_id, "target circuit half-open: probing");
                }
                // Another worker took the probe.
                Err(StoreError::Conflict) => {
                    return Ok(Gate::Wait {
                        until: now + 1,
                        reason: "the target's circuit is being probed".into(),
                    });
                }
                Err(e) => return Err(e.into()),
            },
        }
        Ok(Gate::Go {
            clean: clean && breaker.state == crate::workflow::breaker::BreakerState::Closed,
        })
    }

    /// One of the target's delivery slots (its concurrency cap, shared by
    /// every executor), held for the HTTP call only. A healthy target frees
    /// one within milliseconds, so this waits up to [`SLOT_WAIT`]; a target
    /// whose slots stay taken (slow deliveries) puts the run back without
    /// spending its attempt, for a second, or up to its delivery timeout
    /// when it has been failing, so waiting runs do not poll it.
    async fn target_slot(&self, run: &Run, url: &str) -> Result<Slot, AttemptError> {
        let key = limits::target_key(&run.connection_id, url);
        let owner = format!("{}/{}", self.worker, uuid::Uuid::new_v4());
        let started = std::time::Instant::now();
        let mut failing = None;
        loop {
            let now = self.app.clock.now();
            let until = now + i64::try_from(DELIVERY_TIMEOUT.as_secs()).unwrap_or(15) + 15;
            let taken = self
                .app
                .gates
                .take_slot(&key, self.app.config.target_concurrency, &owner, now, until)
                .await
                .map_err(|e| AttemptError::Fail(Failure::Transient(e.to_string())))?;
            if let Some(slot) = taken {
                return Ok(Slot { key, slot, owner });
            }
            // A target that has been failing is not waited for: its slots
            // are held by deliveries running into their timeout.
            let failing = match failing {
                Some(f) => f,
                None => {
                    let f = matches!(self.app.gates.get_breaker(&key).await, Ok(Some(b)) if b.failures > 0);
                    failing = Some(f);
                    f
                }
            };
            if failing || started.elapsed() >= SLOT_WAIT {
                let wait = if failing {
                    1 + rand::random::<i64>().rem_euclid(15)
                } else {
                    1
                };
                return Err(AttemptError::Defer {
                    until: now + wait,
                    reason: "the target has as many deliveries in flight as it may".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20 + rand::random::<u64>() % 30)).await;
        }
    }

    async fn release(&self, Slot { key, slot, owner }: Slot) {
        if let Err(e) = self.app.gates.release_slot(&key, slot, &owner).await {
            // Its lease ends by itself.
            tracing::warn!(error = %e, "could not give a target slot back");
        }
    }

    /// Records a delivery's outcome in the target's breaker (read fresh,
    /// written on its version; one more try on a conflict).
    async fn record_delivery_outcome(&self, run: &Run, url: &str, failed: bool) {
        let key = limits::target_key(&run.connection_id, url);
        for _ in 0..3 {
            let now = self.app.clock.now();
            let stored = match self.app.gates.get_breaker(&key).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "target breaker unreadable");
                    return;
                }
            };
            let mut breaker = stored.unwrap_or_default();
            let transition = if failed {
                breaker.on_failure(now, &self.breaker_policy)
            } else {
                breaker.on_success()
            };
            if !failed && transition.is_none() && breaker.failures == 0 {
                // Closed and clean already: nothing to write.
                return;
            }
            match self.app.gates.save_breaker(&key, &breaker).await {
                Ok(()) => {
                    match transition {
                        Some(Transition::Opened { failures, until }) => {
                            tracing::warn!(connection = %run.connection_id, workflow = %run.workflow_id, failures, until, "target circuit opened");
                            self.alert_circuit_opened(run, url, failures, until).await;
                        }
                        Some(Transition::Reopened { until }) => {
                            tracing::warn!(connection = %run.connection_id, workflow = %run.workflow_id, until, "target circuit probe failed; open again");
                        }
                        Some(Transition::Closed) => {
                            tracing::info!(connection = %run.connection_id, workflow = %run.workflow_id, "target circuit closed");
                        }
                        None => {}
                    }
                    return;
                }
                Err(StoreError::Conflict) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "target breaker not saved");
                    return;
                }
            }
        }
    }

    /// `circuit.opened`: sent by the worker whose versioned breaker write
    /// opened it, so once per opening.
    async fn alert_circuit_opened(&self, run: &Run, url: &str, failures: u32, until: i64) {
        let Ok(Some(connection)) = self
            .app
            .connections
            .get_connection(&run.connection_id)
            .await
        else {
            return;
        };
        if connection.alerts.is_none() {
            return;
        }
        // The target's host only: its path may carry a token.
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let data = serde_json::json!({
            "workflow_id": run.workflow_id,
            "target_host": host,
            "failures": failures,
            "open_until": until,
        });
        let key = format!("{}/{until}", limits::target_key(&run.connection_id, url));
        alerts::notify(self.app, &connection, alerts::CIRCUIT_OPENED, &key, data).await;
    }

    /// One attempt: deliver to the target (once), then the steps not yet
    /// done.
    async fn attempt(
        &self,
        run: &mut Run,
        loaded: Loaded,
        budget: Arc<limits::StripeBudget>,
        breaker_clean: bool,
    ) -> Result<(), AttemptError> {
        let perm = |m: String| AttemptError::Fail(Failure::Permanent(m));
        let Loaded {
            workflow,
            event,
            body,
            connection,
            secrets,
        } = loaded;
        // Fan-out does not read events too large to store: their filter
        // is applied here.
        if event.body.is_none() && !wants(&workflow, &body) {
            run.skipped = Some("the workflow's filter does not match this event".into());
            return Ok(());
        }

        let transient = |m: String| AttemptError::Fail(Failure::Transient(m));
        // Stripe does not order events: one older than an event this
        // workflow already acted on for the same object is skipped.
        if workflow.skip_stale
            && let Some(object_id) = body["data"]["object"]["id"].as_str()
        {
            let current = self
                .app
                .runs
                .advance_object(&run.connection_id, &workflow.id, object_id, event.created)
                .await;
            let current = match current {
                Ok(c) => c,
                Err(e) => {
                    return Err(transient(format!("could not check the event's order: {e}")));
                }
            };
            if !current {
                run.skipped = Some(format!(
                    "stale: a newer event for {object_id} was already handled by this workflow"
                ));
                return Ok(());
            }
        }
        let stripe = self
            .app
            .stripe_for(&connection, &secrets.api_key)
            .with_pacer(budget);
        // The object as it is now, when the workflow asks for it.
        let current = if workflow.fetch_latest {
            Some(self.current_object(&stripe, &body).await?)
        } else {
            None
        };

        if let (Some(target), false) = (&workflow.target, run.delivered) {
            let slot = self.target_slot(run, &target.url).await?;
            let delivered = self
                .deliver_step(
                    run,
                    target,
                    &workflow.id,
                    &secrets,
                    current.as_ref(),
                    &event,
                    &body,
                )
                .await;
            self.release(slot).await;
            let status = delivered?;
            let failed = breaker_failure(status);
            // A success at a target whose breaker was clean changes nothing.
            if failed || !breaker_clean {
                self.record_delivery_outcome(run, &target.url, failed).await;
            }
            if let Some(failure) = classify_delivery(status) {
                return Err(AttemptError::Fail(failure));
            }
            if workflow.steps.len() > run.steps.len() {
                // Saved at once when steps follow: a failing step must not
                // deliver again.
                let before = run.version;
                run.record_delivery(&self.worker, self.app.clock.now())
                    .map_err(|_| AttemptError::LeaseLost)?;
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
                Err(actions::ActionError::Stripe(e)) if e.rate_limited().is_some() => {
                    let wait = e
                        .rate_limited()
                        .flatten()
                        .map_or(RATE_LIMIT_BACKOFF, |d| {
                            i64::try_from(d.as_secs()).unwrap_or(RATE_LIMIT_BACKOFF)
                        })
                        .clamp(1, i64::from(MAX_QUEUE_DELAY));
                    return Err(AttemptError::Defer {
                        until: self.app.clock.now() + wait,
                        reason: format!("step {index} ({}): {e}", step.action),
                    });
                }
                other => other.map_err(|e| {
                    AttemptError::Fail(match classify_action_error(&e) {
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
                .map_err(|_| AttemptError::LeaseLost)?;
            self.save(run, before).await?;
        }
        Ok(())
    }

    /// The delivery of an attempt: the target's answer (`None`: none came).
    #[allow(clippy::too_many_arguments)]
    async fn deliver_step(
        &self,
        run: &Run,
        target: &crate::model::Target,
        workflow_id: &str,
        secrets: &ConnectionSecrets,
        current: Option<&Value>,
        event: &StoredEvent,
        body: &Value,
    ) -> Result<Option<u16>, AttemptError> {
        let perm = |m: String| AttemptError::Fail(Failure::Permanent(m));
        let secret = target_secret(target, workflow_id, secrets)
            .ok_or_else(|| perm("the target has no signing secret".into()))?;
        // The event as Stripe sent it: fetched back from Stripe when it
        // was too large to store, never a stub.
        let payload = match (current, &event.body) {
            (Some(current), _) => json!({"event": body, "current": current}).to_string(),
            (None, Some(stored)) => stored.clone(),
            (None, None) => body.to_string(),
        };
        self.deliver(&target.url, secret, run, payload)
            .await
            .map_err(perm)
    }

    /// The connection's Stripe budget (shared by every executor).
    fn budget_for(&self, connection: &Connection) -> Arc<limits::StripeBudget> {
        limits::StripeBudget::for_connection(self.app, connection)
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
    async fn workflow_of(&self, run: &Run) -> Result<Workflow, Failure> {
        self.app
            .workflows
            .get_workflow(&run.connection_id, &run.workflow_id)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?
            .ok_or_else(|| Failure::Permanent("the workflow was deleted".into()))
    }

    /// The rest of what an attempt needs: the event and the connection.
    async fn load(&self, run: &Run, workflow: Workflow) -> Result<Loaded, Failure> {
        let transient = |e: StoreError| Failure::Transient(e.to_string());
        let event = self
            .app
            .events
            .get_event(&run.connection_id, &run.event_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| Failure::Permanent("the event is no longer stored".into()))?;
        let body = self.event_body(&event).await.map_err(Failure::Transient)?;
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
    async fn connection_of(&self, id: &str) -> Result<(Connection, ConnectionSecrets), Failure> {
        // Both at once: one round trip instead of two.
        match tokio::join!(
            self.app.connections.get_connection(id),
            self.app.secrets.get_secrets(id),
        ) {
            (Ok(Some(c)), Ok(Some(s))) => Ok((c, s)),
            (Ok(None), _) | (_, Ok(None)) => {
                Err(Failure::Permanent("the connection was deleted".into()))
            }
            (Err(e), _) => Err(Failure::Transient(e.to_string())),
            (_, Err(e)) => Err(Failure::Transient(e.to_string())),
        }
    }

    async fn save(&self, run: &Run, before: u64) -> Result<(), AttemptError> {
        match self.app.runs.save_run(run, before).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(AttemptError::LeaseLost),
            Err(e) => Err(AttemptError::Fail(Failure::Transient(e.to_string()))),
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
        let started = std::time::Instant::now();
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
        let status = response.as_ref().ok().map(|r| r.status().as_u16());
        if !matches!(&response, Err(e) if crate::target::is_forbidden(e)) {
            self.app.metrics.record(Measure::Delivery {
                class: crate::metrics::status_class(status),
                millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
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
    ) -> Result<Value, AttemptError> {
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
            Err(e) if e.rate_limited().is_some() => Err(AttemptError::Defer {
                until: self.app.clock.now() + RATE_LIMIT_BACKOFF,
                reason: format!("fetch_latest: {e}"),
            }),
            Err(e) if e.is_transient() => {
                Err(Failure::Transient(format!("fetch_latest: {e}")).into())
            }
            Err(e) => Err(Failure::Permanent(format!("fetch_latest: {e}")).into()),
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
        let mut stripe = self
            .app
            .stripe(&secrets.api_key, &version)
            .with_meter(self.app.metrics.clone(), &event.connection_id);
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

/// A carried-on run's outcome as counted (`None`: nothing happened to it).
fn outcome_name(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Finished(RunStatus::Succeeded) => Some("succeeded"),
        Outcome::Finished(RunStatus::Dead) => Some("dead"),
        Outcome::Finished(RunStatus::Stuck) => Some("stuck"),
        Outcome::Finished(_) => Some("retrying"),
        Outcome::Deferred(_) => Some("deferred"),
        Outcome::Skipped => None,
    }
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
