//! The dev server under random and adversarial requests on every route:
//! malformed and percent-encoded ids, unicode, methods, headers, bodies
//! (invalid UTF-8, deep nesting, wrong types, huge strings, over the limit).
//! The process must stay up, never answer 5xx, answer every refusal as a
//! JSON error, and keep its peak RSS under 64 MB. The seed is fixed, so a
//! failure replays; `HOSTILE_SEED` and `HOSTILE_REQUESTS` change the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use connector_core::api::{Routes, route_table};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "dev_hostiletoken";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, stripe: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dev-server"))
        .env("CONNECTOR_ADDR", "127.0.0.1:0")
        .env("CONNECTOR_DATA_DIR", data_dir)
        .env("CONNECTOR_API_TOKEN", TOKEN)
        .env("STRIPE_API_BASE", stripe)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("stripe-connector dev server on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn id(rng: &mut StdRng, prefix: &str, real: &str) -> String {
    let long = "a".repeat(5000);
    let options: Vec<String> = vec![
        real.to_string(),
        format!("{prefix}{}", rng.random_range(0..u32::MAX)),
        format!("{prefix}..%2F..%2Fetc"),
        "%00".into(),
        "%F0%9F%92%A5".into(),
        "caf%C3%A9".into(),
        "%FF%FE".into(),
        format!("{prefix}{long}"),
        String::new(),
        "%2e%2e".into(),
        format!("{prefix}a%20b"),
        "cus_123".into(),
    ];
    pick(rng, &options).clone()
}

