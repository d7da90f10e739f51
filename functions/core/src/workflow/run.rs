//! A run: one workflow executed for one event. States
//! pending → running → succeeded | retrying | dead, a lease so that two
//! workers never run it at once (and a dead worker's run is taken over when
//! the lease expires), finished steps kept so a retry skips them, and the
//! retry schedule. Stores persist a run with a condition on `version`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stripe::StripeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Succeeded,
    Retrying,
    Dead,
    /// Its queue message kept failing (the executor crashed or timed out on
    /// it every time): set aside, listable, replayable, never run again.
    Stuck,
}

/// A finished step: its input after templates, and Stripe's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    pub action: String,
    pub input: Value,
    pub result: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub connection_id: String,
    pub event_id: String,
    pub workflow_id: String,
    /// Set on a replay (`rpl_…`): a new run of the same event and workflow.
    #[serde(default)]
    pub replay: Option<String>,
    pub status: RunStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    /// The target answered 2xx.
    pub delivered: bool,
    /// Why the run did nothing and succeeded (a stale event, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub steps: Vec<StepRecord>,
    /// Bumped by every transition; stores write on the version they read.
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What went wrong in an attempt, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Validation, a 4xx other than 409/429, a card error: retrying cannot help.
    Permanent(String),
    /// Network, timeout, 5xx, 409, 429, or Stripe saying to retry.
    Transient(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("run is {0:?}; it cannot be claimed")]
    NotClaimable(RunStatus),
    #[error("run is not due until {0}")]
    NotDue(i64),
    #[error("run is leased to another worker until {0}")]
    Leased(i64),
    #[error("this worker does not hold the run's lease")]
    NotLeaseHolder,
    /// Every attempt the policy allows was made (the last never finished:
    /// its worker stopped); the run is now dead and must be saved so.
    #[error("run has used its {0} attempts; it is dead")]
    Exhausted(u32),
}

/// Delays between attempts: 30 s, 2 min, 10 min, 1 h, 6 h, 24 h, then dead.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub delays: Vec<i64>,
    /// ± this fraction of each delay, at random.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delays: vec![30, 120, 600, 3600, 6 * 3600, 24 * 3600],
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// How many attempts a run gets: the first, then one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait after failed attempt number `attempts` (1-based), or `None`
    /// when retries are used up. `unit` in [-1, 1] picks the jitter.
    pub fn delay(&self, attempts: u32, unit: f64) -> Option<i64> {
        let base = *self.delays.get(attempts.checked_sub(1)? as usize)?;
        // |jitter| ≤ base × jitter share: far inside i64.
        #[allow(clippy::cast_possible_truncation)]
        let jitter = (base as f64 * self.jitter * unit.clamp(-1.0, 1.0)).round() as i64;
        Some((base + jitter).max(1))
    }
}

