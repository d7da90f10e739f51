//! Shared by the core's integration tests: clients for the local servers
//! infra/test.sh starts. The adapters under test read the same standard AWS
//! environment as in production; nothing here branches the adapters.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// The SDK config for moto. Refuses to run against anything but loopback,
/// so a test can never touch a real AWS account.
pub async fn aws() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is set by infra/test.sh (moto server): run the tests with it");
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "tests only talk to a local moto server, not {endpoint}"
    );
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{:x}{}{}",
        nanos,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn dynamo_table() -> (aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&aws().await);
    let table = unique("conformance-");
    connector_core::adapters::dynamo::create_table(&client, &table)
        .await
        .expect("create table on moto");
    (client, table)
}

pub fn localstripe() -> String {
    std::env::var("LOCALSTRIPE_URL")
        .expect("LOCALSTRIPE_URL is set by infra/test.sh: run the tests with it")
}
