//! Secret stores: Secrets Manager on moto through the real SDK, the dev
//! server's local file, and the in-memory fake answer alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use crate::support;

use connector_core::adapters::memory::MemorySecrets;
use connector_core::adapters::secrets_manager::SecretsManagerStore;
use connector_core::conformance::{secrets, secrets_store};
use connector_core::ports::SecretStore;

#[tokio::test]
async fn memory_secrets() {
    secrets_store(&MemorySecrets::default()).await;
}

#[tokio::test]
async fn secrets_manager_on_moto() {
    let client = aws_sdk_secretsmanager::Client::new(&support::aws().await);
    let store = SecretsManagerStore::new(client.clone(), "stripe-connector-test/");
    secrets_store(&store).await;
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
