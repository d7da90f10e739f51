//! The embedded store and the local secrets file pass the same conformance
//! suites as every other adapter, and keep what they promise of their own:
//! durable across reopening, group commit per write, private files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::sync::Arc;

use connector_core::conformance::*;
use connector_core::model::{ConnectionSecrets, InsertOutcome};
use connector_core::ports::*;
use connector_embedded::{LocalSecretsFile, SqliteStore};
use secrecy::ExposeSecret;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_workflows_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    workflows_and_runs(Arc::new(
        SqliteStore::open(&dir.path().join("store.db")).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    stores(Arc::new(
        SqliteStore::open(&dir.path().join("store.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .insert_connection(&connection("conn_keep", 1))
        .await
        .unwrap();
    store
        .insert_event(&event("conn_keep", "evt_keep", "invoice.paid", 5))
        .await
        .unwrap();
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert!(
        reopened
            .get_connection("conn_keep")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        reopened
            .insert_event(&event("conn_keep", "evt_keep", "invoice.paid", 5))
            .await
            .unwrap(),
        InsertOutcome::Duplicate
    );
}

/// Group commit: writes that fail (a conflict) share batches with writes
/// that succeed; each is answered for itself, and every acknowledged write
/// is on disk when the store is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_group_commit_keeps_each_write_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store
        .insert_connection(&connection("conn_gc", 1))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let e = event("conn_gc", &format!("evt_gc{i}"), "invoice.paid", i);
                    (
                        i,
                        store
                            .insert_event(&e)
                            .await
                            .map(|o| o == InsertOutcome::Inserted),
                    )
                } else {
                    // Updating a connection that does not exist is a conflict.
                    let missing = connection(&format!("conn_missing{i}"), i);
                    (i, store.update_connection(&missing).await.map(|()| true))
                }
            })
        })
        .collect();
    for t in tasks {
        let (i, result) = t.await.unwrap();
        if i % 2 == 0 {
            assert!(result.unwrap(), "insert {i} acknowledged");
        } else {
            assert!(
                matches!(result, Err(StoreError::Conflict)),
                "update {i}: {result:?}"
            );
        }
    }
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    let stored = reopened
        .list_events(
            "conn_gc",
            &EventQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 100, "every acknowledged insert survived");
}

#[tokio::test]
async fn local_file_is_private_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = LocalSecretsFile::new(path.clone());
    secrets_store(&store).await;
    store
        .put_secrets("conn_keep", &secrets("sk_test_keep", &["whsec_keep"]))
        .await
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let reopened = LocalSecretsFile::new(path);
    assert_eq!(
        reopened
            .get_secrets("conn_keep")
            .await
            .unwrap()
            .unwrap()
            .api_key
            .expose_secret(),
        "sk_test_keep"
    );
}

#[tokio::test]
async fn local_file_reads_see_writes_made_elsewhere() {
    // The file is parsed once and kept; a write by another process (here,
    // another store on the same file) must still be seen by the next read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let reader = LocalSecretsFile::new(path.clone());
    let writer = LocalSecretsFile::new(path);
    let key = |s: Option<ConnectionSecrets>| s.map(|s| s.api_key.expose_secret().to_string());
    assert_eq!(key(reader.get_secrets("conn_a").await.unwrap()), None);
    for (n, value) in ["sk_test_first", "sk_test_second", "sk_test_third"]
        .iter()
        .enumerate()
    {
        writer
            .put_secrets("conn_a", &secrets(value, &[]))
            .await
            .unwrap();
        assert_eq!(
            key(reader.get_secrets("conn_a").await.unwrap()).as_deref(),
            Some(*value),
            "read {n} sees the write before it"
        );
    }
    writer.delete_secrets("conn_a").await.unwrap();
    assert_eq!(key(reader.get_secrets("conn_a").await.unwrap()), None);
}

/// What DynamoDB's TTL does in AWS the dev server does by purging: events
/// past their `expires_at` and runs past the same 30 days go; the rest stay.
#[tokio::test]
async fn expired_events_and_runs_are_purged() {
    use connector_core::workflow::run::Run;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    let now = 1_900_000_000;
    let month = connector_core::service::ingest::EVENT_RETENTION_SECS;
    let mut old = event("conn_p", "evt_old", "invoice.created", now - month - 10);
    old.expires_at = now - 10;
    let mut fresh = event("conn_p", "evt_fresh", "invoice.created", now - 10);
    fresh.expires_at = now + month;
    store.insert_event(&old).await.unwrap();
    store.insert_event(&fresh).await.unwrap();
    assert!(
        store
            .create_run(&Run::new("conn_p", "evt_old", "wf_a", now - month - 10))
            .await
            .unwrap()
    );
    assert!(
        store
            .create_run(&Run::new("conn_p", "evt_fresh", "wf_a", now - 10))
            .await
            .unwrap()
    );
    assert_eq!(store.purge_expired(now).await.unwrap(), (1, 1));
    assert!(
        store
            .get_event("conn_p", "evt_old")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_event("conn_p", "evt_fresh")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_run("conn_p", "evt_old", "wf_a")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_run("conn_p", "evt_fresh", "wf_a")
            .await
            .unwrap()
            .is_some()
    );
}
