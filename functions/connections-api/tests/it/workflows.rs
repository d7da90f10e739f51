//! Workflows through the connections API, with Stripe mocked: what is
//! refused at creation, what the managed endpoint subscribes to, the test
//! run, and the runs a workflow makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use connector_core::adapters::local_queue::LocalQueue;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::model::StoredEvent;
use connector_core::ports::{EventStore, SecretStore, WorkflowStore};
use connector_core::stripe::StripeSettings;
use connector_core::workflow::engine::Engine;
use http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_test_51WorkflowsKey";
const HOST: &str = "abc123defg.execute-api.us-east-1.amazonaws.com";

struct Env {
    app: App,
    stripe: MockServer,
    secrets: Arc<MemorySecrets>,
    store: Arc<MemoryStore>,
    queue: Arc<LocalQueue>,
}

async fn env() -> Env {
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "acct_1"})))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "we_1", "secret": "whsec_endpoint"})),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "we_1"})))
        .mount(&stripe)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/webhook_endpoints/we_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "we_1", "deleted": true})),
        )
        .mount(&stripe)
        .await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let clock = Arc::new(FixedClock::at(1_900_000_000));
    let queue = LocalQueue::new(clock.clone());
    let app = App::new(
        Config::from_lookup(|k| (k == "CONNECTOR_ALLOW_PRIVATE_TARGETS").then(|| "true".into()))
            .unwrap(),
        store.clone(),
        secrets.clone(),
        clock,
    )
    .with_queue(queue.clone())
    .with_stripe_settings(StripeSettings {
        api_base: stripe.uri(),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..StripeSettings::default()
    });
    Env {
        app,
        stripe,
        secrets,
        store,
        queue,
    }
}

