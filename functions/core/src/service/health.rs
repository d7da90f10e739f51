//! `GET /connections/{id}/health`: is the connection receiving what it
//! should — its endpoint as Stripe has it now, the last event stored, what
//! the reconciler last did and recovered, and the runs that need someone.

use serde::Serialize;

use super::{Result, endpoint, load};
use crate::app::App;
use crate::model::{Gap, Repair, Upgrade, WebhookMode};
use crate::ports::{EventQuery, MAX_RUNS_SCANNED, RunQuery};
use crate::workflow::run::RunStatus;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionHealth {
    pub connection_id: String,
    /// `ok` when nothing below needs attention, else `attention`.
    pub status: &'static str,
    /// What needs attention, in words (empty when `ok`).
    pub problems: Vec<String>,
    pub endpoint: EndpointHealth,
    /// The newest event stored (by Stripe's `created`).
    pub last_event: Option<LastEvent>,
    pub reconcile: ReconcileHealth,
    pub runs: RunCounts,
    /// An API-version upgrade under way (or left halfway).
    pub upgrade: Option<Upgrade>,
    /// Where notices go (`null`: nowhere).
    pub alerts_url: Option<String>,
    /// Notices the alert target has not taken yet, tried again each pass.
    pub alerts_waiting: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointHealth {
    pub mode: WebhookMode,
    pub id: Option<String>,
    /// `enabled`, `disabled`, `deleted` (Stripe has no such endpoint),
    /// `none` (no trigger needs one), `manual` (the user's own endpoint) or
    /// `unknown` (Stripe could not be asked: see `error`).
    pub status: &'static str,
    pub url: Option<String>,
    pub api_version: Option<String>,
    /// Whether the endpoint's events are the ones the connection needs.
    pub enabled_events_match: Option<bool>,
    /// Whether its API version is the connection's.
    pub api_version_match: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub received_at: i64,
    pub recovered: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReconcileHealth {
    /// Every event created before it has been read from Stripe.
    pub cursor: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_recovered: u32,
    pub recovered_total: u64,
    pub last_error: Option<String>,
    /// History Stripe no longer lists that was never read: lost events.
    pub gaps: Vec<Gap>,
    pub last_repair: Option<Repair>,
}

/// Runs that need someone, counted over the newest runs (at most 1,000).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunCounts {
    pub dead: u32,
    pub retrying: u32,
    pub stuck: u32,
    /// How many runs were looked at.
    pub counted: u32,
    /// False when the connection has more runs than were counted.
    pub complete: bool,
}

pub async fn report(app: &App, id: &str) -> Result<ConnectionHealth> {
    let (c, secrets) = load(app, id).await?;
    let mut problems = Vec::new();
    let wanted = endpoint::subscribed_events(app, &c).await?;
    let mut ep = EndpointHealth {
        mode: c.webhook_mode,
        id: c.webhook_endpoint_id.clone(),
        status: "none",
        url: c.webhook_url.clone(),
        api_version: None,
        enabled_events_match: None,
        api_version_match: None,
        error: None,
    };
    match (c.webhook_mode, &c.webhook_endpoint_id) {
        (WebhookMode::Manual, _) => ep.status = "manual",
        (WebhookMode::Managed, None) => {
            if !wanted.is_empty() {
                ep.status = "deleted";
                problems.push("the connection's triggers need an endpoint and it has none".into());
            }
        }
        (WebhookMode::Managed, Some(endpoint_id)) => {
            let stripe = app.stripe_for(&c, &secrets.api_key);
            match endpoint::observe(&stripe, endpoint_id).await {
                Ok(Some(found)) => {
                    ep.status = if found.disabled {
                        "disabled"
                    } else {
                        "enabled"
                    };
                    ep.url = found.url;
                    ep.api_version = found.api_version;
                    ep.enabled_events_match = Some(found.enabled_events == wanted);
                    ep.api_version_match = ep.api_version.as_deref().map(|v| v == c.api_version);
                    if found.disabled {
                        problems.push("Stripe disabled the endpoint".into());
                    }
                    if ep.enabled_events_match == Some(false) {
                        problems.push("the endpoint's events differ from the triggers".into());
                    }
                    if ep.api_version_match == Some(false) {
                        problems.push(
                            "the endpoint's API version differs from the connection's".into(),
                        );
                    }
                }
                Ok(None) => {
                    ep.status = "deleted";
                    problems.push("the endpoint was deleted in Stripe".into());
                }
                Err(e) => {
                    ep.status = "unknown";
                    ep.error = Some(e.to_string());
                    problems.push("Stripe could not be asked about the endpoint".into());
                }
            }
        }
    }
    let last_event = app
        .events
        .list_events(
            &c.id,
            &EventQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .next()
        .map(|e| LastEvent {
            id: e.event_id,
            event_type: e.event_type,
            created: e.created,
            received_at: e.received_at,
            recovered: e.recovered,
        });
    let page = app
        .runs
        .list_runs(
            &c.id,
            &RunQuery {
                limit: MAX_RUNS_SCANNED,
                ..Default::default()
            },
        )
        .await?;
    let count = |s: RunStatus| {
        u32::try_from(page.runs.iter().filter(|r| r.status == s).count()).unwrap_or(u32::MAX)
    };
    let runs = RunCounts {
        dead: count(RunStatus::Dead),
        retrying: count(RunStatus::Retrying),
        stuck: count(RunStatus::Stuck),
        counted: u32::try_from(page.runs.len()).unwrap_or(u32::MAX),
        complete: page.next.is_none(),
    };
    if runs.dead + runs.stuck > 0 {
        problems.push(format!(
            "{} dead and {} stuck runs: see GET …/runs?status=dead and ?status=stuck, replay when fixed",
            runs.dead, runs.stuck
        ));
    }
    let r = &c.reconcile;
    if let Some(e) = &r.last_error {
        problems.push(format!("the last reconcile pass failed: {e}"));
    }
    if !r.gaps.is_empty() {
        problems.push(
            "some events are older than Stripe keeps and were never read (see reconcile.gaps)"
                .into(),
        );
    }
    if !c.pending_alerts.is_empty() {
        problems.push(format!(
            "{} alerts wait for the alert target to take them",
            c.pending_alerts.len()
        ));
    }
    if c.upgrade.is_some() {
        problems.push("an API-version upgrade is unfinished: PUT …/api-version again".into());
    }
    Ok(ConnectionHealth {
        connection_id: c.id.clone(),
        status: if problems.is_empty() {
            "ok"
        } else {
            "attention"
        },
        problems,
        endpoint: ep,
        last_event,
        reconcile: ReconcileHealth {
            cursor: r.cursor,
            last_run_at: r.last_run_at,
            last_recovered: r.last_recovered,
            recovered_total: r.recovered_total,
            last_error: r.last_error.clone(),
            gaps: r.gaps.clone(),
            last_repair: r.last_repair.clone(),
        },
        runs,
        upgrade: c.upgrade.clone(),
        alerts_url: c.alerts.as_ref().map(|a| a.url.clone()),
        alerts_waiting: c.pending_alerts.len(),
    })
}
