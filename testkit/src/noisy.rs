//! The noisy-neighbour load: N connections × M `invoice.created` events,
//! two workflows each (a target delivery, and a Stripe step); connection 0's
//! target hangs past the delivery timeout, connection 1's answers 500, and
//! connection 2's steps get 429 from Stripe on 20% of calls; the rest are
//! healthy. Run on the dev server (its HTTP webhook route, its in-process
//! queue and executors) or on moto (the ingest router, fan-out, SQS, and
//! executors fed by [`crate::sqs::Poller`] as the event source mapping
//! would). Reports what a healthy tenant sees and what the failing ones
//! cost, and checks exactly once. Shared by `infra/bench.sh noisy` and the
//! CI-sized test in tests/it/load.rs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector_core::app::App;
use connector_core::model::{
    Connection, ConnectionSecrets, Step, Target, TargetSecret, WebhookMode, Workflow,
};
use connector_core::webhook::sign_header;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const HANGING: usize = 0;
pub const FAILING: usize = 1;
pub const THROTTLED: usize = 2;
const SECRET: &str = "whsec_noisyneighbour";
const TARGET_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
pub struct Plan {
    pub connections: usize,
    pub events: usize,
    /// Concurrent webhook senders.
    pub senders: usize,
    /// How long the hanging target takes (past the 15 s delivery timeout).
    pub hang: Duration,
    /// Give up waiting for the healthy work after this long.
    pub deadline: Duration,
    /// Events sent a second, across connections (`None`: as fast as the
    /// senders go). Stripe sends an account's events as they happen; a
    /// steady rate shows what a tenant waits for, not a backlog's drain.
    pub rate: Option<f64>,
    /// Whether connections 0–2 misbehave (off: the control run).
    pub faults: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            connections: 10,
            events: 1000,
            senders: 16,
            hang: Duration::from_secs(20),
            deadline: Duration::from_secs(600),
            rate: Some(200.0),
            faults: true,
        }
    }
}

pub fn connection_id(i: usize) -> String {
    format!("conn_noisy{i:020}")
}

fn api_key(i: usize) -> String {
    format!("sk_test_noisy{i:04}")
}

/// What the fakes saw, shared with their responders.
#[derive(Default)]
pub struct Seen {
    /// (connection, event id, workflow) → arrival times at the target.
    deliveries: Mutex<HashMap<(usize, String, String), Vec<Instant>>>,
    /// Stripe: (connection, Unix second) → requests.
    per_second: Mutex<HashMap<(usize, u64), u32>>,
    /// Stripe: idempotency key → 2xx answers.
    writes: Mutex<HashMap<String, u32>>,
    stripe_429: AtomicUsize,
    /// Event id → when its webhook was accepted.
    ingested: Mutex<HashMap<String, Instant>>,
}

struct TargetFake {
    seen: Arc<Seen>,
    hang: Duration,
    faults: bool,
}

impl Respond for TargetFake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut parts = req.url.path().trim_start_matches('/').split('/');
        let (Some("t"), Some(conn), Some(wf)) = (parts.next(), parts.next(), parts.next()) else {
            return ResponseTemplate::new(404);
        };
        let conn: usize = conn.parse().unwrap_or(usize::MAX);
        let event = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string))
            .unwrap_or_default();
        self.seen
            .deliveries
            .lock()
            .unwrap()
            .entry((conn, event, wf.to_string()))
            .or_default()
            .push(Instant::now());
        match conn {
            HANGING if self.faults => ResponseTemplate::new(204).set_delay(self.hang),
            FAILING if self.faults => ResponseTemplate::new(500),
            _ => ResponseTemplate::new(204),
        }
    }
}

struct StripeFake {
    seen: Arc<Seen>,
    faults: bool,
}

impl Respond for StripeFake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let key = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer sk_test_noisy"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        *self
            .seen
            .per_second
            .lock()
            .unwrap()
            .entry((key, second))
            .or_default() += 1;
        if self.faults && key == THROTTLED && rand::random::<f64>() < 0.2 {
            self.seen.stripe_429.fetch_add(1, Ordering::Relaxed);
            return ResponseTemplate::new(429).set_body_json(
                json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}}),
            );
        }
        if let Some(k) = req
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
        {
            *self
                .seen
                .writes
                .lock()
                .unwrap()
                .entry(k.to_string())
                .or_default() += 1;
        }
        let id = req
            .url
            .path()
            .split('/')
            .nth(3)
            .unwrap_or("in_x")
            .to_string();
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": id, "object": "invoice", "status": "open"}))
    }
}

