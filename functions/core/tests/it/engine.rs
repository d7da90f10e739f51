//! Fan-out and run execution against in-process mocks of Stripe and of a
//! workflow target: exactly once, retried on schedule, taken over after a
//! dead worker's lease, nothing repeated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;

use connector_core::adapters::local_queue::LocalQueue;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::metrics::{Measure, MemoryMetrics};
use connector_core::model::{
    Connection, ConnectionSecrets, Step, StoredEvent, Target, WebhookMode, Workflow,
};
use connector_core::ports::{
    ConnectionStore, EventStore, RunQuery, RunStore, SecretStore, StoreError, WorkflowStore,
};
use connector_core::workflow::engine::{Engine, LEASE_SECS, Outcome};
use connector_core::workflow::run::{RetryPolicy, Run, RunStatus, StepRecord};
use connector_core::workflow::{signing, step_idempotency_key};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONN: &str = "conn_engine";
const T: i64 = 1_900_000_000;
const TARGET_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Env {
    app: App,
    store: Arc<MemoryStore>,
    clock: Arc<FixedClock>,
    stripe: MockServer,
    /// The run queue, worked by hand: [`Env::drain`] is the executor.
    queue: Arc<LocalQueue>,
    metrics: Arc<MemoryMetrics>,
}

async fn env() -> Env {
    env_with(true).await
}

/// `allow_private`: whether targets may be private addresses (the mocks
/// listen on 127.0.0.1).
async fn env_with(allow_private: bool) -> Env {
    env_config(allow_private, &[]).await
}

/// With settings (`TARGET_CONCURRENCY`, `STRIPE_BUDGET_TEST`, …).
async fn env_config(allow_private: bool, settings: &[(&str, &str)]) -> Env {
    let settings: std::collections::HashMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stripe = MockServer::start().await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let clock = Arc::new(FixedClock::at(T));
    let queue = LocalQueue::new(clock.clone());
    let metrics = Arc::new(MemoryMetrics::default());
    let app = App::new(
        Config::from_lookup(|k| {
            if k == "CONNECTOR_ALLOW_PRIVATE_TARGETS" {
                return Some(allow_private.to_string());
            }
            settings.get(k).cloned()
        })
        .unwrap(),
        store.clone(),
        secrets.clone(),
        clock.clone(),
    )
    .with_stripe_settings(crate::support::fast_stripe(stripe.uri()))
    .with_queue(queue.clone())
    .with_metrics(metrics.clone());
    store
        .insert_connection(&Connection {
            id: CONN.into(),
            name: "Engine".into(),
            account_id: "acct_1".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: WebhookMode::Manual,
            webhook_endpoint_id: None,
            triggers: vec![],
            created_at: T,
            updated_at: T,
            version: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    secrets
        .put_secrets(
            CONN,
            &ConnectionSecrets {
                api_key: SecretString::from("sk_test_engine".to_string()),
                webhook_secrets: vec![],
                target_secrets: [(
                    "wf_target".to_string(),
                    SecretString::from(TARGET_SECRET.to_string()),
                )]
                .into(),
            },
        )
        .await
        .unwrap();
    Env {
        app,
        store,
        clock,
        stripe,
        queue,
        metrics,
    }
}

impl Env {
    async fn workflow(
        &self,
        id: &str,
        trigger: &str,
        target: Option<String>,
        steps: Vec<(&str, Value)>,
    ) {
        self.store
            .insert_workflow(&Workflow {
                id: id.into(),
                connection_id: CONN.into(),
                trigger: trigger.into(),
                filter: Default::default(),
                target: target.map(|url| Target { url, secret: None }),
                steps: steps
                    .into_iter()
                    .map(|(action, input)| Step {
                        action: action.into(),
                        input,
                    })
                    .collect(),
                enabled: true,
                ignore_own_writes: true,
                fetch_latest: false,
                skip_stale: false,
                created_at: T,
                updated_at: T,
            })
            .await
            .unwrap();
    }

    async fn event(&self, id: &str, ty: &str, object: Value) -> StoredEvent {
        let e = unstored_event(id, ty, object);
        self.store.insert_event(&e).await.unwrap();
        e
    }

    fn engine(&self, worker: &str) -> Engine<'_> {
        Engine::new(&self.app, worker)
    }

    /// Fan-out (runs made and queued), then what the executor does with
    /// the messages: (workflow, outcome) of each.
    async fn fan_out(&self, worker: &str, event: &StoredEvent) -> Vec<(String, Outcome)> {
        self.engine(worker).fan_out(event).await.unwrap();
        self.drain(worker).await
    }

    /// The executor: every message visible now, in order, handled by
    /// `worker`. A message whose handling failed goes back on the queue
    /// (SQS's visibility timeout) and has no outcome.
    async fn drain(&self, worker: &str) -> Vec<(String, Outcome)> {
        self.engine(worker)
            .work_ready(&self.queue)
            .await
            .into_iter()
            .map(|(r, o)| (r.run_key, o))
            .collect()
    }

    /// The scheduler's tick, then the executor: the outcomes of the runs it
    /// carried on. Duplicate messages (a retry queued by its failed attempt
    /// and again by the tick) are skipped by design and not listed.
    async fn run_due(&self, worker: &str) -> Vec<Outcome> {
        self.engine(worker).enqueue_due().await.unwrap();
        self.drain(worker)
            .await
            .into_iter()
            .map(|(_, o)| o)
            .filter(|o| *o != Outcome::Skipped)
            .collect()
    }

    async fn run(&self, event: &str, wf: &str) -> Run {
        self.store.get_run(CONN, event, wf).await.unwrap().unwrap()
    }

    async fn stripe_calls(&self) -> Vec<(String, String, Option<String>)> {
        self.stripe
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let key = r
                    .headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.method.to_string(), r.url.path().to_string(), key)
            })
            .collect()
    }
}

