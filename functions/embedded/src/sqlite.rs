//! The dev server's embedded store: one SQLite file in WAL mode with
//! `synchronous=FULL`, so a record is on disk when its write returns.
//!
//! Writes go to one writer thread, which commits whatever writes are waiting
//! together in one transaction (group commit): under load, one fsync covers
//! many events instead of one each, and no caller hears back before the
//! commit that holds its write. Each write runs in its own savepoint, so one
//! failing write does not undo the others in its batch. Reads use a small
//! pool of separate connections and never wait behind a commit (WAL).
//! Checkpoints (copying the WAL into the database file) run on their own
//! thread, so no commit waits for one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use connector_core::model::{Connection, InsertOutcome, StoredEvent, Workflow};
use connector_core::ports::{
    ConnectionStore, EventQuery, EventStore, MAX_RUNS_SCANNED, RunPage, RunQuery, RunStore,
    StoreError, WorkflowStore,
};
use connector_core::workflow::run::Run;

/// At most this many writes share one commit.
const MAX_BATCH: usize = 512;
/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(2000);

/// A write to run on the writer thread. It answers whether it succeeded and
/// how to tell its caller once the commit's outcome is known.
/// Given no connection (the transaction could not begin), it does not run
/// and its caller hears of the failure.
type Job = Box<dyn FnOnce(Option<&rusqlite::Connection>) -> (bool, Reply) + Send>;
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
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

const SCHEMA: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = FULL;
     PRAGMA busy_timeout = 5000;
     CREATE TABLE IF NOT EXISTS connections (
         id TEXT PRIMARY KEY,
         created_at INTEGER NOT NULL,
         record TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS object_clocks (
         connection_id TEXT NOT NULL,
         workflow_id TEXT NOT NULL,
         object_id TEXT NOT NULL,
         created INTEGER NOT NULL,
         PRIMARY KEY (connection_id, workflow_id, object_id));
     CREATE TABLE IF NOT EXISTS connection_leases (
         id TEXT PRIMARY KEY,
         owner TEXT NOT NULL,
         until INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS events (
         connection_id TEXT NOT NULL,
         event_id TEXT NOT NULL,
         event_type TEXT NOT NULL,
         created INTEGER NOT NULL,
         record TEXT NOT NULL,
         PRIMARY KEY (connection_id, event_id));
     CREATE TABLE IF NOT EXISTS fanout_pending (
         connection_id TEXT NOT NULL,
         event_id TEXT NOT NULL,
         stored_at INTEGER NOT NULL,
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
     CREATE INDEX IF NOT EXISTS runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
     CREATE INDEX IF NOT EXISTS runs_newest ON runs (connection_id, created_at DESC, event_id DESC, workflow_id DESC);";

impl SqliteStore {
    /// Opens (creating if needed) the store file and starts its writer thread,
    /// which ends when the last clone of the store is dropped.
    /// The file is made (or kept) readable by its owner only: event bodies
    /// hold customer data. SQLite gives its -wal and -shm files the same mode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        crate::owner_only_file(path).map_err(unavailable)?;
        let db = rusqlite::Connection::open(path).map_err(unavailable)?;
        db.execute_batch(SCHEMA).map_err(unavailable)?;
        db.execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(unavailable)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(db, queue))
            .map_err(unavailable)?;
        let readers = Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        let checkpointer = rusqlite::Connection::open(path).map_err(unavailable)?;
        let alive = Arc::downgrade(&readers);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    // PASSIVE: copies what no reader still needs, never blocks a writer.
                    if let Err(e) = checkpointer.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(unavailable)?;
        Ok(Self { jobs, readers })
    }

    /// Removes events past their `expires_at` and runs older than the same
    /// retention (what DynamoDB's TTL does in AWS); answers how many of
    /// each went.
    pub async fn purge_expired(&self, now: i64) -> Result<(usize, usize), StoreError> {
        let runs_before = now - connector_core::service::ingest::EVENT_RETENTION_SECS;
        self.write(move |db| {
            let events = db
                .execute(
                    "DELETE FROM events WHERE json_extract(record, '$.expires_at') < ?1",
                    [now],
                )
                .map_err(unavailable)?;
            let runs = db
                .execute("DELETE FROM runs WHERE created_at < ?1", [runs_before])
                .map_err(unavailable)?;
            db.execute(
                "DELETE FROM fanout_pending WHERE NOT EXISTS (SELECT 1 FROM events e
                   WHERE e.connection_id = fanout_pending.connection_id AND e.event_id = fanout_pending.event_id)",
                [],
            )
            .map_err(unavailable)?;
            Ok((events, runs))
        })
        .await
    }

    /// The `record` of at most one row, decoded.
    async fn one<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        params: Vec<String>,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self
            .read(move |db| {
                db.prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(rusqlite::params_from_iter(params), |r| r.get(0))
                            .optional()
                    })
                    .map_err(unavailable)
            })
            .await?;
        text.map(|t| decode(&t)).transpose()
    }

    /// The `record` of every row, decoded, in the query's order.
    async fn many<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<T>, StoreError> {
        let rows: Vec<String> = self
            .read(move |db| {
                let mut stmt = db.prepare_cached(sql).map_err(unavailable)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        rows.iter().map(|t| decode(t)).collect()
    }

    /// Runs a read on a pooled reader connection, on the calling thread:
    /// reads are short indexed lookups that never wait for a writer (WAL),
    /// and running them in place costs less than handing them to another
    /// thread and waking the caller again.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = &self.readers;
        let pooled = readers
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let db = match pooled {
            Some(db) => db,
            None => {
                let db = rusqlite::Connection::open(&readers.path).map_err(unavailable)?;
                db.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(unavailable)?;
                db
            }
        };
        let out = f(&db);
        readers
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(db);
        out
    }

    /// Runs a write on the writer thread; returns once its batch is committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |db| {
            let result = match db {
                Some(db) => f(db),
                None => Err(StoreError::Unavailable(
                    "could not begin a transaction".into(),
                )),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_error| {
                let _ = tx.send(match commit_error {
                    Some(e) => Err(StoreError::Unavailable(e.to_string())),
                    None => result,
                });
            });
            (ok, reply)
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?
    }
}

