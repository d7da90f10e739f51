//! One small trait per capability, so every rule is testable without AWS.

use async_trait::async_trait;

use crate::model::{Connection, ConnectionSecrets, InsertOutcome, StoredEvent, Workflow};
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
    /// A connection's runs, newest first, filtered.
    async fn list_runs(
        &self,
        connection_id: &str,
        query: &RunQuery,
    ) -> Result<Vec<Run>, StoreError>;
    /// Runs whose next attempt (or expired lease) is at or before `now`,
    /// across connections, soonest first; read from an index, never a scan.
    async fn due_runs(&self, now: i64, limit: usize) -> Result<Vec<Run>, StoreError>;
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