impl Env {
    /// Fan-out, then the executor on what it queued.
    async fn fan_out(&self, event: &StoredEvent) {
        let engine = Engine::new(&self.app, "w");
        engine.fan_out(event).await.unwrap();
        engine.work_ready(&self.queue).await;
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .body(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let resp = api::handle(&self.app, req, Routes::Connections).await;
        (resp.status(), serde_json::from_slice(resp.body()).unwrap())
    }

    async fn connection(&self) -> String {
        let (status, out) = self
            .call(
                "POST",
                "/connections",
                Some(json!({"name": "Acme", "api_key": KEY})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
        out["id"].as_str().unwrap().to_string()
    }

    /// The enabled_events of the last endpoint create or update sent to Stripe.
    async fn endpoint_events(&self) -> Option<Vec<String>> {
        let reqs = self.stripe.received_requests().await.unwrap();
        let last = reqs
            .iter()
            .rev()
            // The last change of the endpoint (not the list that looks for
            // orphans after a creation).
            .find(|r| {
                r.url.path().starts_with("/v1/webhook_endpoints") && r.method.as_str() != "GET"
            })?;
        if last.method.as_str() == "DELETE" {
            return Some(vec![]);
        }
        Some(
            url::form_urlencoded::parse(&last.body)
                .filter(|(k, _)| k == "enabled_events[]")
                .map(|(_, v)| v.into_owned())
                .collect(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_refuses_what_cannot_work_and_names_it() {
    let env = env().await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    for (body, param) in [
        (
            json!({"trigger": "invoice.exploded", "steps": [{"action": "invoices.finalize", "input": {"id": "in_1"}}]}),
            "trigger",
        ),
        (json!({"trigger": "invoice.created"}), "steps"),
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.melt", "input": {}}]}),
            "steps[0].action",
        ),
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.id"}}]}),
            "steps[0].input",
        ),
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{secrets.key}}"}}]}),
            "steps[0].input",
        ),
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{steps.0.id}}"}}]}),
            "steps[0].input",
        ),
        // The sample invoice.created event carries an invoice: its customer id is no invoice id.
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.customer}}"}}]}),
            "steps[0].input.id",
        ),
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.no_such_field}}"}}]}),
            "steps[0].input",
        ),
        (
            json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"invoice": "in_1"}}]}),
            "steps[0].input.invoice",
        ),
        (
            json!({"trigger": "invoice.created", "target": {"url": "ftp://x"}}),
            "target.url",
        ),
        (
            json!({"trigger": "invoice.created", "target": {"url": "https://x.example"}, "filter": {"data.status": "draft"}}),
            "filter",
        ),
        (
            json!({"trigger": "invoice.created", "target": {"url": "https://x.example"}, "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, out) = env.call("POST", &uri, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {out}");
        assert_eq!(out["error"]["param"], param, "{body} → {out}");
    }
    let (_, list) = env.call("GET", &uri, None).await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(env.endpoint_events().await, None, "no endpoint was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_follows_the_enabled_workflows_and_the_target_secret_is_shown_once() {
    let env = env().await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    let (status, finalize) = env
        .call("POST", &uri, Some(json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.id}}"}}]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{finalize}");
    assert!(finalize["id"].as_str().unwrap().starts_with("wf_"));
    assert!(finalize.get("target_secret").is_none());
    assert_eq!(env.endpoint_events().await.unwrap(), ["invoice.created"]);

    let (status, hook) = env.call("POST", &uri, Some(json!({"trigger": "customer.updated", "target": {"url": "https://hooks.example.com/in"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["target_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let hook_id = hook["id"].as_str().unwrap().to_string();
    // Kept with its workflow: creating one never rewrites the connection's
    // secrets (which concurrent creations used to lose).
    let stored = env
        .store
        .get_workflow(&conn, &hook_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.target.unwrap().secret.unwrap().expose(), secret);
    let connection_secrets = env.secrets.get_secrets(&conn).await.unwrap().unwrap();
    assert!(connection_secrets.target_secrets.is_empty());
    assert_eq!(
        env.endpoint_events().await.unwrap(),
        ["customer.updated", "invoice.created"]
    );
    let (_, again) = env.call("GET", &format!("{uri}/{hook_id}"), None).await;
    assert!(
        again.get("target_secret").is_none() && !again.to_string().contains(&secret),
        "shown once"
    );

    // Switched off: its trigger leaves the endpoint.
    let (status, off) = env
        .call(
            "PATCH",
            &format!("{uri}/{hook_id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, off["enabled"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(env.endpoint_events().await.unwrap(), ["invoice.created"]);
    // A wildcard subscribes to every catalog trigger.
    let (_, any) = env
        .call(
            "POST",
            &uri,
            Some(json!({"trigger": "*", "target": {"url": "https://hooks.example.com/all"}})),
        )
        .await;
    assert_eq!(env.endpoint_events().await.unwrap().len(), 25);
    // Deleting the last enabled ones removes the endpoint; the target secret goes too.
    for id in [
        any["id"].as_str().unwrap(),
        finalize["id"].as_str().unwrap(),
    ] {
        let (status, _) = env.call("DELETE", &format!("{uri}/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(env.endpoint_events().await.unwrap(), Vec::<String>::new());
    env.call("DELETE", &format!("{uri}/{hook_id}"), None).await;
    assert!(
        env.secrets
            .get_secrets(&conn)
            .await
            .unwrap()
            .unwrap()
            .target_secrets
            .is_empty()
    );
    let (status, _) = env.call("GET", &format!("{uri}/{hook_id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_run_shows_each_steps_resolved_input_and_result() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_1NnmX4GPxmnHQRkJyyhHiHYa/finalize"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "in_1NnmX4GPxmnHQRkJyyhHiHYa", "status": "open"})),
        )
        .mount(&env.stripe)
        .await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    let (_, wf) = env
        .call(
            "POST",
            &uri,
            Some(
                json!({"trigger": "invoice.created", "enabled": false, "steps": [
                    {"action": "invoices.finalize", "input": {"id": "{{event.data.object.id}}"}},
                    {"action": "customers.find", "input": {"id": "{{event.data.object.customer}}"}},
                ]}),
            ),
        )
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_Oaxlz8kB0PJWGa"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such customer"}})))
        .mount(&env.stripe)
        .await;
    let (status, report) = env
        .call(
            "POST",
            &format!("{uri}/{}/test", wf["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["steps"][0]["input"],
        json!({"id": "in_1NnmX4GPxmnHQRkJyyhHiHYa"}),
        "filled from the sample event"
    );
    assert_eq!(report["steps"][0]["result"]["status"], "open");
    // The second step reads the sample's customer, which this Stripe does not know: the
    // report says so with Stripe's error, and the run as a whole failed.
    assert_eq!(
        report["steps"][1]["input"],
        json!({"id": "cus_Oaxlz8kB0PJWGa"})
    );
    assert_eq!(
        report["steps"][1]["error"]["stripe"]["code"],
        "resource_missing"
    );
    assert_eq!(report["steps"][1]["error"]["retryable"], false);
    assert_eq!(report["status"], "failed");
    // No run is stored by a test.
    let (_, runs) = env
        .call("GET", &format!("/connections/{conn}/runs"), None)
        .await;
    assert_eq!(runs["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_with_their_state() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_9/finalize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "in_9"})))
        .mount(&env.stripe)
        .await;
    let conn = env.connection().await;
    let (_, wf) = env
        .call("POST", &format!("/connections/{conn}/workflows"), Some(json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.id}}"}}]})))
        .await;
    let event = StoredEvent {
        connection_id: conn.clone(),
        event_id: "evt_run1".into(),
        event_type: "invoice.created".into(),
        created: 1,
        livemode: false,
        api_version: None,
        account: None,
        body: Some(json!({"id": "evt_run1", "type": "invoice.created", "data": {"object": {"id": "in_9"}}}).to_string()),
        body_omitted: false,
        received_at: 1,
        expires_at: 2,
        recovered: false,
    };
    env.store.insert_event(&event).await.unwrap();
    env.fan_out(&event).await;
    let (status, runs) = env
        .call(
            "GET",
            &format!(
                "/connections/{conn}/runs?status=succeeded&workflow_id={}",
                wf["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert_eq!(runs["data"][0]["event_id"], "evt_run1");
    assert_eq!(runs["data"][0]["attempts"], 1);
    assert_eq!(runs["data"][0]["steps"][0]["input"], json!({"id": "in_9"}));
    for bad in [
        "status=lost",
        "event_id=cus_1",
        "limit=0",
        "workflow_id=..%2F",
    ] {
        let (status, out) = env
            .call("GET", &format!("/connections/{conn}/runs?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_runs_the_event_again_as_new_runs_with_new_keys() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_7/finalize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "in_7"})))
        .mount(&env.stripe)
        .await;
    let conn = env.connection().await;
    let (_, wf) = env
        .call("POST", &format!("/connections/{conn}/workflows"), Some(json!({"trigger": "invoice.created", "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.id}}"}}]})))
        .await;
    let wf_id = wf["id"].as_str().unwrap().to_string();
    let event = StoredEvent {
        connection_id: conn.clone(), event_id: "evt_again".into(), event_type: "invoice.created".into(), created: 1, livemode: false,
        api_version: None, account: None, body: Some(json!({"id": "evt_again", "type": "invoice.created", "data": {"object": {"id": "in_7"}}}).to_string()),
        body_omitted: false, received_at: 1, expires_at: 2, recovered: false,
    };
    env.store.insert_event(&event).await.unwrap();
    env.fan_out(&event).await;

    let (status, replayed) = env
        .call(
            "POST",
            &format!("/connections/{conn}/events/evt_again/replay"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["data"][0]["status"], "pending");
    assert!(
        replayed["data"][0]["replay"]
            .as_str()
            .unwrap()
            .starts_with("rpl_")
    );
    let (status, one) = env
        .call(
            "POST",
            &format!("/connections/{conn}/events/evt_again/replay?workflow={wf_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{one}");
    // The replays are queued at once; the executor carries them out.
    let done = Engine::new(&env.app, "w").work_ready(&env.queue).await;
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done.iter().all(|(r, _)| r.run_key.contains("#rpl_")));

    let finalizes: Vec<String> = env
        .stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/invoices/in_7/finalize")
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(finalizes.len(), 3, "the original and two replays");
    let distinct: std::collections::HashSet<_> = finalizes.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "a replay is a new try: its own idempotency key"
    );
    let (_, runs) = env
        .call(
            "GET",
            &format!("/connections/{conn}/runs?event_id=evt_again"),
            None,
        )
        .await;
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["status"] == "succeeded"));

    for (uri, status) in [
        (
            format!("/connections/{conn}/events/evt_nothere/replay"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/connections/{conn}/events/evt_again/replay?workflow=wf_nothere"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/connections/{conn}/events/evt_again/replay?workflow=..%2Fx"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/connections/{conn}/events/cus_1/replay"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(env.call("POST", &uri, None).await.0, status, "{uri}");
    }
}

/// Runs are listed newest first, a bounded page at a time: `limit` runs and
/// a `next_cursor` to go on from, until every run was seen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_paged_with_a_cursor() {
    use connector_core::ports::RunStore;
    use connector_core::workflow::run::Run;
    let env = env().await;
    let conn = env.connection().await;
    for i in 0..5 {
        let run = Run::new(
            &conn,
            &format!("evt_page{i}"),
            "wf_paged",
            1_900_000_000 + i,
        );
        assert!(env.store.create_run(&run).await.unwrap());
    }
    let mut seen = Vec::new();
    let mut uri = format!("/connections/{conn}/runs?limit=2");
    loop {
        let (status, page) = env.call("GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|r| r["event_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page["has_more"], true);
                uri = format!("/connections/{conn}/runs?limit=2&starting_after={next}");
            }
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(
        seen,
        [
            "evt_page4",
            "evt_page3",
            "evt_page2",
            "evt_page1",
            "evt_page0"
        ],
        "newest first, each once"
    );
    for bad in ["nope", "MTIzfGV2dF8xfC4uLw", &"A".repeat(700)] {
        let (status, out) = env
            .call(
                "GET",
                &format!("/connections/{conn}/runs?starting_after={bad}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {out}");
        assert_eq!(out["error"]["param"], "starting_after");
    }
}

/// Replaying into one named workflow runs it only where it would have run:
/// switched on, and on this event's type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_into_a_named_workflow_must_fit_the_event() {
    let env = env().await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    let (_, other) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.created", "target": {"url": "https://hooks.example.com/c"}})))
        .await;
    let (_, off) = env
        .call("POST", &uri, Some(json!({"trigger": "invoice.created", "enabled": false, "target": {"url": "https://hooks.example.com/i"}})))
        .await;
    let event = StoredEvent {
        connection_id: conn.clone(),
        event_id: "evt_fit".into(),
        event_type: "invoice.created".into(),
        created: 1,
        livemode: false,
        api_version: None,
        account: None,
        body: Some(json!({"id": "evt_fit", "type": "invoice.created"}).to_string()),
        body_omitted: false,
        received_at: 1,
        expires_at: 2,
        recovered: false,
    };
    env.store.insert_event(&event).await.unwrap();
    for (wf, says) in [(&other, "runs on customer.created"), (&off, "switched off")] {
        let id = wf["id"].as_str().unwrap();
        let (status, out) = env
            .call(
                "POST",
                &format!("/connections/{conn}/events/evt_fit/replay?workflow={id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
        assert_eq!(out["error"]["param"], "workflow");
        assert!(
            out["error"]["message"].as_str().unwrap().contains(says),
            "{out}"
        );
    }
}

/// A deleted connection's events are not served any more, and its
/// workflows go with it; lists of connections do not claim 0 secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_connection_leaves_nothing_served() {
    let env = env().await;
    let conn = env.connection().await;
    let (_, listed) = env.call("GET", "/connections", None).await;
    assert_eq!(
        listed["data"][0]["webhook"]["secrets"],
        Value::Null,
        "{listed}"
    );
    env.call("POST", &format!("/connections/{conn}/workflows"), Some(json!({"trigger": "customer.created", "target": {"url": "https://hooks.example.com/c"}})))
        .await;
    let event = StoredEvent {
        connection_id: conn.clone(),
        event_id: "evt_gone".into(),
        event_type: "customer.created".into(),
        created: 1,
        livemode: false,
        api_version: None,
        account: None,
        body: Some(json!({"id": "evt_gone"}).to_string()),
        body_omitted: false,
        received_at: 1,
        expires_at: 2,
        recovered: false,
    };
    env.store.insert_event(&event).await.unwrap();
    let (status, _) = env
        .call("GET", &format!("/connections/{conn}/events/evt_gone"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, out) = env
        .call("DELETE", &format!("/connections/{conn}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, _) = env
        .call("GET", &format!("/connections/{conn}/events/evt_gone"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(env.store.list_workflows(&conn).await.unwrap().is_empty());
}

/// A test run on a stored event is its own delivery: a receiver that
/// dedupes on `webhook-id` still gets the event's real run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_run_has_its_own_webhook_id() {
    let env = env().await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    let conn = env.connection().await;
    let (_, wf) = env
        .call("POST", &format!("/connections/{conn}/workflows"), Some(json!({"trigger": "customer.created", "target": {"url": format!("{}/in", target.uri())}})))
        .await;
    let wf_id = wf["id"].as_str().unwrap().to_string();
    let event = StoredEvent {
        connection_id: conn.clone(),
        event_id: "evt_twice".into(),
        event_type: "customer.created".into(),
        created: 1,
        livemode: false,
        api_version: None,
        account: None,
        body: Some(json!({"id": "evt_twice", "type": "customer.created"}).to_string()),
        body_omitted: false,
        received_at: 1,
        expires_at: 2,
        recovered: false,
    };
    env.store.insert_event(&event).await.unwrap();
    env.fan_out(&event).await;
    let (status, out) = env
        .call(
            "POST",
            &format!("/connections/{conn}/workflows/{wf_id}/test"),
            Some(json!({"event_id": "evt_twice"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let ids: Vec<String> = target
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

/// `ignore_own_writes` is on unless a workflow turns it off, and is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_own_writes_is_the_default_and_can_be_turned_off() {
    let env = env().await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    let (_, on) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.updated", "target": {"url": "https://hooks.example.com/a"}})))
        .await;
    assert_eq!(on["ignore_own_writes"], true, "{on}");
    let (status, off) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.updated", "ignore_own_writes": false, "target": {"url": "https://hooks.example.com/b"}})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{off}");
    assert_eq!(off["ignore_own_writes"], false);
    let (status, bad) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.updated", "ignore_own_writes": "no", "target": {"url": "https://hooks.example.com/c"}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["param"], "ignore_own_writes");
}

/// Change filters: refused at creation naming the field when malformed or
/// on a trigger without `previous_attributes`; their schema in the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_filters_are_checked_at_creation_and_described_in_the_catalog() {
    let env = env().await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    let target = json!({"url": "https://hooks.example.com/s"});
    for (trigger, filter) in [
        (
            "customer.subscription.updated",
            json!({"changed": {"status": "past_due"}}),
        ),
        ("customer.subscription.updated", json!({"changed": []})),
        (
            "customer.subscription.created",
            json!({"changed": ["status"]}),
        ),
    ] {
        let (status, out) = env
            .call(
                "POST",
                &uri,
                Some(json!({"trigger": trigger, "filter": filter, "target": target})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
        assert_eq!(out["error"]["param"], "filter.changed", "{out}");
    }
    let (status, out) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.subscription.updated", "filter": {"changed": {"status": {"to": "past_due"}}}, "target": target})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    let (_, catalog) = env.call("GET", "/catalog", None).await;
    assert!(catalog["workflow_filter_schema"]["properties"]["changed"].is_object());
    for option in ["ignore_own_writes", "fetch_latest", "skip_stale"] {
        assert!(
            catalog["workflow_options"][option]["description"].is_string(),
            "{option}"
        );
    }
}

/// `fetch_latest` and `skip_stale` are off unless asked for and shown; a
/// template reading `{{current.…}}` needs `fetch_latest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_state_options_are_checked_and_shown() {
    let env = env().await;
    let conn = env.connection().await;
    let uri = format!("/connections/{conn}/workflows");
    let step = json!([{"action": "customers.update", "input": {"id": "{{event.data.object.id}}", "metadata": {"seen": "{{current.id}}"}}}]);
    let (status, out) = env
        .call(
            "POST",
            &uri,
            Some(json!({"trigger": "customer.updated", "steps": step})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["error"]["param"], "steps[0].input");
    let (status, out) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.updated", "steps": step, "fetch_latest": true, "skip_stale": true})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    assert_eq!(
        (&out["fetch_latest"], &out["skip_stale"]),
        (&json!(true), &json!(true))
    );
    let (_, plain) = env
        .call("POST", &uri, Some(json!({"trigger": "customer.updated", "target": {"url": "https://hooks.example.com/p"}})))
        .await;
    assert_eq!(
        (&plain["fetch_latest"], &plain["skip_stale"]),
        (&json!(false), &json!(false))
    );
}
