//! The fan-out function fed DynamoDB Stream batches from events/: new event
//! items get their runs, made once and queued (fan-out itself never calls a
//! target or Stripe); other items are passed; a record whose fan-out fails
//! is reported for retry by its sequence number.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use connector_core::adapters::dynamo::DynamoStore;
use connector_core::adapters::local_queue::LocalQueue;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::lambda::process_stream;
use connector_core::model::{
    Connection, ConnectionSecrets, Step, StoredEvent, WebhookMode, Workflow,
};
use connector_core::ports::{
    ConnectionStore, EventStore, RunQuery, RunStore, SecretStore, WorkflowStore,
};
use connector_core::stripe::StripeSettings;
use connector_core::workflow::engine::{Engine, Outcome};
use connector_core::workflow::run::RunStatus;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONN: &str = "conn_fixture000000000000000001";
const T: i64 = 1_795_000_000;

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../events/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap()
}

async fn app(stripe_base: &str) -> (App, Arc<MemoryStore>, Arc<LocalQueue>) {
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let clock = Arc::new(FixedClock::at(T + 10));
    let queue = LocalQueue::new(clock.clone());
    let app = App::new(
        Config::from_lookup(|_| None).unwrap(),
        store.clone(),
        secrets.clone(),
        clock,
    )
    .with_queue(queue.clone())
    .with_stripe_settings(StripeSettings {
        api_base: stripe_base.to_string(),
        max_retries: 0,
        initial_backoff: Duration::from_millis(1),
        ..StripeSettings::default()
    });
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
                api_key: SecretString::from("sk_test_fixturekey".to_string()),
                webhook_secrets: vec![],
                target_secrets: Default::default(),
            },
        )
        .await
        .unwrap();
    store
        .insert_workflow(&Workflow {
            id: "wf_fixture".into(),
            connection_id: CONN.into(),
            trigger: "invoice.created".into(),
            filter: Default::default(),
            target: None,
            steps: vec![Step {
                action: "invoices.finalize".into(),
                input: json!({"id": "{{event.data.object.id}}"}),
            }],
            enabled: true,
            ignore_own_writes: true,
            fetch_latest: false,
            skip_stale: false,
            created_at: T,
            updated_at: T,
        })
        .await
        .unwrap();
    (app, store, queue)
}

/// The event item of a batch, as ingest stored it (the engine reads it back).
async fn store_event_of(store: &MemoryStore, batch: &Value) -> StoredEvent {
    let image = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["eventName"] == "INSERT" && r["dynamodb"]["NewImage"]["kind"]["S"] == "event")
        .unwrap();
    let image: serde_dynamo::Item =
        serde_json::from_value(image["dynamodb"]["NewImage"].clone()).unwrap();
    let event = DynamoStore::event_from_image(image).unwrap();
    store.insert_event(&event).await.unwrap();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_event_runs_its_workflow_once_even_when_the_batch_is_redelivered() {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_1PfixtureInvoice/finalize"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "in_1PfixtureInvoice", "status": "open"})),
        )
        .mount(&stripe)
        .await;
    let (app, store, queue) = app(&stripe.uri()).await;
    let batch = fixture("stream_new_event.json");
    store_event_of(&store, &batch).await;
    let event: Event = serde_json::from_value(batch).unwrap();
    for _ in 0..2 {
        let response = process_stream(&app, event.clone()).await;
        assert!(response.batch_item_failures.is_empty());
    }
    assert!(
        stripe.received_requests().await.unwrap().is_empty(),
        "fan-out only makes and queues runs"
    );
    assert_eq!(queue.len(), 2, "each delivery of the batch queues the run");
    let done = Engine::new(&app, "exec").work_ready(&queue).await;
    assert_eq!(
        done.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
        [Outcome::Finished(RunStatus::Succeeded), Outcome::Skipped]
    );
    assert_eq!(
        stripe.received_requests().await.unwrap().len(),
        1,
        "one finalize for two deliveries of the batch"
    );
    let runs = store
        .list_runs(
            CONN,
            &RunQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].status,
        connector_core::workflow::run::RunStatus::Succeeded
    );
    // The response is what Lambda expects for ReportBatchItemFailures.
    assert_eq!(
        serde_json::to_value(process_stream(&app, event).await).unwrap(),
        json!({"batchItemFailures": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_inserted_event_items_fan_out() {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "in_1"})))
        .mount(&stripe)
        .await;
    let (app, store, queue) = app(&stripe.uri()).await;
    let batch = fixture("stream_mixed_batch.json");
    store_event_of(&store, &batch).await;
    let response = process_stream(&app, serde_json::from_value(batch).unwrap()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(queue.len(), 1);
    // The run item and the MODIFY are passed; the INSERT of the event makes one run.
    assert_eq!(
        store
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
    assert!(stripe.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fan_out_is_reported_by_sequence_number() {
    // The run queue cannot be reached.
    let (app, store, _) = app("http://127.0.0.1:9").await;
    let app = app.with_queue(Arc::new(connector_core::adapters::sqs::Unconfigured));
    let batch = fixture("stream_mixed_batch.json");
    store_event_of(&store, &batch).await;
    let response = process_stream(&app, serde_json::from_value(batch).unwrap()).await;
    let failed: Vec<Option<String>> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [Some("103".to_string())]);
}
