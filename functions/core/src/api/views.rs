//! What the API answers, as types: handlers serialize these, and the OpenAPI
//! document is generated from the same types, so the two cannot drift.
//! None of them holds a secret but `WorkflowOut::target_secret`, shown once.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{Connection, StoredEvent, WebhookMode, Workflow};
use crate::workflow::run::{Run, RunStatus, StepRecord};

/// `{"status": "ok"}`
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Every error: `{"error": {"type", "message", "param"?, "stripe"?}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `invalid_request`, `not_found`, `method_not_allowed`,
    /// `payload_too_large`, `invalid_signature`, `stripe_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// For a person; never holds a secret.
    pub message: String,
    /// The field at fault, as a path (`steps[0].input.id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Stripe's own error object and request id, when Stripe refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub stripe: Option<Value>,
}

/// A page of results.
#[derive(Serialize, ToSchema)]
pub struct ListOf<T: ToSchema> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    /// Whether more follow (lists that page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
    /// Where the next page starts: pass it as `starting_after` (runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> ListOf<T> {
    pub fn new(data: Vec<T>) -> Self {
        Self {
            object: "list",
            data,
            has_more: None,
            next_cursor: None,
        }
    }

    pub fn paged(data: Vec<T>, has_more: bool) -> Self {
        Self {
            object: "list",
            data,
            has_more: Some(has_more),
            next_cursor: None,
        }
    }
}

/// A connected Stripe account. Never holds its key or secrets.
#[derive(Serialize, ToSchema)]
pub struct ConnectionOut {
    /// `conn_…`
    pub id: String,
    /// Always `connection`.
    pub object: &'static str,
    pub name: String,
    pub account_id: String,
    pub livemode: bool,
    pub api_version: String,
    /// Where Stripe posts this account's events.
    pub webhook_url: String,
    pub webhook: WebhookOut,
    /// Events stored even without a workflow.
    pub triggers: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookOut {
    pub mode: WebhookMode,
    /// The managed endpoint (`we_…`), once there is one.
    pub endpoint_id: Option<String>,
    /// How many webhook secrets verify now (`null` in lists, which do not
    /// read each connection's secrets).
    pub secrets: Option<usize>,
}

impl ConnectionOut {
    pub fn new(c: &Connection, secrets: Option<usize>, base_url: &str) -> Self {
        Self {
            id: c.id.clone(),
            object: "connection",
            name: c.name.clone(),
            account_id: c.account_id.clone(),
            livemode: c.livemode,
            api_version: c.api_version.clone(),
            webhook_url: format!("{base_url}/webhooks/{}", c.id),
            webhook: WebhookOut {
                mode: c.webhook_mode,
                endpoint_id: c.webhook_endpoint_id.clone(),
                secrets,
            },
            triggers: c.triggers.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The answer to a delete.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    /// `connection` or `workflow`.
    pub object: &'static str,
    pub deleted: bool,
    /// For a connection: whether its managed endpoint was removed in Stripe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_endpoint_deleted: Option<bool>,
}

/// A workflow: a trigger, a filter, a target and/or steps.
#[derive(Serialize, ToSchema)]
pub struct WorkflowOut {
    /// `wf_…`
    pub id: String,
    /// Always `workflow`.
    pub object: &'static str,
    pub connection_id: String,
    pub trigger: String,
    #[schema(value_type = Object)]
    pub filter: serde_json::Map<String, Value>,
    pub target: Option<TargetOut>,
    pub steps: Vec<StepOut>,
    pub enabled: bool,
    /// Whether events caused by its own Stripe writes are ignored.
    pub ignore_own_writes: bool,
    /// Whether the object is re-read from Stripe before each run.
    pub fetch_latest: bool,
    /// Whether events older than one already handled for the object are skipped.
    pub skip_stale: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The target's signing secret (`whsec_…`): in the create answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_secret: Option<String>,
    /// How its target is doing (its circuit breaker): when one workflow
    /// is read and it has a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_health: Option<TargetHealth>,
}

/// A target's circuit breaker, shared by every executor: `open` while the
/// target is left alone after failing repeatedly (its runs wait without
/// spending attempts), `half_open` while one probe delivery is out.
#[derive(Serialize, ToSchema)]
pub struct TargetHealth {
    pub state: crate::workflow::breaker::BreakerState,
    /// Failed deliveries in a row.
    pub consecutive_failures: u32,
    /// While open: no delivery before this time (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_until: Option<i64>,
}

impl From<crate::workflow::breaker::Breaker> for TargetHealth {
    fn from(b: crate::workflow::breaker::Breaker) -> Self {
        use crate::workflow::breaker::BreakerState;
        Self {
            state: b.state,
            consecutive_failures: b.failures,
            open_until: (b.state == BreakerState::Open).then_some(b.open_until),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TargetOut {
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct StepOut {
    pub action: String,
    #[schema(value_type = Object)]
    pub input: Value,
}

impl From<&Workflow> for WorkflowOut {
    fn from(w: &Workflow) -> Self {
        Self {
            id: w.id.clone(),
            object: "workflow",
            connection_id: w.connection_id.clone(),
            trigger: w.trigger.clone(),
            filter: w.filter.clone(),
            target: w.target.as_ref().map(|t| TargetOut { url: t.url.clone() }),
            steps: w
                .steps
                .iter()
                .map(|s| StepOut {
                    action: s.action.clone(),
                    input: s.input.clone(),
                })
                .collect(),
            enabled: w.enabled,
            ignore_own_writes: w.ignore_own_writes,
            fetch_latest: w.fetch_latest,
            skip_stale: w.skip_stale,
            created_at: w.created_at,
            updated_at: w.updated_at,
            target_secret: None,
            target_health: None,
        }
    }
}

/// A stored Stripe event.
#[derive(Serialize, ToSchema)]
pub struct EventOut {
    /// `evt_…`
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Stripe's `created`.
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The connected account (`acct_…`) for Connect events.
    pub account: Option<String>,
    pub received_at: i64,
    /// Too large to store: fetched from Stripe when a run needs it.
    pub body_omitted: bool,
    /// Never arrived by webhook: the reconciler read it from Stripe's event
    /// list (after an outage, or while the endpoint was disabled or gone).
    pub recovered: bool,
    /// The event as Stripe sent it (reading one event only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub event: Option<Value>,
}

impl From<&StoredEvent> for EventOut {
    fn from(e: &StoredEvent) -> Self {
        Self {
            id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            created: e.created,
            livemode: e.livemode,
            api_version: e.api_version.clone(),
            account: e.account.clone(),
            received_at: e.received_at,
            body_omitted: e.body_omitted,
            recovered: e.recovered,
            event: None,
        }
    }
}

/// One run of one workflow on one event.
#[derive(Serialize, ToSchema)]
pub struct RunOut {
    /// Always `run`.
    pub object: &'static str,
    pub event_id: String,
    pub workflow_id: String,
    /// `rpl_…` for a replay.
    pub replay: Option<String>,
    pub status: RunStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub delivered: bool,
    /// Why the run did nothing (a stale event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub steps: Vec<StepRecord>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&Run> for RunOut {
    fn from(r: &Run) -> Self {
        Self {
            object: "run",
            event_id: r.event_id.clone(),
            workflow_id: r.workflow_id.clone(),
            replay: r.replay.clone(),
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            next_attempt_at: r.next_attempt_at,
            delivered: r.delivered,
            skipped: r.skipped.clone(),
            steps: r.steps.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `POST /webhooks/{connection_id}`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Received {
    pub received: bool,
    /// Stored before: acknowledged, not processed again.
    pub duplicate: bool,
}
