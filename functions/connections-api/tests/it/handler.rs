//! The connections API against an in-process Stripe mock: what it sends to
//! Stripe, what it stores, and what it answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::ports::{ConnectionStore, SecretStore};
use connector_core::stripe::StripeSettings;
use http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_test_51ConnectionKeyVerySecret";
const HOST: &str = "abc123defg.execute-api.us-east-1.amazonaws.com";

struct Env {
    app: App,
    stripe: MockServer,
    store: Arc<MemoryStore>,
    secrets: Arc<MemorySecrets>,
    /// Every body answered, to check no secret ever leaves.
    answers: std::sync::Mutex<Vec<String>>,
}

async fn env() -> Env {
    let stripe = MockServer::start().await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let base = stripe.uri();
    let config = Config::from_lookup(|k| (k == "STRIPE_API_BASE").then(|| base.clone())).unwrap();
    let app = App::new(
        config,
        store.clone(),
        secrets.clone(),
        Arc::new(FixedClock::at(1_800_000_000)),
    )
    .with_stripe_settings(StripeSettings {
        api_base: stripe.uri(),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..StripeSettings::default()
    });
    Env {
        app,
        stripe,
        store,
        secrets,
        answers: Default::default(),
    }
}

impl Env {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .body(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let resp = api::handle(&self.app, req, Routes::Connections).await;
        let text = String::from_utf8(resp.body().to_vec()).unwrap();
        self.answers.lock().unwrap().push(text.clone());
        (resp.status(), serde_json::from_str(&text).unwrap())
    }

    async fn stripe_calls(&self) -> Vec<wiremock::Request> {
        self.stripe.received_requests().await.unwrap()
    }