/// An event as ingest would store it (not stored yet).
fn unstored_event(id: &str, ty: &str, object: Value) -> StoredEvent {
    let body = json!({"id": id, "object": "event", "type": ty, "created": T, "livemode": false, "data": {"object": object}});
    StoredEvent {
        connection_id: CONN.into(),
        event_id: id.into(),
        event_type: ty.into(),
        created: T,
        livemode: false,
        api_version: Some("2023-08-16".into()),
        account: None,
        body: Some(body.to_string()),
        body_omitted: false,
        received_at: T,
        expires_at: T + 86400,
        recovered: false,
    }
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_created_finalizes_the_invoice_exactly_once() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_1/finalize"))
        .respond_with(ok(json!({"id": "in_1", "status": "open"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_fin",
        "invoice.created",
        None,
        vec![(
            "invoices.finalize",
            json!({"id": "{{event.data.object.id}}"}),
        )],
    )
    .await;
    let event = env
        .event(
            "evt_inv",
            "invoice.created",
            json!({"id": "in_1", "status": "draft"}),
        )
        .await;

    let out = env.fan_out("w1", &event).await;
    assert_eq!(
        out,
        [(
            "wf_fin".to_string(),
            Outcome::Finished(RunStatus::Succeeded)
        )]
    );
    // A redelivered stream batch, and a second worker: nothing new happens.
    assert_eq!(
        env.fan_out("w1", &event).await,
        [("wf_fin".to_string(), Outcome::Skipped)]
    );
    assert_eq!(
        env.fan_out("w2", &event).await,
        [("wf_fin".to_string(), Outcome::Skipped)]
    );

    let calls = env.stripe_calls().await;
    assert_eq!(
        calls,
        [(
            "POST".into(),
            "/v1/invoices/in_1/finalize".into(),
            Some(step_idempotency_key("evt_inv", "wf_fin", 0))
        )]
    );
    let run = env.run("evt_inv", "wf_fin").await;
    assert_eq!((run.status, run.attempts), (RunStatus::Succeeded, 1));
    assert_eq!(run.steps[0].input, json!({"id": "in_1"}));
    assert_eq!(run.steps[0].result["status"], "open");
    assert_eq!(
        env.store
            .list_runs(
                CONN,
                &RunQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .runs
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_popular_automations_send_what_they_should() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(ok(json!({"id": "cus_1", "email": "a@b.co"})))
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_1"))
        .respond_with(ok(json!({"id": "pi_1"})))
        .mount(&env.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/products/prod_1"))
        .respond_with(ok(json!({"id": "prod_1"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_cus",
        "customer.updated",
        None,
        vec![
            ("customers.find", json!({"id": "{{event.data.object.id}}"})),
            (
                "customers.update",
                json!({"id": "{{steps.0.id}}", "metadata": {"last_email": "{{steps.0.email}}"}}),
            ),
        ],
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(ok(json!({"id": "cus_1"})))
        .mount(&env.stripe)
        .await;
    env.workflow("wf_pi", "payment_intent.created", None, vec![
        ("payments.update", json!({"id": "{{event.data.object.id}}", "metadata": {"source": "workflow", "amount": "{{event.data.object.amount}}"}})),
    ]).await;
    env.workflow(
        "wf_prod",
        "product.updated",
        None,
        vec![("products.find", json!({"id": "{{event.data.object.id}}"}))],
    )
    .await;

    for (id, ty, object) in [
        ("evt_c", "customer.updated", json!({"id": "cus_1"})),
        (
            "evt_p",
            "payment_intent.created",
            json!({"id": "pi_1", "amount": 1999}),
        ),
        ("evt_d", "product.updated", json!({"id": "prod_1"})),
    ] {
        let event = env.event(id, ty, object).await;
        let out = env.fan_out("w", &event).await;
        assert_eq!(out.len(), 1, "{ty}: exactly its workflow runs");
        assert_eq!(out[0].1, Outcome::Finished(RunStatus::Succeeded), "{ty}");
    }
    let reqs = env.stripe.received_requests().await.unwrap();
    let sent: Vec<(String, String, String)> = reqs
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_string(),
                String::from_utf8(r.body.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("GET".into(), "/v1/customers/cus_1".into(), "".into()),
            (
                "POST".into(),
                "/v1/customers/cus_1".into(),
                "metadata[last_email]=a%40b.co".into()
            ),
            (
                "POST".into(),
                "/v1/payment_intents/pi_1".into(),
                "metadata[source]=workflow&metadata[amount]=1999".into()
            ),
            ("GET".into(), "/v1/products/prod_1".into(), "".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_switches_and_wildcards_choose_the_workflows() {
    let env = env().await;
    env.workflow(
        "wf_any",
        "*",
        Some("http://127.0.0.1:9/unused".into()),
        vec![],
    )
    .await;
    env.workflow("wf_draft", "invoice.created", None, vec![])
        .await;
    let mut filtered = env
        .store
        .get_workflow(CONN, "wf_draft")
        .await
        .unwrap()
        .unwrap();
    filtered.filter = json!({"event.data.object.status": "draft"})
        .as_object()
        .unwrap()
        .clone();
    env.store.update_workflow(&filtered).await.unwrap();
    env.workflow("wf_off", "invoice.created", None, vec![])
        .await;
    let mut off = env
        .store
        .get_workflow(CONN, "wf_off")
        .await
        .unwrap()
        .unwrap();
    off.enabled = false;
    env.store.update_workflow(&off).await.unwrap();

    let open = env
        .event(
            "evt_open",
            "invoice.created",
            json!({"id": "in_1", "status": "open"}),
        )
        .await;
    let body: Value = serde_json::from_str(open.body.as_deref().unwrap()).unwrap();
    let ids = |ws: Vec<Workflow>| ws.into_iter().map(|w| w.id).collect::<Vec<_>>();
    assert_eq!(
        ids(env.engine("w").matching(&open, &body).await.unwrap()),
        ["wf_any"]
    );
    let draft = env
        .event(
            "evt_draft",
            "invoice.created",
            json!({"id": "in_2", "status": "draft"}),
        )
        .await;
    let body: Value = serde_json::from_str(draft.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        ids(env.engine("w").matching(&draft, &body).await.unwrap()),
        ["wf_any", "wf_draft"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_failing_twice_is_delivered_once_on_the_third_attempt() {
    let env = env().await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&target)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    env.workflow(
        "wf_target",
        "customer.created",
        Some(format!("{}/hooks", target.uri())),
        vec![],
    )
    .await;
    let event = env
        .event("evt_t", "customer.created", json!({"id": "cus_1"}))
        .await;

    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Retrying)
    );
    let run = env.run("evt_t", "wf_target").await;
    assert_eq!(run.last_error.as_deref(), Some("the target answered 500"));
    let first_retry = run.next_attempt_at.unwrap();
    assert!(
        (T + 27..=T + 33).contains(&first_retry),
        "30 s ± jitter: {}",
        first_retry - T
    );
    assert!(env.run_due("w").await.is_empty(), "not due yet");

    env.clock.set(first_retry);
    assert_eq!(
        env.run_due("w").await,
        [Outcome::Finished(RunStatus::Retrying)]
    );
    env.clock
        .set(env.run("evt_t", "wf_target").await.next_attempt_at.unwrap());
    assert_eq!(
        env.run_due("w").await,
        [Outcome::Finished(RunStatus::Succeeded)]
    );
    assert!(env.run_due("w").await.is_empty());

    let run = env.run("evt_t", "wf_target").await;
    assert_eq!((run.attempts, run.delivered), (3, true));
    let reqs = target.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 3);
    let ids: Vec<&str> = reqs
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one message id across retries"
    );
    let last = reqs.last().unwrap();
    let ts: i64 = last.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = signing::sign(TARGET_SECRET, ids[0], ts, &last.body).unwrap();
    assert_eq!(last.headers["webhook-signature"], expected.as_str());
    assert_eq!(
        serde_json::from_slice::<Value>(&last.body).unwrap()["id"],
        "evt_t"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_429_then_200_makes_one_object_with_one_key() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(
                json!({"error": {"type": "invalid_request_error", "message": "rate"}}),
            ),
        )
        .up_to_n_times(1)
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ok(json!({"id": "cus_new"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_make",
        "invoice.paid",
        None,
        vec![(
            "customers.create",
            json!({"email": "{{event.data.object.customer_email}}"}),
        )],
    )
    .await;
    let event = env
        .event(
            "evt_paid",
            "invoice.paid",
            json!({"id": "in_1", "customer_email": "x@y.co"}),
        )
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
    let calls = env.stripe_calls().await;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].2, calls[1].2);
    assert_eq!(
        calls[0].2,
        Some(step_idempotency_key("evt_paid", "wf_make", 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_dead_at_once_with_stripes_message() {
    let env = env().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).insert_header("request-id", "req_9").set_body_json(
            json!({"error": {"type": "invalid_request_error", "message": "This invoice is already finalized."}}),
        ))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_fin",
        "invoice.created",
        None,
        vec![(
            "invoices.finalize",
            json!({"id": "{{event.data.object.id}}"}),
        )],
    )
    .await;
    let event = env
        .event("evt_dead", "invoice.created", json!({"id": "in_1"}))
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Dead)
    );
    let run = env.run("evt_dead", "wf_fin").await;
    assert_eq!(run.next_attempt_at, None);
    let error = run.last_error.unwrap();
    assert!(
        error.contains("This invoice is already finalized.") && error.contains("req_9"),
        "{error}"
    );
    env.clock.set(T + 100_000);
    assert!(env.run_due("w").await.is_empty());
    assert_eq!(env.stripe_calls().await.len(), 1, "no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_template_is_a_permanent_failure_before_stripe() {
    let env = env().await;
    env.workflow(
        "wf_bad",
        "invoice.created",
        None,
        vec![(
            "invoices.finalize",
            json!({"id": "{{event.data.object.nope}}"}),
        )],
    )
    .await;
    let event = env
        .event("evt_tpl", "invoice.created", json!({"id": "in_1"}))
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Dead)
    );
    assert!(
        env.run("evt_tpl", "wf_bad")
            .await
            .last_error
            .unwrap()
            .contains("event.data.object.nope")
    );
    assert!(env.stripe_calls().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_down_is_retried_later_with_the_same_key() {
    let env = env().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"type": "api_error", "message": "down"}})),
        )
        .up_to_n_times(3)
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(json!({"id": "in_1", "status": "open"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_fin",
        "invoice.created",
        None,
        vec![(
            "invoices.finalize",
            json!({"id": "{{event.data.object.id}}"}),
        )],
    )
    .await;
    let event = env
        .event("evt_down", "invoice.created", json!({"id": "in_1"}))
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Retrying)
    );
    env.clock
        .set(env.run("evt_down", "wf_fin").await.next_attempt_at.unwrap());
    assert_eq!(
        env.run_due("w").await,
        [Outcome::Finished(RunStatus::Succeeded)]
    );
    let keys: Vec<Option<String>> = env.stripe_calls().await.into_iter().map(|c| c.2).collect();
    assert_eq!(
        keys.len(),
        4,
        "3 attempts by the client in the first run, 1 in the retry"
    );
    assert!(
        keys.iter()
            .all(|k| *k == Some(step_idempotency_key("evt_down", "wf_fin", 0)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_run_is_taken_over_and_finished_steps_are_not_repeated() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/v1/products/prod_1"))
        .respond_with(ok(json!({"id": "prod_1"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_two",
        "customer.created",
        None,
        vec![
            (
                "customers.update",
                json!({"id": "{{event.data.object.id}}", "metadata": {"seen": "1"}}),
            ),
            ("products.find", json!({"id": "prod_1"})),
        ],
    )
    .await;
    let event = env
        .event("evt_mid", "customer.created", json!({"id": "cus_1"}))
        .await;

    // Worker A created and claimed the run, finished step 0, then died.
    let mut run = Run::new(CONN, "evt_mid", "wf_two", T);
    assert!(env.store.create_run(&run).await.unwrap());
    let v = run.version;
    run.claim("worker-a", T, LEASE_SECS, 7).unwrap();
    env.store.save_run(&run, v).await.unwrap();
    let v = run.version;
    run.record_step(
        "worker-a",
        StepRecord {
            action: "customers.update".into(),
            input: json!({"id": "cus_1"}),
            result: json!({"id": "cus_1"}),
        },
        T + 1,
    )
    .unwrap();
    env.store.save_run(&run, v).await.unwrap();

    // While A's lease holds, nobody else runs it — not the fan-out, not the scheduler.
    assert_eq!(env.fan_out("worker-b", &event).await[0].1, Outcome::Skipped);
    env.clock.set(T + LEASE_SECS - 1);
    assert!(env.run_due("worker-b").await.is_empty());
    // After it, worker B takes over and does only what is left.
    env.clock.set(T + LEASE_SECS + 1);
    assert_eq!(
        env.run_due("worker-b").await,
        [Outcome::Finished(RunStatus::Succeeded)]
    );
    assert_eq!(
        env.stripe_calls().await,
        [("GET".into(), "/v1/products/prod_1".into(), None)]
    );
    let run = env.run("evt_mid", "wf_two").await;
    assert_eq!((run.attempts, run.steps.len()), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_redirect_is_not_followed() {
    let env = env().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(json!({})))
        .mount(&elsewhere)
        .await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/stolen", elsewhere.uri())),
        )
        .mount(&target)
        .await;
    env.workflow(
        "wf_target",
        "customer.created",
        Some(format!("{}/hooks", target.uri())),
        vec![],
    )
    .await;
    let event = env
        .event("evt_redirect", "customer.created", json!({"id": "cus_1"}))
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Dead)
    );
    let run = env.run("evt_redirect", "wf_target").await;
    assert_eq!(run.last_error.as_deref(), Some("the target answered 307"));
    assert_eq!(target.received_requests().await.unwrap().len(), 1);
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "the body and its signature went nowhere else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_target_is_never_called_without_the_opt_in() {
    let env = env_with(false).await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(json!({})))
        .mount(&target)
        .await;
    // Stored directly (as an older version could have), so only the
    // engine's own check at delivery stands between the run and 127.0.0.1.
    // (The resolver's refusal of names is tested in `target`.)
    let port = target.address().port();
    for (wf, url) in [
        ("wf_target", format!("http://127.0.0.1:{port}/hooks")),
        ("wf_named", format!("http://localhost.:{port}/hooks")),
    ] {
        env.workflow(wf, "customer.created", Some(url), vec![])
            .await;
    }
    let mut secrets = env.app.secrets.get_secrets(CONN).await.unwrap().unwrap();
    secrets.target_secrets.insert(
        "wf_named".into(),
        SecretString::from(TARGET_SECRET.to_string()),
    );
    env.app.secrets.put_secrets(CONN, &secrets).await.unwrap();
    let event = env
        .event("evt_private", "customer.created", json!({"id": "cus_1"}))
        .await;
    let outcomes = env.fan_out("w", &event).await;
    assert_eq!(outcomes.len(), 2);
    for wf in ["wf_target", "wf_named"] {
        let run = env.run("evt_private", wf).await;
        assert_eq!(
            run.status,
            RunStatus::Dead,
            "{wf}: dead at once, not retried"
        );
        let error = run.last_error.unwrap_or_default();
        assert!(
            error.contains("non-public") || error.contains("private"),
            "{wf}: {error}"
        );
    }
    assert!(target.received_requests().await.unwrap().is_empty());
}

/// A run whose worker dies on every attempt (an input that crashes the
/// process, say) must not be claimed again and again after each lease:
/// once the policy's attempts are used, the next claim makes it dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_worker_always_dies_goes_dead_after_its_attempts() {
    let env = env().await;
    env.workflow(
        "wf_crash",
        "customer.created",
        None,
        vec![("products.find", json!({"id": "prod_1"}))],
    )
    .await;
    env.event("evt_crash", "customer.created", json!({"id": "cus_1"}))
        .await;
    let max = RetryPolicy::default().max_attempts();
    let mut run = Run::new(CONN, "evt_crash", "wf_crash", T);
    assert!(env.store.create_run(&run).await.unwrap());
    let mut now = T;
    // Every allowed attempt is claimed, then its worker vanishes unsaved.
    for attempt in 1..=max {
        let v = run.version;
        run.claim(&format!("doomed-{attempt}"), now, LEASE_SECS, max)
            .unwrap();
        env.store.save_run(&run, v).await.unwrap();
        now += LEASE_SECS + 1;
    }
    env.clock.set(now);
    assert_eq!(
        env.run_due("survivor").await,
        [Outcome::Finished(RunStatus::Dead)]
    );
    let run = env.run("evt_crash", "wf_crash").await;
    assert_eq!((run.status, run.attempts), (RunStatus::Dead, max));
    assert!(run.last_error.unwrap().contains("never finished"));
    assert!(env.stripe_calls().await.is_empty(), "not run again");
    env.clock.set(now + 10 * LEASE_SECS);
    assert!(env.run_due("survivor").await.is_empty());
}

/// A step whose result is far larger than a run record may hold (a search
/// of 100 invoices) is kept as a note of its size, so the run saves and
/// finishes instead of failing every save and re-running the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_step_result_is_kept_as_a_note_and_the_run_finishes() {
    let env = env().await;
    let invoices: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("in_{i}"), "object": "invoice", "lines": {"data": ["x".repeat(4000)]}}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v1/invoices/search"))
        .respond_with(ok(
            json!({"object": "search_result", "data": invoices, "has_more": false}),
        ))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_big",
        "customer.created",
        None,
        vec![(
            "invoices.search",
            json!({"customer": "{{event.data.object.id}}"}),
        )],
    )
    .await;
    let event = env
        .event("evt_big", "customer.created", json!({"id": "cus_1"}))
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
    let run = env.run("evt_big", "wf_big").await;
    assert_eq!(run.steps[0].result["truncated"], true);
    assert!(run.steps[0].result["bytes"].as_u64().unwrap() > 400_000);
    assert!(serde_json::to_vec(&run).unwrap().len() < 64 * 1024);
}

/// A delete retried after its first try went through (its answer lost)
/// finds the object gone: that is what the step wanted, not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delete_that_already_happened_succeeds() {
    let env = env().await;
    Mock::given(method("DELETE"))
        .and(path("/v1/customers/cus_gone"))
        .respond_with(ResponseTemplate::new(500))
        // The client's three tries of the first attempt: the delete went
        // through in Stripe, but no answer came back.
        .up_to_n_times(3)
        .mount(&env.stripe)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/customers/cus_gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such customer: 'cus_gone'"}})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_del",
        "customer.created",
        None,
        vec![("customers.delete", json!({"id": "cus_gone"}))],
    )
    .await;
    let event = env
        .event("evt_del", "customer.created", json!({"id": "cus_gone"}))
        .await;
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Retrying)
    );
    env.clock
        .set(env.run("evt_del", "wf_del").await.next_attempt_at.unwrap());
    assert_eq!(
        env.run_due("w").await,
        [Outcome::Finished(RunStatus::Succeeded)]
    );
    let run = env.run("evt_del", "wf_del").await;
    assert_eq!(run.steps[0].result["already_deleted"], true);
}

/// An event too large to store (kept without its body) reaches its target
/// whole, fetched back from Stripe, not as a stub of its id and type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_without_its_body_is_delivered_whole() {
    let env = env().await;
    let full = json!({"id": "evt_huge", "object": "event", "type": "customer.created", "data": {"object": {"id": "cus_h", "note": "x".repeat(1000)}}});
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_huge"))
        .respond_with(ok(full.clone()))
        .mount(&env.stripe)
        .await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    env.workflow(
        "wf_target",
        "customer.created",
        Some(format!("{}/hooks", target.uri())),
        vec![],
    )
    .await;
    let mut event = unstored_event("evt_huge", "customer.created", json!({"id": "cus_h"}));
    event.body = None;
    event.body_omitted = true;
    env.store.insert_event(&event).await.unwrap();
    assert_eq!(
        env.fan_out("w", &event).await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
    let delivered = &target.received_requests().await.unwrap()[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&delivered.body).unwrap(),
        full
    );
}

