//! The dev server: every route of the HTTP API in one process — the same
//! axum router the Lambdas run — on the embedded store. Bearer-token auth on
//! every route but `/health` and `/webhooks/…`.
//!
//! It serves the router through hyper-util rather than `axum::serve`, which
//! has no timer: a header read timeout, a body read timeout, a connection
//! cap and back-off on accept errors need one (a slow or hostile client must
//! not hold the server).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use connector_core::adapters::local_queue::LocalQueue;
use connector_core::api;
use connector_core::app::App;
use connector_core::http::ApiError;
use connector_core::model::{InsertOutcome, StoredEvent};
use connector_core::ports::{EventQuery, EventStore, StoreError};
use connector_core::workflow::engine::Engine;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

/// Bodies larger than this are refused before they are read in full (the
/// routes' own limits are smaller but for the webhook's).
const MAX_BODY: usize = api::MAX_WEBHOOK_BODY;
/// An oversized body up to this size is read and dropped before the 413.
const DRAIN_LIMIT: usize = 4 * MAX_BODY;
/// A client must send its request head within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// … and its body within this time.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// New events waiting for in-process fan-out; ingest waits when it is full.
const FANOUT_QUEUE: usize = 1024;
/// Events fanned out at once.
const FANOUT_AT_ONCE: usize = 32;
/// Run executors working the in-process queue at once (the event source
/// mapping's `MaximumConcurrency` in AWS).
pub const WORKERS: usize = 64;
/// How often the scheduler queues runs falling due (a minute in AWS).
pub const SCHEDULER_PERIOD: Duration = Duration::from_secs(5);
/// How often every connection is reconciled (the reconciler's schedule in
/// AWS); the first pass runs at start, catching up on what Stripe sent
/// while the server was stopped.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(300);
/// A message whose run could not be carried on (the store failed) comes
/// back after this long (SQS's visibility timeout).
const RETRY_MESSAGE_AFTER: u32 = 5;

/// How much the server lets a client take: defaults
/// [`HEADER_READ_TIMEOUT`], [`BODY_READ_TIMEOUT`], [`MAX_CONNECTIONS`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub workers: usize,
    pub scheduler_period: Duration,
    /// `None`: no reconciler (tests that count Stripe's requests).
    pub reconcile_period: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            workers: WORKERS,
            scheduler_period: SCHEDULER_PERIOD,
            reconcile_period: Some(RECONCILE_PERIOD),
        }
    }
}

pub struct DevServer {
    app: App,
    token: SecretString,
    limits: Limits,
    fanout: std::sync::Mutex<Option<mpsc::Receiver<StoredEvent>>>,
    queue: Arc<LocalQueue>,
}

/// A random bearer token for a dev server started without one.
pub fn generate_token() -> SecretString {
    use rand::Rng;
    let tail: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    SecretString::from(format!("dev_{tail}"))
}

fn public(path: &str) -> bool {
    path == "/health" || path.starts_with("/webhooks/")
}

/// The dev server's event store: the embedded one, plus each newly stored
/// event handed to fan-out at once. The store's outbox (an event's fan-out
/// is owed until it is marked done) is what the table's stream is in AWS:
/// after a crash the events still owed are fanned out again. Ingest itself
/// is the same code in both hosts.
struct FanOutOnInsert {
    inner: Arc<dyn EventStore>,
    queue: mpsc::Sender<StoredEvent>,
}

#[async_trait]
impl EventStore for FanOutOnInsert {
    async fn insert_event(&self, event: &StoredEvent) -> Result<InsertOutcome, StoreError> {
        let outcome = self.inner.insert_event(event).await?;
        if outcome == InsertOutcome::Inserted && self.queue.send(event.clone()).await.is_err() {
            tracing::warn!(event_id = %event.event_id, "fan-out closed; the outbox keeps the event");
        }
        Ok(outcome)
    }

    async fn get_event(
        &self,
        connection_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.get_event(connection_id, event_id).await
    }

    async fn list_events(
        &self,
        connection_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.list_events(connection_id, query).await
    }

    async fn unfanned_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.unfanned_events(limit).await
    }

    async fn mark_fanned_out(&self, connection_id: &str, event_id: &str) -> Result<(), StoreError> {
        self.inner.mark_fanned_out(connection_id, event_id).await
    }
}

impl DevServer {
    pub fn new(app: App, token: SecretString) -> Arc<Self> {
        Self::with_limits(app, token, Limits::default())
    }

    /// The server with other limits (tests shorten them).
    pub fn with_limits(app: App, token: SecretString, limits: Limits) -> Arc<Self> {
        let (sender, rx) = mpsc::channel(FANOUT_QUEUE);
        let queue = LocalQueue::new(app.clock.clone());
        let mut app = app.with_queue(queue.clone());
        app.events = Arc::new(FanOutOnInsert {
            inner: app.events.clone(),
            queue: sender,
        });
        Arc::new(Self {
            app,
            token,
            limits,
            fanout: std::sync::Mutex::new(Some(rx)),
            queue,
        })
    }

    /// The app this server runs (its event store fans out new events).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The in-process run queue its workers take runs from.
    pub fn queue(&self) -> &Arc<LocalQueue> {
        &self.queue
    }

    /// Every route, behind the bearer token and the body read timeout.
    pub fn router(self: &Arc<Self>) -> Router {
        api::all_routes()
            .with_state(Arc::new(self.app.clone()))
            .layer(middleware::from_fn_with_state(self.clone(), guard))
    }

