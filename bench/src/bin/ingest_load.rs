//! Ingest throughput of the dev server's webhook route.
//!
//! `infra/bench.sh ingest` (or, after `cargo build --release -p dev-server -p
//! connector-bench`: `target/release/ingest-load [--requests N] [--senders N]`).
//!
//! Starts the release dev server on a fresh data directory holding one
//! connection, then sends signed ~2 KB `invoice.created` events from 32
//! keep-alive senders; 30% of the requests are byte-identical redeliveries.
//! Reports requests/s, p50/p99 latency and the server's peak RSS, and fails
//! unless every request got a 200, every event was reported new exactly
//! once, and the store holds exactly the unique events.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // a test or harness: failing loudly is the point

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use connector_bench::{invoice_event, ms, now_secs, peak_rss_kib, quantile, sibling_binary};
use connector_core::config::Config;
use connector_core::model::{Connection, ConnectionSecrets, WebhookMode};
use connector_core::webhook::sign_header;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rand::Rng;
use rand::seq::SliceRandom;
use secrecy::SecretString;
use serde_json::Value;

const CONNECTION: &str = "conn_bench0000000000000000";
const SECRET: &str = "whsec_bench_secret";
const TOKEN: &str = "bench_token_0123456789";
const TARGET_BODY: usize = 2048;

struct Args {
    requests: usize,
    senders: usize,
    duplicate_share: f64,
}

fn args() -> Args {
    let mut a = Args {
        requests: 60_000,
        senders: 32,
        duplicate_share: 0.3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--requests" => a.requests = value.parse().expect("--requests N"),
            "--senders" => a.senders = value.parse().expect("--senders N"),
            "--duplicates" => a.duplicate_share = value.parse().expect("--duplicates 0.3"),
            other => panic!("unknown flag {other}; use --requests, --senders, --duplicates"),
        }
    }
    a
}

fn event_body(template: &str, i: usize) -> Vec<u8> {
    template
        .replacen("evt_benchXXXXXXXX", &format!("evt_bench{i:08}"), 1)
        .into_bytes()
}

