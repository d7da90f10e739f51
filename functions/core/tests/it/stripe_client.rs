//! The Stripe client's wire format and retry rules, checked against an
//! in-process HTTP mock, and a real round trip against localstripe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_core::stripe::{StripeClient, StripeError, StripeSettings, http_client};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_test_51SuperSecretKeyValue";

fn settings(base: &str) -> StripeSettings {
    StripeSettings {
        api_base: base.to_string(),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..StripeSettings::default()
    }
}

fn client_with(s: StripeSettings) -> StripeClient {
    StripeClient::new(http_client(), Arc::new(s), SecretString::from(KEY))
}

fn client(server: &MockServer) -> StripeClient {
    client_with(settings(&server.uri()))
}

fn stripe_error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", "req_abc123")
        .set_body_json(json!({"error": {"type": kind, "message": message, "param": "email", "code": "parameter_invalid", "doc_url": "https://stripe.com/docs/error-codes/parameter-invalid"}}))
}

fn header<'a>(req: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn post_sends_the_exact_wire_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "sub_1", "object": "subscription"})),
        )
        .mount(&server)
        .await;
    let body = json!({
        "customer": "cus_123",
        "items": [{"price": "price_1", "quantity": 2}],
        "metadata": {"order": "42", "drop": ""},
        "expand": ["latest_invoice"],
        "off_session": true,
        "description": null,
    });
    let out = client(&server)
        .post("/v1/subscriptions", &body, Some("idem-1"))
        .await
        .unwrap();
    assert_eq!(out["id"], "sub_1");

    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(r.url.path(), "/v1/subscriptions");
    assert_eq!(
        header(r, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header(r, "stripe-version"), Some("2023-08-16"));
    assert_eq!(header(r, "idempotency-key"), Some("idem-1"));
    assert_eq!(
        header(r, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(header(r, "stripe-account").is_none());
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        "customer=cus_123&items[0][price]=price_1&items[0][quantity]=2&metadata[order]=42&metadata[drop]=&expand[]=latest_invoice&off_session=true"
    );
}

#[tokio::test]
async fn post_without_key_gets_a_generated_one_and_version_and_account_are_set() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1"})))
        .mount(&server)
        .await;
    let c = client(&server)
        .with_api_version("2024-04-10")
        .with_account("acct_123");
    c.post("/v1/customers", &json!({"name": "A"}), None)
        .await
        .unwrap();
    c.post("/v1/customers", &json!({"name": "B"}), None)
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let k1 = header(&reqs[0], "idempotency-key").unwrap();
    let k2 = header(&reqs[1], "idempotency-key").unwrap();
    assert!(k1.starts_with("stripe-connector-") && k1.len() > 30, "{k1}");
    assert_ne!(k1, k2, "each request gets its own key");
    assert_eq!(header(&reqs[0], "stripe-version"), Some("2024-04-10"));
    assert_eq!(header(&reqs[0], "stripe-account"), Some("acct_123"));
}

#[tokio::test]
async fn get_and_delete_encode_the_query_and_carry_no_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "list", "data": [], "has_more": false})),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1", "deleted": true})),
        )
        .mount(&server)
        .await;
    let c = client(&server);
    c.get(
        "/v1/customers",
        &json!({"email": "a+b@x.io", "limit": 3, "expand": ["data.default_source"]}),
    )
    .await
    .unwrap();
    c.delete("/v1/customers/cus_1", &json!({})).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        reqs[0].url.query(),
        Some("email=a%2Bb%40x.io&limit=3&expand[]=data.default_source")
    );
    assert!(header(&reqs[0], "idempotency-key").is_none());
    assert!(reqs[0].body.is_empty());
    assert_eq!(reqs[1].method.as_str(), "DELETE");
    assert_eq!(reqs[1].url.query(), None);
    assert!(header(&reqs[1], "idempotency-key").is_none());
}

#[tokio::test]
async fn rate_limited_then_ok_is_two_attempts_with_one_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(stripe_error(
            429,
            "invalid_request_error",
            "Too many requests",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1"})))
        .mount(&server)
        .await;
    let out = client(&server)
        .post("/v1/customers", &json!({"name": "A"}), None)
        .await
        .unwrap();
    assert_eq!(out["id"], "cus_1");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    assert!(header(&reqs[0], "idempotency-key").is_some());
    assert_eq!(
        header(&reqs[0], "idempotency-key"),
        header(&reqs[1], "idempotency-key")
    );
    assert_eq!(reqs[0].body, reqs[1].body);
}

#[tokio::test]
async fn conflict_and_server_errors_are_retried() {
    for status in [409, 500, 502, 503] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(stripe_error(status, "api_error", "try again"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "x"})))
            .mount(&server)
            .await;
        client(&server)
            .post("/v1/customers", &json!({}), None)
            .await
            .unwrap();
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            2,
            "status {status}"
        );
    }
}

#[tokio::test]
async fn should_retry_false_is_one_attempt_even_on_500() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            stripe_error(500, "api_error", "no").insert_header("Stripe-Should-Retry", "false"),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .post("/v1/customers", &json!({}), None)
        .await
        .unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(err.status(), Some(500));
    assert!(!err.is_transient(), "Stripe said not to retry");
}

