//! The ingest handler, fed API Gateway HTTP API (v2) fixtures from events/
//! (made by infra/gen_fixtures.py) through the same conversion the Lambda uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::{Arc, Mutex};

use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::model::{Connection, ConnectionSecrets, WebhookMode};
use connector_core::ports::{ConnectionStore, EventQuery, EventStore, SecretStore};
use connector_core::webhook::sign_header;
use http::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

const CONN: &str = "conn_fixture000000000000000001";
const SECRET: &str = "whsec_fixturesecret0000000000000000";
const T: i64 = 1_795_000_000;

struct Env {
    app: App,
    store: Arc<MemoryStore>,
    secrets: Arc<MemorySecrets>,
}

async fn env() -> Env {
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let config = Config::from_lookup(|_| None).unwrap();
    let app = App::new(
        config,
        store.clone(),
        secrets.clone(),
        Arc::new(FixedClock::at(T + 10)),
    );
    store
        .insert_connection(&Connection {
            id: CONN.into(),
            name: "Fixture".into(),
            account_id: "acct_fixture".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: WebhookMode::Manual,
            webhook_endpoint_id: None,
            triggers: vec![],
            created_at: T - 100,
            updated_at: T - 100,
            version: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    secrets
        .put_secrets(
            CONN,
            &ConnectionSecrets {
                target_secrets: Default::default(),
                api_key: SecretString::from("sk_test_fixturekey".to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
            },
        )
        .await
        .unwrap();
    Env {
        app,
        store,
        secrets,
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn invoke_request(app: &App, req: lambda_http::Request) -> (StatusCode, Value) {
    let resp = api::handle(app, req, Routes::Ingest).await;
    let status = resp.status();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    (status, body)
}

async fn invoke(app: &App, name: &str) -> (StatusCode, Value) {
    invoke_request(app, lambda_http::request::from_str(&fixture(name)).unwrap()).await
}

async fn stored(env: &Env) -> usize {
    env.store
        .list_events(
            CONN,
            &EventQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn valid_event_is_stored_with_its_raw_body() {
    let env = env().await;
    let (status, body) = invoke(&env.app, "valid_event.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"received": true, "duplicate": false})
    );
    let event = env
        .store
        .get_event(CONN, "evt_1PfixtureInvoiceCreated")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.event_type, "invoice.created");
    assert_eq!(event.created, T - 5);
    assert_eq!(event.received_at, T + 10);
    assert_eq!(event.expires_at, T + 10 + 30 * 24 * 3600);
    assert_eq!(event.api_version.as_deref(), Some("2023-08-16"));
    let raw: Value = serde_json::from_str(&fixture("valid_event.json")).unwrap();
    assert_eq!(
        event.body.as_deref(),
        raw["body"].as_str(),
        "the raw body, byte for byte"
    );
    assert!(!event.body_omitted);
}

#[tokio::test]
async fn duplicate_event_is_acknowledged_and_stored_once() {
    let env = env().await;
    assert_eq!(
        invoke(&env.app, "valid_event.json").await.1["duplicate"],
        false
    );
    let (status, body) = invoke(&env.app, "duplicate_event.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["duplicate"], true);
    assert_eq!(stored(&env).await, 1);
}

async fn refused(name: &str, status: StatusCode, kind: &str) {
    let env = env().await;
    let (got, body) = invoke(&env.app, name).await;
    assert_eq!(got, status, "{name}: {body}");
    assert_eq!(body["error"]["type"], kind, "{name}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(stored(&env).await, 0, "{name}: nothing is stored");
}

#[tokio::test]
async fn bad_signature_is_400() {
    refused(
        "invalid_signature.json",
        StatusCode::BAD_REQUEST,
        "signature_mismatch",
    )
    .await;
}

#[tokio::test]
async fn missing_signature_is_400() {
    refused(
        "missing_signature.json",
        StatusCode::BAD_REQUEST,
        "missing_signature",
    )
    .await;
}

#[tokio::test]
async fn expired_timestamp_is_400() {
    refused(
        "expired_timestamp.json",
        StatusCode::BAD_REQUEST,
        "timestamp_outside_tolerance",
    )
    .await;
}

#[tokio::test]
async fn unknown_connection_is_404() {
    refused(
        "unknown_connection.json",
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn livemode_mismatch_is_400() {
    refused(
        "livemode_mismatch.json",
        StatusCode::BAD_REQUEST,
        "livemode_mismatch",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    refused(
        "malformed_json.json",
        StatusCode::BAD_REQUEST,
        "invalid_event",
    )
    .await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    refused(
        "oversized_body.json",
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_second_secret_verifies_during_rotation() {
    let env = env().await;
    assert_eq!(
        invoke(&env.app, "invalid_signature.json").await.0,
        StatusCode::BAD_REQUEST
    );
    env.secrets
        .put_secrets(
            CONN,
            &ConnectionSecrets {
                target_secrets: Default::default(),
                api_key: SecretString::from("sk_test_fixturekey".to_string()),
                webhook_secrets: vec![
                    SecretString::from("whsec_someoneelse".to_string()),
                    SecretString::from(SECRET.to_string()),
                ],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        invoke(&env.app, "invalid_signature.json").await.0,
        StatusCode::OK
    );
    assert_eq!(
        invoke(&env.app, "valid_event.json").await.1["duplicate"],
        true,
        "old secret still verifies"
    );
}

fn signed_request(body: &[u8]) -> lambda_http::Request {
    let mut doc: Value = serde_json::from_str(&fixture("valid_event.json")).unwrap();
    doc["body"] = Value::String(String::from_utf8(body.to_vec()).unwrap());
    doc["headers"]["stripe-signature"] = Value::String(sign_header(body, SECRET, T));
    lambda_http::request::from_str(&doc.to_string()).unwrap()
}

#[tokio::test]
async fn an_event_too_large_for_dynamodb_is_stored_without_its_body() {
    let env = env().await;
    let pad = " ".repeat(400 * 1024);
    let body = format!(
        r#"{{"id":"evt_1PfixtureHuge","object":"event","type":"invoice.updated","created":{T},"livemode":false,"pad":"{pad}"}}"#
    );
    let (status, out) = invoke_request(&env.app, signed_request(body.as_bytes())).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let event = env
        .store
        .get_event(CONN, "evt_1PfixtureHuge")
        .await
        .unwrap()
        .unwrap();
    assert!(event.body.is_none());
    assert!(event.body_omitted);
}

#[tokio::test]
async fn signed_bodies_that_are_not_events_are_400() {
    let env = env().await;
    for (body, param) in [
        (
            r#"{"id":"cus_123","type":"invoice.created","created":1,"livemode":false}"#,
            "id",
        ),
        (
            r#"{"id":"evt_../x","type":"invoice.created","created":1,"livemode":false}"#,
            "id",
        ),
        (
            r#"{"id":"evt_1","type":"Invoice Created!","created":1,"livemode":false}"#,
            "type",
        ),
    ] {
        let (status, out) = invoke_request(&env.app, signed_request(body.as_bytes())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(out["error"]["param"], param, "{body}");
    }
    for body in [
        r#"{"id":"evt_1","type":"x.y","created":"yesterday","livemode":false}"#,
        r#"[1,2]"#,
        "",
    ] {
        let (status, out) = invoke_request(&env.app, signed_request(body.as_bytes())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(out["error"]["type"], "invalid_event", "{body}");
    }
    assert_eq!(stored(&env).await, 0);
}

#[tokio::test]
async fn the_ingest_function_serves_only_its_route() {
    let env = env().await;
    let (status, _) = invoke(&env.app, "get_unknown_connection.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = invoke(&env.app, "health.json").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_never_hold_the_body_the_signature_or_a_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let env = env().await;
    for name in [
        "valid_event.json",
        "duplicate_event.json",
        "invalid_signature.json",
        "livemode_mismatch.json",
    ] {
        invoke(&env.app, name).await;
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("evt_1PfixtureInvoiceCreated"),
        "the event id is logged: {logs}"
    );
    let raw: Value = serde_json::from_str(&fixture("valid_event.json")).unwrap();
    let signature = raw["headers"]["stripe-signature"].as_str().unwrap();
    let v1 = signature.split("v1=").nth(1).unwrap();
    for forbidden in [
        v1,
        SECRET,
        "sk_test_fixturekey",
        "in_1PfixtureInvoice",
        "whsec_",
    ] {
        assert!(
            !logs.contains(forbidden),
            "{forbidden} leaked into the logs"
        );
    }
}

/// A signed body as API Gateway hands over bytes that are not text.
fn signed_binary_request(body: &[u8]) -> lambda_http::Request {
    use base64::Engine;
    let mut doc: Value = serde_json::from_str(&fixture("valid_event.json")).unwrap();
    doc["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(body));
    doc["isBase64Encoded"] = Value::Bool(true);
    doc["headers"]["stripe-signature"] = Value::String(sign_header(body, SECRET, T));
    lambda_http::request::from_str(&doc.to_string()).unwrap()
}

/// A signed body that could be stored only altered (invalid UTF-8 inside a
/// string) or never read again (nested past serde's limit) is refused,
/// not stored.
#[tokio::test]
async fn signed_bodies_that_cannot_be_kept_as_sent_are_400() {
    let env = env().await;
    let mut invalid = format!(
        r#"{{"id":"evt_1PfixtureUtf8","object":"event","type":"invoice.updated","created":{T},"livemode":false,"data":{{"object":{{"name":"caf"#
    )
    .into_bytes();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(br#""}}}"#);
    let deep = format!(
        r#"{{"id":"evt_1PfixtureDeep","object":"event","type":"invoice.updated","created":{T},"livemode":false,"data":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for body in [invalid, deep.into_bytes()] {
        let (status, out) = invoke_request(&env.app, signed_binary_request(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
        assert_eq!(out["error"]["type"], "invalid_event", "{out}");
    }
    assert_eq!(stored(&env).await, 0);
}