async fn seed(data_dir: &std::path::Path) {
    let dir = data_dir.to_path_buf();
    let config = Config::from_lookup(|k| match k {
        "CONNECTOR_DATA_DIR" => Some(dir.display().to_string()),
        _ => None,
    })
    .expect("config");
    let app = connector_embedded::app(config).expect("store");
    app.secrets
        .put_secrets(
            CONNECTION,
            &ConnectionSecrets {
                api_key: SecretString::from("sk_test_bench".to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                target_secrets: Default::default(),
            },
        )
        .await
        .expect("secrets");
    app.connections
        .insert_connection(&Connection {
            id: CONNECTION.into(),
            name: "bench".into(),
            account_id: "acct_bench".into(),
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
        .await
        .expect("connection");
}

#[tokio::main]
async fn main() {
    let args = args();
    let data = tempfile::tempdir().expect("temp dir");
    seed(data.path()).await;

    let mut server = Command::new(sibling_binary("dev-server"))
        .env("CONNECTOR_DATA_DIR", data.path())
        .env("CONNECTOR_ADDR", "127.0.0.1:0")
        .env("CONNECTOR_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the dev server");
    let pid = server.id();
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the dev server exited early")
            .expect("stdout");
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining its logs so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let unique_n = ((args.requests as f64) * (1.0 - args.duplicate_share)).round() as usize;
    // One template, ids filled in per event.
    let template = invoice_event("evt_benchXXXXXXXX", now_secs(), TARGET_BODY);
    let unique: Vec<Arc<Bytes>> = (0..unique_n)
        .map(|i| Arc::new(Bytes::from(event_body(&template, i))))
        .collect();
    let body_len = unique[0].len();
    let mut rng = rand::rng();
    let mut deliveries: Vec<(usize, Arc<Bytes>)> = unique.iter().cloned().enumerate().collect();
    while deliveries.len() < args.requests {
        let i = rng.random_range(0..unique_n);
        deliveries.push((i, unique[i].clone()));
    }
    deliveries.shuffle(&mut rng);
    // Signed once, as Stripe signs a redelivery again but with the same bytes;
    // all within the 300 s tolerance.
    let signed_at = now_secs();
    let requests: Arc<Vec<(usize, Arc<Bytes>, String)>> = Arc::new(
        deliveries
            .into_iter()
            .map(|(i, body)| {
                let sig = sign_header(&body, SECRET, signed_at);
                (i, body, sig)
            })
            .collect(),
    );

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..args.senders)
        .map(|_| {
            let (requests, next, addr) = (requests.clone(), next.clone(), addr.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&addr)
                    .await
                    .expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                let mut seen = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((i, body, sig)) = requests.get(n) else {
                        break;
                    };
                    let req = http::Request::post(format!("/webhooks/{CONNECTION}"))
                        .header("host", &addr)
                        .header("content-type", "application/json")
                        .header("stripe-signature", sig)
                        .body(Full::new(Bytes::clone(body)))
                        .expect("request");
                    let sent = Instant::now();
                    sender.ready().await.expect("connection ready");
                    let resp = sender.send_request(req).await.expect("response");
                    let status = resp.status().as_u16();
                    let out = resp.into_body().collect().await.expect("body").to_bytes();
                    let took = sent.elapsed();
                    let duplicate = serde_json::from_slice::<Value>(&out)
                        .ok()
                        .and_then(|v| v["duplicate"].as_bool());
                    seen.push((*i, status, duplicate, took));
                }
                seen
            })
        })
        .collect();
    let mut results = Vec::with_capacity(args.requests);
    for s in senders {
        results.extend(s.await.expect("sender"));
    }
    let elapsed = started.elapsed();
    let peak_kib = peak_rss_kib(pid).unwrap_or(0);

    let mut latencies: Vec<Duration> = results.iter().map(|r| r.3).collect();
    latencies.sort();
    let failed = results.iter().filter(|r| r.1 != 200).count();
    let mut fresh: HashMap<usize, usize> = HashMap::new();
    let mut duplicates = 0;
    for (i, _, duplicate, _) in &results {
        match duplicate {
            Some(false) => *fresh.entry(*i).or_default() += 1,
            Some(true) => duplicates += 1,
            None => {}
        }
    }
    let once = fresh.len() == unique_n && fresh.values().all(|n| *n == 1);
    let stored: i64 = rusqlite::Connection::open(data.path().join("connector.db"))
        .and_then(|db| db.query_row("SELECT count(*) FROM events", [], |r| r.get(0)))
        .expect("count stored events");
    let _ = server.kill();
    let _ = server.wait();

    let rps = results.len() as f64 / elapsed.as_secs_f64();
    println!(
        "ingest-load: {} requests ({} unique, {} redeliveries) of {} B, {} senders",
        results.len(),
        unique_n,
        results.len() - unique_n,
        body_len,
        args.senders
    );
    println!(
        "  {:.0} req/s over {:.2} s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        rps,
        elapsed.as_secs_f64(),
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.9)),
        ms(quantile(&latencies, 0.99)),
        ms(quantile(&latencies, 1.0)),
    );
    println!(
        "  dev server peak RSS {:.1} MiB; {} non-200; {} reported duplicate; {} stored",
        peak_kib as f64 / 1024.0,
        failed,
        duplicates,
        stored
    );
    let ok =
        failed == 0 && once && duplicates == results.len() - unique_n && stored == unique_n as i64;
    if !ok {
        eprintln!(
            "FAILED: every request must be 200, every event new exactly once, and stored once"
        );
        std::process::exit(1);
    }
    println!(
        "  checks: all 200, each event new once, each redelivery a duplicate, store holds exactly the unique events"
    );
}
