#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // benchmark harnesses: a failed set-up should stop the run
//! Shared pieces of the harnesses: finding the release binaries, reading a
//! process's peak RSS, and summarising latencies.

use std::path::PathBuf;
use std::time::Duration;

/// A release binary built beside this one (`target/release/<name>`), or
/// from the directory in `CONNECTOR_BIN_DIR` (e.g. `target/profiling`).
pub fn sibling_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CONNECTOR_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let me = std::env::current_exe().expect("own path");
    let path = me.parent().expect("target dir").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p {name})",
        path.display()
    );
    path
}

/// Peak resident set size of a live process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The q-quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Stripe's sample `invoice.created` event with this id, compact, trimmed or
/// padded (a `description`) to `len` bytes: the benchmarks' typical event.
pub fn invoice_event(id: &str, created: i64, len: usize) -> String {
    use serde_json::Value;
    let mut event = connector_core::catalog::sample_event("invoice.created");
    event["id"] = Value::from(id);
    event["created"] = Value::from(created);
    let size = |e: &Value| serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0);
    while size(&event) > len {
        let Some(object) = event["data"]["object"].as_object_mut() else {
            break;
        };
        let Some(last) = object.keys().next_back().cloned() else {
            break;
        };
        object.shift_remove(&last);
    }
    let short = len.saturating_sub(size(&event));
    event["data"]["object"]["description"] = Value::from("x".repeat(short.saturating_sub(20)));
    event.to_string()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

pub type Resp = http::Response<Full<Bytes>>;

pub fn reply(status: u16, body: impl Into<Bytes>) -> Resp {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("response")
}

/// Serves `handle` on a fresh 127.0.0.1 port.
pub async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&v[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn reads_own_peak_rss() {
        let kib = peak_rss_kib(std::process::id()).expect("VmHWM on Linux");
        assert!(kib > 100);
    }
}