/// The writer thread: takes every waiting write, runs each in a savepoint,
/// commits once, then answers them all.
fn write_loop(db: rusqlite::Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = db.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "could not begin a write transaction");
            for job in batch {
                let (_, reply) = job(None);
                reply(None);
            }
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            let _ = db.execute_batch("SAVEPOINT job");
            let (ok, reply) = job(Some(&db));
            let _ = if ok {
                db.execute_batch("RELEASE job")
            } else {
                db.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            replies.push(reply);
        }
        match db.execute_batch("COMMIT") {
            Ok(()) => replies.into_iter().for_each(|r| r(None)),
            Err(e) => {
                let _ = db.execute_batch("ROLLBACK");
                let reason = e.to_string();
                replies.into_iter().for_each(|r| r(Some(&reason)));
            }
        }
    }
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let (id, created, record) = (c.id.clone(), c.created_at, encode(c)?);
        self.write(move |db| {
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
        self.many(
            "SELECT record FROM connections ORDER BY created_at, id",
            vec![],
        )
        .await
    }

    async fn update_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let (id, record) = (c.id.clone(), encode(c)?);
        let previous = i64::try_from(c.version)
            .ok()
            .and_then(|v| v.checked_sub(1))
            .ok_or(StoreError::Conflict)?;
        self.write(move |db| {
            let n = db
                .execute(
                    "UPDATE connections SET record = ?2 WHERE id = ?1 \
                     AND COALESCE(json_extract(record, '$.version'), 0) = ?3",
                    params![id, record, previous],
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
        self.write(move |db| {
            db.execute("DELETE FROM connections WHERE id = ?1", [id])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn lock_connection(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.write(move |db| {
            let n = db
                .execute(
                    "INSERT INTO connection_leases (id, owner, until) \
                     SELECT ?1, ?2, ?4 WHERE EXISTS (SELECT 1 FROM connections WHERE id = ?1) \
                     ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                     WHERE connection_leases.until < ?3 OR connection_leases.owner = excluded.owner",
                    params![id, owner, now, until],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn unlock_connection(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.write(move |db| {
            db.execute(
                "DELETE FROM connection_leases WHERE id = ?1 AND owner = ?2",
                params![id, owner],
            )
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
        self.write(move |db| {
            let n = db
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (connection_id, event_id, event_type, created, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut insert| insert.execute(params![conn, id, ty, created, record]))
                .map_err(unavailable)?;
            if n == 0 {
                return Ok(InsertOutcome::Duplicate);
            }
            // The outbox: in the event's own transaction, so an event is
            // never stored without its fan-out owed (what the stream is in AWS).
            db.prepare_cached(
                "INSERT OR IGNORE INTO fanout_pending (connection_id, event_id, stored_at)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(stored_at), 0) + 1 FROM fanout_pending))",
            )
            .and_then(|mut insert| insert.execute(params![conn, id]))
            .map_err(unavailable)?;
            Ok(InsertOutcome::Inserted)
        })
        .await
    }

    async fn unfanned_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.many(
            "SELECT e.record FROM fanout_pending p
             JOIN events e ON e.connection_id = p.connection_id AND e.event_id = p.event_id
             ORDER BY p.stored_at LIMIT ?1",
            vec![(limit as i64).into()],
        )
        .await
    }

    async fn mark_fanned_out(&self, connection_id: &str, event_id: &str) -> Result<(), StoreError> {
        let (conn, id) = (connection_id.to_string(), event_id.to_string());
        self.write(move |db| {
            db.prepare_cached(
                "DELETE FROM fanout_pending WHERE connection_id = ?1 AND event_id = ?2",
            )
            .and_then(|mut delete| delete.execute(params![conn, id]))
            .map_err(unavailable)?;
            Ok(())
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
            .read(move |db| {
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
        self.write(move |db| {
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
        self.many(
            "SELECT record FROM workflows WHERE connection_id = ?1 ORDER BY created_at, id",
            vec![connection_id.to_string().into()],
        )
        .await
    }

    async fn update_workflow(&self, w: &Workflow) -> Result<(), StoreError> {
        let (conn, id, record) = (w.connection_id.clone(), w.id.clone(), encode(w)?);
        self.write(move |db| {
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
        self.write(move |db| {
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
        self.write(move |db| {
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
        self.write(move |db| {
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

    /// Newest first from the `runs_newest` index, after the cursor, at most
    /// [`MAX_RUNS_SCANNED`] rows read.
    async fn list_runs(
        &self,
        connection_id: &str,
        query: &RunQuery,
    ) -> Result<RunPage, StoreError> {
        let (created, event, key) = match &query.starting_after {
            Some(c) => (c.created_at, c.event_id.clone(), c.run_key.clone()),
            // Past every real position.
            None => (i64::MAX, String::new(), String::new()),
        };
        let unbounded = query.starting_after.is_none();
        let scan = i64::try_from(MAX_RUNS_SCANNED).unwrap_or(1000) + 1;
        let mut runs: Vec<Run> = self
            .many(
                "SELECT record FROM runs WHERE connection_id = ?1 \
                 AND (?6 OR created_at < ?2 OR (created_at = ?2 AND (event_id < ?3 \
                      OR (event_id = ?3 AND workflow_id < ?4)))) \
                 AND (?5 IS NULL OR event_id = ?5) \
                 ORDER BY created_at DESC, event_id DESC, workflow_id DESC LIMIT ?7",
                vec![
                    connection_id.to_string().into(),
                    created.into(),
                    event.into(),
                    key.into(),
                    query.event_id.clone().into(),
                    unbounded.into(),
                    scan.into(),
                ],
            )
            .await?;
        let more = runs.len() > MAX_RUNS_SCANNED;
        runs.truncate(MAX_RUNS_SCANNED);
        Ok(connector_core::ports::page_runs(runs, query, more))
    }

    async fn advance_object(
        &self,
        connection_id: &str,
        workflow_id: &str,
        object_id: &str,
        created: i64,
    ) -> Result<bool, StoreError> {
        let (c, w, o) = (
            connection_id.to_string(),
            workflow_id.to_string(),
            object_id.to_string(),
        );
        self.write(move |db| {
            let n = db
                .execute(
                    "INSERT INTO object_clocks (connection_id, workflow_id, object_id, created) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(connection_id, workflow_id, object_id) DO UPDATE \
                     SET created = excluded.created WHERE object_clocks.created <= excluded.created",
                    params![c, w, o, created],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn due_runs(&self, from: i64, until: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.many(
            "SELECT record FROM runs WHERE due_at IS NOT NULL AND due_at BETWEEN ?1 AND ?2 ORDER BY due_at, created_at LIMIT ?3",
            vec![from.into(), until.into(), (limit as i64).into()],
        )
        .await
    }
}
