//! Load, not timed: 2,000 signed deliveries of which 30% are byte-identical
//! redeliveries, from 16 concurrent senders over keep-alive HTTP, to a
//! connection with 3 workflows → exactly 1,400 events and 4,200 runs, each
//! succeeded once, each target message delivered once. Run on the embedded
//! store and on DynamoDB (moto) through the real SDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_core::adapters::dynamo::{DynamoStore, create_table};
use connector_core::adapters::memory::MemorySecrets;
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::model::{Connection, ConnectionSecrets, Target, WebhookMode, Workflow};
use connector_core::ports::{EventQuery, RunQuery};
use connector_core::webhook::sign_header;
use connector_core::workflow::run::RunStatus;
use connector_core::workflow::signing;
use integration_tests::{Running, serve};
use rand::seq::{IndexedRandom, SliceRandom};
use secrecy::SecretString;
use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_loadtest";
/// The full load; the DynamoDB variant runs a tenth of it unless
/// LOAD_SCALE=full, since moto answers one request at a time (~15 ms each).
const UNIQUE: usize = 1400;
const DUPLICATES: usize = 600;
const SENDERS: usize = 16;
const WORKFLOWS: usize = 3;

async fn set_up(app: &App, conn: &str, target: &str) {
    let mut secrets = ConnectionSecrets {
        api_key: SecretString::from("sk_test_load".to_string()),
        webhook_secrets: vec![SecretString::from(SECRET.to_string())],
        target_secrets: Default::default(),
    };
    for i in 0..WORKFLOWS {
        let id = format!("wf_load{i}");
        secrets
            .target_secrets
            .insert(id.clone(), SecretString::from(signing::generate_secret()));
        app.workflows
            .insert_workflow(&Workflow {
                id,
                connection_id: conn.into(),
                trigger: "invoice.created".into(),
                filter: Default::default(),
                target: Some(Target {
                    url: target.to_string(),
                    secret: None,
                }),
                steps: vec![],
                enabled: true,
                ignore_own_writes: true,
                fetch_latest: false,
                skip_stale: false,
                created_at: i as i64,
                updated_at: i as i64,
            })
            .await
            .unwrap();
    }
    app.secrets.put_secrets(conn, &secrets).await.unwrap();
    app.connections
        .insert_connection(&Connection {
            id: conn.into(),
            name: "load".into(),
            account_id: "acct_load".into(),
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
}

async fn load(server: Running, target: MockServer, conn: &str, scale: usize) {
    let (unique_n, duplicates_n) = (UNIQUE / scale, DUPLICATES / scale);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let pad = "x".repeat(1500);
    let unique: Vec<Vec<u8>> = (0..unique_n)
        .map(|i| {
            json!({"id": format!("evt_load{i:05}"), "object": "event", "type": "invoice.created", "created": now,
                   "livemode": false, "data": {"object": {"id": format!("in_{i}"), "object": "invoice", "description": pad}}})
            .to_string()
            .into_bytes()
        })
        .collect();
    let mut deliveries = unique.clone();
    let mut rng = rand::rng();
    for _ in 0..duplicates_n {
        deliveries.push(unique.choose(&mut rng).unwrap().clone());
    }
    deliveries.shuffle(&mut rng);

    let started = Instant::now();
    let server = Arc::new(server);
    let queue = Arc::new(std::sync::Mutex::new(deliveries));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (server, queue, conn) = (server.clone(), queue.clone(), conn.to_string());
            tokio::spawn(async move {
                let (mut fresh, mut dupes) = (0usize, 0usize);
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    // Like Stripe, every (re)delivery is signed when it is sent.
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64;
                    let sig = sign_header(&body, SECRET, at);
                    let (status, out) = server.post_webhook(&conn, &body, &sig).await;
                    assert_eq!(status, 200, "{out}");
                    if out["duplicate"] == true {
                        dupes += 1;
                    } else {
                        fresh += 1;
                    }
                }
                (fresh, dupes)
            })
        })
        .collect();
    let (mut fresh, mut dupes) = (0, 0);
    for s in senders {
        let (f, d) = s.await.unwrap();
        fresh += f;
        dupes += d;
    }
    assert_eq!(
        (fresh, dupes),
        (unique_n, duplicates_n),
        "every redelivery was reported as a duplicate, once"
    );
    eprintln!(
        "load: {} deliveries accepted in {:?}",
        unique_n + duplicates_n,
        started.elapsed()
    );

    // Wait for fan-out to finish every run.
    let app = &server.app;
    let deadline = Instant::now() + Duration::from_secs(240);
    let runs = loop {
        let runs = all_runs(app, conn).await;
        if runs.len() == unique_n * WORKFLOWS
            && runs.iter().all(|r| r.status == RunStatus::Succeeded)
        {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs, {} succeeded",
            runs.len(),
            runs.iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .count()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        runs.iter().all(|r| r.attempts == 1 && r.delivered),
        "each run succeeded at its first attempt"
    );
    let events = app
        .events
        .list_events(
            conn,
            &EventQuery {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), unique_n);
    let received = target.received_requests().await.unwrap();
    let ids: HashSet<String> = received
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (received.len(), ids.len()),
        (unique_n * WORKFLOWS, unique_n * WORKFLOWS),
        "each message delivered once"
    );
    eprintln!(
        "load: {} deliveries, {} runs in {:?}",
        unique_n + duplicates_n,
        runs.len(),
        started.elapsed()
    );
}

