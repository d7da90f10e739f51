//! One small trait per capability, so every rule is testable without AWS.

use async_trait::async_trait;

use crate::model::{Connection, ConnectionSecrets, InsertOutcome, StoredEvent, Workflow};
use crate::workflow::breaker::Breaker;
use crate::workflow::run::{Run, RunStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write found the record in a state it did not expect.
    #[error("conflicting write")]
    Conflict,
    /// The record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The backend failed (network, throttling, disk).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub event_type: Option<String>,
    pub limit: usize,
    /// An event id: list what comes after it (older).
    pub starting_after: Option<String>,
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Writes a new connection; `Conflict` if the id exists.
    async fn insert_connection(&self, connection: &Connection) -> Result<(), StoreError>;
    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    /// Every connection, oldest first.
    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError>;
    /// Replaces the connection stored at version `connection.version - 1`
    /// (the caller bumps the version); `Conflict` if it is gone or another
    /// write came first.
    async fn update_connection(&self, connection: &Connection) -> Result<(), StoreError>;
    /// Takes the connection's lease for `owner` until `until` (Unix
    /// seconds), unless another owner holds one that has not ended by
    /// `now`. `false`: held elsewhere, or no such connection.
    async fn lock_connection(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;
    /// Gives the lease back if `owner` still holds it.
    async fn unlock_connection(&self, id: &str, owner: &str) -> Result<(), StoreError>;
    async fn delete_connection(&self, id: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores the event unless (connection, event id) is stored already.
    async fn insert_event(&self, event: &StoredEvent) -> Result<InsertOutcome, StoreError>;
    async fn get_event(
        &self,
        connection_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError>;
    /// Newest first (by Stripe's `created`, then id).
    async fn list_events(
        &self,
        connection_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Stored events whose fan-out is not recorded as finished, oldest
    /// first: the outbox of a host without a stream (the dev server). In
    /// AWS the table's stream holds them until fan-out succeeds: none here.
    async fn unfanned_events(&self, _limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }
    /// Records that all of the event's runs exist and are queued.
    async fn mark_fanned_out(
        &self,
        _connection_id: &str,
        _event_id: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Writes a new workflow; `Conflict` if the id exists.
    async fn insert_workflow(&self, workflow: &Workflow) -> Result<(), StoreError>;
    async fn get_workflow(
        &self,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<Workflow>, StoreError>;
    /// A connection's workflows, oldest first.
    async fn list_workflows(&self, connection_id: &str) -> Result<Vec<Workflow>, StoreError>;
    /// Replaces an existing workflow; `Conflict` if it is gone.
    async fn update_workflow(&self, workflow: &Workflow) -> Result<(), StoreError>;
    async fn delete_workflow(&self, connection_id: &str, id: &str) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub event_id: Option<String>,
    pub workflow_id: Option<String>,
    pub limit: usize,
    /// The page after this position.
    pub starting_after: Option<RunCursor>,
}

/// Most runs one listing request looks at (filters may skip many): past
/// it the page ends early, with a cursor to go on from. Keeps what a
/// request reads and holds bounded whatever the connection's history.
pub const MAX_RUNS_SCANNED: usize = 1000;

/// A position in a connection's runs, newest first: (created, event id,
/// run key), descending. Handed to callers as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunCursor {
    pub created_at: i64,
    pub event_id: String,
    pub run_key: String,
}

/// A page of runs and where the next one starts, if there is one.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    pub runs: Vec<Run>,
    pub next: Option<RunCursor>,
}

impl RunCursor {
    pub fn of(run: &Run) -> Self {
        Self {
            created_at: run.created_at,
            event_id: run.event_id.clone(),
            run_key: run.run_key(),
        }
    }

    /// Whether `run` comes after this position (is older).
    pub fn precedes(&self, run: &Run) -> bool {
        Self::of(run) < *self
    }

    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}|{}|{}",
            self.created_at, self.event_id, self.run_key
        ))
    }

    /// `None` for anything that is not a cursor this API handed out.
    pub fn decode(text: &str) -> Option<Self> {
        use base64::Engine;
        if text.len() > 600 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut parts = raw.splitn(3, '|');
        let created_at = parts.next()?.parse().ok()?;
        let event_id = parts.next()?.to_string();
        let run_key = parts.next()?.to_string();
        let (workflow, replay) = match run_key.split_once('#') {
            Some((w, r)) => (w, Some(r)),
            None => (run_key.as_str(), None),
        };
        let ok = crate::ids::is_id(&event_id, "evt_")
            && crate::ids::is_id(workflow, "wf_")
            && replay.is_none_or(|r| crate::ids::is_id(r, "rpl_"));
        ok.then_some(Self {
            created_at,
            event_id,
            run_key,
        })
    }
}

