//! The run queue on the AWS path: DynamoDB, Secrets Manager and SQS on
//! moto through the real SDK, two executor apps (two Lambda containers) on
//! one table and one queue, fed by an in-process poller that behaves like
//! the event source mapping (batches of 10, visibility timeout, partial
//! batch failures, a dead-letter queue after 6 receives).

use std::sync::Arc;

use connector_core::adapters::dynamo::create_table;
use connector_core::adapters::memory::FixedClock;
use connector_core::adapters::sqs::SqsQueue;
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::conformance;
use connector_core::model::{
    Connection, ConnectionSecrets, StoredEvent, Target, WebhookMode, Workflow,
};
use connector_core::ports::RunRef;
use connector_core::workflow::engine::Engine;
use connector_core::workflow::run::{Run, RunStatus};
use connector_testkit::sqs::{Poller, create_run_queue};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONN: &str = "conn_runqueue00000000000000001";
const T: i64 = 1_900_000_000;

struct Aws {
    sdk: aws_config::SdkConfig,
    table: String,
    prefix: String,
    queue_url: String,
    dlq_url: String,
    stripe: MockServer,
    target: MockServer,
    clock: Arc<FixedClock>,
}

async fn aws(visibility: i32) -> Aws {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("rq-{}", uuid::Uuid::new_v4().simple());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .unwrap();
    let (queue_url, dlq_url) = create_run_queue(
        &aws_sdk_sqs::Client::new(&sdk),
        &format!("rq-{}", uuid::Uuid::new_v4().simple()),
        visibility,
        6,
    )
    .await;
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/invoices/in_[0-9]+/finalize$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "invoice"})))
        .mount(&stripe)
        .await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    Aws {
        sdk,
        table,
        prefix: format!("rq-{}/", uuid::Uuid::new_v4().simple()),
        queue_url,
        dlq_url,
        stripe,
        target,
        clock: Arc::new(FixedClock::at(T)),
    }
}

impl Aws {
    /// One container: its own SDK clients, caches and queue client; the
    /// test's clock.
    fn app(&self) -> Arc<App> {
        self.app_on(self.clock.clone())
    }

    /// One container on another clock.
    fn app_on(&self, clock: Arc<dyn connector_core::ports::Clock>) -> Arc<App> {
        let (base, table, prefix) = (self.stripe.uri(), self.table.clone(), self.prefix.clone());
        let config = Config::from_lookup(|k| match k {
            "STRIPE_API_BASE" => Some(base.clone()),
            "TABLE_NAME" => Some(table.clone()),
            "SECRET_PREFIX" => Some(prefix.clone()),
            "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        let mut app = App::aws_clients(
            config,
            aws_sdk_dynamodb::Client::new(&self.sdk),
            aws_sdk_secretsmanager::Client::new(&self.sdk),
        )
        .unwrap()
        .with_queue(Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&self.sdk),
            self.queue_url.clone(),
        )));
        app.clock = clock;
        Arc::new(app)
    }

    fn poller(&self, url: &str) -> Poller {
        Poller {
            client: aws_sdk_sqs::Client::new(&self.sdk),
            url: url.to_string(),
            batch: 10,
            visibility: None,
        }
    }

    async fn connect(&self, app: &App) {
        app.connections
            .insert_connection(&Connection {
                webhook_mode: WebhookMode::Manual,
                ..conformance::connection(CONN, T)
            })
            .await
            .unwrap();
        app.secrets
            .put_secrets(
                CONN,
                &ConnectionSecrets {
                    api_key: SecretString::from("sk_test_queue".to_string()),
                    webhook_secrets: vec![],
                    target_secrets: Default::default(),
                },
            )
            .await
            .unwrap();
        // Delivers to the target, then finalizes the event's invoice.
        app.workflows
            .insert_workflow(&Workflow {
                filter: Default::default(),
                target: Some(Target {
                    url: format!("{}/hook", self.target.uri()),
                    secret: Some(connector_core::model::TargetSecret::new(
                        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                    )),
                }),
                ..conformance::workflow(CONN, "wf_queue", T)
            })
            .await
            .unwrap();
    }

    async fn event(&self, app: &App, n: usize) -> StoredEvent {
        let id = format!("evt_q{n}");
        let e = StoredEvent {
            connection_id: CONN.into(),
            event_id: id.clone(),
            event_type: "invoice.created".into(),
            created: T,
            livemode: false,
            api_version: None,
            account: None,
            body: Some(
                json!({"id": id, "type": "invoice.created", "data": {"object": {"id": format!("in_{n}")}}})
                    .to_string(),
            ),
            body_omitted: false,
            received_at: T,
            expires_at: T + 86_400,
            recovered: false,
        };
        app.events.insert_event(&e).await.unwrap();
        e
    }

    /// 2xx Stripe writes per idempotency key.
    async fn stripe_writes(&self) -> std::collections::HashMap<String, usize> {
        let mut per_key = std::collections::HashMap::new();
        for r in self.stripe.received_requests().await.unwrap() {
            if let Some(k) = r.headers.get("idempotency-key") {
                *per_key.entry(k.to_str().unwrap().to_string()).or_default() += 1;
            }
        }
        per_key
    }
}