    /// The work behind the API, as the Lambdas do it in AWS: fan-out of new
    /// events (and of those a crash left owed), the run executors on the
    /// in-process queue, and the scheduler. Once per server.
    fn spawn_background(&self) {
        let Some(mut rx) = self.fanout.lock().ok().and_then(|mut f| f.take()) else {
            return;
        };
        let app = self.app.clone();
        let period = self.limits.scheduler_period;
        // Fan-out: what a crash left owed first, then each new event, up
        // to FANOUT_AT_ONCE side by side (a stream has shards in AWS).
        tokio::spawn(async move {
            fan_out_owed(&app).await;
            let permits = Arc::new(Semaphore::new(FANOUT_AT_ONCE));
            while let Some(event) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let app = app.clone();
                tokio::spawn(async move {
                    fan_out_one(&app, &event).await;
                    drop(permit);
                });
            }
        });
        for n in 0..self.limits.workers.max(1) {
            let app = self.app.clone();
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let worker = format!("dev-exec-{n}");
                loop {
                    let message = queue.recv().await;
                    Engine::new(&app, worker.as_str())
                        .handle_local(&queue, message, RETRY_MESSAGE_AFTER)
                        .await;
                }
            });
        }
        if let Some(period) = self.limits.reconcile_period {
            let app = self.app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = connector_core::service::reconcile::all(&app).await {
                        tracing::warn!(error = %e, "reconcile tick failed");
                    }
                }
            });
        }
        let app = self.app.clone();
        tokio::spawn(async move {
            // The in-process queue did not survive the last stop: every
            // unfinished run is queued again.
            match Engine::new(&app, "dev-scheduler").requeue_all().await {
                Ok(n) if n > 0 => tracing::info!(runs = n, "unfinished runs queued again"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "unfinished runs not queued again; the scheduler's overdue sweep finds them");
                }
            }
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if let Err(e) = Engine::new(&app, "dev-scheduler").enqueue_due().await {
                    tracing::warn!(error = %e, "scheduler tick failed");
                }
                fan_out_owed(&app).await;
            }
        });
    }

    /// Serves until the listener is dropped with the task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        self.serve_until(listener, std::future::pending()).await;
    }

    /// Serves until `shutdown` completes, then stops accepting and gives
    /// requests in flight [`SHUTDOWN_GRACE`] to finish.
    pub async fn serve_until(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        self.spawn_background();
        let router = self.router();
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let graceful = GracefulShutdown::new();
        let mut backoff = Duration::from_millis(5);
        tokio::pin!(shutdown);
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        backoff = Duration::from_millis(5);
                        stream
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait, doubling
                        // up to a second, instead of spinning on the error.
                        tracing::warn!(error = %e, wait_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = TowerToHyperService::new(router.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.limits.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("stopped: every request answered"),
            () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("stopped with requests still open"),
        }
    }
}

/// Fans out one event and records it done; on failure it stays owed.
async fn fan_out_one(app: &App, event: &StoredEvent) -> bool {
    match Engine::new(app, "dev-fanout").fan_out(event).await {
        Ok(_) => {
            if let Err(e) = app
                .events
                .mark_fanned_out(&event.connection_id, &event.event_id)
                .await
            {
                tracing::warn!(error = %e, event_id = %event.event_id, "fan-out not recorded; done again later (harmless)");
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, event_id = %event.event_id, "fan-out failed; tried again on the next tick");
            false
        }
    }
}

/// Fans out the events whose fan-out is still owed (a crash, a failure),
/// a page at a time, until none is owed or a page makes no progress.
async fn fan_out_owed(app: &App) {
    const PAGE: usize = 100;
    loop {
        let owed = match app.events.unfanned_events(PAGE).await {
            Ok(owed) => owed,
            Err(e) => {
                tracing::warn!(error = %e, "outbox unreadable");
                return;
            }
        };
        let mut progressed = false;
        for event in &owed {
            progressed |= fan_out_one(app, event).await;
        }
        if owed.len() < PAGE || !progressed {
            return;
        }
    }
}

/// The body read in full within [`MAX_BODY`] and [`BODY_READ_TIMEOUT`], so
/// no handler waits on a slow client; then authentication (constant-time
/// token compare) on every route but the public ones.
async fn guard(State(server): State<Arc<DevServer>>, req: Request, next: Next) -> Response {
    // The body is read (bounded) before any answer, even a 401: a client
    // still sending when the answer comes would see a broken connection.
    let authorized = public(req.uri().path()) || server.authorized(&req);
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared.filter(|len| *len > MAX_BODY) {
        // Read (and drop) what is not too far over, so the client, still
        // sending, gets its 413 instead of a broken connection.
        if len <= DRAIN_LIMIT {
            let drain = async {
                let mut body = req.into_body();
                while let Some(Ok(_)) = body.frame().await {}
            };
            let _ = tokio::time::timeout(server.limits.body_read_timeout, drain).await;
        }
        return too_large(len).into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(
        server.limits.body_read_timeout,
        Limited::new(body, MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return too_large(MAX_BODY + 1).into_response(),
        Err(_) => {
            return ApiError::new(
                http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    server.limits.body_read_timeout.as_secs_f64()
                ),
            )
            .into_response();
        }
    };
    if !authorized {
        return ApiError::unauthorized().into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

impl DevServer {
    fn authorized(&self, req: &Request) -> bool {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(
            given
                .as_bytes()
                .ct_eq(self.token.expose_secret().as_bytes()),
        )
    }
}

fn too_large(len: usize) -> ApiError {
    ApiError::new(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body is {len} bytes or more; the limit is {MAX_BODY}"),
    )
}
