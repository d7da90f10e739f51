//! In-memory adapters for unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;

use crate::model::{Connection, ConnectionSecrets, InsertOutcome, StoredEvent, Workflow};
use crate::ports::{
    Clock, ConnectionStore, EventQuery, EventStore, RunCursor, RunPage, RunQuery, RunStore,
    SecretStore, SecretsError, StoreError, WorkflowStore, page_runs,
};
use crate::workflow::run::Run;

#[derive(Default)]
pub struct MemoryStore {
    connections: Mutex<BTreeMap<String, Connection>>,
    /// Connection leases: id → (owner, until).
    locks: Mutex<BTreeMap<String, (String, i64)>>,
    /// (connection, workflow, object) → newest event time acted on.
    object_clocks: Mutex<BTreeMap<(String, String, String), i64>>,
    events: Mutex<BTreeMap<(String, String), StoredEvent>>,
    workflows: Mutex<BTreeMap<(String, String), Workflow>>,
    runs: Mutex<BTreeMap<(String, String, String), Run>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let mut map = lock(&self.connections);
        if map.contains_key(&c.id) {
            return Err(StoreError::Conflict);
        }
        map.insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(lock(&self.connections).get(id).cloned())
    }

    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let mut all: Vec<_> = lock(&self.connections).values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn update_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let mut map = lock(&self.connections);
        match map.get_mut(&c.id) {
            Some(slot) if slot.version + 1 == c.version => {
                *slot = c.clone();
                Ok(())
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn lock_connection(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        if !lock(&self.connections).contains_key(id) {
            return Ok(false);
        }
        let mut locks = lock(&self.locks);
        match locks.get(id) {
            Some((holder, held_until)) if holder != owner && *held_until >= now => Ok(false),
            _ => {
                locks.insert(id.to_string(), (owner.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn unlock_connection(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let mut locks = lock(&self.locks);
        if locks.get(id).is_some_and(|(holder, _)| holder == owner) {
            locks.remove(id);
        }
        Ok(())
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        lock(&self.connections).remove(id);
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn insert_event(&self, e: &StoredEvent) -> Result<InsertOutcome, StoreError> {
        let mut map = lock(&self.events);
        let key = (e.connection_id.clone(), e.event_id.clone());
        if map.contains_key(&key) {
            return Ok(InsertOutcome::Duplicate);
        }
        map.insert(key, e.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn get_event(
        &self,
        connection_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        Ok(lock(&self.events)
            .get(&(connection_id.to_string(), event_id.to_string()))
            .cloned())
    }

    async fn list_events(
        &self,
        connection_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let all = lock(&self.events)
            .values()
            .filter(|e| e.connection_id == connection_id)
            .cloned()
            .collect();
        Ok(super::page_events(all, query))
    }
}

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn insert_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        let mut map = lock(&self.workflows);
        let key = (w.connection_id.clone(), w.id.clone());
        if map.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        map.insert(key, w.clone());
        Ok(())
    }

    async fn get_workflow(
        &self,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<Workflow>, StoreError> {
        Ok(lock(&self.workflows)
            .get(&(connection_id.to_string(), id.to_string()))
            .cloned())
    }

    async fn list_workflows(&self, connection_id: &str) -> Result<Vec<Workflow>, StoreError> {
        let mut all: Vec<_> = lock(&self.workflows)
            .values()
            .filter(|w| w.connection_id == connection_id)
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn update_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        match lock(&self.workflows).get_mut(&(w.connection_id.clone(), w.id.clone())) {
            Some(slot) => {
                *slot = w.clone();
                Ok(())
            }
            None => Err(StoreError::Conflict),
        }
    }

    async fn delete_workflow(&self, connection_id: &str, id: &str) -> Result<(), StoreError> {
        lock(&self.workflows).remove(&(connection_id.to_string(), id.to_string()));
        Ok(())
    }
}

fn run_key(r: &Run) -> (String, String, String) {
    (r.connection_id.clone(), r.event_id.clone(), r.run_key())
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create_run(&self, run: &Run) -> Result<bool, StoreError> {
        let mut map = lock(&self.runs);
        if map.contains_key(&run_key(run)) {
            return Ok(false);
        }
        map.insert(run_key(run), run.clone());
        Ok(true)
    }

    async fn get_run(
        &self,
        connection_id: &str,
        event_id: &str,
        workflow_id: &str,
    ) -> Result<Option<Run>, StoreError> {
        Ok(lock(&self.runs)
            .get(&(
                connection_id.to_string(),
                event_id.to_string(),
                workflow_id.to_string(),
            ))
            .cloned())
    }

    async fn save_run(&self, run: &Run, expected_version: u64) -> Result<(), StoreError> {
        match lock(&self.runs).get_mut(&run_key(run)) {
            Some(slot) if slot.version == expected_version => {
                *slot = run.clone();
                Ok(())
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn list_runs(
        &self,
        connection_id: &str,
        query: &RunQuery,
    ) -> Result<RunPage, StoreError> {
        let mut all: Vec<Run> = lock(&self.runs)
            .values()
            .filter(|r| r.connection_id == connection_id)
            .filter(|r| query.starting_after.as_ref().is_none_or(|c| c.precedes(r)))
            .cloned()
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(RunCursor::of(r)));
        Ok(page_runs(all, query, false))
    }

    async fn due_runs(&self, from: i64, until: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        let mut due: Vec<Run> = lock(&self.runs)
            .values()
            .filter(|r| r.due_at().is_some_and(|at| (from..=until).contains(&at)))
            .cloned()
            .collect();
        due.sort_by_key(|r| (r.due_at(), r.created_at));
        due.truncate(limit);
        Ok(due)
    }

    async fn advance_object(
        &self,
        connection_id: &str,
        workflow_id: &str,
        object_id: &str,
        created: i64,
    ) -> Result<bool, StoreError> {
        let mut clocks = lock(&self.object_clocks);
        let key = (
            connection_id.to_string(),
            workflow_id.to_string(),
            object_id.to_string(),
        );
        match clocks.get(&key) {
            Some(newest) if *newest > created => Ok(false),
            _ => {
                clocks.insert(key, created);
                Ok(true)
            }
        }
    }
}

#[derive(Default)]
pub struct MemorySecrets {
    map: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get_secrets(&self, id: &str) -> Result<Option<ConnectionSecrets>, SecretsError> {
        lock(&self.map)
            .get(id)
            .map(|s| ConnectionSecrets::from_json(s).map_err(|_| SecretsError::Corrupt))
            .transpose()
    }

    async fn put_secrets(&self, id: &str, secrets: &ConnectionSecrets) -> Result<(), SecretsError> {
        lock(&self.map).insert(id.to_string(), secrets.to_json());
        Ok(())
    }

    async fn delete_secrets(&self, id: &str) -> Result<(), SecretsError> {
        lock(&self.map).remove(id);
        Ok(())
    }
}

/// A clock tests set and move.
pub struct FixedClock(pub AtomicI64);

impl FixedClock {
    pub fn at(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
