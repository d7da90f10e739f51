//! What an operator sees: webhook metrics by outcome, and logs in the
//! functions' own format that never hold a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use connector_core::adapters::local_queue::LocalQueue;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::api::{Routes, handle};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::metrics::{Measure, MemoryMetrics};
use connector_core::workflow::engine::Engine;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T: i64 = 1_900_000_000;
const API_KEY: &str = "sk_test_observabilityKEY51abc";
const ROTATED_KEY: &str = "sk_test_rotatedKEY77xyz";
const WEBHOOK_SECRET: &str = "whsec_observabilitySECRET9a8b7c6d5e4f";

struct Env {
    app: App,
    stripe: MockServer,
    metrics: Arc<MemoryMetrics>,
    queue: Arc<LocalQueue>,
}

async fn env() -> Env {
    let stripe = MockServer::start().await;
    let metrics = Arc::new(MemoryMetrics::default());
    let clock = Arc::new(FixedClock::at(T));
    let queue = LocalQueue::new(clock.clone());
    let app = App::new(
        Config::from_lookup(|k| (k == "CONNECTOR_ALLOW_PRIVATE_TARGETS").then(|| "true".into()))
            .unwrap(),
        Arc::new(MemoryStore::default()),
        Arc::new(MemorySecrets::default()),
        clock,
    )
    .with_stripe_settings(crate::support::fast_stripe(stripe.uri()))
    .with_metrics(metrics.clone())
    .with_queue(queue.clone());
    Env {
        app,
        stripe,
        metrics,
        queue,
    }
}

impl Env {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        crate::support::call(&self.app, method, uri, body).await
    }

    async fn webhook(&self, conn: &str, payload: &str, secret: &str) -> (u16, Value) {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("/webhooks/{conn}"))
            .header(
                "stripe-signature",
                connector_core::webhook::sign_header(payload.as_bytes(), secret, T),
            )
            .body(bytes::Bytes::from(payload.to_string()))
            .unwrap();
        let resp = handle(&self.app, req, Routes::All).await;
        (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        )
    }

    /// A connection in manual webhook mode, made through the API (Stripe's
    /// `GET /v1/account` answers for the key).
    async fn connection(&self) -> String {
        Mock::given(method("GET"))
            .and(path("/v1/account"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "acct_obs", "object": "account"})),
            )
            .mount(&self.stripe)
            .await;
        let (status, created) = self
            .call(
                "POST",
                "/connections",
                Some(json!({"name": "Obs", "api_key": API_KEY,
                    "webhook": {"mode": "manual", "secret": WEBHOOK_SECRET}})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_string()
    }
}

