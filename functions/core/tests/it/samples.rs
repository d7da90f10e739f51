//! A trigger's sample event — the latest stored, else the latest from
//! Stripe, else the bundled one — as served, as workflow creation checks
//! templates against it, and as a test run uses it; and the sample results
//! of steps, in the shape each action answers.

use std::sync::Arc;

use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::model::{Connection, ConnectionSecrets, StoredEvent, WebhookMode};
use connector_core::ports::{ConnectionStore, EventStore, SecretStore};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONN: &str = "conn_samples";
const T: i64 = 1_900_000_000;

struct Env {
    app: App,
    store: Arc<MemoryStore>,
    stripe: MockServer,
}

async fn env() -> Env {
    let stripe = MockServer::start().await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let app = App::new(
        Config::from_lookup(|_| None).unwrap(),
        store.clone(),
        secrets.clone(),
        Arc::new(FixedClock::at(T)),
    )
    .with_stripe_settings(crate::support::fast_stripe(stripe.uri()));
    store
        .insert_connection(&Connection {
            id: CONN.into(),
            name: "Samples".into(),
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
                api_key: SecretString::from("sk_test_samples".to_string()),
                webhook_secrets: vec![],
                target_secrets: Default::default(),
            },
        )
        .await
        .unwrap();
    Env { app, store, stripe }
}

impl Env {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        crate::support::call(&self.app, method, uri, body).await
    }

    async fn sample(&self, trigger: &str) -> (u16, Value) {
        self.call(
            "GET",
            &format!("/connections/{CONN}/triggers/{trigger}/sample"),
            None,
        )
        .await
    }

    /// Stripe's `GET /v1/events?type=…` answers these events.
    async fn stripe_has(&self, trigger: &str, events: Value) {
        Mock::given(method("GET"))
            .and(path("/v1/events"))
            .and(query_param("type", trigger))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"object": "list", "data": events, "has_more": false})),
            )
            .mount(&self.stripe)
            .await;
    }

    async fn stored(&self, id: &str, trigger: &str, object: Value) {
        let body = json!({"id": id, "object": "event", "type": trigger, "created": T, "data": {"object": object}});
        self.store
            .insert_event(&StoredEvent {
                connection_id: CONN.into(),
                event_id: id.into(),
                event_type: trigger.into(),
                created: T,
                livemode: false,
                api_version: Some("2023-08-16".into()),
                account: None,
                body: Some(body.to_string()),
                body_omitted: false,
                received_at: T,
                expires_at: T + 86_400,
                recovered: false,
            })
            .await
            .unwrap();
    }
}

