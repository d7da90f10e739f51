//! AWS cost of one million ingested events with one workflow each.
//!
//! `infra/bench.sh cost` (starts moto). Runs the real code path against moto
//! through recording SDK clients: webhook-ingest stores a signed ~2 KB
//! `invoice.created`, trigger-fanout takes its stream record, makes its run
//! and queues it (SQS on moto), and run-executor, fed by the in-process
//! poller, delivers it to a target that answers 200. Every DynamoDB,
//! Secrets Manager and SQS call is recorded with the size of each item
//! written; write and read units follow DynamoDB's rules (1 KB per write
//! unit, index copies billed too; 4 KB per strongly consistent read unit).
//! The event source mapping's own receives and deletes are modelled (one of
//! each per batch, `--batch`). Durations per invocation come from the flags
//! (`--ingest-ms`, `--fanout-ms`, `--executor-ms`: warm medians measured by
//! `infra/bench.sh coldstart`).
//!
//! Then the reconciler: one steady-state pass of a managed connection (its
//! endpoint read from a Stripe stub and found whole, its event list empty),
//! recorded the same way, priced per connection per month at one pass
//! every 5 minutes (`--reconcile-ms`: one pass's duration, most of it
//! waiting on Stripe; 4 passes share an invocation's time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use connector_bench::{invoice_event, now_secs, reply, serve};
use connector_core::adapters::dynamo::{DynamoStore, create_table};
use connector_core::adapters::secrets_manager::SecretsManagerStore;
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::lambda::process_stream;
use connector_core::model::{Connection, ConnectionSecrets, Target, WebhookMode, Workflow};
use connector_core::ports::{ConnectionStore, EventStore, SecretStore, WorkflowStore};
use connector_core::webhook::sign_header;
use connector_testkit::recorder::{Call, Recorder};
use secrecy::SecretString;
use serde_json::json;

const CONN: &str = "conn_costmodel00000000000001";
const SECRET: &str = "whsec_costmodel000000000000000";
const PREFIX: &str = "costmodel/";
const MANAGED: &str = "conn_costmodelmanaged0000001";
const MANAGED_URL: &str = "https://hooks.example/webhooks/conn_costmodelmanaged0000001";

/// us-east-1 list prices, November 2026.
const HTTP_API_PER_MILLION: f64 = 1.00;
const LAMBDA_REQUEST_PER_MILLION: f64 = 0.20;
const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
const DDB_WRITE_UNIT_PER_MILLION: f64 = 0.625;
const DDB_READ_UNIT_PER_MILLION: f64 = 0.125;
const SECRETS_PER_MILLION_CALLS: f64 = 5.00;
const SQS_PER_MILLION_REQUESTS: f64 = 0.40;
const MEMORY_GB: f64 = 128.0 / 1024.0;

fn flag(name: &str, default: f64) -> f64 {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// A clock the model moves (the in-memory one is a test utility).
struct SetClock(std::sync::atomic::AtomicI64);

impl connector_core::ports::Clock for SetClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(Default, Debug)]
struct Units {
    calls: BTreeMap<String, usize>,
    write_units: usize,
    read_units: usize,
    secrets_calls: usize,
    sqs_calls: usize,
    items: Vec<(String, usize, bool)>,
}

fn units(calls: &[Call], indexed_before: &mut HashMap<String, bool>) -> Units {
    let mut u = Units::default();
    for c in calls {
        *u.calls.entry(c.action.clone()).or_default() += 1;
        match c.action.as_str() {
            "dynamodb:PutItem" => {
                let size = c.item_bytes.unwrap_or(0);
                let key = c.item_key.clone().unwrap_or_default();
                u.write_units += size.div_ceil(1024).max(1);
                let was = indexed_before
                    .insert(key.clone(), c.indexed)
                    .unwrap_or(false);
                // ALL projection: the index copy is the whole item; leaving the
                // index deletes its copy (one unit).
                if c.indexed {
                    u.write_units += size.div_ceil(1024).max(1);
                } else if was {
                    u.write_units += 1;
                }
                u.write_units += c.other_indexes * size.div_ceil(1024).max(1);
                u.items.push((key, size, c.indexed));
            }
            // Gate items (target slots, rate windows): under 1 KB.
            "dynamodb:DeleteItem" | "dynamodb:UpdateItem" => u.write_units += 1,
            a if a.starts_with("sqs:") => u.sqs_calls += 1,
            "dynamodb:GetItem" | "dynamodb:Query" => u.read_units += 1,
            a if a.starts_with("secretsmanager:") => u.secrets_calls += 1,
            _ => {}
        }
    }
    u
}

