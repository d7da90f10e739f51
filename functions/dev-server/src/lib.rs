//! The dev server: every route of the HTTP API in one process, through the
//! same handlers the Lambdas use, on the embedded store. Bearer-token auth on
//! every route but `/health` and `/webhooks/…`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::http::ApiError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// Bodies larger than this are refused before they are read in full.
const MAX_BODY: usize = 1024 * 1024;

pub struct DevServer {
    app: App,
    token: SecretString,
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

impl DevServer {
    pub fn new(app: App, token: SecretString) -> Arc<Self> {
        Arc::new(Self {
            app: app.with_inline_fanout(),
            token,
        })
    }

    /// The app this server runs (with in-process fan-out switched on).
    pub fn app(&self) -> &App {
        &self.app
    }

    fn authorized(&self, req: &hyper::Request<Incoming>) -> bool {
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

    /// Answers one request.
    pub async fn handle(&self, req: hyper::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let resp = self.answer(req).await;
        let (parts, body) = resp.into_parts();
        http::Response::from_parts(parts, Full::new(body))
    }

    async fn answer(&self, req: hyper::Request<Incoming>) -> connector_core::http::Response {
        if !public(req.uri().path()) && !self.authorized(&req) {
            return ApiError::unauthorized().to_response();
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(len) = declared.filter(|len| *len > MAX_BODY) {
            return too_large(len).to_response();
        }
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return too_large(MAX_BODY + 1).to_response(),
        };
        api::handle(
            &self.app,
            http::Request::from_parts(parts, bytes),
            Routes::All,
        )
        .await
    }

    /// Runs due runs every `period`, as the retry-scheduler function does
    /// on its schedule in AWS.
    pub fn spawn_retry_timer(&self, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = self.app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if let Err(e) =
                    connector_core::workflow::engine::Engine::new(&app, "dev-server-retry")
                        .run_due(100)
                        .await
                {
                    tracing::warn!(error = %e, "retry tick failed");
                }
            }
        })
    }

    /// Serves until the listener fails or the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
            });
        }
    }
}

fn too_large(len: usize) -> ApiError {
    ApiError::new(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body is {len} bytes or more; the limit is {MAX_BODY}"),
    )
}
