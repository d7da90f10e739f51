//! A scheduler tick queues the runs falling due within its horizon (each
//! once, delayed until due) and runs whose message was lost; it executes
//! nothing itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::sync::Arc;

use connector_core::adapters::local_queue::LocalQueue;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::lambda::scheduler_tick;
use connector_core::model::{
    Connection, ConnectionSecrets, Step, StoredEvent, WebhookMode, Workflow,
};
use connector_core::ports::{ConnectionStore, EventStore, RunStore, SecretStore, WorkflowStore};
use connector_core::workflow::engine::Engine;
use connector_core::workflow::run::{Failure, RetryPolicy, Run, RunStatus};
use secrecy::SecretString;
use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_queues_what_falls_due_once_and_what_was_lost() {
    // The schedule's event carries nothing the tick needs; the fixture parses.
    let _: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/schedule_tick.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let stripe = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "in_1"})))
        .mount(&stripe)
        .await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let clock = Arc::new(FixedClock::at(1000));
    let queue = LocalQueue::new(clock.clone());
    let base = stripe.uri();
    let app = App::new(
        Config::from_lookup(|k| (k == "STRIPE_API_BASE").then(|| base.clone())).unwrap(),
        store.clone(),
        secrets.clone(),
        clock.clone(),
    )
    .with_queue(queue.clone());
    store
        .insert_connection(&Connection {
            id: "conn_s".into(),
            name: "s".into(),
            account_id: "acct_1".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: WebhookMode::Manual,
            webhook_endpoint_id: None,
            triggers: vec![],
            created_at: 0,
            updated_at: 0,
            version: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    secrets
        .put_secrets(
            "conn_s",
            &ConnectionSecrets {
                api_key: SecretString::from("sk_test_s".to_string()),
                webhook_secrets: vec![],
                target_secrets: Default::default(),
            },
        )
        .await
        .unwrap();
    store
        .insert_workflow(&Workflow {
            id: "wf_s".into(),
            connection_id: "conn_s".into(),
            trigger: "invoice.created".into(),
            filter: Default::default(),
            target: None,
            steps: vec![Step {
                action: "invoices.finalize".into(),
                input: json!({"id": "in_1"}),
            }],
            enabled: true,
            ignore_own_writes: true,
            fetch_latest: false,
            skip_stale: false,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    store
        .insert_event(&StoredEvent {
            connection_id: "conn_s".into(),
            event_id: "evt_s".into(),
            event_type: "invoice.created".into(),
            created: 0,
            livemode: false,
            api_version: None,
            account: None,
            body: Some(r#"{"id":"evt_s","type":"invoice.created"}"#.into()),
            body_omitted: false,
            received_at: 0,
            expires_at: 1,
            recovered: false,
        })
        .await
        .unwrap();
    // A run that failed once and is due at 1030; another due in an hour.
    let retrying = |event: &str, delay: i64| {
        let mut run = Run::new("conn_s", event, "wf_s", 1000);
        run.claim("w", 1000, 60, 7).unwrap();
        run.fail(
            "w",
            Failure::Transient("503".into()),
            1000,
            &RetryPolicy {
                delays: vec![delay],
                jitter: 0.0,
            },
            0.0,
        )
        .unwrap();
        run
    };
    let mut later = store.get_event("conn_s", "evt_s").await.unwrap().unwrap();
    later.event_id = "evt_later".into();
    store.insert_event(&later).await.unwrap();
    store.create_run(&retrying("evt_s", 30)).await.unwrap();
    store
        .create_run(&retrying("evt_later", 3600))
        .await
        .unwrap();

    // The tick queues the run due within its horizon, delayed until due;
    // it executes nothing.
    assert_eq!(
        scheduler_tick(&app).await.unwrap(),
        json!({"queued_runs": 1})
    );
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.try_recv(), None, "not visible before 1030");
    assert!(stripe.received_requests().await.unwrap().is_empty());
    // A second tick does not queue it again.
    assert_eq!(
        scheduler_tick(&app).await.unwrap(),
        json!({"queued_runs": 0})
    );
    clock.set(1030);
    let done = Engine::new(&app, "exec").work_ready(&queue).await;
    assert_eq!(done.len(), 1);
    assert_eq!(
        store
            .get_run("conn_s", "evt_s", "wf_s")
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Succeeded
    );
    assert_eq!(stripe.received_requests().await.unwrap().len(), 1);

    // The later run is queued once it comes within the horizon.
    clock.set(4600 - 841);
    assert_eq!(
        scheduler_tick(&app).await.unwrap(),
        json!({"queued_runs": 0})
    );
    clock.set(4600 - 840);
    assert_eq!(
        scheduler_tick(&app).await.unwrap(),
        json!({"queued_runs": 1})
    );
    // Its message is lost (a queue that is gone); half an hour after it
    // fell due, the tick queues it again.
    assert_eq!(queue.try_recv(), None, "still delayed");
    clock.set(4600);
    assert!(
        queue.try_recv().is_some(),
        "received, then lost with its worker"
    );
    assert!(queue.is_empty());
    clock.set(4600 + 1799);
    assert_eq!(
        scheduler_tick(&app).await.unwrap(),
        json!({"queued_runs": 0})
    );
    clock.set(4600 + 1800);
    assert_eq!(
        scheduler_tick(&app).await.unwrap(),
        json!({"queued_runs": 1})
    );
    Engine::new(&app, "exec").work_ready(&queue).await;
    assert_eq!(
        store
            .get_run("conn_s", "evt_later", "wf_s")
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Succeeded
    );
}
