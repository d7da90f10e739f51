//! The reconciler: what Stripe's webhooks alone cannot promise. Stripe
//! retries a failed delivery for 3 days and keeps events listable for 30;
//! an endpoint can be disabled (after days of failures), deleted, or left
//! with other events or another URL. Each pass, per connection:
//!
//! 1. **The endpoint** (managed connections), under the connection's lease:
//!    an API-version upgrade left halfway is carried on; the secrets of a
//!    replaced endpoint stop verifying once their grace is over; the
//!    endpoint is read from Stripe and repaired — re-enabled when disabled,
//!    recreated when deleted, its events and URL restored, replaced when
//!    its API version is not the connection's.
//! 2. **The events**, without the lease: Stripe's `GET /v1/events` for the
//!    connection's triggers (at most 20 types a request), first those whose
//!    delivery failed (`delivery_success=false`) across the whole window,
//!    then a plain sweep forward from the stored cursor, window by window,
//!    each window's pages read whole and stored oldest first. Every event
//!    goes through the same exactly-once write as a webhook; one no
//!    delivery stored first is stored `recovered` and gets its runs. The
//!    cursor never goes back past Stripe's 30 days: older unread history is
//!    recorded as a gap. Each request is paced by the connection's Stripe
//!    budget; a pass stops at [`MAX_PAGES`] and the next one carries on.
//! 3. **The record**, under the lease again: cursor (never moved back),
//!    counts, gaps, errors. Then the notices (`endpoint.disabled`,
//!    `endpoint.repaired`, `events.recovered`), each sent by the pass whose
//!    write recorded what it reports.

use serde::Serialize;
use serde_json::{Value, json};

use super::lock::{Locked, with_lock, with_record_lock};
use super::{Error, Result, alerts, endpoint, ingest, upgrade};
use crate::app::App;
use crate::metrics::Measure;
use crate::model::{Connection, ConnectionSecrets, Gap, InsertOutcome, Repair, WebhookMode};
use crate::stripe::StripeError;
use crate::workflow::limits::StripeBudget;

/// How long Stripe keeps events listable.
pub const STRIPE_RETENTION_SECS: i64 = 30 * 24 * 3600;
/// The cursor stays this far inside Stripe's 30 days: an event at the very
/// edge may be gone by the time its page is asked for.
pub const RETENTION_MARGIN_SECS: i64 = 600;
/// Live deliveries get this long to arrive before a sweep reads their
/// events (a sweep would store them too, only marked recovered).
pub const SETTLE_SECS: i64 = 60;
/// Each sweep reads again this far back before the cursor: Stripe may list
/// an event a moment after its `created`.
pub const OVERLAP_SECS: i64 = 300;
/// The widest window one sweep reads whole.
pub const MAX_WINDOW_SECS: i64 = 6 * 3600;
pub const MIN_WINDOW_SECS: i64 = 60;
/// Stripe's most types per request (`types[]`).
pub const MAX_TYPES_PER_REQUEST: usize = 20;
/// Stripe's largest page.
pub const PAGE_SIZE: u32 = 100;
/// Event-list requests in one pass of one connection (5,000 events).
pub const MAX_PAGES: usize = 50;
/// Of those, what the failed-delivery read may take: the rest is the
/// sweep's, so the cursor moves every pass however many deliveries failed.
pub const MAX_FAILED_PAGES: usize = 5;
/// Event JSON one window may hold in memory before it is narrowed.
pub const MAX_WINDOW_BYTES: usize = 16 << 20;
/// Gaps kept on the record.
const MAX_GAPS: usize = 5;
/// Recovered event ids a pass names (its answer, and its notice).
const MAX_NAMED: usize = 100;
/// … of which a notice carries the first (it may wait on the connection
/// record for another try: it stays small).
const MAX_NAMED_IN_NOTICE: usize = 20;