fn deep_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..14) {
        0 => Vec::new(),
        1 => (0..rng.random_range(1..2048)).map(|_| rng.random()).collect(),
        2 => deep_json(rng.random_range(100..200_000)).into_bytes(),
        3 => json!({"name": "x".repeat(300_000)}).to_string().into_bytes(),
        4 => vec![b' '; 1_100_000],
        5 => b"{\"name\": \"\xff\xfe\", \"api_key\": \"sk_test_x\"}".to_vec(),
        6 => json!({"name": 5, "api_key": [], "webhook": "x"}).to_string().into_bytes(),
        7 => json!({"trigger": "*", "steps": [{"action": "customers.update", "input": {"id": "{{event.data.object.id}}", "description": "{{event.x}}".repeat(5000)}}]}).to_string().into_bytes(),
        8 => json!({"trigger": "invoice.created", "target": {"url": pick(rng, &["http://169.254.169.254/", "http://[", "https://", "ftp://x", "http://localhost:1/"])}}).to_string().into_bytes(),
        9 => json!({"triggers": ["invoice.created", 7, null, "x".repeat(10_000)]}).to_string().into_bytes(),
        10 => json!({"api_version": "2023-08-1é", "name": "n", "api_key": "sk_test_abc"}).to_string().into_bytes(),
        11 => b"{\"a\":1,\"a\":2}".to_vec(),
        12 => json!({"id": "evt_1", "type": "invoice.created", "created": 1, "livemode": false, "data": {"object": {}}}).to_string().into_bytes(),
        _ => json!({"secret": "whsec_x", "keep_previous": "yes", "enabled": "no", "event_id": 5}).to_string().into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_never_crash_or_bloat_the_server() {
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "acct_hostile"})))
        .mount(&stripe)
        .await;
    // Anything else a valid-looking action sends: Stripe refuses it (4xx).
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(400).set_body_json(
                json!({"error": {"type": "invalid_request_error", "message": "no"}}),
            ),
        )
        .mount(&stripe)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &stripe.uri());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let created: Value = http
        .post(format!("{}/connections", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Hostile", "api_key": "sk_test_51Hostile", "webhook": {"mode": "manual", "secret": "whsec_hostile"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conn = created["id"].as_str().expect("connected").to_string();

    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let requests: usize = std::env::var("HOSTILE_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut rng = StdRng::seed_from_u64(seed);
    let routes = route_table(Routes::All);
    let methods = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE",
    ];
    let mut plans = Vec::new();
    for _ in 0..requests {
        let (m, template) = pick(&mut rng, &routes).clone();
        let m = if rng.random_bool(0.8) {
            m.to_string()
        } else {
            pick(&mut rng, &methods).to_string()
        };
        let connection_id = id(&mut rng, "conn_", &conn);
        let workflow_id = id(&mut rng, "wf_", "wf_none");
        let event_id = id(&mut rng, "evt_", "evt_none");
        let operation = pick(
            &mut rng,
            &["create", "find", "update", "../x", "%00", "search"],
        )
        .to_string();
        let mut p = template
            .replace("{connection_id}", &connection_id)
            .replace("{workflow_id}", &workflow_id)
            .replace("{event_id}", &event_id)
            .replace("{operation}", &operation);
        if rng.random_bool(0.3) {
            let q = pick(
                &mut rng,
                &[
                    "?limit=0",
                    "?limit=999999999999999999999",
                    "?limit=-1",
                    "?status=%FF",
                    "?starting_after=zzz",
                    "?type=&type=",
                    "?workflow=../x",
                    "?force=maybe",
                    "?%",
                    "?limit=5&limit=6",
                ],
            );
            p.push_str(q);
        }
        let auth = rng.random_bool(0.9);
        let sig = rng.random_bool(0.5);
        plans.push((m, p, auth, sig, body(&mut rng)));
    }
    let mut five_hundreds = Vec::new();
    for chunk in plans.chunks(8) {
        let answers = futures::future::join_all(chunk.iter().map(|(m, p, auth, sig, body)| {
            let mut req = http
                .request(
                    reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                    format!("{}{p}", server.base),
                )
                .header("content-type", "application/json")
                .body(body.clone());
            if *auth {
                req = req.bearer_auth(TOKEN);
            }
            if *sig {
                req = req.header("stripe-signature", "t=1,v1=deadbeef,v1=,t=");
            }
            req = req.header("idempotency-key", "key with spaces");
            async move { (m.clone(), p.clone(), req.send().await) }
        }))
        .await;
        for (m, p, answer) in answers {
            let resp = answer.unwrap_or_else(|e| panic!("{m} {p}: no answer: {e:?}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if status >= 500 {
                five_hundreds.push(format!("{m} {p} → {status} {text}"));
                continue;
            }
            if status >= 400 && m != "HEAD" {
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{m} {p} → {status}: not JSON: {text:.200}"));
                assert!(
                    v["error"]["type"].is_string() && v["error"]["message"].is_string(),
                    "{m} {p} → {status}: {text:.200}"
                );
            }
        }
    }
    assert!(
        five_hundreds.is_empty(),
        "{} answers were 5xx: {:#?}",
        five_hundreds.len(),
        &five_hundreds[..five_hundreds.len().min(10)]
    );
    // Still up and answering.
    let health = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let peak = peak_rss_kib(server.child.id()).unwrap();
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    eprintln!("hostile: {requests} requests (seed {seed}), peak RSS {peak} KiB");
}

/// CPU seconds a process has used so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends with ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Out of file descriptors, `accept` fails at once, again and again: the
/// server must back off (not spin a core and flood its log), and serve
/// again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_spin() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 48 && exec \"$0\"")
        .arg(env!("CARGO_BIN_EXE_dev-server"))
        .env("CONNECTOR_ADDR", "127.0.0.1:0")
        .env("CONNECTOR_DATA_DIR", dir.path())
        .env("CONNECTOR_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("stripe-connector dev server on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let failures = Arc::new(AtomicUsize::new(0));
    let counted = failures.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("accept failed") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let server = Server { child, base };
    let addr = server.base.trim_start_matches("http://").to_string();
    // Far more connections than the server has descriptors for.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu_before, logged_before) = (
        cpu_seconds(server.child.id()),
        failures.load(Ordering::SeqCst),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    let logged = failures.load(Ordering::SeqCst) - logged_before;
    assert!(
        failures.load(Ordering::SeqCst) > 0,
        "accept never failed: the test did not exhaust descriptors"
    );
    assert!(cpu < 0.5, "{cpu:.2} s of CPU in 2 s: it spins");
    assert!(logged < 40, "{logged} accept failures logged in 2 s");
    drop(held);
    let http = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..50 {
        if let Ok(r) = http.get(format!("{}/health", server.base)).send().await {
            healthy = r.status().as_u16() == 200;
            if healthy {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "it did not serve again once descriptors were free");
}