/// Counts the engine's log lines that matter here: breaker transitions and
/// how late each retry started. Install with [`Observer::install`].
#[derive(Default)]
pub struct Observer {
    pub transitions: Mutex<Vec<(Instant, String, String)>>,
    /// Retries (attempt 2+): the latest start after the due time, seconds.
    pub max_retry_late: AtomicUsize,
    pub retries: AtomicUsize,
    /// Every attempt, the first too (after a run was put back, say).
    pub max_late: AtomicUsize,
}

struct Fields {
    message: String,
    connection: String,
    attempts: u64,
    late: u64,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "connection" => self.connection = format!("{value:?}"),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "attempts" => self.attempts = value,
            "late_secs" => self.late = value,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ObserverLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = Fields {
            message: String::new(),
            connection: String::new(),
            attempts: 0,
            late: 0,
        };
        event.record(&mut f);
        if f.message.starts_with("target circuit") {
            self.0
                .transitions
                .lock()
                .unwrap()
                .push((Instant::now(), f.connection, f.message));
        } else if f.message == "run attempt started" {
            let late = usize::try_from(f.late).unwrap_or(usize::MAX);
            self.0.max_late.fetch_max(late, Ordering::Relaxed);
            if f.attempts > 1 {
                self.0.retries.fetch_add(1, Ordering::Relaxed);
                self.0.max_retry_late.fetch_max(late, Ordering::Relaxed);
            }
        }
    }
}

struct ObserverLayer(Arc<Observer>);

impl Observer {
    /// The process's subscriber: this observer (info and up, the
    /// connector's own lines only), nothing printed.
    pub fn install() -> Arc<Self> {
        use tracing_subscriber::layer::SubscriberExt;
        let observer = Arc::new(Self::default());
        let subscriber = tracing_subscriber::registry()
            .with(ObserverLayer(observer.clone()))
            .with(tracing_subscriber::filter::LevelFilter::INFO);
        let _ = tracing::subscriber::set_global_default(subscriber);
        observer
    }
}

/// Where the load runs.
pub enum Host {
    /// The dev server in process: webhooks over HTTP to it.
    Dev { data_dir: std::path::PathBuf },
    /// DynamoDB, Secrets Manager and SQS on moto, with this many executor
    /// "containers" polling the queue.
    Moto { executors: usize },
}