/// What one pass of one connection did (`POST /connections/{id}/reconcile`,
/// and the scheduled function's log).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct PassReport {
    pub connection_id: String,
    /// Events stored by this pass that no delivery had stored.
    pub recovered: u32,
    /// Up to 100 of their ids, oldest first.
    pub recovered_ids: Vec<String>,
    /// Events read from Stripe that were stored already.
    pub already_stored: u32,
    /// Event-list requests made.
    pub pages: u32,
    /// The cursor after the pass: every event created before it is read.
    pub cursor: Option<i64>,
    /// True when the pass stopped before reaching now (page or request
    /// budget): the next one carries on.
    pub behind: bool,
    /// History Stripe no longer lists that this pass found unread.
    pub gap: Option<Gap>,
    /// The endpoint repairs made.
    pub repairs: Vec<Repair>,
    /// Why the pass (or part of it) failed.
    pub error: Option<String>,
}

/// Connections reconciled at once.
pub const CONCURRENCY: usize = 4;
/// No pass starts after a tick has run this long (the function stops at
/// 300 s); the connections not reached go first next tick, as every tick
/// takes them least recently reconciled first.
pub const TICK_BUDGET: std::time::Duration = std::time::Duration::from_secs(200);

/// Every connection, [`CONCURRENCY`] at a time, least recently reconciled
/// first, within [`TICK_BUDGET`]. A connection's failure is its own
/// (logged, in its report and on its record) and never stops the others'.
pub async fn all(app: &App) -> Result<Vec<PassReport>> {
    let mut connections = app.connections.list_connections().await?;
    connections.sort_by_key(|c| c.reconcile.last_run_at.unwrap_or(i64::MIN));
    let started = std::time::Instant::now();
    let mut pending = connections.into_iter().map(|c| c.id);
    let mut running = tokio::task::JoinSet::new();
    let mut reports = Vec::new();
    loop {
        while running.len() < CONCURRENCY && started.elapsed() < TICK_BUDGET {
            let Some(id) = pending.next() else {
                break;
            };
            let app = app.clone();
            running.spawn(async move {
                let outcome = connection(&app, &id).await;
                (id, outcome)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok((_, Ok(report))) => reports.push(report),
            // Deleted meanwhile.
            Ok((_, Err(Error::NotFound(_)))) => {}
            Ok((id, Err(e))) => {
                tracing::warn!(connection = %id, error = %e, "reconcile pass failed");
                reports.push(PassReport {
                    connection_id: id,
                    error: Some(e.to_string()),
                    ..Default::default()
                });
            }
            Err(e) => tracing::error!(error = %e, "reconcile pass panicked"),
        }
    }
    let left = pending.count();
    if left > 0 {
        tracing::warn!(
            left,
            "reconcile tick out of time; the rest go first next tick"
        );
    }
    Ok(reports)
}

/// One pass for one connection, as the schedule runs it.
pub async fn connection(app: &App, id: &str) -> Result<PassReport> {
    pass(app, id, MAX_PAGES).await
}

/// Event-list requests of a pass asked for through the API: it answers
/// within API Gateway's 29 s; the schedule carries on from the cursor.
pub const REQUESTED_MAX_PAGES: usize = 20;

/// One pass asked for through the API (`POST …/reconcile`).
pub async fn requested(app: &App, id: &str) -> Result<PassReport> {
    pass(app, id, REQUESTED_MAX_PAGES).await
}

/// One pass for one connection, reading at most `max_pages` pages.
async fn pass(app: &App, id: &str, max_pages: usize) -> Result<PassReport> {
    let mut report = PassReport {
        connection_id: id.to_string(),
        ..Default::default()
    };
    // 1. The endpoint, under the lease.
    let mut notices = Vec::new();
    // What the connection subscribes to, read once for the pass: what the
    // endpoint must carry and which events the sweep asks for.
    let repaired = with_lock(app, id, async |locked| {
        let types = endpoint::subscribed_events(app, &locked.connection).await?;
        let outcome = repair(app, locked, &types, &mut notices).await;
        Ok((
            outcome,
            locked.connection.clone(),
            locked.secrets()?.clone(),
            types,
        ))
    })
    .await?;
    let (outcome, c, secrets, types) = repaired;
    let mut errors = Vec::new();
    match outcome {
        Ok(repairs) => report.repairs = repairs,
        Err(e) => errors.push(format!("endpoint: {e}")),
    }
    // 2. The events, without it.
    let walked = catch_up(app, &c, &secrets, &types, max_pages, &mut report).await;
    errors.extend(walked.error.iter().map(|e| format!("events: {e}")));
    report.error = (!errors.is_empty()).then(|| errors.join("; "));
    // 3. The record: the cursor only ever moves forward (another pass may
    // have gone further meanwhile).
    let now = app.clock.now();
    let mut gap_found = report.gap.is_some();
    let saved = with_record_lock(app, id, async |locked| {
        let state = &mut locked.connection.reconcile;
        let stored_cursor = state.cursor;
        state.window_secs = Some(walked.window);
        state.last_run_at = Some(now);
        state.last_recovered = report.recovered;
        state.recovered_total += u64::from(report.recovered);
        state.last_error.clone_from(&report.error);
        // A gap is recorded by the pass that moves the stored cursor past
        // it: a pass at the same time that found it too reports nothing.
        if let Some(gap) = &report.gap {
            if stored_cursor.is_some_and(|c| c >= gap.to) {
                gap_found = false;
            } else {
                state.gaps.push(gap.clone());
                let excess = state.gaps.len().saturating_sub(MAX_GAPS);
                state.gaps.drain(..excess);
            }
        }
        state.cursor = Some(stored_cursor.map_or(walked.cursor, |c| c.max(walked.cursor)));
        locked.save().await?;
        report.cursor = locked.connection.reconcile.cursor;
        Ok(locked.connection.clone())
    })
    .await?;
    if report.recovered > 0 {
        app.metrics.record(Measure::EventsRecovered {
            count: report.recovered,
        });
        notices.push(Notice {
            kind: alerts::EVENTS_RECOVERED,
            key: format!("{now}/{}", report.recovered_ids.first().map_or("", |s| s)),
            data: json!({
                "count": report.recovered,
                "event_ids": report.recovered_ids.iter().take(MAX_NAMED_IN_NOTICE).collect::<Vec<_>>(),
            }),
        });
    }
    if !gap_found {
        report.gap = None;
    }
    if let Some(gap) = &report.gap {
        app.metrics.record(Measure::EventGap);
        tracing::error!(connection = %id, from = gap.from, to = gap.to, "events older than Stripe's 30 days were never read: a gap");
    }
    // Notices that waited for another try first, then this pass's.
    alerts::retry_pending(app, &saved).await;
    for n in notices {
        alerts::notify(app, &saved, n.kind, &n.key, n.data).await;
    }
    tracing::info!(
        connection = %id, recovered = report.recovered, pages = report.pages, behind = report.behind,
        repairs = report.repairs.len(), error = report.error.as_deref(), "reconcile pass"
    );
    Ok(report)
}

/// Where a sweep got to.
struct Walked {
    /// Every event created before it is read (or reported as a gap).
    cursor: i64,
    /// The window the next pass starts with.
    window: i64,
    /// Why it stopped early, if it did (the cursor is still good).
    error: Option<String>,
}

/// Reads Stripe's events for the connection's triggers and stores what no
/// delivery stored: first the failed deliveries across the whole window,
/// then a sweep forward from the cursor. Fills `report` as it goes.
async fn catch_up(
    app: &App,
    c: &Connection,
    secrets: &ConnectionSecrets,
    types: &[String],
    max_pages: usize,
    report: &mut PassReport,
) -> Walked {
    let now = app.clock.now();
    let horizon = now - STRIPE_RETENTION_SECS + RETENTION_MARGIN_SECS;
    let to = now - SETTLE_SECS;
    // A connection's history starts when it was made: older events were
    // never owed to it.
    let mut start = c
        .reconcile
        .cursor
        .unwrap_or_else(|| c.created_at.max(horizon));
    if start < horizon {
        report.gap = Some(Gap {
            from: start,
            to: horizon,
            reported_at: now,
        });
        start = horizon;
    }
    let mut walked = Walked {
        cursor: start,
        window: c
            .reconcile
            .window_secs
            .unwrap_or(MAX_WINDOW_SECS)
            .clamp(MIN_WINDOW_SECS, MAX_WINDOW_SECS),
        error: None,
    };
    if types.is_empty() {
        // Nothing subscribed: nothing was owed up to now.
        walked.cursor = start.max(to);
        return walked;
    }
    if start >= to {
        return walked;
    }
    let stripe = app
        .stripe_for(c, &secrets.api_key)
        .with_pacer(StripeBudget::for_connection(app, c));
    let mut pages = 0;
    let from = (start - OVERLAP_SECS).max(horizon);
    let result: Result<()> = async {
        // 1. What Stripe failed to deliver, across the whole window: after
        // a long outage these are found first, whatever the sweep's pace.
        let mut failed = Vec::new();
        for batch in types.chunks(MAX_TYPES_PER_REQUEST) {
            let listed = list(&stripe, batch, from, to, true, &mut pages, MAX_FAILED_PAGES).await?;
            failed.extend(listed.events);
        }
        store_all(app, c, failed, report).await?;
        // 2. Everything, forward from the cursor, one window at a time.
        let mut lower = from;
        while walked.cursor < to {
            let end = (walked.cursor + walked.window).min(to);
            let mut got = Vec::new();
            let mut whole = true;
            for batch in types.chunks(MAX_TYPES_PER_REQUEST) {
                let listed = list(&stripe, batch, lower, end, false, &mut pages, max_pages).await?;
                got.extend(listed.events);
                if !listed.complete {
                    whole = false;
                    break;
                }
            }
            // Stored even when the window was not read whole: a second
            // read of them is a duplicate, never a second run.
            store_all(app, c, got, report).await?;
            if !whole {
                if walked.window > MIN_WINDOW_SECS && pages < max_pages {
                    walked.window = (walked.window / 2).max(MIN_WINDOW_SECS);
                    continue;
                }
                walked.window = (walked.window / 2).max(MIN_WINDOW_SECS);
                report.behind = true;
                break;
            }
            walked.cursor = end;
            lower = end;
            walked.window = (walked.window * 2).min(MAX_WINDOW_SECS);
        }
        Ok(())
    }
    .await;
    report.pages = u32::try_from(pages).unwrap_or(u32::MAX);
    match result {
        Ok(()) => {}
        // The connection's budget is spent for this second: not a failure,
        // the next pass goes on from the cursor.
        Err(Error::Stripe(e)) if matches!(*e, StripeError::Budget(_)) => report.behind = true,
        Err(e) => {
            report.behind = true;
            walked.error = Some(e.to_string());
        }
    }
    walked
}

/// One listing's events, and whether it was read to its end.
struct Listed {
    events: Vec<Value>,
    complete: bool,
}

/// Pages through `GET /v1/events` for `types` created in `from..until`,
/// until its end, `max_pages` requests in the pass, or
/// [`MAX_WINDOW_BYTES`] of events.
async fn list(
    stripe: &crate::stripe::StripeClient,
    types: &[String],
    from: i64,
    until: i64,
    failed_only: bool,
    pages: &mut usize,
    max_pages: usize,
) -> Result<Listed, StripeError> {
    let mut listed = Listed {
        events: Vec::new(),
        complete: false,
    };
    let mut bytes = 0;
    let mut after: Option<String> = None;
    loop {
        if *pages >= max_pages || bytes > MAX_WINDOW_BYTES {
            return Ok(listed);
        }
        let mut query = json!({
            "limit": PAGE_SIZE,
            "types": types,
            "created": {"gte": from, "lt": until},
        });
        if failed_only {
            query["delivery_success"] = json!(false);
        }
        if let Some(after) = &after {
            query["starting_after"] = json!(after);
        }
        let page = stripe.get("/v1/events", &query).await?;
        *pages += 1;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|e| e["id"].as_str())
            .map(str::to_string);
        bytes += data.iter().map(|e| e.to_string().len()).sum::<usize>();
        listed.events.extend(data);
        if page["has_more"].as_bool() != Some(true) || after.is_none() {
            listed.complete = true;
            return Ok(listed);
        }
    }
}

/// Stores listed events oldest first through the exactly-once write.
async fn store_all(
    app: &App,
    c: &Connection,
    mut events: Vec<Value>,
    report: &mut PassReport,
) -> Result<()> {
    let key = |e: &Value| {
        (
            e["created"].as_i64().unwrap_or(0),
            e["id"].as_str().unwrap_or("").to_string(),
        )
    };
    events.sort_by_key(key);
    events.dedup_by_key(|e| key(e));
    for event in &events {
        match ingest::store_recovered(app, c, event).await {
            Ok(InsertOutcome::Inserted) => {
                report.recovered += 1;
                if report.recovered_ids.len() < MAX_NAMED
                    && let Some(id) = event["id"].as_str()
                {
                    report.recovered_ids.push(id.to_string());
                }
            }
            Ok(InsertOutcome::Duplicate) => report.already_stored += 1,
            Err(e @ (Error::InvalidEvent { .. } | Error::LivemodeMismatch(_))) => {
                tracing::warn!(connection = %c.id, error = %e, "listed event skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A notice to send once the pass's record is saved.
pub(crate) struct Notice {
    pub kind: &'static str,
    pub key: String,
    pub data: Value,
}

/// The managed endpoint made what the connection needs. Answers the
/// repairs; saves the record when anything changed.
async fn repair(
    app: &App,
    locked: &mut Locked<'_>,
    events: &[String],
    notices: &mut Vec<Notice>,
) -> Result<Vec<Repair>> {
    let mut repairs = Vec::new();
    if locked.connection.webhook_mode != WebhookMode::Managed {
        return Ok(repairs);
    }
    let now = app.clock.now();
    let Some(url) = locked.connection.webhook_url.clone().or_else(|| {
        app.config
            .public_base_url
            .as_deref()
            .map(|base| endpoint::webhook_url(&locked.connection, base))
    }) else {
        // Never synced and no configured base: nothing to compare with.
        return Ok(repairs);
    };
    // An upgrade left halfway goes on first.
    if locked.connection.upgrade.is_some() {
        upgrade::advance(app, locked, &url).await?;
    }
    // The grace of a replaced endpoint's secrets is over.
    if let Some(at) = locked.connection.retire_secrets_at
        && at <= now
    {
        let mut secrets = locked.secrets()?.clone();
        if secrets.webhook_secrets.len() > 1 {
            secrets.webhook_secrets.truncate(1);
            locked.save_secrets(secrets).await?;
        }
        locked.connection.retire_secrets_at = None;
        locked.save().await?;
    }
    let c = locked.connection.clone();
    let Some(endpoint_id) = c.webhook_endpoint_id.clone() else {
        if !events.is_empty() {
            // Needed and missing (a create that failed): made now.
            let key = endpoint::creation_key(&c);
            let id =
                endpoint::create(app, locked, &url, events, &c.api_version, &key, false).await?;
            locked.connection.webhook_endpoint_id = Some(id.clone());
            repairs.push(repaired(locked, notices, now, "missing", "created", &id));
            locked.save().await?;
        }
        return Ok(repairs);
    };
    if events.is_empty() {
        return Ok(repairs);
    }
    let secrets = locked.secrets()?.clone();
    let stripe = app.stripe_for(&c, &secrets.api_key);
    let found = endpoint::observe(&stripe, &endpoint_id).await?;
    let Some(found) = found else {
        tracing::warn!(connection = %c.id, endpoint = %endpoint_id, "managed endpoint deleted in Stripe; recreating");
        let key = endpoint::creation_key(&c);
        let id = endpoint::create(app, locked, &url, events, &c.api_version, &key, true).await?;
        locked.connection.webhook_endpoint_id = Some(id.clone());
        locked.connection.reconcile.endpoint_disabled_since = None;
        repairs.push(repaired(locked, notices, now, "deleted", "recreated", &id));
        locked.save().await?;
        endpoint::sweep_orphans(&stripe, &c.id, Some(&id)).await;
        return Ok(repairs);
    };
    let version = found.api_version.as_deref();
    if version.is_some_and(|v| v != c.api_version) {
        // An endpoint's version cannot be changed in place: replaced, as an
        // upgrade replaces it (the new one first, then the old one goes).
        tracing::warn!(connection = %c.id, endpoint = %endpoint_id, found = ?version, "endpoint API version differs from the connection's; replacing");
        upgrade::begin(app, locked, &c.api_version, true).await?;
        upgrade::advance(app, locked, &url).await?;
        let id = locked
            .connection
            .webhook_endpoint_id
            .clone()
            .unwrap_or_default();
        repairs.push(repaired(
            locked,
            notices,
            now,
            "api_version",
            "replaced",
            &id,
        ));
        locked.save().await?;
        return Ok(repairs);
    }
    let disabled = found.disabled;
    let events_drift = found.enabled_events != events;
    let url_drift = found.url.as_deref() != Some(url.as_str());
    if !disabled && !events_drift && !url_drift {
        return Ok(repairs);
    }
    if disabled
        && locked
            .connection
            .reconcile
            .endpoint_disabled_since
            .is_none()
    {
        locked.connection.reconcile.endpoint_disabled_since = Some(now);
        notices.push(Notice {
            kind: alerts::ENDPOINT_DISABLED,
            key: format!("{endpoint_id}/{now}"),
            data: json!({"endpoint_id": endpoint_id}),
        });
        // Recorded before the repair is tried: a failing repair does not
        // report the same episode again next pass.
        locked.save().await?;
    }
    let mut update = json!({"enabled_events": events, "url": url});
    if disabled {
        update["disabled"] = json!(false);
    }
    stripe
        .post(
            &format!("/v1/webhook_endpoints/{endpoint_id}"),
            &update,
            None,
        )
        .await?;
    let (problem, action) = if disabled {
        ("disabled", "re-enabled")
    } else if events_drift {
        ("enabled_events", "updated")
    } else {
        ("url", "updated")
    };
    locked.connection.reconcile.endpoint_disabled_since = None;
    repairs.push(repaired(
        locked,
        notices,
        now,
        problem,
        action,
        &endpoint_id,
    ));
    locked.save().await?;
    Ok(repairs)
}

/// Records a repair on the connection and queues its notice.
fn repaired(
    locked: &mut Locked<'_>,
    notices: &mut Vec<Notice>,
    now: i64,
    problem: &'static str,
    action: &str,
    endpoint_id: &str,
) -> Repair {
    tracing::warn!(connection = %locked.connection.id, endpoint = %endpoint_id, problem, action, "managed endpoint repaired");
    locked
        .app()
        .metrics
        .record(Measure::EndpointRepair { problem });
    let repair = Repair {
        at: now,
        problem: problem.into(),
        action: action.into(),
        endpoint_id: endpoint_id.into(),
    };
    locked.connection.reconcile.last_repair = Some(repair.clone());
    notices.push(Notice {
        kind: alerts::ENDPOINT_REPAIRED,
        key: format!("{endpoint_id}/{problem}/{now}"),
        data: json!({"endpoint_id": endpoint_id, "problem": problem, "action": action}),
    });
    repair
}