impl Run {
    pub fn new(connection_id: &str, event_id: &str, workflow_id: &str, now: i64) -> Self {
        Self {
            connection_id: connection_id.to_string(),
            event_id: event_id.to_string(),
            workflow_id: workflow_id.to_string(),
            replay: None,
            status: RunStatus::Pending,
            attempts: 0,
            last_error: None,
            next_attempt_at: Some(now),
            lease_owner: None,
            lease_until: None,
            delivered: false,
            skipped: None,
            steps: Vec::new(),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// What tells this run apart from others of the same event: the workflow
    /// id, and for a replay the replay id too. Stores key runs by it; step
    /// idempotency keys and target message ids derive from it.
    pub fn run_key(&self) -> String {
        match &self.replay {
            Some(replay) => format!("{}#{replay}", self.workflow_id),
            None => self.workflow_id.clone(),
        }
    }

    /// When a worker should look at this run next: the next attempt of a
    /// pending or retrying run, the lease end of a running one; never for a
    /// finished run. Stores index runs by it.
    pub fn due_at(&self) -> Option<i64> {
        match self.status {
            RunStatus::Pending | RunStatus::Retrying => self.next_attempt_at,
            RunStatus::Running => self.lease_until,
            RunStatus::Succeeded | RunStatus::Dead | RunStatus::Stuck => None,
        }
    }

    fn touch(&mut self, now: i64) {
        self.version += 1;
        self.updated_at = now;
    }

    /// Takes the run for `worker` for `lease_secs`: a pending or retrying run
    /// that is due, or a running one whose worker's lease has expired.
    ///
    /// A run that has had `max_attempts` already (its last attempt's worker
    /// stopped, so it never recorded a failure) is not run again: it becomes
    /// dead here, and [`TransitionError::Exhausted`] tells the caller to save it.
    pub fn claim(
        &mut self,
        worker: &str,
        now: i64,
        lease_secs: i64,
        max_attempts: u32,
    ) -> Result<(), TransitionError> {
        match self.status {
            RunStatus::Pending | RunStatus::Retrying => {
                if let Some(at) = self.next_attempt_at.filter(|at| *at > now) {
                    return Err(TransitionError::NotDue(at));
                }
            }
            RunStatus::Running => {
                if let Some(until) = self.lease_until.filter(|until| *until > now) {
                    return Err(TransitionError::Leased(until));
                }
            }
            s => return Err(TransitionError::NotClaimable(s)),
        }
        if self.attempts >= max_attempts {
            self.status = RunStatus::Dead;
            self.last_error = Some(format!(
                "gave up after {} attempts: the last one never finished (its worker stopped before saving)",
                self.attempts
            ));
            self.lease_owner = None;
            self.lease_until = None;
            self.next_attempt_at = None;
            self.touch(now);
            return Err(TransitionError::Exhausted(self.attempts));
        }
        self.status = RunStatus::Running;
        self.attempts += 1;
        self.lease_owner = Some(worker.to_string());
        self.lease_until = Some(now + lease_secs);
        self.next_attempt_at = None;
        self.touch(now);
        Ok(())
    }

    fn holds(&self, worker: &str) -> Result<(), TransitionError> {
        if self.status == RunStatus::Running && self.lease_owner.as_deref() == Some(worker) {
            Ok(())
        } else {
            Err(TransitionError::NotLeaseHolder)
        }
    }

    /// Records a finished step (kept across retries).
    pub fn record_step(
        &mut self,
        worker: &str,
        step: StepRecord,
        now: i64,
    ) -> Result<(), TransitionError> {
        self.holds(worker)?;
        self.steps.push(step);
        self.touch(now);
        Ok(())
    }

    pub fn record_delivery(&mut self, worker: &str, now: i64) -> Result<(), TransitionError> {
        self.holds(worker)?;
        self.delivered = true;
        self.touch(now);
        Ok(())
    }

    pub fn succeed(&mut self, worker: &str, now: i64) -> Result<(), TransitionError> {
        self.holds(worker)?;
        self.status = RunStatus::Succeeded;
        self.last_error = None;
        self.release(now);
        Ok(())
    }

    /// A permanent failure ends the run as dead; a transient one schedules
    /// the next attempt, until the policy's retries are used up.
    pub fn fail(
        &mut self,
        worker: &str,
        failure: Failure,
        now: i64,
        policy: &RetryPolicy,
        unit: f64,
    ) -> Result<(), TransitionError> {
        self.holds(worker)?;
        let (message, next) = match failure {
            Failure::Permanent(m) => (m, None),
            Failure::Transient(m) => {
                let next = policy.delay(self.attempts, unit).map(|d| now + d);
                (m, next)
            }
        };
        self.status = if next.is_some() {
            RunStatus::Retrying
        } else {
            RunStatus::Dead
        };
        self.next_attempt_at = next;
        self.last_error = Some(message);
        self.release(now);
        Ok(())
    }

    /// Puts the run back without counting the attempt: the limits said not
    /// now (Stripe's rate budget or a 429, the target's breaker or
    /// concurrency cap). It is due again at `until`; steps done stay done.
    pub fn defer(
        &mut self,
        worker: &str,
        until: i64,
        reason: String,
        now: i64,
    ) -> Result<(), TransitionError> {
        self.holds(worker)?;
        self.attempts = self.attempts.saturating_sub(1);
        self.status = if self.attempts == 0 {
            RunStatus::Pending
        } else {
            RunStatus::Retrying
        };
        self.next_attempt_at = Some(until);
        self.last_error = Some(reason);
        self.release(now);
        Ok(())
    }

    /// Moves a waiting (pending or retrying) run's next attempt to `until`
    /// without claiming it, saying why: its target or budget said not now.
    pub fn postpone(
        &mut self,
        until: i64,
        reason: String,
        now: i64,
    ) -> Result<(), TransitionError> {
        if !matches!(self.status, RunStatus::Pending | RunStatus::Retrying) {
            return Err(TransitionError::NotClaimable(self.status));
        }
        self.next_attempt_at = Some(until);
        self.last_error = Some(reason);
        self.touch(now);
        Ok(())
    }

    /// Sets a run that is not finished aside as stuck.
    pub fn mark_stuck(&mut self, reason: String, now: i64) -> Result<(), TransitionError> {
        if matches!(
            self.status,
            RunStatus::Succeeded | RunStatus::Dead | RunStatus::Stuck
        ) {
            return Err(TransitionError::NotClaimable(self.status));
        }
        self.status = RunStatus::Stuck;
        self.last_error = Some(reason);
        self.next_attempt_at = None;
        self.release(now);
        Ok(())
    }

    fn release(&mut self, now: i64) {
        self.lease_owner = None;
        self.lease_until = None;
        self.touch(now);
    }
}

/// How a refused or failed action step is retried, by the error's type:
/// bad input and the object's state never heal (permanent); Stripe's own
/// verdict (`Stripe-Should-Retry`) decides when it gives one, else 409
/// (idempotency or lock conflicts), 429, 5xx, timeouts and unreachability
/// are transient. The message keeps Stripe's request id for support.
pub fn classify_action_error(e: &crate::actions::ActionError) -> Failure {
    use crate::actions::ActionError;
    let with_request = |message: String, stripe: Option<&StripeError>| match stripe
        .and_then(StripeError::request_id)
    {
        Some(id) => format!("{message} (Stripe request {id})"),
        None => message,
    };
    match e {
        ActionError::Invalid(e) => Failure::Permanent(e.message.clone()),
        ActionError::State {
            message, stripe, ..
        } => Failure::Permanent(with_request(message.clone(), stripe.as_ref())),
        ActionError::Stripe(stripe) => {
            let message = stripe
                .api_error()
                .and_then(|a| a.message.clone())
                .unwrap_or_else(|| stripe.to_string());
            let message = with_request(message, Some(stripe));
            if stripe.is_transient() {
                Failure::Transient(message)
            } else {
                Failure::Permanent(message)
            }
        }
    }
}

/// How a target delivery is judged: `None` is no answer (network, timeout).
pub fn classify_delivery(status: Option<u16>) -> Option<Failure> {
    match status {
        Some(s) if (200..300).contains(&s) => None,
        None => Some(Failure::Transient(
            "the target did not answer within 15 s".into(),
        )),
        Some(s @ (408 | 409 | 425 | 429 | 500..=599)) => {
            Some(Failure::Transient(format!("the target answered {s}")))
        }
        Some(s) => Some(Failure::Permanent(format!("the target answered {s}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::ActionError;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn run() -> Run {
        Run::new("conn_1", "evt_1", "wf_1", NOW)
    }

    #[test]
    fn a_deferred_attempt_is_not_counted_and_keeps_its_steps() {
        let mut r = run();
        r.claim("w", NOW, 300, 7).unwrap();
        r.record_step(
            "w",
            StepRecord {
                action: "a".into(),
                input: json!({}),
                result: json!({}),
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            r.defer("other", NOW + 5, "x".into(), NOW),
            Err(TransitionError::NotLeaseHolder)
        );
        r.defer("w", NOW + 5, "Stripe answered 429".into(), NOW)
            .unwrap();
        assert_eq!((r.status, r.attempts), (RunStatus::Pending, 0));
        assert_eq!((r.due_at(), r.steps.len()), (Some(NOW + 5), 1));
        assert_eq!(
            r.claim("w", NOW + 4, 300, 7),
            Err(TransitionError::NotDue(NOW + 5))
        );
        r.claim("w", NOW + 5, 300, 7).unwrap();
        assert_eq!(r.attempts, 1);
    }

    #[test]
    fn a_waiting_run_is_postponed_but_a_running_one_is_not() {
        let mut r = run();
        r.postpone(NOW + 30, "circuit open".into(), NOW).unwrap();
        assert_eq!(
            (r.status, r.due_at(), r.version),
            (RunStatus::Pending, Some(NOW + 30), 1)
        );
        assert_eq!(
            r.claim("w", NOW + 29, 300, 7),
            Err(TransitionError::NotDue(NOW + 30))
        );
        r.claim("w", NOW + 30, 300, 7).unwrap();
        assert!(r.postpone(NOW + 60, "x".into(), NOW).is_err());
    }

    #[test]
    fn a_stuck_run_leaves_the_due_index_and_is_never_claimed() {
        let mut r = run();
        r.claim("w", NOW, 300, 7).unwrap();
        r.mark_stuck("received 5 times".into(), NOW).unwrap();
        assert_eq!((r.status, r.due_at()), (RunStatus::Stuck, None));
        assert!(r.claim("w", NOW + 1000, 300, 7).is_err());
        assert!(r.mark_stuck("again".into(), NOW).is_err());
    }

    #[test]
    fn happy_path_pending_running_succeeded() {
        let mut r = run();
        assert_eq!(r.status, RunStatus::Pending);
        r.claim("w1", NOW, 60, 7).unwrap();
        assert_eq!(
            (r.status, r.attempts, r.lease_until),
            (RunStatus::Running, 1, Some(NOW + 60))
        );
        r.record_step(
            "w1",
            StepRecord {
                action: "invoices.finalize".into(),
                input: json!({"id": "in_1"}),
                result: json!({"id": "in_1"}),
            },
            NOW + 1,
        )
        .unwrap();
        r.succeed("w1", NOW + 2).unwrap();
        assert_eq!(
            (r.status, r.lease_owner.as_deref(), r.steps.len()),
            (RunStatus::Succeeded, None, 1)
        );
        assert_eq!(
            r.claim("w2", NOW + 100, 60, 7),
            Err(TransitionError::NotClaimable(RunStatus::Succeeded))
        );
    }

    #[test]
    fn two_workers_never_hold_one_run_and_a_dead_workers_run_is_taken_over() {
        let mut r = run();
        r.claim("w1", NOW, 60, 7).unwrap();
        assert_eq!(
            r.clone().claim("w2", NOW + 59, 60, 7),
            Err(TransitionError::Leased(NOW + 60))
        );
        // w1 died; after the lease w2 takes over, finished steps stay.
        r.record_step(
            "w1",
            StepRecord {
                action: "a".into(),
                input: json!({}),
                result: json!({}),
            },
            NOW + 1,
        )
        .unwrap();
        r.claim("w2", NOW + 61, 60, 7).unwrap();
        assert_eq!(
            (r.lease_owner.as_deref(), r.attempts, r.steps.len()),
            (Some("w2"), 2, 1)
        );
        // The late first worker can no longer change the run.
        assert_eq!(
            r.succeed("w1", NOW + 62),
            Err(TransitionError::NotLeaseHolder)
        );
        assert_eq!(
            r.record_delivery("w1", NOW + 62),
            Err(TransitionError::NotLeaseHolder)
        );
    }

    #[test]
    fn transient_failures_follow_the_schedule_then_the_run_is_dead() {
        let policy = RetryPolicy::default();
        let mut r = run();
        let mut now = NOW;
        let mut waits = Vec::new();
        loop {
            r.claim("w", now, 60, 7).unwrap();
            r.fail(
                "w",
                Failure::Transient("Stripe answered 503".into()),
                now,
                &policy,
                0.0,
            )
            .unwrap();
            match r.next_attempt_at {
                Some(at) => {
                    assert_eq!(r.status, RunStatus::Retrying);
                    assert_eq!(
                        r.clone().claim("w", at - 1, 60, 7),
                        Err(TransitionError::NotDue(at))
                    );
                    waits.push(at - now);
                    now = at;
                }
                None => break,
            }
        }
        assert_eq!(waits, [30, 120, 600, 3600, 21600, 86400]);
        assert_eq!((r.status, r.attempts), (RunStatus::Dead, 7));
        assert_eq!(r.last_error.as_deref(), Some("Stripe answered 503"));
    }

    #[test]
    fn a_permanent_failure_is_dead_at_once_with_its_reason() {
        let mut r = run();
        r.claim("w", NOW, 60, 7).unwrap();
        r.fail(
            "w",
            Failure::Permanent("No such invoice: 'in_9'".into()),
            NOW,
            &RetryPolicy::default(),
            0.0,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.next_attempt_at, r.last_error.as_deref()),
            (RunStatus::Dead, None, Some("No such invoice: 'in_9'"))
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, -1.0), Some(27));
        assert_eq!(p.delay(1, 1.0), Some(33));
        assert_eq!(p.delay(6, 0.5), Some(86400 + 4320));
        assert_eq!(p.delay(7, 0.0), None);
        assert_eq!(p.delay(0, 0.0), None);
    }

    #[test]
    fn due_at_follows_the_state() {
        let mut r = run();
        assert_eq!(r.due_at(), Some(NOW));
        r.claim("w", NOW, 60, 7).unwrap();
        assert_eq!(r.due_at(), Some(NOW + 60));
        r.fail(
            "w",
            Failure::Transient("x".into()),
            NOW,
            &RetryPolicy::default(),
            0.0,
        )
        .unwrap();
        assert_eq!(r.due_at(), Some(NOW + 30));
        r.claim("w", NOW + 30, 60, 7).unwrap();
        r.succeed("w", NOW + 31).unwrap();
        assert_eq!(r.due_at(), None);
    }

    #[test]
    fn every_transition_bumps_the_version() {
        let mut r = run();
        let v0 = r.version;
        r.claim("w", NOW, 60, 7).unwrap();
        r.record_delivery("w", NOW).unwrap();
        r.succeed("w", NOW).unwrap();
        assert_eq!(r.version, v0 + 3);
    }

    fn stripe(status: u16, kind: &str, should_retry: Option<bool>) -> ActionError {
        ActionError::Stripe(StripeError::Api {
            status,
            error: crate::stripe::StripeApiError {
                kind: kind.into(),
                message: Some("m".into()),
                ..Default::default()
            },
            request_id: Some("req_7".into()),
            should_retry,
            retry_after: None,
        })
    }

    #[test]
    fn action_failures_are_classified() {
        use Failure::*;
        let t = |e: &ActionError| matches!(classify_action_error(e), Transient(_));
        assert!(
            !t(&ActionError::Invalid(crate::catalog::InvalidInput::at(
                "email", "bad"
            ))),
            "validation"
        );
        assert!(!t(&stripe(402, "card_error", None)), "card error");
        assert!(!t(&stripe(404, "invalid_request_error", None)));
        assert!(t(&stripe(409, "idempotency_error", None)));
        assert!(
            !t(&ActionError::State {
                kind: "invoice_not_draft",
                message: "m".into(),
                stripe: None
            }),
            "a state conflict will not heal"
        );
        assert!(t(&stripe(429, "rate_limit_error", None)));
        assert!(t(&stripe(502, "api_error", None)));
        assert!(t(&ActionError::Stripe(StripeError::Timeout(
            std::time::Duration::from_secs(20)
        ))));
        assert!(t(&stripe(400, "invalid_request_error", Some(true))));
        assert!(!t(&stripe(503, "api_error", Some(false))));
        assert_eq!(
            classify_action_error(&stripe(400, "invalid_request_error", None)),
            Permanent("m (Stripe request req_7)".into())
        );
    }

    #[test]
    fn deliveries_are_classified() {
        assert_eq!(classify_delivery(Some(204)), None);
        for s in [None, Some(500), Some(503), Some(429), Some(408)] {
            assert!(
                matches!(classify_delivery(s), Some(Failure::Transient(_))),
                "{s:?}"
            );
        }
        for s in [Some(400), Some(401), Some(404), Some(410)] {
            assert!(
                matches!(classify_delivery(s), Some(Failure::Permanent(_))),
                "{s:?}"
            );
        }
    }
}