fn event(id: &str) -> String {
    json!({"id": id, "object": "event", "type": "customer.created", "created": T, "livemode": false,
        "api_version": "2023-08-16", "data": {"object": {"id": "cus_obs", "object": "customer", "email": "o@example.com"}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_counted_as_received_duplicate_or_rejected_by_reason() {
    let env = env().await;
    let conn = env.connection().await;
    let payload = event("evt_obs_1");
    assert_eq!(env.webhook(&conn, &payload, WEBHOOK_SECRET).await.0, 200);
    assert_eq!(env.webhook(&conn, &payload, WEBHOOK_SECRET).await.0, 200);
    let (status, refused) = env.webhook(&conn, &payload, "whsec_not_the_secret").await;
    assert_eq!(status, 400, "{refused}");
    let reason = refused["error"]["type"].as_str().unwrap().to_string();
    assert_eq!(
        env.webhook("conn_unknown", &payload, WEBHOOK_SECRET)
            .await
            .0,
        404
    );

    let m = &env.metrics;
    assert_eq!(
        m.count(|x| *x == Measure::EventReceived { duplicate: false }),
        1
    );
    assert_eq!(
        m.count(|x| *x == Measure::EventReceived { duplicate: true }),
        1
    );
    assert_eq!(
        m.count(|x| matches!(x, Measure::EventRejected { reason: r } if *r == reason)),
        1,
        "{:?}",
        m.taken()
    );
    assert_eq!(
        m.count(|x| matches!(x, Measure::EventRejected { reason } if *reason == "not_found")),
        1,
        "{:?}",
        m.taken()
    );
}

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Everything the connector logs at the most verbose level, in the
/// functions' own format, while a connection is made, its key rotated,
/// Stripe refuses a key (echoing part of it, as Stripe does), webhooks are
/// received and refused, and a workflow with a signed target runs: no API
/// key, webhook secret or target secret appears in any line. A run's lines
/// carry its connection, event and run.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_appear_in_the_logs() {
    let captured = Captured::default();
    let subscriber = connector_core::lambda::log_subscriber("trace", captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = env().await;
    let conn = env.connection().await;
    // A workflow delivering to a target: its signing secret is made now.
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    let (status, workflow) = env
        .call(
            "POST",
            &format!("/connections/{conn}/workflows"),
            Some(json!({"trigger": "customer.created", "target": {"url": format!("{}/hook", target.uri())},
                "steps": [{"action": "customers.update", "input": {"id": "{{event.data.object.id}}", "metadata": {"seen": "yes"}}}]})),
        )
        .await;
    assert_eq!(status, 201, "{workflow}");
    let target_secret = workflow["target_secret"].as_str().unwrap().to_string();
    // Alerts go to the same server: the run below dies and says so.
    let (status, alerts) = env
        .call(
            "PUT",
            &format!("/connections/{conn}/alerts"),
            Some(json!({"url": format!("{}/alerts", target.uri())})),
        )
        .await;
    assert_eq!(status, 200, "{alerts}");
    let alert_secret = alerts["secret"].as_str().unwrap().to_string();
    // Stripe refuses the key a step uses, quoting its end as Stripe does.
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_obs"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "message": format!("Invalid API Key provided: {}", API_KEY),
        }})))
        .mount(&env.stripe)
        .await;
    let payload = event("evt_obs_log");
    assert_eq!(env.webhook(&conn, &payload, WEBHOOK_SECRET).await.0, 200);
    assert_eq!(env.webhook(&conn, &payload, "whsec_wrong").await.0, 400);
    let stored = env
        .app
        .events
        .get_event(&conn, "evt_obs_log")
        .await
        .unwrap()
        .unwrap();
    let engine = Engine::new(&env.app, "w-logs");
    engine.fan_out(&stored).await.unwrap();
    let outcomes = engine.work_ready(&env.queue).await;
    assert!(!outcomes.is_empty());
    let alerted = target
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/alerts")
        .count();
    assert_eq!(alerted, 1, "run.dead was sent");
    // A reconcile pass, as the schedule runs it.
    let (status, pass) = env
        .call("POST", &format!("/connections/{conn}/reconcile"), None)
        .await;
    assert_eq!(status, 200, "{pass}");
    // The key is rotated (Stripe confirms the account) and a bad one refused.
    let (status, body) = env
        .call(
            "PUT",
            &format!("/connections/{conn}/api-key"),
            Some(json!({"api_key": ROTATED_KEY})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 10, "{logs}");
    for secret in [
        API_KEY,
        ROTATED_KEY,
        WEBHOOK_SECRET,
        target_secret.as_str(),
        alert_secret.as_str(),
    ] {
        // Nor a telling part of it (the key after its prefix).
        let tail = &secret[secret.len() - 12..];
        assert!(
            !logs.contains(tail),
            "a secret ending {tail} is in the logs:\n{}",
            logs.lines()
                .filter(|l| l.contains(tail))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Lines logged while a run is carried on name it.
    let run_line = logs
        .lines()
        .find(|l| l.contains("run attempt finished"))
        .unwrap_or_else(|| panic!("no run line in:\n{logs}"));
    let line: Value = serde_json::from_str(run_line).unwrap();
    let span = line["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "run")
        .unwrap_or_else(|| panic!("{run_line}"));
    assert_eq!(span["connection"], conn.as_str());
    assert_eq!(span["event_id"], "evt_obs_log");
    assert_eq!(line["level"], "INFO");
}
