//! The run-executor function fed an SQS batch from events/ (as `cargo
//! lambda invoke` or `sam local invoke` would): the run is carried out
//! once although the batch holds its message twice (SQS delivers at least
//! once), an unreadable message is dropped rather than retried forever, and
//! the answer is what Lambda expects for `ReportBatchItemFailures`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;
use std::time::Duration;

use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::conformance;
use connector_core::lambda::process_queue;
use connector_core::model::{Connection, ConnectionSecrets, StoredEvent, WebhookMode, Workflow};
use connector_core::ports::{ConnectionStore, EventStore, RunStore, SecretStore, WorkflowStore};
use connector_core::stripe::StripeSettings;
use connector_core::workflow::run::{Run, RunStatus};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONN: &str = "conn_fixture000000000000000001";
const EVENT: &str = "evt_1PfixtureInvoiceCreated";
const T: i64 = 1_795_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_each_run_once_and_drops_what_it_cannot_read() {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_fixture/finalize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "in_fixture"})))
        .mount(&stripe)
        .await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let app = Arc::new(
        App::new(
            Config::from_lookup(|_| None).unwrap(),
            store.clone(),
            secrets.clone(),
            Arc::new(FixedClock::at(T)),
        )
        .with_stripe_settings(StripeSettings {
            api_base: stripe.uri(),
            initial_backoff: Duration::from_millis(1),
            ..StripeSettings::default()
        }),
    );
    store
        .insert_connection(&Connection {
            webhook_mode: WebhookMode::Manual,
            ..conformance::connection(CONN, T)
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
    // Finalizes the event's invoice; no filter, no target.
    store
        .insert_workflow(&Workflow {
            filter: Default::default(),
            target: None,
            ..conformance::workflow(CONN, "wf_fixture", T)
        })
        .await
        .unwrap();
    store
        .insert_event(&StoredEvent {
            connection_id: CONN.into(),
            event_id: EVENT.into(),
            event_type: "invoice.created".into(),
            created: T,
            livemode: false,
            api_version: None,
            account: None,
            body: Some(
                json!({"id": EVENT, "type": "invoice.created", "data": {"object": {"id": "in_fixture"}}})
                    .to_string(),
            ),
            body_omitted: false,
            received_at: T,
            expires_at: T + 86_400,
            recovered: false,
        })
        .await
        .unwrap();
    store
        .create_run(&Run::new(CONN, EVENT, "wf_fixture", T))
        .await
        .unwrap();

    let batch = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/sqs_run_messages.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let response = process_queue(&app, batch).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []})
    );
    assert_eq!(
        stripe.received_requests().await.unwrap().len(),
        1,
        "one finalize for the message delivered twice"
    );
    let run = store
        .get_run(CONN, EVENT, "wf_fixture")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((run.status, run.attempts), (RunStatus::Succeeded, 1));
}