/// Pages runs already ordered newest first and past the cursor: keeps the
/// ones the query wants, up to its limit, looking at no more than
/// [`MAX_RUNS_SCANNED`]; `more` says whether the source had runs left
/// after `ordered` ended.
pub fn page_runs(ordered: impl IntoIterator<Item = Run>, query: &RunQuery, more: bool) -> RunPage {
    let mut page = RunPage::default();
    let mut last_seen: Option<RunCursor> = None;
    let mut iter = ordered.into_iter().peekable();
    let mut scanned = 0;
    while let Some(run) = iter.next() {
        scanned += 1;
        let wanted = query.status.is_none_or(|s| run.status == s)
            && query.event_id.as_deref().is_none_or(|e| run.event_id == e)
            && query
                .workflow_id
                .as_deref()
                .is_none_or(|w| run.workflow_id == w);
        last_seen = Some(RunCursor::of(&run));
        if wanted {
            page.runs.push(run);
            if page.runs.len() == query.limit {
                if iter.peek().is_some() || more {
                    page.next = last_seen;
                }
                return page;
            }
        }
        if scanned >= MAX_RUNS_SCANNED {
            if iter.peek().is_some() || more {
                page.next = last_seen;
            }
            return page;
        }
    }
    if more {
        page.next = last_seen;
    }
    page
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates the run unless one exists for (connection, event, workflow):
    /// `true` when this call created it. A run exists at most once.
    async fn create_run(&self, run: &Run) -> Result<bool, StoreError>;
    /// The last key part is [`Run::run_key`]: the workflow id, with `#rpl_…` for a replay.
    async fn get_run(
        &self,
        connection_id: &str,
        event_id: &str,
        workflow_id: &str,
    ) -> Result<Option<Run>, StoreError>;
    /// Writes `run` if the stored one still has `expected_version`;
    /// `Conflict` when another worker wrote first.
    async fn save_run(&self, run: &Run, expected_version: u64) -> Result<(), StoreError>;
    /// A page of a connection's runs, newest first, filtered, after
    /// `query.starting_after`; reads at most about [`MAX_RUNS_SCANNED`].
    async fn list_runs(&self, connection_id: &str, query: &RunQuery)
    -> Result<RunPage, StoreError>;
    /// Runs whose next attempt (or lease end) is in `from..=until` (Unix
    /// seconds), across connections, soonest first; read from an index,
    /// never a scan.
    async fn due_runs(&self, from: i64, until: i64, limit: usize) -> Result<Vec<Run>, StoreError>;
    /// Records that `workflow_id` acts on `object_id` as of an event created
    /// at `created`, unless it already acted on a newer event of that object
    /// (`false`: this one is stale). Events created in the same second are
    /// not ordered by Stripe, so an equal time is not stale.
    async fn advance_object(
        &self,
        connection_id: &str,
        workflow_id: &str,
        object_id: &str,
        created: i64,
    ) -> Result<bool, StoreError>;
}

/// Which run a queue message asks a worker to carry on with: the run's key,
/// never its content (a worker reads the run as stored).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RunRef {
    #[serde(rename = "c")]
    pub connection_id: String,
    #[serde(rename = "e")]
    pub event_id: String,
    /// [`Run::run_key`]: the workflow id, with `#rpl_…` for a replay.
    #[serde(rename = "r")]
    pub run_key: String,
}

impl RunRef {
    pub fn of(run: &Run) -> Self {
        Self {
            connection_id: run.connection_id.clone(),
            event_id: run.event_id.clone(),
            run_key: run.run_key(),
        }
    }

