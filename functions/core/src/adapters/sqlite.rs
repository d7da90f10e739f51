//! The dev server's embedded store: one SQLite file in WAL mode with
//! `synchronous=FULL`, so an event is on disk when its insert returns.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use crate::model::{Connection, InsertOutcome, StoredEvent, Workflow};
use crate::ports::{
    ConnectionStore, EventQuery, EventStore, RunQuery, RunStore, StoreError, WorkflowStore,
};
use crate::workflow::run::Run;

#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Mutex<rusqlite::Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    /// Opens (creating if needed) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = rusqlite::Connection::open(path).map_err(unavailable)?;
        Self::init(db)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(rusqlite::Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(db: rusqlite::Connection) -> Result<Self, StoreError> {
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS connections (
                 id TEXT PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 connection_id TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 event_type TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 record TEXT NOT NULL,
                 PRIMARY KEY (connection_id, event_id));
             CREATE INDEX IF NOT EXISTS events_newest
                 ON events (connection_id, created DESC, event_id DESC);
             CREATE TABLE IF NOT EXISTS workflows (
                 connection_id TEXT NOT NULL,
                 id TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 record TEXT NOT NULL,
                 PRIMARY KEY (connection_id, id));
             CREATE TABLE IF NOT EXISTS runs (
                 connection_id TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 workflow_id TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 due_at INTEGER,
                 version INTEGER NOT NULL,
                 record TEXT NOT NULL,
                 PRIMARY KEY (connection_id, event_id, workflow_id));
             CREATE INDEX IF NOT EXISTS runs_due ON runs (due_at) WHERE due_at IS NOT NULL;",
        )
        .map_err(unavailable)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// The `record` of at most one row, decoded.
    async fn one<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        params: Vec<String>,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self
            .with(move |db| {
                db.query_row(sql, rusqlite::params_from_iter(params), |r| r.get(0))
                    .optional()
                    .map_err(unavailable)
            })
            .await?;
        text.map(|t| decode(&t)).transpose()
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let (id, created, record) = (c.id.clone(), c.created_at, encode(c)?);
        self.with(move |db| {
            let n = db
                .execute(
                    "INSERT OR IGNORE INTO connections (id, created_at, record) VALUES (?1, ?2, ?3)",
                    params![id, created, record],
                )
                .map_err(unavailable)?;
            if n == 0 { Err(StoreError::Conflict) } else { Ok(()) }
        })
        .await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.one(
            "SELECT record FROM connections WHERE id = ?1",
            vec![id.to_string()],
        )
        .await
    }

    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows: Vec<String> = self
            .with(|db| {
                let mut stmt = db
                    .prepare("SELECT record FROM connections ORDER BY created_at, id")
                    .map_err(unavailable)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        rows.iter().map(|t| decode(t)).collect()
    }

    async fn update_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let (id, record) = (c.id.clone(), encode(c)?);
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE connections SET record = ?2 WHERE id = ?1",
                    params![id, record],
                )
                .map_err(unavailable)?;
            if n == 0 {
                Err(StoreError::Conflict)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |db| {
            db.execute("DELETE FROM connections WHERE id = ?1", [id])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn insert_event(&self, e: &StoredEvent) -> Result<InsertOutcome, StoreError> {
        let record = encode(e)?;
        let (conn, id, ty, created) = (
            e.connection_id.clone(),
            e.event_id.clone(),
            e.event_type.clone(),
            e.created,
        );
        self.with(move |db| {
            let n = db
                .execute(
                    "INSERT OR IGNORE INTO events (connection_id, event_id, event_type, created, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![conn, id, ty, created, record],
                )
                .map_err(unavailable)?;
            Ok(if n == 0 { InsertOutcome::Duplicate } else { InsertOutcome::Inserted })
        })
        .await
    }

    async fn get_event(
        &self,
        connection_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.one(
            "SELECT record FROM events WHERE connection_id = ?1 AND event_id = ?2",
            vec![connection_id.to_string(), event_id.to_string()],
        )
        .await
    }

    async fn list_events(
        &self,
        connection_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = connection_id.to_string();
        let query = query.clone();
        let rows: Vec<String> = self
            .with(move |db| {
                let cursor: Option<(i64, String)> = match &query.starting_after {
                    Some(id) => db
                        .query_row(
                            "SELECT created, event_id FROM events WHERE connection_id = ?1 AND event_id = ?2",
                            [&conn, id],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(unavailable)?,
                    None => None,
                };
                if query.starting_after.is_some() && cursor.is_none() {
                    return Ok(Vec::new());
                }
                let (c_created, c_id) = cursor.unwrap_or((i64::MAX, String::new()));
                let mut stmt = db
                    .prepare(
                        "SELECT record FROM events
                         WHERE connection_id = ?1
                           AND (?2 IS NULL OR event_type = ?2)
                           AND (created < ?3 OR (created = ?3 AND (?4 = '' OR event_id < ?4)))
                         ORDER BY created DESC, event_id DESC
                         LIMIT ?5",
                    )
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![conn, query.event_type, c_created, c_id, query.limit as i64], |r| r.get(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        rows.iter().map(|t| decode(t)).collect()
    }
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn insert_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        let (conn, id, created, record) = (
            w.connection_id.clone(),
            w.id.clone(),
            w.created_at,
            encode(w)?,
        );
        self.with(move |db| {
            let n = db
                .execute(
                    "INSERT OR IGNORE INTO workflows (connection_id, id, created_at, record) VALUES (?1, ?2, ?3, ?4)",
                    params![conn, id, created, record],
                )
                .map_err(unavailable)?;
            if n == 0 { Err(StoreError::Conflict) } else { Ok(()) }
        })
        .await
    }

    async fn get_workflow(
        &self,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<Workflow>, StoreError> {
        self.one(
            "SELECT record FROM workflows WHERE connection_id = ?1 AND id = ?2",
            vec![connection_id.to_string(), id.to_string()],
        )
        .await
    }

    async fn list_workflows(&self, connection_id: &str) -> Result<Vec<Workflow>, StoreError> {
        let conn = connection_id.to_string();
        let rows: Vec<String> = self
            .with(move |db| {
                let mut stmt = db
                    .prepare("SELECT record FROM workflows WHERE connection_id = ?1 ORDER BY created_at, id")
                    .map_err(unavailable)?;
                let rows = stmt.query_map([conn], |r| r.get(0)).map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        rows.iter().map(|t| decode(t)).collect()
    }

    async fn update_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        let (conn, id, record) = (w.connection_id.clone(), w.id.clone(), encode(w)?);
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE workflows SET record = ?3 WHERE connection_id = ?1 AND id = ?2",
                    params![conn, id, record],
                )
                .map_err(unavailable)?;
            if n == 0 {
                Err(StoreError::Conflict)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn delete_workflow(&self, connection_id: &str, id: &str) -> Result<(), StoreError> {
        let (conn, id) = (connection_id.to_string(), id.to_string());
        self.with(move |db| {
            db.execute(
                "DELETE FROM workflows WHERE connection_id = ?1 AND id = ?2",
                [conn, id],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, run: &Run) -> Result<bool, StoreError> {
        let record = encode(run)?;
        let (c, e, w, created, due, v) = (
            run.connection_id.clone(),
            run.event_id.clone(),
            run.run_key(),
            run.created_at,
            run.due_at(),
            run.version as i64,
        );
        self.with(move |db| {
            let n = db
                .execute(
                    "INSERT OR IGNORE INTO runs (connection_id, event_id, workflow_id, created_at, due_at, version, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![c, e, w, created, due, v, record],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn get_run(
        &self,
        connection_id: &str,
        event_id: &str,
        workflow_id: &str,
    ) -> Result<Option<Run>, StoreError> {
        self.one("SELECT record FROM runs WHERE connection_id = ?1 AND event_id = ?2 AND workflow_id = ?3", vec![connection_id.to_string(), event_id.to_string(), workflow_id.to_string()]).await
    }

    async fn save_run(&self, run: &Run, expected_version: u64) -> Result<(), StoreError> {
        let record = encode(run)?;
        let (c, e, w, due, v) = (
            run.connection_id.clone(),
            run.event_id.clone(),
            run.run_key(),
            run.due_at(),
            run.version as i64,
        );
        self.with(move |db| {
            let n = db
                .execute(
                    "UPDATE runs SET record = ?4, due_at = ?5, version = ?6
                     WHERE connection_id = ?1 AND event_id = ?2 AND workflow_id = ?3 AND version = ?7",
                    params![c, e, w, record, due, v, expected_version as i64],
                )
                .map_err(unavailable)?;
            if n == 0 { Err(StoreError::Conflict) } else { Ok(()) }
        })
        .await
    }

    async fn list_runs(
        &self,
        connection_id: &str,
        query: &RunQuery,
    ) -> Result<Vec<Run>, StoreError> {
        let conn = connection_id.to_string();
        let rows: Vec<String> = self
            .with(move |db| {
                let mut stmt = db
                    .prepare("SELECT record FROM runs WHERE connection_id = ?1")
                    .map_err(unavailable)?;
                let rows = stmt.query_map([conn], |r| r.get(0)).map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        let runs = rows
            .iter()
            .map(|t| decode(t))
            .collect::<Result<Vec<Run>, _>>()?;
        Ok(super::filter_runs(runs, query))
    }

    async fn due_runs(&self, now: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        let rows: Vec<String> = self
            .with(move |db| {
                let mut stmt = db
                    .prepare("SELECT record FROM runs WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at, created_at LIMIT ?2")
                    .map_err(unavailable)?;
                let rows = stmt.query_map(params![now, limit as i64], |r| r.get(0)).map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        rows.iter().map(|t| decode(t)).collect()
    }
}