/// A run store that cannot read one run (a corrupt item, say).
struct OneRunUnreadable {
    inner: Arc<MemoryStore>,
    event_id: &'static str,
}

#[async_trait::async_trait]
impl RunStore for OneRunUnreadable {
    async fn create_run(&self, run: &Run) -> Result<bool, StoreError> {
        self.inner.create_run(run).await
    }
    async fn get_run(&self, c: &str, e: &str, w: &str) -> Result<Option<Run>, StoreError> {
        if e == self.event_id {
            return Err(StoreError::Corrupt("unreadable".into()));
        }
        self.inner.get_run(c, e, w).await
    }
    async fn save_run(&self, run: &Run, expected: u64) -> Result<(), StoreError> {
        self.inner.save_run(run, expected).await
    }
    async fn list_runs(
        &self,
        c: &str,
        q: &connector_core::ports::RunQuery,
    ) -> Result<connector_core::ports::RunPage, StoreError> {
        self.inner.list_runs(c, q).await
    }
    async fn due_runs(&self, from: i64, until: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.inner.due_runs(from, until, limit).await
    }
    async fn advance_object(&self, c: &str, w: &str, o: &str, t: i64) -> Result<bool, StoreError> {
        self.inner.advance_object(c, w, o, t).await
    }
}

/// One run the store fails on does not hold up the other due runs of the
/// tick: they run, and it stays due for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_run_does_not_stop_a_scheduler_tick() {
    let mut env = env().await;
    Mock::given(method("GET"))
        .and(path("/v1/products/prod_1"))
        .respond_with(ok(json!({"id": "prod_1"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_due",
        "customer.created",
        None,
        vec![("products.find", json!({"id": "prod_1"}))],
    )
    .await;
    for e in ["evt_bad", "evt_good"] {
        env.event(e, "customer.created", json!({"id": "cus_1"}))
            .await;
        assert!(
            env.store
                .create_run(&Run::new(CONN, e, "wf_due", T))
                .await
                .unwrap()
        );
    }
    env.app.runs = Arc::new(OneRunUnreadable {
        inner: env.store.clone(),
        event_id: "evt_bad",
    });
    let outcomes = env.run_due("w").await;
    assert_eq!(outcomes, [Outcome::Finished(RunStatus::Succeeded)]);
    assert_eq!(
        env.run("evt_good", "wf_due").await.status,
        RunStatus::Succeeded
    );
    assert_eq!(
        env.run("evt_bad", "wf_due").await.status,
        RunStatus::Pending
    );
}

/// A workflow that updates the customer on `customer.updated` makes Stripe
/// send another `customer.updated`, carrying the step's idempotency key:
/// that event does not start the workflow again (no loop), while another
/// workflow on the same trigger still sees the change; a workflow that
/// opts out (`ignore_own_writes: false`) does see its own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflows_own_write_does_not_start_it_again() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_loop"))
        .respond_with(ok(json!({"id": "cus_loop", "object": "customer"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_tagger",
        "customer.updated",
        None,
        vec![(
            "customers.update",
            json!({"id": "{{event.data.object.id}}", "metadata": {"tagged": "yes"}}),
        )],
    )
    .await;
    env.workflow(
        "wf_watcher",
        "customer.updated",
        None,
        vec![("products.find", json!({"id": "prod_1"}))],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/products/prod_1"))
        .respond_with(ok(json!({"id": "prod_1"})))
        .mount(&env.stripe)
        .await;
    let first = env
        .event("evt_human", "customer.updated", json!({"id": "cus_loop"}))
        .await;
    assert_eq!(env.fan_out("w", &first).await.len(), 2);
    let key = env
        .stripe_calls()
        .await
        .into_iter()
        .find(|(m, p, _)| m == "POST" && p == "/v1/customers/cus_loop")
        .and_then(|(_, _, k)| k)
        .unwrap();
    assert!(key.starts_with("sc-wf_tagger-"), "{key}");

    // Stripe's echo of that update.
    let mut echo = env
        .event("evt_echo", "customer.updated", json!({"id": "cus_loop"}))
        .await;
    let mut body: Value = serde_json::from_str(echo.body.as_deref().unwrap()).unwrap();
    body["request"] = json!({"id": "req_1", "idempotency_key": key});
    echo.body = Some(body.to_string());
    let ran: Vec<String> = env
        .fan_out("w", &echo)
        .await
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    assert_eq!(
        ran,
        ["wf_watcher"],
        "the tagger does not run on its own write"
    );

    // Opted out: it sees its own write.
    let mut tagger = env
        .store
        .get_workflow(CONN, "wf_tagger")
        .await
        .unwrap()
        .unwrap();
    tagger.ignore_own_writes = false;
    env.store.update_workflow(&tagger).await.unwrap();
    let mut again = echo.clone();
    again.event_id = "evt_echo2".into();
    let mut ran: Vec<String> = env
        .fan_out("w", &again)
        .await
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    ran.sort();
    assert_eq!(ran, ["wf_tagger", "wf_watcher"]);
}

/// A change filter lets through only the updates the workflow cares about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_filter_runs_only_on_the_change_it_names() {
    let env = env().await;
    env.workflow(
        "wf_dunning",
        "customer.subscription.updated",
        None,
        vec![("products.find", json!({"id": "prod_1"}))],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/products/prod_1"))
        .respond_with(ok(json!({"id": "prod_1"})))
        .mount(&env.stripe)
        .await;
    let mut w = env
        .store
        .get_workflow(CONN, "wf_dunning")
        .await
        .unwrap()
        .unwrap();
    w.filter = json!({"changed": {"status": {"to": "past_due"}}})
        .as_object()
        .unwrap()
        .clone();
    env.store.update_workflow(&w).await.unwrap();
    let mut outcomes = Vec::new();
    for (id, previous) in [
        ("evt_seats", json!({"quantity": 4})),
        ("evt_dunning", json!({"status": "active"})),
    ] {
        let mut event = env
            .event(
                id,
                "customer.subscription.updated",
                json!({"id": "sub_1", "status": "past_due", "quantity": 5}),
            )
            .await;
        let mut body: Value = serde_json::from_str(event.body.as_deref().unwrap()).unwrap();
        body["data"]["previous_attributes"] = previous;
        event.body = Some(body.to_string());
        outcomes.push(env.fan_out("w", &event).await.len());
    }
    assert_eq!(outcomes, [0, 1], "only the status change runs it");
}

/// With `fetch_latest`, the object is read back from Stripe first: the
/// target gets `{"event", "current"}` and steps read `{{current.…}}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_latest_delivers_and_uses_the_current_object() {
    let env = env().await;
    let now = json!({"id": "cus_1", "object": "customer", "email": "new@example.com"});
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(ok(now.clone()))
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(ok(json!({"id": "cus_1"})))
        .mount(&env.stripe)
        .await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    env.workflow(
        "wf_target",
        "customer.updated",
        Some(format!("{}/hooks", target.uri())),
        vec![(
            "customers.update",
            json!({"id": "{{event.data.object.id}}", "metadata": {"email_now": "{{current.email}}"}}),
        )],
    )
    .await;
    let mut w = env
        .store
        .get_workflow(CONN, "wf_target")
        .await
        .unwrap()
        .unwrap();
    w.fetch_latest = true;
    env.store.update_workflow(&w).await.unwrap();
    let event = env
        .event(
            "evt_old",
            "customer.updated",
            json!({"id": "cus_1", "object": "customer", "email": "old@example.com"}),
        )
        .await;
    let outcome = env.fan_out("w", &event).await[0].1.clone();
    let run = env.run("evt_old", "wf_target").await;
    assert_eq!(
        outcome,
        Outcome::Finished(RunStatus::Succeeded),
        "{:?}",
        run.last_error
    );
    let delivered: Value =
        serde_json::from_slice(&target.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(delivered["current"], now);
    assert_eq!(delivered["event"]["id"], "evt_old");
    let run = env.run("evt_old", "wf_target").await;
    assert_eq!(
        run.steps[0].input["metadata"]["email_now"],
        "new@example.com"
    );
}

/// With `skip_stale`, an event older than one the workflow already acted
/// on for the same object is skipped, and the run says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_stale_skips_an_older_event_that_arrives_later() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_1"))
        .respond_with(ok(json!({"id": "sub_1"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_sync",
        "customer.subscription.updated",
        None,
        vec![(
            "subscriptions.update",
            json!({"id": "{{event.data.object.id}}", "metadata": {"status": "{{event.data.object.status}}"}}),
        )],
    )
    .await;
    let mut w = env
        .store
        .get_workflow(CONN, "wf_sync")
        .await
        .unwrap()
        .unwrap();
    w.skip_stale = true;
    env.store.update_workflow(&w).await.unwrap();
    let mut newer = unstored_event(
        "evt_newer",
        "customer.subscription.updated",
        json!({"id": "sub_1", "status": "past_due"}),
    );
    newer.created = T + 60;
    env.store.insert_event(&newer).await.unwrap();
    let older = env
        .event(
            "evt_older",
            "customer.subscription.updated",
            json!({"id": "sub_1", "status": "active"}),
        )
        .await;
    env.fan_out("w", &newer).await;
    assert_eq!(env.stripe_calls().await.len(), 1);
    assert_eq!(
        env.fan_out("w", &older).await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
    let run = env.run("evt_older", "wf_sync").await;
    assert!(
        run.skipped.unwrap().starts_with("stale"),
        "the run says why"
    );
    assert!(run.steps.is_empty());
    assert_eq!(
        env.stripe_calls().await.len(),
        1,
        "nothing sent for the stale event"
    );
}

// ---- the limits: breaker, target cap, Stripe budget, stuck messages ----

/// A target answering 500 opens its breaker after five failed runs: the
/// next runs wait without spending an attempt (no more requests), each
/// saying why; after the cool-down one probe goes, and once it succeeds
/// the breaker closes and the waiting runs are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_opens_its_breaker_and_its_runs_wait_without_attempts() {
    let env = env().await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&target)
        .await;
    env.workflow(
        "wf_target",
        "customer.created",
        Some(format!("{}/hooks", target.uri())),
        vec![],
    )
    .await;
    for i in 0..5 {
        let e = env
            .event(
                &format!("evt_b{i}"),
                "customer.created",
                json!({"id": "cus_1"}),
            )
            .await;
        assert_eq!(
            env.fan_out("w", &e).await[0].1,
            Outcome::Finished(RunStatus::Retrying)
        );
    }
    assert_eq!(target.received_requests().await.unwrap().len(), 5);
    let e = env
        .event("evt_b5", "customer.created", json!({"id": "cus_1"}))
        .await;
    let open_until = T + 30;
    assert_eq!(
        env.fan_out("w", &e).await[0].1,
        Outcome::Deferred(open_until)
    );
    assert_eq!(
        target.received_requests().await.unwrap().len(),
        5,
        "not called while open"
    );
    // The workflow shows its target's state.
    let req = http::Request::get(format!("/connections/{CONN}/workflows/wf_target"))
        .body(bytes::Bytes::new())
        .unwrap();
    let resp =
        connector_core::api::handle(&env.app, req, connector_core::api::Routes::Connections).await;
    let shown: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        shown["target_health"],
        json!({"state": "open", "consecutive_failures": 5, "open_until": open_until})
    );
    let waiting = env.run("evt_b5", "wf_target").await;
    assert_eq!((waiting.status, waiting.attempts), (RunStatus::Pending, 0));
    assert_eq!(waiting.next_attempt_at, Some(open_until));
    assert!(waiting.last_error.unwrap().contains("circuit is open"));

    // Healed; after the cool-down the first run through is the probe.
    target.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    env.clock.set(open_until);
    let mut done: Vec<Outcome> = env.drain("w").await.into_iter().map(|(_, o)| o).collect();
    let run = env.run("evt_b5", "wf_target").await;
    assert_eq!(
        (run.attempts, run.delivered),
        (1, true),
        "the wait cost no attempt"
    );
    // Closed: the earlier runs' retries go through as they fall due.
    env.clock.set(T + 40);
    done.extend(env.run_due("w").await);
    assert_eq!(done.len(), 6, "{done:?}");
    assert!(
        done.iter()
            .all(|o| *o == Outcome::Finished(RunStatus::Succeeded))
    );
    assert_eq!(
        target.received_requests().await.unwrap().len(),
        6,
        "one each since it healed"
    );
    let req = http::Request::get(format!("/connections/{CONN}/workflows/wf_target"))
        .body(bytes::Bytes::new())
        .unwrap();
    let resp =
        connector_core::api::handle(&env.app, req, connector_core::api::Routes::Connections).await;
    let shown: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        shown["target_health"],
        json!({"state": "closed", "consecutive_failures": 0})
    );
}

/// With a cap of one delivery at a time, a run whose target is busy is put
/// back for a second later (attempt not spent); once the target has been
/// failing, for up to its delivery timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_target_puts_the_run_back_for_a_moment() {
    let env = env_config(true, &[("TARGET_CONCURRENCY", "1")]).await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    let url = format!("{}/hooks", target.uri());
    env.workflow("wf_target", "customer.created", Some(url.clone()), vec![])
        .await;
    // Another executor is delivering to it.
    let key = connector_core::workflow::limits::target_key(CONN, &url);
    let slot = env
        .app
        .gates
        .take_slot(&key, 1, "other", T, T + 30)
        .await
        .unwrap()
        .unwrap();
    let e = env
        .event("evt_busy", "customer.created", json!({"id": "cus_1"}))
        .await;
    // It waits a moment for a slot, then is put back for a second later.
    let started = std::time::Instant::now();
    assert_eq!(env.fan_out("w", &e).await[0].1, Outcome::Deferred(T + 1));
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    let run = env.run("evt_busy", "wf_target").await;
    assert_eq!((run.status, run.attempts), (RunStatus::Pending, 0));
    assert!(target.received_requests().await.unwrap().is_empty());
    // Once the target has been failing, for up to its delivery timeout.
    let mut failing = env
        .app
        .gates
        .get_breaker(&key)
        .await
        .unwrap()
        .unwrap_or_default();
    failing.on_failure(
        T,
        &connector_core::workflow::breaker::BreakerPolicy::default(),
    );
    env.app.gates.save_breaker(&key, &failing).await.unwrap();
    env.clock.set(T + 1);
    let Outcome::Deferred(at) = env.drain("w").await[0].1 else {
        panic!("not put back")
    };
    assert!((T + 2..=T + 16).contains(&at), "{}", at - T - 1);
    env.app
        .gates
        .release_slot(&key, slot, "other")
        .await
        .unwrap();
    env.clock.set(at);
    assert_eq!(
        env.drain("w").await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
}

/// Stripe's 429 (after the client's own retries) puts the run back for
/// Stripe's `Retry-After` without spending an attempt; the step then goes
/// through with the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_429_puts_the_run_back_for_its_retry_after_without_an_attempt() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_1/finalize"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(
                    json!({"error": {"type": "rate_limit_error", "message": "Too many requests"}}),
                ),
        )
        .up_to_n_times(3)
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_1/finalize"))
        .respond_with(ok(json!({"id": "in_1", "status": "open"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_fin",
        "invoice.created",
        None,
        vec![(
            "invoices.finalize",
            json!({"id": "{{event.data.object.id}}"}),
        )],
    )
    .await;
    let e = env
        .event("evt_429", "invoice.created", json!({"id": "in_1"}))
        .await;
    assert_eq!(env.fan_out("w", &e).await[0].1, Outcome::Deferred(T + 7));
    let run = env.run("evt_429", "wf_fin").await;
    assert_eq!((run.status, run.attempts), (RunStatus::Pending, 0));
    assert!(run.last_error.unwrap().contains("429"));
    assert!(env.drain("w").await.is_empty(), "not before Retry-After");
    env.clock.set(T + 8);
    assert_eq!(
        env.drain("w").await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
    let run = env.run("evt_429", "wf_fin").await;
    assert_eq!(run.attempts, 1);
    let keys: std::collections::HashSet<_> =
        env.stripe_calls().await.into_iter().map(|c| c.2).collect();
    assert_eq!(keys.len(), 1, "one idempotency key for every try");
}

/// A connection's steps stay within its Stripe budget: with one request a
/// second, a two-step run does its first step, is put back (its attempt
/// not counted), and does the second in a later second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_stripe_budget_puts_the_run_back_and_keeps_its_done_steps() {
    let env = env_config(true, &[("STRIPE_BUDGET_TEST", "1")]).await;
    Mock::given(method("POST"))
        .respond_with(ok(json!({"id": "in_1", "status": "open"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_two",
        "invoice.created",
        None,
        vec![
            ("invoices.finalize", json!({"id": "in_1"})),
            ("invoices.pay", json!({"id": "in_1"})),
        ],
    )
    .await;
    let e = env
        .event("evt_budget", "invoice.created", json!({"id": "in_1"}))
        .await;
    // The second step waits for the next second (on this clock it never
    // comes), then the run is put back for when its place comes up.
    let Outcome::Deferred(at) = env.fan_out("w", &e).await[0].1 else {
        panic!("not put back")
    };
    assert!((T + 1..=T + 3).contains(&at), "{}", at - T);
    let run = env.run("evt_budget", "wf_two").await;
    assert_eq!((run.steps.len(), run.attempts), (1, 0));
    assert_eq!(
        env.stripe_calls().await.len(),
        1,
        "the second call was held back"
    );
    env.clock.set(at);
    assert_eq!(
        env.drain("w").await[0].1,
        Outcome::Finished(RunStatus::Succeeded)
    );
    let calls = env.stripe_calls().await;
    assert_eq!(calls.len(), 2, "the first step was not repeated");
    assert_eq!(env.run("evt_budget", "wf_two").await.attempts, 1);
}

/// SQS delivers at least once: the same message twice runs the workflow
/// once; a message received more than five times marks its run stuck,
/// listed under `status=stuck` and never run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_received_twice_runs_once_and_one_received_too_often_is_stuck() {
    let env = env().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_1/finalize"))
        .respond_with(ok(json!({"id": "in_1"})))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_fin",
        "invoice.created",
        None,
        vec![("invoices.finalize", json!({"id": "in_1"}))],
    )
    .await;
    let e = env
        .event("evt_twice", "invoice.created", json!({"id": "in_1"}))
        .await;
    let queued = env.engine("w").fan_out(&e).await.unwrap();
    env.app.queue.send(&queued, 0).await.unwrap();
    let done = env.drain("w").await;
    assert_eq!(
        done.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
        [Outcome::Finished(RunStatus::Succeeded), Outcome::Skipped]
    );
    assert_eq!(env.stripe_calls().await.len(), 1);

    let e = env
        .event("evt_poison", "invoice.created", json!({"id": "in_1"}))
        .await;
    let queued = env.engine("w").fan_out(&e).await.unwrap();
    let _ = env.queue.try_recv();
    let outcome = env.engine("w").handle_message(&queued[0], 6).await.unwrap();
    assert_eq!(outcome, Outcome::Finished(RunStatus::Stuck));
    let run = env.run("evt_poison", "wf_fin").await;
    assert_eq!((run.status, run.due_at()), (RunStatus::Stuck, None));
    assert!(run.last_error.unwrap().contains("received 6 times"));
    let page = env
        .store
        .list_runs(
            CONN,
            &RunQuery {
                status: Some(RunStatus::Stuck),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(
        env.engine("w").handle_message(&queued[0], 1).await.unwrap(),
        Outcome::Skipped,
        "never run again"
    );
    assert_eq!(env.stripe_calls().await.len(), 1);
}

/// Each run attempt's outcome, each delivery's status class and latency,
/// and each Stripe request's outcome per connection are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_deliveries_and_stripe_calls_are_counted() {
    let env = env().await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&target)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_m/finalize"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_m/finalize"))
        .respond_with(ok(
            json!({"id": "in_m", "object": "invoice", "status": "open"}),
        ))
        .mount(&env.stripe)
        .await;
    env.workflow(
        "wf_target",
        "invoice.created",
        Some(format!("{}/hook", target.uri())),
        vec![(
            "invoices.finalize",
            json!({"id": "{{event.data.object.id}}"}),
        )],
    )
    .await;
    let e = env
        .event(
            "evt_m",
            "invoice.created",
            json!({"id": "in_m", "object": "invoice"}),
        )
        .await;
    env.fan_out("w", &e).await;
    env.clock.set(T + 3600);
    env.run_due("w").await;
    assert_eq!(
        env.run("evt_m", "wf_target").await.status,
        RunStatus::Succeeded
    );

    let m = &env.metrics;
    let runs = |o: &'static str| m.count(|x| *x == Measure::Run { outcome: o });
    assert_eq!(
        (runs("retrying"), runs("succeeded")),
        (1, 1),
        "{:?}",
        m.taken()
    );
    let deliveries =
        |c: &'static str| m.count(|x| matches!(x, Measure::Delivery { class, .. } if *class == c));
    assert_eq!((deliveries("5xx"), deliveries("2xx")), (1, 1));
    let stripe = |o: &'static str| {
        m.count(|x| {
            matches!(x, Measure::StripeCall { connection, outcome } if connection == CONN && *outcome == o)
        })
    };
    // The 429 was retried by the client, then answered.
    assert_eq!(
        (stripe("rate_limited"), stripe("retried"), stripe("ok")),
        (1, 1, 1),
        "{:?}",
        m.taken()
    );
}
