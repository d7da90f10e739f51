//! Cold start of each Lambda function, measured locally.
//!
//! `infra/bench.sh coldstart` (it builds the release binaries and starts moto).
//!
//! For each function this starts its release binary against a minimal Lambda
//! Runtime API served here, hands it one representative event from events/,
//! and records the time from process start to its first response and its
//! peak RSS. DynamoDB and Secrets Manager are moto, reached through a
//! forwarding proxy that times every call; Stripe and workflow targets are a
//! local stub that answers at once, also timed. Reported: the total, the time
//! spent waiting on those services, the function's own time (total minus that
//! wait) and the zipped size of the binary as `bootstrap`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use connector_bench::{ms, now_secs, peak_rss_kib, reply, serve, sibling_binary};
use connector_core::adapters::dynamo::{DynamoStore, create_table};
use connector_core::adapters::secrets_manager::SecretsManagerStore;
use connector_core::model::{Connection, ConnectionSecrets, Target, WebhookMode, Workflow};
use connector_core::ports::{ConnectionStore, SecretStore, WorkflowStore};
use connector_core::webhook::sign_header;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::Notify;

const CONN: &str = "conn_fixture000000000000000001";
const SECRET: &str = "whsec_fixturesecret0000000000000000";
const TABLE: &str = "coldstart";
const PREFIX: &str = "coldstart/";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The functions, each with the event it is started on.
const FUNCTIONS: &[(&str, &str)] = &[
    ("webhook-ingest", "valid_event.json"),
    ("connections-api", "get_unknown_connection.json"),
    ("trigger-fanout", "stream_new_event.json"),
    ("retry-scheduler", "schedule_tick.json"),
    ("actions-customers", "action_customers_create.json"),
    ("actions-products", "action_products_search.json"),
    ("actions-prices", "action_prices_create.json"),
    ("actions-subscriptions", "action_subscriptions_cancel.json"),
    ("actions-invoices", "action_invoices_finalize.json"),
    ("actions-coupons", "action_coupons_create.json"),
    ("actions-payments", "action_payments_update.json"),
    ("actions-events", "action_events_account.json"),
];

/// Time spent waiting on one kind of outside service during a run: the
/// wall time during which at least one call was in flight (calls made at
/// once count once), and the number of calls.
#[derive(Default)]
struct Wait {
    state: Mutex<WaitState>,
}

#[derive(Default)]
struct WaitState {
    calls: u64,
    in_flight: u32,
    busy_since: Option<Instant>,
    busy: Duration,
}

impl Wait {
    fn start(&self) {
        let mut s = self.state.lock().expect("wait");
        s.calls += 1;
        if s.in_flight == 0 {
            s.busy_since = Some(Instant::now());
        }
        s.in_flight += 1;
    }
    fn end(&self) {
        let mut s = self.state.lock().expect("wait");
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0
            && let Some(since) = s.busy_since.take()
        {
            s.busy += since.elapsed();
        }
    }
    fn take(&self) -> (u64, Duration) {
        let mut s = self.state.lock().expect("wait");
        let out = (s.calls, s.busy);
        s.calls = 0;
        s.busy = Duration::ZERO;
        out
    }
}

/// Forwards every request to `upstream` (moto), timing the round trip.
async fn timing_proxy(upstream: String, wait: Arc<Wait>) -> SocketAddr {
    let client = reqwest::Client::new();
    serve(move |req: http::Request<Incoming>| {
        let (client, upstream, wait) = (client.clone(), upstream.clone(), wait.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            let url = format!(
                "{upstream}{}",
                parts
                    .uri
                    .path_and_query()
                    .map(http::uri::PathAndQuery::as_str)
                    .unwrap_or("/")
            );
            let mut headers = parts.headers.clone();
            headers.remove(http::header::HOST);
            wait.start();
            let answer = client
                .request(parts.method, url)
                .headers(headers)
                .body(body)
                .send()
                .await;
            let resp = match answer {
                Ok(r) => {
                    let status = r.status();
                    let headers = r.headers().clone();
                    let bytes = r.bytes().await.unwrap_or_default();
                    let mut out = http::Response::new(Full::new(bytes));
                    *out.status_mut() = status;
                    for (k, v) in &headers {
                        if k != http::header::TRANSFER_ENCODING && k != http::header::CONTENT_LENGTH
                        {
                            out.headers_mut().insert(k, v.clone());
                        }
                    }
                    out
                }
                Err(e) => reply(502, format!("{{\"proxy\":\"{e}\"}}")),
            };
            wait.end();
            resp
        }
    })
    .await
}

