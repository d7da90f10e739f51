#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: a failed set-up should stop the test
//! Helpers for the end-to-end tests: a dev server in-process on a free
//! loopback port, over a fresh data directory, with a Stripe mock for what
//! localstripe lacks (`GET /v1/account`).

use std::net::SocketAddr;
use std::path::PathBuf;

use connector_core::app::App;
use connector_core::config::Config;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN: &str = "test_token_0123456789";

pub fn localstripe() -> String {
    std::env::var("LOCALSTRIPE_URL")
        .expect("LOCALSTRIPE_URL is set by infra/test.sh: run the tests with it")
}

pub struct Running {
    pub addr: SocketAddr,
    pub app: App,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Stripe mock that answers `GET /v1/account` with `account`.
pub async fn account_mock(account: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": account, "object": "account"})),
        )
        .mount(&server)
        .await;
    server
}

/// Starts a dev server on 127.0.0.1 over `data_dir`, talking to `stripe_base`.
pub async fn start(data_dir: PathBuf, stripe_base: &str) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = stripe_base.to_string();
    let dir = data_dir.display().to_string();
    let public = format!("http://{addr}");
    let config = Config::from_lookup(|k| match k {
        "STRIPE_API_BASE" => Some(base.clone()),
        "CONNECTOR_DATA_DIR" => Some(dir.clone()),
        "PUBLIC_BASE_URL" => Some(public.clone()),
        // As the dev server's main does: its targets are local services.
        "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    let app = connector_embedded::app(config).unwrap();
    serve(app, listener)
}

/// Serves `app` (any stores) as the dev server does, on a bound listener.
pub fn serve(app: App, listener: tokio::net::TcpListener) -> Running {
    let addr = listener.local_addr().unwrap();
    let server = dev_server::DevServer::new(app, SecretString::from(TOKEN.to_string()));
    let app = server.app().clone();
    let task = tokio::spawn(server.serve(listener));
    Running {
        addr,
        app,
        http: reqwest::Client::new(),
        task,
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Calls an authenticated route; answers (status, JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_webhook(
        &self,
        connection: &str,
        body: &[u8],
        signature: &str,
    ) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/webhooks/{connection}")))
            .header("Stripe-Signature", signature)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// The action fixture of a group in events/ (`action_<group>_*.json`): its
/// file name and its text.
pub fn action_fixture(group: &str) -> (String, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let name = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with(&format!("action_{group}_")))
        .unwrap_or_else(|| panic!("no events/action_{group}_*.json"));
    let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
    (name, text)
}