fn stripe_event(id: &str, trigger: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": trigger, "created": T - 60, "data": {"object": object}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_is_the_latest_stored_event_else_stripes_latest_else_the_bundled_one() {
    let env = env().await;
    env.stripe_has(
        "invoice.paid",
        json!([stripe_event(
            "evt_from_stripe",
            "invoice.paid",
            json!({"id": "in_1", "object": "invoice"})
        )]),
    )
    .await;
    env.stripe_has("customer.created", json!([])).await;
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .and(query_param("type", "product.created"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "down"}})),
        )
        .mount(&env.stripe)
        .await;

    // Nothing stored: Stripe's latest event of the type.
    let (status, sample) = env.sample("invoice.paid").await;
    assert_eq!(status, 200, "{sample}");
    assert_eq!(sample["source"], "stripe");
    assert_eq!(sample["event"]["id"], "evt_from_stripe");
    let asked = env.stripe.received_requests().await.unwrap();
    assert_eq!(asked[0].url.query(), Some("limit=1&type=invoice.paid"));

    // Once one is stored, the stored one, without asking Stripe.
    env.stored(
        "evt_stored",
        "invoice.paid",
        json!({"id": "in_2", "object": "invoice"}),
    )
    .await;
    env.stripe.reset().await;
    let (_, sample) = env.sample("invoice.paid").await;
    assert_eq!(sample["source"], "stored");
    assert_eq!(sample["event"]["id"], "evt_stored");
    assert!(env.stripe.received_requests().await.unwrap().is_empty());

    // None anywhere, or Stripe failing: the bundled sample.
    env.stripe_has("customer.created", json!([])).await;
    let (_, sample) = env.sample("customer.created").await;
    assert_eq!(sample["source"], "fixture");
    assert_eq!(sample["event"]["type"], "customer.created");
    assert_eq!(sample["event"]["data"]["object"]["object"], "customer");
    let (status, sample) = env.sample("product.created").await;
    assert_eq!((status, &sample["source"]), (200, &json!("fixture")));

    // `*`: the latest stored event of any type.
    let (_, sample) = env.sample("*").await;
    assert_eq!(sample["event"]["id"], "evt_stored");

    // An unknown trigger or connection names nothing.
    let (status, body) = env.sample("invoice.exploded").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["message"], "unknown trigger");
    let (status, _) = env
        .call(
            "GET",
            "/connections/conn_nope/triggers/invoice.paid/sample",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// A workflow is checked against the sample its test runs on: a template
/// reading a field only the account's real events have is accepted, and
/// the test run fills it from that same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_and_test_runs_use_the_same_sample() {
    let env = env().await;
    // The account's real invoices carry a metadata key the bundled sample lacks.
    env.stripe_has(
        "invoice.paid",
        json!([stripe_event(
            "evt_real",
            "invoice.paid",
            json!({"id": "in_real", "object": "invoice", "customer": "cus_real", "metadata": {"crm_id": "42"}})
        )]),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_real"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_real", "object": "customer"})),
        )
        .mount(&env.stripe)
        .await;
    let workflow = json!({
        "trigger": "invoice.paid",
        "steps": [{"action": "customers.update", "input": {
            "id": "{{event.data.object.customer}}",
            "metadata": {"crm": "{{event.data.object.metadata.crm_id}}"},
        }}],
    });
    let (status, created) = env
        .call(
            "POST",
            &format!("/connections/{CONN}/workflows"),
            Some(workflow.clone()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, report) = env
        .call(
            "POST",
            &format!(
                "/connections/{CONN}/workflows/{}/test",
                created["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["event_id"], "evt_real", "{report}");
    assert_eq!(
        report["steps"][0]["input"],
        json!({"id": "cus_real", "metadata": {"crm": "42"}})
    );

    // A path neither the real event nor Stripe's full sample has is refused,
    // naming the sample it was checked against.
    let mut typo = workflow.clone();
    typo["steps"][0]["input"]["metadata"]["crm"] = json!("{{event.data.object.metadata.crm_idd}}");
    let (status, refused) = env
        .call(
            "POST",
            &format!("/connections/{CONN}/workflows"),
            Some(typo),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("latest Stripe sample invoice.paid"),
        "{refused}"
    );

    // A field the real event happens to leave out, but invoices have, is
    // checked against Stripe's full sample instead of refused.
    let mut sparse = workflow;
    sparse["steps"][0]["input"]["email"] = json!("{{event.data.object.customer_email}}");
    let (status, body) = env
        .call(
            "POST",
            &format!("/connections/{CONN}/workflows"),
            Some(sparse),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// `{{steps.N.…}}` is checked against what the action answers for that
/// input: a customer found by id is the customer, not a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_results_are_checked_in_the_shape_the_action_answers() {
    let env = env().await;
    env.stripe_has("customer.created", json!([])).await;
    let workflow = |find: Value, read: &str| {
        json!({
            "trigger": "customer.created",
            "steps": [
                {"action": "customers.find", "input": find},
                {"action": "customers.update", "input": {"id": read}},
            ],
        })
    };
    let by_id = json!({"id": "{{event.data.object.id}}"});
    let by_email = json!({"email": "{{event.data.object.email}}"});
    for (find, read, accepted) in [
        (&by_id, "{{steps.0.id}}", true),
        (&by_id, "{{steps.0.data.0.id}}", false),
        (&by_email, "{{steps.0.data.0.id}}", true),
        (&by_email, "{{steps.0.id}}", false),
    ] {
        let (status, body) = env
            .call(
                "POST",
                &format!("/connections/{CONN}/workflows"),
                Some(workflow(find.clone(), read)),
            )
            .await;
        assert_eq!(status == 201, accepted, "{find} then {read}: {body}");
    }
}