async fn target() -> MockServer {
    let target = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let target = target().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dirs = dir.path().display().to_string();
    let config = Config::from_lookup(|k| match k {
        "CONNECTOR_DATA_DIR" => Some(dirs.clone()),
        "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    let app = connector_embedded::app(config).unwrap();
    set_up(&app, "conn_loadsqlite", &target.uri()).await;
    load(serve(app, listener), target, "conn_loadsqlite", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_on_dynamodb() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is set by infra/test.sh (moto server)");
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "tests only talk to a local moto server"
    );
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("load-{}", std::process::id());
    create_table(&client, &table).await.unwrap();
    let target = target().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::new(
        Config::from_lookup(|k| (k == "CONNECTOR_ALLOW_PRIVATE_TARGETS").then(|| "true".into()))
            .unwrap(),
        Arc::new(DynamoStore::new(client, table)),
        Arc::new(MemorySecrets::default()),
        Arc::new(connector_core::ports::SystemClock),
    );
    set_up(&app, "conn_loaddynamo", &target.uri()).await;
    let scale = if std::env::var("LOAD_SCALE").as_deref() == Ok("full") {
        1
    } else {
        10
    };
    load(serve(app, listener), target, "conn_loaddynamo", scale).await;
}

/// Every run of the connection, page by page through the cursor: each page
/// is bounded, and together they hold each run exactly once.
async fn all_runs(
    app: &connector_core::app::App,
    conn: &str,
) -> Vec<connector_core::workflow::run::Run> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut query = RunQuery {
        limit: 100,
        ..Default::default()
    };
    loop {
        let page = app.runs.list_runs(conn, &query).await.unwrap();
        assert!(page.runs.len() <= 100);
        for run in page.runs {
            assert!(
                seen.insert((run.event_id.clone(), run.run_key())),
                "a run listed twice"
            );
            out.push(run);
        }
        match page.next {
            Some(next) => query.starting_after = Some(next),
            None => return out,
        }
    }
}

/// The noisy-neighbour load on the AWS path at CI size (10 connections ×
/// 20 events × 2 workflows): moto's DynamoDB, Secrets Manager and SQS,
/// eight executor containers fed by pollers that behave like the event
/// source mapping. Connection 0's target hangs past the timeout, 1's
/// answers 500, 2's steps get 429 on 20% of Stripe calls. Not timed: every
/// healthy (event, workflow) is delivered once, every step written once,
/// no key over its Stripe budget in any second, and the failing targets
/// cost a handful of attempts (the breaker), not one per run. Full size:
/// `infra/bench.sh noisy --host moto` (docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn noisy_neighbours_on_the_aws_path() {
    use connector_testkit::noisy::{Host, Plan, run};
    let plan = Plan {
        connections: 10,
        events: 20,
        senders: 8,
        hang: Duration::from_secs(20),
        deadline: Duration::from_secs(240),
        rate: None,
        faults: true,
    };
    let report = run(plan.clone(), Host::Moto { executors: 8 }, None).await;
    report.check(&plan);
    // The breaker: after 5 failures in a row the targets are left alone.
    assert!(report.failing_attempts < plan.events, "{report:#?}");
    assert!(report.hanging_attempts < plan.events, "{report:#?}");
}