#[tokio::test]
async fn should_retry_true_retries_even_a_400() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            stripe_error(400, "invalid_request_error", "lock")
                .insert_header("Stripe-Should-Retry", "true"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "x"})))
        .mount(&server)
        .await;
    client(&server)
        .post("/v1/customers", &json!({}), None)
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn bad_request_is_one_attempt_with_a_typed_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(stripe_error(
            400,
            "invalid_request_error",
            "Invalid email address: nope",
        ))
        .mount(&server)
        .await;
    let err = client(&server)
        .post("/v1/customers", &json!({"email": "nope"}), None)
        .await
        .unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    match &err {
        StripeError::Api {
            status,
            error,
            request_id,
            should_retry,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error.kind, "invalid_request_error");
            assert_eq!(error.param.as_deref(), Some("email"));
            assert_eq!(error.code.as_deref(), Some("parameter_invalid"));
            assert_eq!(
                error.message.as_deref(),
                Some("Invalid email address: nope")
            );
            assert!(error.doc_url.is_some());
            assert_eq!(request_id.as_deref(), Some("req_abc123"));
            assert_eq!(*should_retry, None);
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn max_retries_is_configurable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(stripe_error(503, "api_error", "down"))
        .mount(&server)
        .await;
    let c = client_with(StripeSettings {
        max_retries: 4,
        ..settings(&server.uri())
    });
    let err = c.get("/v1/customers/cus_1", &json!({})).await.unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
    assert!(err.is_transient());
    let c = client_with(StripeSettings {
        max_retries: 0,
        ..settings(&server.uri())
    });
    c.get("/v1/customers/cus_1", &json!({})).await.unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            stripe_error(429, "invalid_request_error", "slow down")
                .insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1"})))
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server)
        .get("/v1/customers/cus_1", &json!({}))
        .await
        .unwrap();
    // The backoff alone is at most 20 ms here: the wait came from Retry-After.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[test]
fn backoff_doubles_to_the_cap_with_jitter_and_caps_retry_after() {
    let s = StripeSettings::default();
    for _ in 0..200 {
        assert_eq!(s.backoff(0, None), Duration::from_millis(500));
        let d1 = s.backoff(1, None);
        assert!(
            d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1),
            "{d1:?}"
        );
        let d5 = s.backoff(5, None);
        assert!(
            d5 >= Duration::from_millis(2500) && d5 <= Duration::from_secs(5),
            "{d5:?}"
        );
        assert_eq!(
            s.backoff(0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        // Longer than 60 s: not honoured, the normal backoff applies.
        assert!(s.backoff(0, Some(Duration::from_secs(3600))) <= Duration::from_secs(5));
    }
}

#[tokio::test]
async fn a_proxy_html_502_is_a_decode_error_not_a_panic() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(502).set_body_string("<html><body>Bad Gateway</body></html>"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": \"cus_1\""))
        .mount(&server)
        .await;
    let err = client(&server)
        .get("/v1/customers/cus_1", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StripeError::Decode { status: 502, .. }),
        "{err:?}"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "a 502 is retried"
    );
    let err = client(&server)
        .post("/v1/customers", &json!({}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StripeError::Decode { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn timeout_is_its_own_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let c = client_with(StripeSettings {
        timeout: Duration::from_millis(200),
        ..settings(&server.uri())
    });
    let err = c.get("/v1/account", &json!({})).await.unwrap_err();
    assert!(matches!(err, StripeError::Timeout(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_after_retries() {
    let c = client_with(settings(&format!("http://127.0.0.1:{}", closed_port())));
    let err = c.get("/v1/account", &json!({})).await.unwrap_err();
    assert!(matches!(err, StripeError::Transport(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_key_never_shows_in_debug_or_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(stripe_error(
            401,
            "invalid_request_error",
            "Invalid API Key provided: sk_test_****alue",
        ))
        .mount(&server)
        .await;
    let c = client(&server);
    assert!(!format!("{c:?}").contains(KEY));
    let err = c.get("/v1/account", &json!({})).await.unwrap_err();
    assert!(!format!("{err:?}").contains(KEY));
    assert!(!err.to_string().contains(KEY));
    let err = client_with(settings(&format!("http://127.0.0.1:{}", closed_port())))
        .get("/v1/account", &json!({}))
        .await
        .unwrap_err();
    assert!(!format!("{err:?}").contains(KEY) && !err.to_string().contains(KEY));
}

fn localstripe() -> String {
    std::env::var("LOCALSTRIPE_URL")
        .expect("LOCALSTRIPE_URL is set by infra/test.sh: run the tests with it")
}

#[tokio::test]
async fn round_trip_against_localstripe_create_find_delete_customer() {
    let c = client_with(StripeSettings {
        api_base: localstripe(),
        ..StripeSettings::default()
    });
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let email = format!("round-trip-{unique}@example.com");
    let created = c
        .post(
            "/v1/customers",
            &json!({"email": email, "name": "Zoë Round", "metadata": {"source": "test"}}),
            None,
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cus_"), "{id}");
    let found = c
        .get(&format!("/v1/customers/{id}"), &json!({}))
        .await
        .unwrap();
    assert_eq!(found["email"], email.as_str());
    assert_eq!(found["name"], "Zoë Round");
    assert_eq!(found["metadata"]["source"], "test");
    let listed = c
        .get("/v1/customers", &json!({"email": email, "limit": 10}))
        .await
        .unwrap();
    assert_eq!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["id"] == id.as_str())
            .count(),
        1
    );
    let deleted = c
        .delete(&format!("/v1/customers/{id}"), &json!({}))
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    let err = c
        .get(&format!("/v1/customers/{id}"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}