    /// A message body as sent by [`RunRef::to_body`]; `None` for anything
    /// else (a hand-sent or damaged message).
    pub fn parse(body: &str) -> Option<Self> {
        if body.len() > 1024 {
            return None;
        }
        let r: Self = serde_json::from_str(body).ok()?;
        let (workflow, replay) = match r.run_key.split_once('#') {
            Some((w, rpl)) => (w, Some(rpl)),
            None => (r.run_key.as_str(), None),
        };
        let ok = crate::ids::is_id(&r.connection_id, "conn_")
            && crate::ids::is_id(&r.event_id, "evt_")
            && crate::ids::is_id(workflow, "wf_")
            && replay.is_none_or(|rpl| crate::ids::is_id(rpl, "rpl_"));
        ok.then_some(r)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("run queue unavailable: {0}")]
pub struct QueueError(pub String);

/// The longest delay a queue message can have (SQS's 15 minutes); runs due
/// later wait in the store's due index for the scheduler.
pub const MAX_QUEUE_DELAY: u32 = 900;

/// Where runs wait for an executor: SQS in AWS, an in-process queue on the
/// dev server. Delivery is at least once; executors make it exactly once.
#[async_trait]
pub trait RunQueue: Send + Sync {
    /// One message per run, each visible after `delay_secs` (at most
    /// [`MAX_QUEUE_DELAY`]). All are sent, or an error says some were not.
    async fn send(&self, runs: &[RunRef], delay_secs: u32) -> Result<(), QueueError>;
}

/// Shared counters, leases and marks that keep every executor (every
/// Lambda container) within the same limits: Stripe's rate budget, the
/// per-target concurrency cap, the circuit breakers, the scheduler's horizon.
#[async_trait]
pub trait GateStore: Send + Sync {
    /// Counts one request for `key` in the one-second window `window`
    /// (Unix seconds) and answers how many were counted there, this one
    /// included: the first `limit` are within the budget; the count past
    /// it says how many wait for later windows. Atomic across callers.
    async fn count_in_window(&self, key: &str, window: i64) -> Result<u32, StoreError>;
    /// Takes one of `slots` leases of `key` for `owner` until `until`:
    /// the slot taken, or `None` while all are held (a lease ended by `now`
    /// is free again).
    async fn take_slot(
        &self,
        key: &str,
        slots: u32,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>, StoreError>;
    /// Gives a slot back if `owner` still holds it.
    async fn release_slot(&self, key: &str, slot: u32, owner: &str) -> Result<(), StoreError>;
    /// A target's breaker as stored (read consistently).
    async fn get_breaker(&self, key: &str) -> Result<Option<Breaker>, StoreError>;
    /// Writes the breaker if the stored one has version `breaker.version - 1`
    /// (or none is stored and it is 1); `Conflict` otherwise.
    async fn save_breaker(&self, key: &str, breaker: &Breaker) -> Result<(), StoreError>;
    /// A named mark (the scheduler's horizon).
    async fn get_mark(&self, name: &str) -> Result<Option<i64>, StoreError>;
    /// Sets the mark to `value` if it is still `expected`: `false` when
    /// another writer moved it first.
    async fn set_mark(
        &self,
        name: &str,
        expected: Option<i64>,
        value: i64,
    ) -> Result<bool, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    #[error("secret is unreadable")]
    Corrupt,
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secrets, possibly from a short-lived cache: for reading only.
    async fn get_secrets(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionSecrets>, SecretsError>;
    /// The secrets as stored now, never from a cache: what a change of the
    /// secrets is computed from.
    async fn get_secrets_fresh(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionSecrets>, SecretsError> {
        self.get_secrets(connection_id).await
    }
    /// Creates or replaces the connection's secrets.
    async fn put_secrets(
        &self,
        connection_id: &str,
        secrets: &ConnectionSecrets,
    ) -> Result<(), SecretsError>;
    async fn delete_secrets(&self, connection_id: &str) -> Result<(), SecretsError>;
}

/// A shared store is a store: wrappers such as the secrets cache can sit on
/// an `Arc` that others hold too.
#[async_trait]
impl<S: SecretStore + ?Sized> SecretStore for std::sync::Arc<S> {
    async fn get_secrets(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionSecrets>, SecretsError> {
        (**self).get_secrets(connection_id).await
    }
    async fn get_secrets_fresh(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionSecrets>, SecretsError> {
        (**self).get_secrets_fresh(connection_id).await
    }
    async fn put_secrets(
        &self,
        connection_id: &str,
        secrets: &ConnectionSecrets,
    ) -> Result<(), SecretsError> {
        (**self).put_secrets(connection_id, secrets).await
    }
    async fn delete_secrets(&self, connection_id: &str) -> Result<(), SecretsError> {
        (**self).delete_secrets(connection_id).await
    }
}

/// Unix seconds, injectable for tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(n: i64) -> Vec<Run> {
        (0..n)
            .rev()
            .map(|i| Run::new("conn_a", &format!("evt_{i}"), "wf_a", i))
            .collect()
    }

    /// A filter that matches nothing still ends the page after
    /// MAX_RUNS_SCANNED runs, with a cursor to go on from.
    #[test]
    fn a_page_looks_at_a_bounded_number_of_runs() {
        let query = RunQuery {
            status: Some(RunStatus::Dead),
            limit: 1,
            ..Default::default()
        };
        let page = page_runs(runs(1500), &query, false);
        assert!(page.runs.is_empty());
        let next = page.next.unwrap();
        assert_eq!(next.created_at, 1500 - 1000, "stopped after 1,000 runs");
        let rest: Vec<Run> = runs(1500)
            .into_iter()
            .filter(|r| next.precedes(r))
            .collect();
        assert_eq!(rest.len(), 500);
        assert!(page_runs(rest, &query, false).next.is_none());
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = RunCursor {
            created_at: 7,
            event_id: "evt_1".into(),
            run_key: "wf_a#rpl_b".into(),
        };
        assert_eq!(RunCursor::decode(&c.encode()), Some(c));
        for bad in ["", "x", "Zm9v", "MXxldnRfMXx3Zl9hLy4u"] {
            assert_eq!(RunCursor::decode(bad), None, "{bad}");
        }
    }
}
