//! The Stripe REST client: bracket form encoding, pinned API version, bearer
//! key marked sensitive, one `Idempotency-Key` per POST reused across its
//! retries, retries with backoff on the failures Stripe documents as
//! retryable, and typed errors.

pub mod encode;
mod error;

pub use error::{StripeApiError, StripeError};

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// The version of the OpenAPI spec this connector is built and tested against.
pub const DEFAULT_API_VERSION: &str = "2023-08-16";
pub const USER_AGENT: &str = concat!("stripe-connector/", env!("CARGO_PKG_VERSION"));

/// How the client talks to Stripe; shared by every client of a process.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub api_base: String,
    pub max_retries: u32,
    /// Per attempt; 20 s keeps one call inside API Gateway's 29 s.
    pub timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// `Retry-After` is honoured up to this long.
    pub max_retry_after: Duration,
}

impl Default for StripeSettings {
    fn default() -> Self {
        Self {
            api_base: DEFAULT_API_BASE.to_string(),
            max_retries: 2,
            timeout: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl StripeSettings {
    /// The delay before retry number `retry` (0-based): doubling from the
    /// initial backoff up to the maximum, with jitter in [50%, 100%] but never
    /// below the initial backoff; a `Retry-After` of at most the cap wins when
    /// it is longer.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << retry.min(16));
        let capped = exp.min(self.max_backoff);
        let jittered = capped.mul_f64(0.5 + rand::rng().random::<f64>() * 0.5);
        let delay = jittered.max(self.initial_backoff.min(self.max_backoff));
        match retry_after {
            Some(ra) if ra <= self.max_retry_after => delay.max(ra),
            _ => delay,
        }
    }
}

/// A client for one Stripe account (one secret key). Cheap to clone.
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    settings: Arc<StripeSettings>,
    key: SecretString,
    api_version: String,
    account: Option<String>,
    pacer: Option<Arc<dyn Pacer>>,
    /// Counts each request's outcome under a connection's id.
    meter: Option<(Arc<dyn crate::metrics::Metrics>, String)>,
}

/// Holds each request back until the account's rate budget allows it
/// (shared by every executor), or refuses it with [`StripeError::Budget`].
#[async_trait::async_trait]
pub trait Pacer: Send + Sync {
    /// Waits for a slot; `search`: the search endpoints' own, smaller limit.
    async fn pace(&self, search: bool) -> Result<(), StripeError>;
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("api_base", &self.settings.api_base)
            .field("key", &"[REDACTED]")
            .field("api_version", &self.api_version)
            .field("account", &self.account)
            .finish()
    }
}

/// A shared HTTP client (rustls) for all Stripe clients of a process.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl StripeClient {
    pub fn new(http: reqwest::Client, settings: Arc<StripeSettings>, key: SecretString) -> Self {
        Self {
            http,
            settings,
            key,
            api_version: DEFAULT_API_VERSION.to_string(),
            account: None,
            pacer: None,
            meter: None,
        }
    }

    /// Counts every request (ok, retried, rate limited, failed) in
    /// `metrics` under `connection`.
    pub fn with_meter(
        mut self,
        metrics: Arc<dyn crate::metrics::Metrics>,
        connection: impl Into<String>,
    ) -> Self {
        self.meter = Some((metrics, connection.into()));
        self
    }

    fn count(&self, outcome: &'static str) {
        if let Some((metrics, connection)) = &self.meter {
            metrics.record(crate::metrics::Measure::StripeCall {
                connection: connection.clone(),
                outcome,
            });
        }
    }

    /// Paces every request (each retry too) through `pacer`.
    pub fn with_pacer(mut self, pacer: Arc<dyn Pacer>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Pins `Stripe-Version` for every request of this client.
    pub fn with_api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Acts on a connected account (`Stripe-Account`).
    pub fn with_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    pub async fn get(&self, path: &str, query: &Value) -> Result<Value, StripeError> {
        self.request(Method::GET, path, query, None).await
    }

    /// POST with the caller's idempotency key, or a generated one.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        self.request(Method::POST, path, body, idempotency_key)
            .await
    }

    pub async fn delete(&self, path: &str, query: &Value) -> Result<Value, StripeError> {
        self.request(Method::DELETE, path, query, None).await
    }

    /// Sends one request, retrying what is retryable. A POST carries one
    /// `Idempotency-Key` across all its attempts; GET and DELETE carry none.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        if !path.starts_with('/') {
            return Err(StripeError::InvalidRequest(format!(
                "path must start with '/': {path}"
            )));
        }
        let encoded = encode::encode(params);
        let is_post = method == Method::POST;
        let idempotency_key = is_post.then(|| {
            idempotency_key
                .map(str::to_string)
                .unwrap_or_else(|| format!("stripe-connector-{}", uuid::Uuid::new_v4()))
        });
        let mut url = format!("{}{}", self.settings.api_base.trim_end_matches('/'), path);
        if !is_post && !encoded.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&encoded);
        }
        let search = path.ends_with("/search");
        let mut retry = 0;
        loop {
            if let Some(pacer) = &self.pacer {
                pacer.pace(search).await?;
            }
            let outcome = self
                .attempt(
                    &method,
                    &url,
                    is_post.then_some(&encoded),
                    idempotency_key.as_deref(),
                )
                .await;
            let (err, retry_after) = match outcome {
                Ok(value) => {
                    self.count("ok");
                    return Ok(value);
                }
                Err(e) => e,
            };
            if err.status() == Some(429) {
                self.count("rate_limited");
            }
            if retry >= self.settings.max_retries || !retryable(&err) {
                self.count("failed");
                return Err(err);
            }
            self.count("retried");
            let delay = self.settings.backoff(retry, retry_after);
            tracing::warn!(
                %method, path, retry = retry + 1, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                status = err.status(), request_id = err.request_id(), "retrying Stripe request"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&String>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, (StripeError, Option<Duration>)> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(self.settings.timeout)
            .bearer_auth(self.key.expose_secret())
            .header("Stripe-Version", &self.api_version)
            .header("User-Agent", USER_AGENT);
        if let Some(account) = &self.account {
            req = req.header("Stripe-Account", account);
        }
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| (self.transport_error(e), None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let request_id = header_str(&headers, "request-id");
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| (self.transport_error(e), None))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                (
                    StripeError::Decode {
                        status,
                        message: e.to_string(),
                        request_id,
                    },
                    None,
                )
            });
        }
        let should_retry =
            header_str(&headers, "stripe-should-retry").and_then(|v| match v.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
        let retry_after = header_str(&headers, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let err = match serde_json::from_slice::<error::ErrorEnvelope>(&bytes) {
            Ok(mut env) => StripeError::Api {
                status,
                error: {
                    // Stripe quotes a refused key in its message: that
                    // message is logged, stored on runs and answered.
                    env.error.message = env.error.message.map(|m| error::redact_keys(&m));
                    env.error
                },
                request_id,
                should_retry,
                retry_after,
            },
            Err(_) => StripeError::Decode {
                status,
                message: format!("non-JSON error body ({} bytes)", bytes.len()),
                request_id,
            },
        };
        Err((err, retry_after))
    }

    fn transport_error(&self, e: reqwest::Error) -> StripeError {
        if e.is_timeout() {
            StripeError::Timeout(self.settings.timeout)
        } else {
            // reqwest's Display never includes headers, so the key cannot leak here.
            StripeError::Transport(e.without_url())
        }
    }
}

fn retryable(err: &StripeError) -> bool {
    match err {
        // Timeouts surface to the caller: a retry would overrun API Gateway's limit.
        StripeError::Timeout(_) => false,
        other => other.is_transient(),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
