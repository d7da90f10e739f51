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

/// One request through every route of `app`, as a client sees it: the
/// status and the JSON answer (`null` when there is none).
pub async fn call(
    app: &connector_core::app::App,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .unwrap();
    let resp = connector_core::api::handle(app, req, connector_core::api::Routes::All).await;
    (
        resp.status().as_u16(),
        serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null),
    )
}

/// How the tests' apps talk to a Stripe fake at `api_base`: retries at
/// once (milliseconds of backoff), a `Retry-After` not waited for.
pub fn fast_stripe(api_base: String) -> connector_core::stripe::StripeSettings {
    connector_core::stripe::StripeSettings {
        api_base,
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        max_retry_after: std::time::Duration::from_millis(1),
        ..connector_core::stripe::StripeSettings::default()
    }
}