#[tokio::main]
async fn main() {
    let ingest_ms = flag("--ingest-ms", 10.0);
    let fanout_ms = flag("--fanout-ms", 10.0);
    let executor_ms = flag("--executor-ms", 25.0);
    let target_ms = flag("--target-ms", 0.0);
    let batch = flag("--batch", 10.0);
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto");
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("cost-{}", now_secs());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("table");
    let target = serve(|_req| async { reply(200, "{}") }).await;
    // Stripe for the reconciler: the managed endpoint as it should be, and
    // no event missed (steady state). Counts its requests.
    let stripe_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = stripe_requests.clone();
    let stripe = serve(move |req| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if req.uri().path().starts_with("/v1/webhook_endpoints/") {
                reply(
                    200,
                    json!({"id": "we_cost", "status": "enabled", "url": MANAGED_URL,
                           "enabled_events": ["invoice.created"], "api_version": "2023-08-16"})
                    .to_string(),
                )
            } else {
                reply(200, r#"{"object": "list", "data": [], "has_more": false}"#)
            }
        }
    })
    .await;

    // The set-up, not recorded: a connection, its secrets, one workflow.
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
    let mut target_secrets = std::collections::BTreeMap::new();
    target_secrets.insert(
        "wf_cost".to_string(),
        SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()),
    );
    SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk), PREFIX)
        .put_secrets(
            CONN,
            &ConnectionSecrets {
                api_key: SecretString::from("sk_test_cost".to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                target_secrets,
            },
        )
        .await
        .expect("secrets");
    store
        .insert_connection(&Connection {
            id: CONN.into(),
            name: "cost".into(),
            account_id: "acct_cost".into(),
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
        .expect("connection");
    SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk), PREFIX)
        .put_secrets(
            MANAGED,
            &ConnectionSecrets {
                api_key: SecretString::from("sk_test_cost".to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                target_secrets: Default::default(),
            },
        )
        .await
        .expect("secrets");
    store
        .insert_connection(&Connection {
            id: MANAGED.into(),
            name: "cost managed".into(),
            account_id: "acct_cost".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: WebhookMode::Managed,
            webhook_endpoint_id: Some("we_cost".into()),
            webhook_url: Some(MANAGED_URL.into()),
            triggers: vec!["invoice.created".into()],
            created_at: now_secs() - 3600,
            updated_at: 0,
            ..Default::default()
        })
        .await
        .expect("connection");
    store
        .insert_workflow(&Workflow {
            id: "wf_cost".into(),
            connection_id: CONN.into(),
            trigger: "invoice.created".into(),
            filter: Default::default(),
            target: Some(Target {
                url: format!("http://{target}/hook"),
                secret: None,
            }),
            steps: vec![],
            enabled: true,
            ignore_own_writes: true,
            fetch_latest: false,
            skip_stale: false,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .expect("workflow");

    let recorder = Recorder::default();
    let (dynamo, secrets) = recorder.clients(&sdk);
    let sqs = recorder.sqs_client(&sdk);
    let (queue_url, _) = connector_testkit::sqs::create_run_queue(
        &aws_sdk_sqs::Client::new(&sdk),
        &format!("cost-{}", now_secs()),
        60,
        6,
    )
    .await;
    let queue = Arc::new(connector_core::adapters::sqs::SqsQueue::new(
        sqs,
        queue_url.clone(),
    ));
    let poller = connector_testkit::sqs::Poller {
        client: aws_sdk_sqs::Client::new(&sdk),
        url: queue_url,
        batch: 10,
        visibility: None,
    };
    let (t, p) = (table.clone(), PREFIX.to_string());
    let stripe_base = format!("http://{stripe}");
    let config = Config::from_lookup(|k| match k {
        "STRIPE_API_BASE" => Some(stripe_base.clone()),
        "TABLE_NAME" => Some(t.clone()),
        "SECRET_PREFIX" => Some(p.clone()),
        // The target is a local stub.
        "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
        _ => None,
    })
    .expect("config");
    // One process per function, kept warm across the events.
    let ingest = App::aws_clients(config.clone(), dynamo.clone(), secrets.clone()).expect("app");
    let fanout = Arc::new(
        App::aws_clients(config.clone(), dynamo.clone(), secrets.clone())
            .expect("app")
            .with_queue(queue.clone()),
    );
    let executor = Arc::new(
        App::aws_clients(config.clone(), dynamo.clone(), secrets.clone())
            .expect("app")
            .with_queue(queue),
    );
    let mut reconciler = App::aws_clients(config, dynamo, secrets).expect("app");
    let clock = Arc::new(SetClock(std::sync::atomic::AtomicI64::new(now_secs())));
    reconciler.clock = clock.clone();

    let mut indexed = HashMap::new();
    let mut rows = Vec::new();
    for (n, phase) in ["cold", "warm"].iter().enumerate() {
        let id = format!("evt_1CostModel{n}");
        let body = invoice_event(&id, now_secs(), 2048);
        let req = http::Request::post(format!("/webhooks/{CONN}"))
            .header(
                "stripe-signature",
                sign_header(body.as_bytes(), SECRET, now_secs()),
            )
            .body(Bytes::from(body.clone()))
            .expect("request");
        let resp = api::handle(&ingest, req, Routes::Ingest).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        let ingest_units = units(&recorder.take(), &mut indexed);

        let event = store
            .get_event(CONN, &id)
            .await
            .expect("read")
            .expect("stored");
        let image: serde_dynamo::Item = DynamoStore::event_item(&event).into();
        let batch = serde_json::from_value(json!({"Records": [{
            "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {"NewImage": image, "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"},
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"
        }]}))
        .expect("batch");
        let out = process_stream(&fanout, batch).await;
        assert!(out.batch_item_failures.is_empty());
        let fanout_units = units(&recorder.take(), &mut indexed);
        let polled = poller.drain(&executor, 0).await;
        assert_eq!((polled.received, polled.failed), (1, 0));
        let executor_units = units(&recorder.take(), &mut indexed);
        rows.push((
            phase.to_string(),
            body.len(),
            ingest_units,
            fanout_units,
            executor_units,
        ));
    }

    println!(
        "Per event ({} B body), as recorded against moto:\n",
        rows[1].1
    );
    println!(
        "| invocation | calls | items written (bytes, in index) | write units | read units | Secrets Manager calls |"
    );
    println!("|---|---|---|---|---|---|");
    for (phase, _, i, f, x) in &rows {
        for (name, u) in [
            ("webhook-ingest", i),
            ("trigger-fanout", f),
            ("run-executor", x),
        ] {
            println!(
                "| {name}, {phase} | {} | {} | {} | {} | {} |",
                u.calls
                    .iter()
                    .map(|(a, n)| format!("{n}× {a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                u.items
                    .iter()
                    .map(|(k, s, ix)| format!(
                        "{} {s}{}",
                        k.split('/')
                            .nth(1)
                            .unwrap_or("")
                            .split('#')
                            .next()
                            .unwrap_or(""),
                        if *ix { " +index" } else { "" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                u.write_units,
                u.read_units,
                u.secrets_calls
            );
        }
    }

    // Steady state: warm containers (secrets cached); cold starts are few.
    let (_, _, i, f, x) = &rows[1];
    let wcu = (i.write_units + f.write_units + x.write_units) as f64;
    let rcu = (i.read_units + f.read_units + x.read_units) as f64;
    // One executor invocation per batch of messages; its duration is the
    // batch's longest run, about one run's (they run side by side).
    let gb_s = MEMORY_GB * (ingest_ms + fanout_ms + (executor_ms + target_ms) / batch) / 1000.0;
    // Sends recorded, plus the event source mapping's receive and delete
    // per batch.
    let sqs_requests = (i.sqs_calls + f.sqs_calls + x.sqs_calls) as f64 + 2.0 / batch;
    let lines = [
        (
            "API Gateway HTTP API",
            1.0,
            "requests".to_string(),
            HTTP_API_PER_MILLION,
        ),
        (
            "Lambda requests (ingest + fan-out + executor per batch)",
            2.0 + 1.0 / batch,
            "invocations".into(),
            LAMBDA_REQUEST_PER_MILLION,
        ),
        (
            "Lambda duration, arm64 128 MB",
            gb_s,
            format!(
                "GB-s ({ingest_ms} + {fanout_ms} + ({executor_ms} + {target_ms}) / {batch} ms)"
            ),
            LAMBDA_ARM_GB_SECOND * 1e6,
        ),
        (
            "SQS requests (send; receive and delete per batch)",
            sqs_requests,
            "requests".into(),
            SQS_PER_MILLION_REQUESTS,
        ),
        (
            "DynamoDB writes",
            wcu,
            "write units".into(),
            DDB_WRITE_UNIT_PER_MILLION,
        ),
        (
            "DynamoDB reads",
            rcu,
            "read units".into(),
            DDB_READ_UNIT_PER_MILLION,
        ),
    ];
    println!(
        "\nPer million events, one workflow each (warm; secrets cached for 30 s per container):\n"
    );
    println!("| item | per event | $ per million events |");
    println!("|---|---|---|");
    let mut total = 0.0;
    for (name, qty, unit, price) in lines {
        let cost = qty * price;
        total += cost;
        println!("| {name} | {qty:.4} {unit} | {cost:.3} |");
    }
    println!("| **total** | | **{total:.2}** |");
    let cold_secrets = rows[0].2.secrets_calls + rows[0].3.secrets_calls + rows[0].4.secrets_calls;
    println!(
        "\nSecrets Manager: {cold_secrets} calls per set of cold starts (${:.2} per million calls); \
         without the cache it would be {:.2} $ per million events.",
        SECRETS_PER_MILLION_CALLS,
        cold_secrets as f64 * SECRETS_PER_MILLION_CALLS
    );

    // The reconciler: a first pass (cold, the cursor set), then the
    // steady-state one measured.
    let reconcile_ms = flag("--reconcile-ms", 300.0);
    connector_core::service::reconcile::connection(&reconciler, MANAGED)
        .await
        .expect("pass");
    recorder.take();
    stripe_requests.store(0, std::sync::atomic::Ordering::SeqCst);
    // Five minutes on, as the schedule runs it.
    clock
        .0
        .store(now_secs() + 300, std::sync::atomic::Ordering::SeqCst);
    let report = connector_core::service::reconcile::connection(&reconciler, MANAGED)
        .await
        .expect("pass");
    assert!(
        report.error.is_none() && report.repairs.is_empty(),
        "{report:?}"
    );
    let pass = units(&recorder.take(), &mut indexed);
    let stripe_calls = stripe_requests.load(std::sync::atomic::Ordering::SeqCst);
    let passes = 30.0 * 24.0 * 12.0;
    println!("\nThe reconciler, one steady-state pass of a managed connection with one trigger:\n");
    println!("| calls | write units | read units | Secrets Manager calls | Stripe requests |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {stripe_calls} |",
        pass.calls
            .iter()
            .map(|(a, n)| format!("{n}× {a}"))
            .collect::<Vec<_>>()
            .join(", "),
        pass.write_units,
        pass.read_units,
        pass.secrets_calls
    );
    let lines = [
        (
            "DynamoDB writes",
            pass.write_units as f64,
            DDB_WRITE_UNIT_PER_MILLION,
        ),
        (
            "DynamoDB reads",
            pass.read_units as f64,
            DDB_READ_UNIT_PER_MILLION,
        ),
        (
            "Secrets Manager calls (read fresh under the lease)",
            pass.secrets_calls as f64,
            SECRETS_PER_MILLION_CALLS,
        ),
        (
            "Lambda duration, arm64 128 MB (4 passes at once)",
            MEMORY_GB * reconcile_ms / 4.0 / 1000.0,
            LAMBDA_ARM_GB_SECOND * 1e6,
        ),
    ];
    println!(
        "\nPer connection per month ({passes} passes, one every 5 minutes; {reconcile_ms} ms a pass):\n"
    );
    println!("| item | per pass | $ per connection per month |");
    println!("|---|---|---|");
    let mut total = 0.0;
    for (name, qty, price) in lines {
        let cost = qty * passes * price / 1e6;
        total += cost;
        println!("| {name} | {qty:.4} | {cost:.4} |");
    }
    println!("| **total** | | **{total:.4}** |");
    println!(
        "\nPlus the schedule's own invocations: {passes} a month for the whole stack \
         (${:.4}), and {stripe_calls} Stripe requests a pass ({:.0} a month per connection).",
        passes * LAMBDA_REQUEST_PER_MILLION / 1e6,
        stripe_calls as f64 * passes
    );
}