    async fn account(&self, id: &str) {
        Mock::given(method("GET"))
            .and(path("/v1/account"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": id, "object": "account"})),
            )
            .mount(&self.stripe)
            .await;
    }

    async fn connect(&self, body: Value) -> String {
        let (status, out) = self.call("POST", "/connections", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
        out["id"].as_str().unwrap().to_string()
    }

    fn assert_no_secret_answered(&self, secrets: &[&str]) {
        for answer in self.answers.lock().unwrap().iter() {
            for s in secrets {
                assert!(!answer.contains(s), "{s} appeared in an answer: {answer}");
            }
        }
    }
}

fn form(req: &wiremock::Request) -> Vec<(String, String)> {
    form_pairs(&req.body)
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn create_validates_the_key_with_stripe_and_keeps_it_out_of_the_table() {
    let env = env().await;
    env.account("acct_1Acme").await;
    let (status, out) = env
        .call(
            "POST",
            "/connections",
            Some(json!({"name": "Acme", "api_key": KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    let id = out["id"].as_str().unwrap();
    assert!(id.starts_with("conn_"));
    assert_eq!(out["account_id"], "acct_1Acme");
    assert_eq!(out["livemode"], false);
    assert_eq!(out["api_version"], "2023-08-16");
    assert_eq!(out["webhook_url"], format!("https://{HOST}/webhooks/{id}"));
    assert_eq!(out["webhook"]["mode"], "managed");
    assert_eq!(
        out["webhook"]["endpoint_id"],
        Value::Null,
        "no triggers, no endpoint"
    );

    let calls = env.stripe_calls().await;
    assert_eq!(calls.len(), 1, "only the account check");
    assert_eq!(
        calls[0].headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert_eq!(calls[0].headers["stripe-version"], "2023-08-16");

    let stored = env.store.get_connection(id).await.unwrap().unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains(KEY));
    let secrets = env.secrets.get_secrets(id).await.unwrap().unwrap();
    assert_eq!(secrets.api_key.expose_secret(), KEY);
    env.assert_no_secret_answered(&[KEY]);

    let (status, listed) = env.call("GET", "/connections", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"][0]["id"], id);
    assert_eq!(
        listed["data"][0]["webhook_url"],
        format!("https://{HOST}/webhooks/{id}")
    );
    let (status, one) = env.call("GET", &format!("/connections/{id}"), None).await;
    assert_eq!(
        (status, one["name"].as_str()),
        (StatusCode::OK, Some("Acme"))
    );
    env.assert_no_secret_answered(&[KEY]);
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_nothing_reaches_stripe() {
    let env = env().await;
    env.account("acct_1").await;
    let cases = [
        (
            json!({"name": "Acme", "api_key": "pk_test_publishable123"}),
            "api_key",
        ),
        (
            json!({"name": "Acme", "api_key": "sk_test_abc/../x"}),
            "api_key",
        ),
        (json!({"name": "", "api_key": KEY}), "name"),
        (
            json!({"name": "Acme", "api_key": KEY, "colour": "red"}),
            "colour",
        ),
        (json!({"name": "Acme", "api_key": 42}), "api_key"),
        (
            json!({"name": "Acme", "api_key": KEY, "api_version": "latest"}),
            "api_version",
        ),
        (
            json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "manual", "secret": "nope"}}),
            "webhook.secret",
        ),
        (
            json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "auto"}}),
            "webhook.mode",
        ),
    ];
    for (body, param) in cases {
        let (status, out) = env.call("POST", "/connections", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {out}");
        assert_eq!(out["error"]["param"], param, "{body} → {out}");
    }
    let (status, out) = env.call("POST", "/connections", None).await;
    assert_eq!(
        (status, out["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    assert!(env.stripe_calls().await.is_empty());
    assert!(env.store.list_connections().await.unwrap().is_empty());
    env.assert_no_secret_answered(&[KEY]);
}

#[tokio::test]
async fn a_key_stripe_refuses_is_422_with_stripes_message() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(401).insert_header("request-id", "req_401").set_body_json(
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****cret"}}),
        ))
        .mount(&env.stripe)
        .await;
    let (status, out) = env
        .call(
            "POST",
            "/connections",
            Some(json!({"name": "Acme", "api_key": KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["error"]["type"], "invalid_api_key");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid API Key provided")
    );
    assert_eq!(out["error"]["stripe"]["request_id"], "req_401");
    assert!(env.store.list_connections().await.unwrap().is_empty());
    env.assert_no_secret_answered(&[KEY]);
}

async fn endpoint_mocks(env: &Env) {
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "we_1", "object": "webhook_endpoint", "secret": "whsec_fromstripe1"}),
        ))
        .mount(&env.stripe)
        .await;
}

#[tokio::test]
async fn triggers_drive_one_managed_endpoint() {
    let env = env().await;
    env.account("acct_1").await;
    endpoint_mocks(&env).await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "we_1"})))
        .mount(&env.stripe)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "we_1", "deleted": true})),
        )
        .mount(&env.stripe)
        .await;
    let id = env
        .connect(json!({"name": "Acme", "api_key": KEY, "api_version": "2024-04-10"}))
        .await;

    // First triggers: the endpoint is created, pinned to the connection's version.
    let triggers = json!({"triggers": ["invoice.created", "customer.created", "invoice.created"]});
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(triggers),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["triggers"],
        json!(["customer.created", "invoice.created"])
    );
    assert_eq!(out["webhook"]["endpoint_id"], "we_1");
    assert_eq!(out["webhook"]["secrets"], 1);
    let calls = env.stripe_calls().await;
    // After a creation the connector lists endpoints to sweep orphans.
    let create = calls
        .iter()
        .rev()
        .find(|c| c.method.as_str() == "POST")
        .unwrap();
    assert_eq!(
        (create.method.as_str(), create.url.path()),
        ("POST", "/v1/webhook_endpoints")
    );
    assert!(create.headers.get("idempotency-key").is_some());
    assert_eq!(
        form(create),
        [
            ("url", format!("https://{HOST}/webhooks/{id}")),
            ("enabled_events[]", "customer.created".to_string()),
            ("enabled_events[]", "invoice.created".to_string()),
            ("api_version", "2024-04-10".to_string()),
            ("description", "stripe-connector: Acme".to_string()),
            ("metadata[connection_id]", id.clone()),
            ("metadata[managed_by]", "stripe-connector".to_string()),
            ("metadata[api_version]", "2024-04-10".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
    );
    let secrets = env.secrets.get_secrets(&id).await.unwrap().unwrap();
    assert_eq!(
        secrets.webhook_secrets[0].expose_secret(),
        "whsec_fromstripe1"
    );

    // Changed triggers: the same endpoint is updated, not a second one made.
    let (status, _) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(json!({"triggers": ["invoice.paid"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let calls = env.stripe_calls().await;
    let update = calls.last().unwrap();
    assert_eq!(
        (update.method.as_str(), update.url.path()),
        ("POST", "/v1/webhook_endpoints/we_1")
    );
    assert_eq!(
        form(update),
        [
            ("enabled_events[]".to_string(), "invoice.paid".to_string()),
            ("url".to_string(), format!("https://{HOST}/webhooks/{id}"))
        ]
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.method.as_str() == "POST" && c.url.path() == "/v1/webhook_endpoints")
            .count(),
        1,
        "created once"
    );

    // No triggers: the endpoint goes.
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(json!({"triggers": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["webhook"]["endpoint_id"], Value::Null);
    let calls = env.stripe_calls().await;
    assert_eq!(
        (
            calls.last().unwrap().method.as_str(),
            calls.last().unwrap().url.path()
        ),
        ("DELETE", "/v1/webhook_endpoints/we_1")
    );
    env.assert_no_secret_answered(&[KEY, "whsec_fromstripe1"]);
}

#[tokio::test]
async fn an_endpoint_deleted_in_stripe_is_recreated() {
    let env = env().await;
    env.account("acct_1").await;
    endpoint_mocks(&env).await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such webhook endpoint: 'we_1'"}}),
        ))
        .mount(&env.stripe)
        .await;
    let id = env.connect(json!({"name": "Acme", "api_key": KEY})).await;
    env.call(
        "PUT",
        &format!("/connections/{id}/triggers"),
        Some(json!({"triggers": ["invoice.created"]})),
    )
    .await;
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(json!({"triggers": ["invoice.paid"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let calls = env.stripe_calls().await;
    let creates: Vec<_> = calls
        .iter()
        .filter(|c| c.method.as_str() == "POST" && c.url.path() == "/v1/webhook_endpoints")
        .collect();
    assert_eq!(creates.len(), 2, "created, then recreated after the 404");
    assert!(
        form(creates[1]).contains(&("enabled_events[]".to_string(), "invoice.paid".to_string()))
    );
}

#[tokio::test]
async fn sixteen_endpoints_already_is_409() {
    let env = env().await;
    env.account("acct_1").await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "message": "You have reached the maximum of 16 test webhook endpoints."
        }})))
        .mount(&env.stripe)
        .await;
    let id = env.connect(json!({"name": "Acme", "api_key": KEY})).await;
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(json!({"triggers": ["invoice.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert_eq!(out["error"]["type"], "webhook_endpoint_limit");
    assert!(out["error"]["message"].as_str().unwrap().contains("16"));
    assert!(
        out["error"]["stripe"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 16")
    );
    let stored = env.store.get_connection(&id).await.unwrap().unwrap();
    assert!(
        stored.triggers.is_empty(),
        "nothing changes when Stripe refuses"
    );
}

#[tokio::test]
async fn unknown_triggers_are_refused_before_stripe() {
    let env = env().await;
    env.account("acct_1").await;
    let id = env.connect(json!({"name": "Acme", "api_key": KEY})).await;
    let before = env.stripe_calls().await.len();
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(json!({"triggers": ["invoice.created", "invoice.exploded"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(out["error"]["param"], "triggers[1]");
    assert_eq!(env.stripe_calls().await.len(), before);
}

#[tokio::test]
async fn manual_mode_never_touches_endpoints() {
    let env = env().await;
    env.account("acct_1").await;
    let id = env
        .connect(json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "manual", "secret": " whsec_manual123 \n"}}))
        .await;
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/triggers"),
            Some(json!({"triggers": ["invoice.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["webhook"]["mode"], "manual");
    assert_eq!(env.stripe_calls().await.len(), 1, "only the account check");
    let secrets = env.secrets.get_secrets(&id).await.unwrap().unwrap();
    assert_eq!(
        secrets.webhook_secrets[0].expose_secret(),
        "whsec_manual123",
        "trimmed once, at input"
    );
    env.assert_no_secret_answered(&[KEY, "whsec_manual123"]);
}

#[tokio::test]
async fn webhook_secret_rotation_keeps_then_drops_the_old_one() {
    let env = env().await;
    env.account("acct_1").await;
    let id = env.connect(json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "manual", "secret": "whsec_old"}})).await;
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/webhook-secret"),
            Some(json!({"secret": "whsec_new"})),
        )
        .await;
    assert_eq!(
        (status, out["webhook"]["secrets"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let s = env.secrets.get_secrets(&id).await.unwrap().unwrap();
    let list: Vec<&str> = s
        .webhook_secrets
        .iter()
        .map(secrecy::ExposeSecret::expose_secret)
        .collect();
    assert_eq!(list, ["whsec_new", "whsec_old"]);
    let (_, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/webhook-secret"),
            Some(json!({"secret": "whsec_new", "keep_previous": false})),
        )
        .await;
    assert_eq!(out["webhook"]["secrets"], 1);
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/webhook-secret"),
            Some(json!({"secret": "sk_test_x"})),
        )
        .await;
    assert_eq!(
        (status, out["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("secret"))
    );
    env.assert_no_secret_answered(&["whsec_old", "whsec_new", KEY]);
}

#[tokio::test]
async fn api_key_rotation_must_stay_on_the_same_account_and_mode() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "acct_1"})))
        .up_to_n_times(2)
        .mount(&env.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "acct_other"})))
        .mount(&env.stripe)
        .await;
    let id = env.connect(json!({"name": "Acme", "api_key": KEY})).await;
    let new_key = "rk_test_51RestrictedRotated";
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/api-key"),
            Some(json!({"api_key": new_key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        env.secrets
            .get_secrets(&id)
            .await
            .unwrap()
            .unwrap()
            .api_key
            .expose_secret(),
        new_key
    );
    let (status, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/api-key"),
            Some(json!({"api_key": "sk_test_51AnotherAccount"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acct_other")
    );
    let (status, _) = env
        .call(
            "PUT",
            &format!("/connections/{id}/api-key"),
            Some(json!({"api_key": "sk_live_51LiveKey"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        env.secrets
            .get_secrets(&id)
            .await
            .unwrap()
            .unwrap()
            .api_key
            .expose_secret(),
        new_key,
        "unchanged"
    );
    env.assert_no_secret_answered(&[
        KEY,
        new_key,
        "sk_test_51AnotherAccount",
        "sk_live_51LiveKey",
    ]);
}

#[tokio::test]
async fn delete_removes_the_endpoint_the_secrets_and_the_record() {
    let env = env().await;
    env.account("acct_1").await;
    endpoint_mocks(&env).await;
    Mock::given(method("DELETE"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "boom"}})),
        )
        .up_to_n_times(3)
        .mount(&env.stripe)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "we_1", "deleted": true})),
        )
        .mount(&env.stripe)
        .await;
    let id = env.connect(json!({"name": "Acme", "api_key": KEY})).await;
    env.call(
        "PUT",
        &format!("/connections/{id}/triggers"),
        Some(json!({"triggers": ["invoice.created"]})),
    )
    .await;

    // Stripe fails (after the client's retries): nothing is deleted, the caller is told.
    let (status, out) = env
        .call("DELETE", &format!("/connections/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{out}");
    assert!(env.store.get_connection(&id).await.unwrap().is_some());

    let (status, out) = env
        .call("DELETE", &format!("/connections/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["webhook_endpoint_deleted"], true);
    assert!(env.store.get_connection(&id).await.unwrap().is_none());
    assert!(env.secrets.get_secrets(&id).await.unwrap().is_none());
    let (status, _) = env.call("GET", &format!("/connections/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ids_and_routes_are_checked() {
    let env = env().await;
    for (m, uri, status) in [
        ("GET", "/connections/conn_nobody", StatusCode::NOT_FOUND),
        ("GET", "/connections/cus_123", StatusCode::NOT_FOUND),
        ("GET", "/connections/conn_a%2F..%2Fb", StatusCode::NOT_FOUND),
        ("PATCH", "/connections", StatusCode::METHOD_NOT_ALLOWED),
        (
            "POST",
            "/connections/conn_abc",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("GET", "/nowhere", StatusCode::NOT_FOUND),
        ("POST", "/webhooks/conn_abc", StatusCode::NOT_FOUND),
    ] {
        let (got, out) = env.call(m, uri, None).await;
        assert_eq!(got, status, "{m} {uri}: {out}");
        assert!(out["error"]["message"].is_string());
    }
    let (status, out) = env.call("GET", "/catalog", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["triggers"].as_array().unwrap().len(), 25);
    assert!(env.stripe_calls().await.is_empty());
}

#[tokio::test]
async fn a_malformed_api_version_is_400_not_a_crash() {
    let env = env().await;
    env.account("acct_1Acme").await;
    for version in [
        "2023-08-1é",
        "2023-08-16.é",
        "2023-08-16é",
        "é",
        "2023-08-16.",
        "",
    ] {
        let (status, out) = env
            .call(
                "POST",
                "/connections",
                Some(json!({"name": "Acme", "api_key": KEY, "api_version": version})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version:?}: {out}");
        assert_eq!(out["error"]["param"], "api_version", "{version:?}");
    }
    assert!(env.stripe_calls().await.is_empty());
}

#[tokio::test]
async fn workflow_targets_must_be_public_urls() {
    let env = env().await;
    env.account("acct_1Acme").await;
    let id = env
        .connect(json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "manual", "secret": "whsec_abc"}}))
        .await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://10.0.0.1/",
        "http://[",
        "https://",
    ] {
        let (status, out) = env
            .call(
                "POST",
                &format!("/connections/{id}/workflows"),
                Some(json!({"trigger": "customer.created", "target": {"url": url}})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {out}");
        assert_eq!(out["error"]["param"], "target.url", "{url}");
    }
    let (_, list) = env
        .call("GET", &format!("/connections/{id}/workflows"), None)
        .await;
    assert_eq!(list["data"], json!([]), "nothing was stored");
    let (status, out) = env
        .call(
            "POST",
            &format!("/connections/{id}/workflows"),
            Some(json!({"trigger": "customer.created", "target": {"url": "https://hooks.example.com/x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
}

#[tokio::test]
async fn a_wildcard_workflow_whose_input_would_explode_is_refused_at_creation() {
    let env = env().await;
    env.account("acct_1Acme").await;
    let id = env
        .connect(json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "manual", "secret": "whsec_abc"}}))
        .await;
    // 2,000 copies of a path the sample lacks: it reads as null at creation
    // and still counts against the bound of the filled-in input, whose
    // literal text alone is over it.
    let copies: Vec<String> = (0..4000)
        .map(|_| "{{event.data.object.big}}".to_string())
        .collect();
    let (status, out) = env
        .call(
            "POST",
            &format!("/connections/{id}/workflows"),
            Some(
                json!({"trigger": "*", "steps": [{"action": "customers.update",
                "input": {"id": "{{event.data.object.id}}", "description": copies.join(" ")}}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["error"]["param"], "steps[0].input");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{out}"
    );
}

/// In AWS the webhook URL a managed endpoint is registered with comes from
/// the domain API Gateway served the request on, never from a `Host`
/// header the caller chose.
#[tokio::test]
async fn the_webhook_url_ignores_a_forged_host_header() {
    let env = env().await;
    env.account("acct_1Acme").await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/get_unknown_connection.json"
    );
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["routeKey"] = json!("POST /connections");
    doc["rawPath"] = json!("/connections");
    doc["requestContext"]["http"]["method"] = json!("POST");
    doc["requestContext"]["http"]["path"] = json!("/connections");
    doc["requestContext"]["routeKey"] = json!("POST /connections");
    doc["pathParameters"] = json!({});
    doc["headers"]["host"] = json!("evil.example");
    doc["body"] = json!(json!({"name": "Acme", "api_key": KEY}).to_string());
    let req = lambda_http::request::from_str(&doc.to_string()).unwrap();
    let resp = api::handle(&env.app, req, Routes::Connections).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let out: Value = serde_json::from_slice(resp.body()).unwrap();
    let id = out["id"].as_str().unwrap();
    assert_eq!(
        out["webhook_url"],
        format!("https://abc123defg.execute-api.us-east-1.amazonaws.com/webhooks/{id}")
    );
}

/// A secret store that cannot delete (for now).
struct NoDeletes(Arc<MemorySecrets>);

#[async_trait::async_trait]
impl SecretStore for NoDeletes {
    async fn get_secrets(
        &self,
        id: &str,
    ) -> Result<Option<connector_core::model::ConnectionSecrets>, connector_core::ports::SecretsError>
    {
        self.0.get_secrets(id).await
    }
    async fn put_secrets(
        &self,
        id: &str,
        s: &connector_core::model::ConnectionSecrets,
    ) -> Result<(), connector_core::ports::SecretsError> {
        self.0.put_secrets(id, s).await
    }
    async fn delete_secrets(&self, _: &str) -> Result<(), connector_core::ports::SecretsError> {
        Err(connector_core::ports::SecretsError::Unavailable(
            "down".into(),
        ))
    }
}

/// Secrets go before the record: when their deletion fails, the connection
/// is still there, so a retried DELETE can remove both; never a key left
/// behind that no API can reach.
#[tokio::test]
async fn a_failed_secret_delete_leaves_the_connection_to_retry() {
    let mut env = env().await;
    env.account("acct_1Acme").await;
    let id = env
        .connect(json!({"name": "Acme", "api_key": KEY, "webhook": {"mode": "manual", "secret": "whsec_abc"}}))
        .await;
    let working = env.app.secrets.clone();
    env.app.secrets = Arc::new(NoDeletes(env.secrets.clone()));
    let (status, _) = env
        .call("DELETE", &format!("/connections/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(env.store.get_connection(&id).await.unwrap().is_some());
    env.app.secrets = working;
    let (status, out) = env
        .call("DELETE", &format!("/connections/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(env.store.get_connection(&id).await.unwrap().is_none());
    assert!(env.secrets.get_secrets(&id).await.unwrap().is_none());
}
