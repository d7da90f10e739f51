//! Secret stores: Secrets Manager on moto through the real SDK, the dev
//! server's local file, and the in-memory fake answer alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

mod support;

use connector_core::adapters::local_secrets::LocalSecretsFile;
use connector_core::adapters::memory::MemorySecrets;
use connector_core::adapters::secrets_manager::SecretsManagerStore;
use connector_core::model::ConnectionSecrets;
use connector_core::ports::SecretStore;
use secrecy::{ExposeSecret, SecretString};

fn secrets(key: &str, hooks: &[&str]) -> ConnectionSecrets {
    ConnectionSecrets {
        target_secrets: Default::default(),
        api_key: SecretString::from(key.to_string()),
        webhook_secrets: hooks
            .iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect(),
    }
}

async fn conformance(store: &dyn SecretStore) {
    let id = support::unique("conn_");
    assert!(store.get_secrets(&id).await.unwrap().is_none());
    store
        .put_secrets(&id, &secrets("sk_test_one", &[]))
        .await
        .unwrap();
    let got = store.get_secrets(&id).await.unwrap().unwrap();
    assert_eq!(got.api_key.expose_secret(), "sk_test_one");
    assert!(got.webhook_secrets.is_empty());
    store
        .put_secrets(&id, &secrets("sk_test_two", &["whsec_new", "whsec_old"]))
        .await
        .unwrap();
    let got = store.get_secrets(&id).await.unwrap().unwrap();
    assert_eq!(got.api_key.expose_secret(), "sk_test_two");
    let hooks: Vec<&str> = got
        .webhook_secrets
        .iter()
        .map(secrecy::ExposeSecret::expose_secret)
        .collect();
    assert_eq!(hooks, ["whsec_new", "whsec_old"]);
    store.delete_secrets(&id).await.unwrap();
    assert!(store.get_secrets(&id).await.unwrap().is_none());
    store.delete_secrets(&id).await.unwrap();
}

#[tokio::test]
async fn memory_secrets() {
    conformance(&MemorySecrets::default()).await;
}

#[tokio::test]
async fn secrets_manager_on_moto() {
    let client = aws_sdk_secretsmanager::Client::new(&support::aws().await);
    let store = SecretsManagerStore::new(client.clone(), "stripe-connector-test/");
    conformance(&store).await;
    // Stored under the prefix, as the IAM policy expects.
    let id = support::unique("conn_");
    store
        .put_secrets(&id, &secrets("sk_test_x", &[]))
        .await
        .unwrap();
    let raw = client
        .get_secret_value()
        .secret_id(format!("stripe-connector-test/{id}"))
        .send()
        .await
        .unwrap();
    assert!(raw.secret_string().unwrap().contains("sk_test_x"));
}

#[tokio::test]
async fn local_file_is_private_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = LocalSecretsFile::new(path.clone());
    conformance(&store).await;
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