#[derive(Debug, Clone)]
pub struct Report {
    pub events: usize,
    pub ingest: Duration,
    /// Healthy tenants: webhook accepted → target received.
    pub healthy_p50: Duration,
    pub healthy_p99: Duration,
    pub healthy_max: Duration,
    /// From the first webhook to the last healthy delivery.
    pub healthy_drain: Duration,
    /// From the first webhook to the last step of any tenant.
    pub steps_drain: Duration,
    pub healthy_deliveries: usize,
    /// (event, workflow) pairs delivered more than once at a healthy target.
    pub healthy_duplicates: usize,
    pub step_writes: usize,
    /// Step keys Stripe answered 2xx more than once.
    pub step_duplicates: usize,
    pub stripe_429: usize,
    /// The most requests one connection's key made in one second, and the budget.
    pub max_stripe_per_second: u32,
    pub budget: u32,
    /// Requests the hanging and failing targets received (attempts spent).
    pub hanging_attempts: usize,
    pub failing_attempts: usize,
    pub transitions: Vec<String>,
    pub retries: usize,
    pub max_retry_late_secs: usize,
    pub max_late_secs: usize,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn seed(app: &App, plan: &Plan, target: &str) {
    for i in 0..plan.connections {
        let id = connection_id(i);
        app.connections
            .insert_connection(&Connection {
                id: id.clone(),
                name: format!("noisy {i}"),
                account_id: format!("acct_noisy{i}"),
                livemode: false,
                api_version: "2023-08-16".into(),
                webhook_mode: WebhookMode::Manual,
                webhook_endpoint_id: None,
                triggers: vec![],
                created_at: 1,
                updated_at: 1,
                version: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        app.secrets
            .put_secrets(
                &id,
                &ConnectionSecrets {
                    api_key: SecretString::from(api_key(i)),
                    webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                    target_secrets: Default::default(),
                },
            )
            .await
            .unwrap();
        let workflow = |wf: &str, target: Option<Target>, steps: Vec<Step>| Workflow {
            id: format!("wf_{wf}{i:04}"),
            connection_id: id.clone(),
            trigger: "invoice.created".into(),
            filter: Default::default(),
            target,
            steps,
            enabled: true,
            ignore_own_writes: true,
            fetch_latest: false,
            skip_stale: false,
            created_at: 1,
            updated_at: 1,
        };
        app.workflows
            .insert_workflow(&workflow(
                "deliver",
                Some(Target {
                    url: format!("{target}/t/{i}/deliver"),
                    secret: Some(TargetSecret::new(TARGET_SECRET.into())),
                }),
                vec![],
            ))
            .await
            .unwrap();
        app.workflows
            .insert_workflow(&workflow(
                "step",
                None,
                vec![Step {
                    action: "invoices.finalize".into(),
                    input: json!({"id": "{{event.data.object.id}}"}),
                }],
            ))
            .await
            .unwrap();
    }
}

fn event_body(i: usize, n: usize, now: i64) -> (String, String) {
    let id = format!("evt_noisy{i:03}x{n:06}");
    let body = json!({"id": id, "object": "event", "api_version": "2023-08-16", "type": "invoice.created",
        "created": now, "livemode": false,
        "data": {"object": {"id": format!("in_noisy{i:03}x{n:06}"), "object": "invoice", "status": "draft"}}});
    (id, body.to_string())
}

fn moto_config(stripe: &str, table: &str, prefix: &str) -> connector_core::config::Config {
    let (stripe, table, prefix) = (stripe.to_string(), table.to_string(), prefix.to_string());
    connector_core::config::Config::from_lookup(move |k| match k {
        "STRIPE_API_BASE" => Some(stripe.clone()),
        "TABLE_NAME" => Some(table.clone()),
        "SECRET_PREFIX" => Some(prefix.clone()),
        "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
        // Stripe's own retries are few and quick; a 429 left puts the run back.
        "STRIPE_MAX_RETRIES" => Some("1".into()),
        _ => None,
    })
    .unwrap()
}

/// Runs the load; answers the report once every healthy delivery and every
/// step is done (or the plan's deadline passed).
pub async fn run(plan: Plan, host: Host, observer: Option<&Observer>) -> Report {
    let seen = Arc::new(Seen::default());
    let target = MockServer::builder().start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(TargetFake {
            seen: seen.clone(),
            hang: plan.hang,
            faults: plan.faults,
        })
        .mount(&target)
        .await;
    let stripe = MockServer::builder().start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(StripeFake {
            seen: seen.clone(),
            faults: plan.faults,
        })
        .mount(&stripe)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();

    // The app that ingests, and a sender for one webhook.
    let now = connector_core::ports::Clock::now(&connector_core::ports::SystemClock);
    let (ingest_app, send): (Arc<App>, Sender) = match &host {
        Host::Dev { data_dir } => {
            let d = data_dir.display().to_string();
            let base = stripe.uri();
            let config = connector_core::config::Config::from_lookup(|k| match k {
                "CONNECTOR_DATA_DIR" => Some(d.clone()),
                "STRIPE_API_BASE" => Some(base.clone()),
                "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
                "STRIPE_MAX_RETRIES" => Some("1".into()),
                _ => None,
            })
            .unwrap();
            let app = connector_embedded::app(config).unwrap();
            seed(&app, &plan, &target.uri()).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = dev_server::DevServer::new(
                app,
                SecretString::from("noisy_token_0123456789".to_string()),
            );
            let app = Arc::new(server.app().clone());
            background.push(tokio::spawn(server.serve(listener)));
            let http = reqwest::Client::new();
            let send = move |i: usize, _id: String, body: String| -> SendFuture {
                let http = http.clone();
                Box::pin(async move {
                    let sig = sign_header(
                        body.as_bytes(),
                        SECRET,
                        connector_core::ports::Clock::now(&connector_core::ports::SystemClock),
                    );
                    let resp = http
                        .post(format!("http://{addr}/webhooks/{}", connection_id(i)))
                        .header("stripe-signature", sig)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    resp.status().as_u16()
                })
            };
            (app, Arc::new(send))
        }
        Host::Moto { executors } => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let table = format!("noisy-{}", uuid_like());
            connector_core::adapters::dynamo::create_table(
                &aws_sdk_dynamodb::Client::new(&sdk),
                &table,
            )
            .await
            .unwrap();
            let (queue_url, _) = crate::sqs::create_run_queue(
                &aws_sdk_sqs::Client::new(&sdk),
                &format!("noisy-{}", uuid_like()),
                60,
                6,
            )
            .await;
            let prefix = format!("noisy-{}/", uuid_like());
            let container = || {
                Arc::new(
                    App::aws_clients(
                        moto_config(&stripe.uri(), &table, &prefix),
                        aws_sdk_dynamodb::Client::new(&sdk),
                        aws_sdk_secretsmanager::Client::new(&sdk),
                    )
                    .unwrap()
                    .with_queue(Arc::new(
                        connector_core::adapters::sqs::SqsQueue::new(
                            aws_sdk_sqs::Client::new(&sdk),
                            queue_url.clone(),
                        ),
                    )),
                )
            };
            let app = container();
            seed(&app, &plan, &target.uri()).await;
            for _ in 0..*executors {
                let app = container();
                let poller = crate::sqs::Poller {
                    client: aws_sdk_sqs::Client::new(&sdk),
                    url: queue_url.clone(),
                    batch: 10,
                    visibility: None,
                };
                let stop = stop.clone();
                background.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        poller.poll(&app, 1).await;
                    }
                }));
            }
            // The scheduler, every 5 s.
            let scheduler = container();
            let stop2 = stop.clone();
            background.push(tokio::spawn(async move {
                while !stop2.load(Ordering::Relaxed) {
                    let _ = connector_core::lambda::scheduler_tick(&scheduler).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }));
            // webhook-ingest's router, then the stream's work (fan-out).
            let ingest = container();
            let send = move |i: usize, id: String, body: String| -> SendFuture {
                let app = ingest.clone();
                Box::pin(async move {
                    let sig = sign_header(body.as_bytes(), SECRET, app.clock.now());
                    let req = http::Request::post(format!("/webhooks/{}", connection_id(i)))
                        .header("host", "noisy.execute-api.us-east-1.amazonaws.com")
                        .header("stripe-signature", sig)
                        .body(bytes::Bytes::from(body))
                        .unwrap();
                    let resp =
                        connector_core::api::handle(&app, req, connector_core::api::Routes::Ingest)
                            .await;
                    let status = resp.status().as_u16();
                    if status == 200 {
                        let event = app
                            .events
                            .get_event(&connection_id(i), &id)
                            .await
                            .unwrap()
                            .unwrap();
                        let engine = connector_core::workflow::engine::Engine::new(&app, "fanout");
                        engine.fan_out(&event).await.unwrap();
                    }
                    status
                })
            };
            (app, Arc::new(send))
        }
    };

    // The senders: events interleaved across connections.
    let started = Instant::now();
    let work: Vec<(usize, usize)> = (0..plan.events)
        .flat_map(|n| (0..plan.connections).map(move |i| (i, n)))
        .collect();
    let work = Arc::new(Mutex::new(work.into_iter().enumerate()));
    let mut senders = Vec::new();
    for _ in 0..plan.senders {
        let (work, send, seen) = (work.clone(), send.clone(), seen.clone());
        let rate = plan.rate;
        senders.push(tokio::spawn(async move {
            loop {
                let next = work.lock().unwrap().next();
                let Some((k, (i, n))) = next else { break };
                if let Some(rate) = rate {
                    #[allow(clippy::cast_precision_loss)]
                    let at = started + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let (id, body) = event_body(i, n, now);
                let status = send(i, id.clone(), body).await;
                assert_eq!(status, 200, "webhook {id}");
                seen.ingested.lock().unwrap().insert(id, Instant::now());
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let ingest = started.elapsed();

    // Until every healthy delivery and every step is done.
    let healthy: Vec<usize> = (0..plan.connections)
        .filter(|i| !plan.faults || (*i != HANGING && *i != FAILING))
        .collect();
    let want_deliveries = healthy.len() * plan.events;
    let want_steps = plan.connections * plan.events;
    let (mut healthy_drain, mut steps_drain) = (None, None);
    while started.elapsed() < plan.deadline {
        let delivered = seen
            .deliveries
            .lock()
            .unwrap()
            .keys()
            .filter(|(c, _, _)| healthy.contains(c))
            .count();
        let steps = seen.writes.lock().unwrap().len();
        if delivered >= want_deliveries && healthy_drain.is_none() {
            healthy_drain = Some(started.elapsed());
        }
        if steps >= want_steps && steps_drain.is_none() {
            steps_drain = Some(started.elapsed());
        }
        if healthy_drain.is_some() && steps_drain.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in background {
        task.abort();
    }
    drop(ingest_app);

    let deliveries = seen.deliveries.lock().unwrap();
    let ingested = seen.ingested.lock().unwrap();
    let mut latencies: Vec<Duration> = deliveries
        .iter()
        .filter(|((c, _, _), _)| healthy.contains(c))
        .filter_map(|((_, e, _), at)| Some(at[0].saturating_duration_since(*ingested.get(e)?)))
        .collect();
    latencies.sort();
    let attempts = |conn: usize| -> usize {
        deliveries
            .iter()
            .filter(|((c, _, _), _)| *c == conn)
            .map(|(_, at)| at.len())
            .sum()
    };
    let writes = seen.writes.lock().unwrap();
    let per_second = seen.per_second.lock().unwrap();
    let budget = connector_core::config::StripeBudget::default().test;
    Report {
        events: plan.events * plan.connections,
        ingest,
        healthy_p50: quantile(&latencies, 0.5),
        healthy_p99: quantile(&latencies, 0.99),
        healthy_max: latencies.last().copied().unwrap_or_default(),
        healthy_drain: healthy_drain.unwrap_or(plan.deadline),
        steps_drain: steps_drain.unwrap_or(plan.deadline),
        healthy_deliveries: deliveries
            .keys()
            .filter(|(c, _, _)| healthy.contains(c))
            .count(),
        healthy_duplicates: deliveries
            .iter()
            .filter(|((c, _, _), at)| healthy.contains(c) && at.len() > 1)
            .count(),
        step_writes: writes.len(),
        step_duplicates: writes.values().filter(|n| **n > 1).count(),
        stripe_429: seen.stripe_429.load(Ordering::Relaxed),
        max_stripe_per_second: per_second.values().copied().max().unwrap_or(0),
        budget,
        hanging_attempts: attempts(HANGING),
        failing_attempts: attempts(FAILING),
        transitions: observer.map_or_else(Vec::new, |o| {
            o.transitions
                .lock()
                .unwrap()
                .iter()
                .map(|(at, conn, what)| {
                    format!(
                        "{:>6.1}s {conn} {what}",
                        at.saturating_duration_since(started).as_secs_f64()
                    )
                })
                .collect()
        }),
        retries: observer.map_or(0, |o| o.retries.load(Ordering::Relaxed)),
        max_retry_late_secs: observer.map_or(0, |o| o.max_retry_late.load(Ordering::Relaxed)),
        max_late_secs: observer.map_or(0, |o| o.max_late.load(Ordering::Relaxed)),
    }
}

type SendFuture = std::pin::Pin<Box<dyn Future<Output = u16> + Send>>;
/// Sends one event (connection, id, body); answers the HTTP status.
type Sender = Arc<dyn Fn(usize, String, String) -> SendFuture + Send + Sync>;

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        rand::random::<u32>()
    )
}

impl Report {
    /// What must hold whatever the host: exactly once for the healthy, one
    /// write per step, Stripe's budget kept.
    pub fn check(&self, plan: &Plan) {
        let healthy = plan.connections - if plan.faults { 2 } else { 0 };
        assert_eq!(self.healthy_deliveries, healthy * plan.events, "{self:#?}");
        assert_eq!(self.healthy_duplicates, 0, "{self:#?}");
        assert_eq!(
            self.step_writes,
            plan.connections * plan.events,
            "{self:#?}"
        );
        assert_eq!(self.step_duplicates, 0, "{self:#?}");
        assert!(self.max_stripe_per_second <= self.budget, "{self:#?}");
    }
}