/// Stands in for Stripe and for workflow targets: answers every request at once.
async fn stub(wait: Arc<Wait>) -> SocketAddr {
    serve(move |req: http::Request<Incoming>| {
        let wait = wait.clone();
        async move {
            wait.start();
            let path = req.uri().path().to_string();
            let _ = req.into_body().collect().await;
            let body = if path.contains("/search") || path.ends_with("/v1/products") {
                r#"{"object":"search_result","data":[],"has_more":false,"url":"/v1/products/search"}"#
            } else if path.starts_with("/v1/account") {
                r#"{"id":"acct_stub","object":"account"}"#
            } else {
                r#"{"id":"obj_stub","object":"customer","livemode":false}"#
            };
            let out = reply(200, body);
            wait.end();
            out
        }
    })
    .await
}

/// The invocations handed to a starting function, and what came back.
struct Invocations {
    events: std::collections::VecDeque<Bytes>,
    /// When each event was handed out.
    given: Vec<Instant>,
    done: tokio::sync::mpsc::UnboundedSender<(Instant, bool, Bytes)>,
}

/// The minimal Lambda Runtime API: `next` hands out the queued events in
/// turn (then waits forever), `response` and `error` report back.
async fn runtime_api(slot: Arc<Mutex<Option<Invocations>>>) -> SocketAddr {
    let never = Arc::new(Notify::new());
    serve(move |req: http::Request<Incoming>| {
        let (slot, never) = (slot.clone(), never.clone());
        async move {
            let path = req.uri().path().to_string();
            if path.ends_with("/invocation/next") {
                let event = {
                    let mut slot = slot.lock().expect("slot");
                    slot.as_mut().and_then(|inv| {
                        let event = inv.events.pop_front()?;
                        inv.given.push(Instant::now());
                        Some((event, inv.given.len()))
                    })
                };
                let Some((event, n)) = event else {
                    never.notified().await;
                    return reply(500, "{}");
                };
                let deadline = (now_secs() + 30) * 1000;
                return http::Response::builder()
                    .status(200)
                    .header("lambda-runtime-aws-request-id", format!("coldstart-{n}"))
                    .header("lambda-runtime-deadline-ms", deadline.to_string())
                    .header(
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:coldstart",
                    )
                    .header(
                        "lambda-runtime-trace-id",
                        "Root=1-5759e988-bd862e3fe1be46a994272793",
                    )
                    .body(Full::new(event))
                    .expect("next");
            }
            let at = Instant::now();
            let ok = path.ends_with("/response");
            let body = req
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            if let Some(inv) = slot.lock().expect("slot").as_ref() {
                let _ = inv.done.send((at, ok, body));
            }
            reply(202, r#"{"status":"OK"}"#)
        }
    })
    .await
}

async fn seed(stub_url: &str) {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let _ = create_table(&dynamo, TABLE).await;
    let store = DynamoStore::new(dynamo, TABLE);
    let secrets = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk), PREFIX);
    let mut target_secrets = std::collections::BTreeMap::new();
    target_secrets.insert(
        "wf_coldstart".to_string(),
        SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()),
    );
    secrets
        .put_secrets(
            CONN,
            &ConnectionSecrets {
                api_key: SecretString::from("sk_test_coldstart".to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                target_secrets,
            },
        )
        .await
        .expect("seed secrets");
    let _ = store
        .insert_connection(&Connection {
            id: CONN.into(),
            name: "coldstart".into(),
            account_id: "acct_coldstart".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: WebhookMode::Manual,
            webhook_endpoint_id: None,
            triggers: vec!["invoice.created".into()],
            created_at: 0,
            updated_at: 0,
            version: 0,
            ..Default::default()
        })
        .await;
    let _ = store
        .insert_workflow(&Workflow {
            id: "wf_coldstart".into(),
            connection_id: CONN.into(),
            trigger: "invoice.created".into(),
            filter: Default::default(),
            target: Some(Target {
                url: format!("{stub_url}/target"),
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
        .await;
}

/// The fixture as sent now: webhooks get a fresh event id and signature,
/// stream records a fresh event id, so every run does the full work.
fn event_for(file: &str, run: usize) -> Bytes {
    let path = format!("{ROOT}/../events/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fresh = format!("evt_1PfixtureInvoiceCreated{run}x{}", now_secs());
    let text = text.replace("evt_1PfixtureInvoiceCreated", &fresh);
    let mut event: Value = serde_json::from_str(&text).expect("fixture JSON");
    if file == "valid_event.json" {
        let body = event["body"].as_str().expect("body").to_string();
        event["headers"]["stripe-signature"] =
            Value::from(sign_header(body.as_bytes(), SECRET, now_secs()));
    }
    Bytes::from(event.to_string())
}

/// Size of the binary zipped as `bootstrap` (deflate, as `sam build` packs it).
fn zipped_size(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).expect("binary");
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).expect("deflate");
    // Local header, central directory and end record for one entry named bootstrap.
    enc.finish().expect("deflate").len() as u64 + 30 + 46 + 22 + 2 * 9
}

struct Measured {
    total: Duration,
    /// A second invocation in the same process.
    warm: Duration,
    aws: (u64, Duration),
    stripe: (u64, Duration),
    rss_kib: u64,
    ok: bool,
    answer: String,
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map(|v| v.parse().expect("--runs N"))
        .unwrap_or(5);
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let moto = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL must point at moto (infra/bench.sh coldstart starts it)");
    let aws_wait = Arc::new(Wait::default());
    let stripe_wait = Arc::new(Wait::default());
    let proxy = timing_proxy(moto, aws_wait.clone()).await;
    let stub_addr = stub(stripe_wait.clone()).await;
    let stub_url = format!("http://{stub_addr}");
    seed(&stub_url).await;
    let slot = Arc::new(Mutex::new(None));
    let api = runtime_api(slot.clone()).await;

    println!(
        "| function | init + first response, median (max) of {runs} | AWS calls (moto) | Stripe/target stub | own time, median | warm invocation, median | peak RSS, max | zipped |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for (name, file) in FUNCTIONS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let binary = sibling_binary(name);
        let mut measured = Vec::new();
        for run in 0..runs {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            *slot.lock().expect("slot") = Some(Invocations {
                // A cold invocation, then a warm one on a fresh event.
                events: [event_for(file, run * 2), event_for(file, run * 2 + 1)].into(),
                given: Vec::new(),
                done: tx,
            });
            aws_wait.take();
            stripe_wait.take();
            let env: HashMap<&str, String> = HashMap::from([
                ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
                ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
                ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart".into()),
                ("AWS_ENDPOINT_URL", format!("http://{proxy}")),
                ("TABLE_NAME", TABLE.into()),
                ("SECRET_PREFIX", PREFIX.into()),
                ("STRIPE_API_BASE", stub_url.clone()),
                (
                    "PUBLIC_BASE_URL",
                    "https://abc123defg.execute-api.us-east-1.amazonaws.com".into(),
                ),
            ]);
            let started = Instant::now();
            let mut child = Command::new(&binary)
                .env_clear()
                .envs(env)
                .envs(
                    [
                        "AWS_REGION",
                        "AWS_ACCESS_KEY_ID",
                        "AWS_SECRET_ACCESS_KEY",
                        "PATH",
                    ]
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the function");
            let cold = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
            let cold_waits = (aws_wait.take(), stripe_wait.take());
            let warm = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
            let rss_kib = peak_rss_kib(child.id()).unwrap_or(0);
            let _ = child.kill();
            let _ = child.wait();
            let (Ok(Some((at, ok, body))), Ok(Some((warm_at, warm_ok, _)))) = (cold, warm) else {
                println!("| {name} | no answer within 20 s | | | | | | |");
                failed = true;
                break;
            };
            let warm_given = slot
                .lock()
                .expect("slot")
                .as_ref()
                .and_then(|i| i.given.get(1).copied());
            measured.push(Measured {
                total: at - started,
                aws: cold_waits.0,
                stripe: cold_waits.1,
                warm: warm_given.map(|g| warm_at - g).unwrap_or_default(),
                rss_kib,
                ok: ok && warm_ok,
                answer: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        if measured.len() < runs {
            continue;
        }
        for m in &measured {
            // A response of the Lambda's own: an API Gateway answer under 500,
            // or a stream/schedule handler's result.
            let status = serde_json::from_str::<Value>(&m.answer)
                .ok()
                .and_then(|v| v["statusCode"].as_u64());
            if !m.ok || status.is_some_and(|s| s >= 500) {
                eprintln!("{name}: unexpected answer: {}", m.answer);
                failed = true;
            }
        }
        let mut totals: Vec<Duration> = measured.iter().map(|m| m.total).collect();
        totals.sort();
        let mut own: Vec<Duration> = measured
            .iter()
            .map(|m| m.total.saturating_sub(m.aws.1 + m.stripe.1))
            .collect();
        own.sort();
        let median = |v: &[Duration]| v[v.len() / 2];
        let mut warm: Vec<Duration> = measured.iter().map(|m| m.warm).collect();
        warm.sort();
        let first = &measured[measured.len() / 2];
        println!(
            "| {name} | {:.1} ms ({:.1}) | {} in {:.1} ms | {} in {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MB | {:.2} MB |",
            ms(median(&totals)),
            ms(*totals.last().expect("runs")),
            first.aws.0,
            ms(first.aws.1),
            first.stripe.0,
            ms(first.stripe.1),
            ms(median(&own)),
            ms(median(&warm)),
            measured.iter().map(|m| m.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            zipped_size(&binary) as f64 / 1e6,
        );
    }
    if failed {
        std::process::exit(1);
    }
}
