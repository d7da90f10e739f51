//! Each action Lambda, fed its events/ fixture through the Lambda conversion:
//! it runs its own group's actions and no other route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;

use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::catalog::GROUPS;
use connector_core::config::Config;
use connector_core::model::{Connection, ConnectionSecrets, WebhookMode};
use connector_core::ports::{ConnectionStore, SecretStore};
use integration_tests::action_fixture;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONN: &str = "conn_fixture000000000000000001";
const KEY: &str = "sk_test_fixturekey";

async fn app(stripe: &MockServer) -> App {
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let base = stripe.uri();
    let config = Config::from_lookup(|k| (k == "STRIPE_API_BASE").then(|| base.clone())).unwrap();
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
            created_at: 1,
            updated_at: 1,
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
                api_key: SecretString::from(KEY.to_string()),
                webhook_secrets: vec![],
            },
        )
        .await
        .unwrap();
    App::new(
        config,
        store.clone(),
        secrets,
        Arc::new(FixedClock::at(1_800_000_000)),
    )
}

async fn stripe() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "obj_1", "object": "thing", "status": "draft", "data": [], "has_more": false})))
        .mount(&server)
        .await;
    server
}

async fn invoke(app: &App, event: &str, routes: Routes) -> (u16, Value) {
    let req = lambda_http::request::from_str(event).unwrap();
    let resp = api::handle(app, req, routes).await;
    let body = std::str::from_utf8(resp.body()).expect("a JSON answer is text");
    (resp.status().as_u16(), serde_json::from_str(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_lambda_runs_its_fixture_with_the_connections_key() {
    for group in GROUPS {
        let server = stripe().await;
        let app = app(&server).await;
        let (name, event) = action_fixture(group);
        let (status, body) = invoke(&app, &event, Routes::Actions(group)).await;
        assert_eq!(status, 200, "{name}: {body}");
        let reqs = server.received_requests().await.unwrap();
        assert!(!reqs.is_empty(), "{name}");
        let last = reqs.last().unwrap();
        assert_eq!(
            last.headers["authorization"],
            format!("Bearer {KEY}").as_str(),
            "{name}"
        );
        assert_eq!(last.headers["stripe-version"], "2023-08-16");
        if last.method.as_str() == "POST" {
            let expected = name
                .trim_start_matches("action_")
                .trim_end_matches(".json")
                .replacen('_', "-", 1);
            assert_eq!(
                last.headers["idempotency-key"],
                format!("fixture-{expected}").as_str(),
                "{name}: the caller's key reaches Stripe"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_lambda_serves_no_other_route() {
    let server = stripe().await;
    let app = app(&server).await;
    let (_, customers) = action_fixture("customers");
    for routes in [
        Routes::Actions("products"),
        Routes::Connections,
        Routes::Ingest,
    ] {
        let (status, body) = invoke(&app, &customers, routes).await;
        assert_eq!(status, 404, "{routes:?}: {body}");
    }
    let health = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/health.json"
    ))
    .unwrap();
    assert_eq!(
        invoke(&app, &health, Routes::Actions("customers")).await.0,
        200
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_to_an_action_are_4xx_and_send_nothing() {
    let server = stripe().await;
    let app = app(&server).await;
    let (_, event) = action_fixture("customers");
    let base: Value = serde_json::from_str(&event).unwrap();
    let variant =
        |path: Option<&str>, body: Option<&str>, key: Option<&str>, method: Option<&str>| {
            let mut e = base.clone();
            if let Some(p) = path {
                e["rawPath"] = json!(p);
                e["requestContext"]["http"]["path"] = json!(p);
            }
            if let Some(b) = body {
                e["body"] = json!(b);
            }
            if let Some(k) = key {
                e["headers"]["idempotency-key"] = json!(k);
            }
            if let Some(m) = method {
                e["requestContext"]["http"]["method"] = json!(m);
            }
            e.to_string()
        };
    for (event, status, kind) in [
        (
            variant(
                Some("/connections/conn_nobody/actions/customers/create"),
                None,
                None,
                None,
            ),
            404,
            "not_found",
        ),
        (
            variant(
                Some("/connections/conn_a%2F..%2Fb/actions/customers/create"),
                None,
                None,
                None,
            ),
            404,
            "not_found",
        ),
        (
            variant(
                Some(&format!("/connections/{CONN}/actions/customers/explode")),
                None,
                None,
                None,
            ),
            404,
            "not_found",
        ),
        (
            variant(None, Some(r#"{"email": "nope"}"#), None, None),
            400,
            "invalid_request",
        ),
        (
            variant(None, Some(r#"{"email": "#), None, None),
            400,
            "invalid_json",
        ),
        (
            variant(None, Some(r#"{"name": "A", "balance": 5}"#), None, None),
            400,
            "invalid_request",
        ),
        (
            variant(None, None, Some("key with spaces"), None),
            400,
            "invalid_request",
        ),
        (
            variant(None, None, None, Some("GET")),
            405,
            "method_not_allowed",
        ),
    ] {
        let (got, body) = invoke(&app, &event, Routes::Actions("customers")).await;
        assert_eq!(
            (got, body["error"]["type"].as_str().unwrap_or_default()),
            (status, kind),
            "{body}"
        );
    }
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing reached Stripe"
    );
}