/// Thirty events, each fanned out twice (a redelivered stream batch), two
/// executors polling one queue at once: every event reaches the target
/// once and makes one Stripe write, and every run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_executors_on_one_queue_run_each_event_once() {
    let aws = aws(30).await;
    // Real time: the Stripe budget's windows and the cap's leases pass.
    let clock = Arc::new(connector_core::ports::SystemClock);
    let (a, b) = (aws.app_on(clock.clone()), aws.app_on(clock));
    aws.connect(&a).await;
    for n in 0..30 {
        let e = aws.event(&a, n).await;
        // The stream's batch, delivered twice, to different containers.
        Engine::new(&a, "fanout-a").fan_out(&e).await.unwrap();
        Engine::new(&b, "fanout-b").fan_out(&e).await.unwrap();
    }
    let (pa, pb) = (aws.poller(&aws.queue_url), aws.poller(&aws.queue_url));
    let (da, db) = tokio::join!(pa.drain(&a, 3), pb.drain(&b, 3));
    // 60 sent; more received: runs put back while their target had four
    // deliveries in flight (its cap) come round again.
    assert!(da.received + db.received >= 60, "{da:?} {db:?}");
    assert_eq!(da.failed + db.failed, 0);
    let delivered = aws.target.received_requests().await.unwrap();
    let ids: std::collections::HashSet<String> = delivered
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (delivered.len(), ids.len()),
        (30, 30),
        "each event delivered once"
    );
    let writes = aws.stripe_writes().await;
    assert_eq!(writes.len(), 30);
    assert!(writes.values().all(|n| *n == 1), "{writes:?}");
    for n in 0..30 {
        let run = a
            .runs
            .get_run(CONN, &format!("evt_q{n}"), "wf_queue")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((run.status, run.attempts), (RunStatus::Succeeded, 1));
    }
}

/// An executor killed mid-run (after its delivery, before its step): its
/// message comes back after the visibility timeout, the next executor
/// takes the run over once the lease has ended and finishes it without
/// delivering again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_executors_run_is_finished_by_the_next_without_repeating_its_delivery() {
    let aws = aws(1).await;
    let app = aws.app();
    aws.connect(&app).await;
    let e = aws.event(&app, 1).await;
    let queued = Engine::new(&app, "fanout").fan_out(&e).await.unwrap();
    // The dead executor: it received the message (not deleted: it died),
    // claimed the run and delivered, then stopped.
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let received = sqs
        .receive_message()
        .queue_url(&aws.queue_url)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages().len(), 1);
    let mut run = app
        .runs
        .get_run(CONN, "evt_q1", "wf_queue")
        .await
        .unwrap()
        .unwrap();
    let v = run.version;
    run.claim("dead", T, 300, 7).unwrap();
    run.delivered = true;
    app.runs.save_run(&run, v).await.unwrap();
    // Its lease ends; the message is visible again after 1 s.
    aws.clock.set(T + 301);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let polled = aws.poller(&aws.queue_url).drain(&app, 1).await;
    assert_eq!(polled.received, 1);
    let run = app
        .runs
        .get_run(CONN, "evt_q1", "wf_queue")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((run.status, run.attempts), (RunStatus::Succeeded, 2));
    assert!(
        aws.target.received_requests().await.unwrap().is_empty(),
        "delivered by the dead executor, not again"
    );
    assert_eq!(aws.stripe_writes().await.len(), 1);
    assert_eq!(queued, [RunRef::of(&run)]);
}

/// A message whose handling fails is reported on its own (the batch's
/// other messages are done with) and comes back; one that fails on every
/// receive marks its run stuck on the sixth, before SQS would move it to
/// the dead-letter queue, so the run is listed and can be replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_failing_every_time_is_reported_alone_then_marks_its_run_stuck() {
    let aws = aws(1).await;
    let app = aws.app();
    aws.connect(&app).await;
    // The good run, and a run not due for a minute, whose re-queueing
    // fails: this container cannot send to the queue.
    let good = aws.event(&app, 1).await;
    Engine::new(&app, "fanout").fan_out(&good).await.unwrap();
    aws.event(&app, 2).await;
    let mut later = Run::new(CONN, "evt_q2", "wf_queue", T);
    later.next_attempt_at = Some(T + 60);
    app.runs.create_run(&later).await.unwrap();
    app.queue.send(&[RunRef::of(&later)], 0).await.unwrap();
    let broken = {
        let mut b = (*app).clone();
        b.queue = Arc::new(connector_core::adapters::sqs::Unconfigured);
        Arc::new(b)
    };
    let poller = aws.poller(&aws.queue_url);
    let first = poller.poll(&broken, 1).await;
    let first = if first.received < 2 {
        // SQS may hand the two out in separate batches.
        let more = poller.poll(&broken, 1).await;
        connector_testkit::sqs::Polled {
            received: first.received + more.received,
            failed: first.failed + more.failed,
        }
    } else {
        first
    };
    assert_eq!((first.received, first.failed), (2, 1));
    assert_eq!(
        app.runs
            .get_run(CONN, "evt_q1", "wf_queue")
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Succeeded
    );
    // Five more receives of the failing message; the sixth marks it stuck.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        poller.poll(&broken, 2).await;
    }
    let run = app
        .runs
        .get_run(CONN, "evt_q2", "wf_queue")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Stuck, "{run:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        poller.poll(&broken, 1).await.received,
        0,
        "handled, not dead-lettered"
    );
    assert_eq!(aws.poller(&aws.dlq_url).poll(&app, 0).await.received, 0);
}
