//! Never missing an event, against a fake Stripe with state
//! (`connector_testkit::fake_stripe`): events lost to an outage recovered once and
//! run once while live ones keep arriving (two reconcilers at once, as two
//! Lambda containers); history past Stripe's 30 days reported as a gap; a
//! disabled, drifted and deleted endpoint repaired; an API-version upgrade
//! that loses and duplicates nothing, resumes after an interruption and
//! respects the 16-endpoint limit; each alert delivered once, signed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use connector_core::adapters::local_queue::LocalQueue;
use connector_core::adapters::memory::{FixedClock, MemorySecrets, MemoryStore};
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::metrics::{Measure, MemoryMetrics};
use connector_core::ports::{Clock, ConnectionStore, EventQuery, RunRef};
use connector_core::service::reconcile::{self, PassReport, STRIPE_RETENTION_SECS};
use connector_core::workflow::engine::Engine;
use connector_core::workflow::signing;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use connector_testkit::fake_stripe::{Endpoint, FakeStripe};

const T0: i64 = 1_900_000_000;
const BASE: &str = "https://hooks.example.test";

struct Env {
    app: App,
    store: Arc<MemoryStore>,
    secrets: Arc<MemorySecrets>,
    clock: Arc<FixedClock>,
    queue: Arc<LocalQueue>,
    stripe: FakeStripe,
    metrics: Arc<MemoryMetrics>,
    target: MockServer,
    alerts: MockServer,
    alert_secret: String,
    conn: String,
    /// Events fanned out already: the stream hands each over once.
    fanned: std::sync::Mutex<BTreeSet<String>>,
}

fn app_on(
    store: &Arc<MemoryStore>,
    secrets: &Arc<MemorySecrets>,
    clock: &Arc<FixedClock>,
    stripe: &FakeStripe,
    metrics: &Arc<MemoryMetrics>,
) -> (App, Arc<LocalQueue>) {
    let queue = LocalQueue::new(clock.clone());
    let app = App::new(
        Config::from_lookup(|k| match k {
            "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
            "PUBLIC_BASE_URL" => Some(BASE.into()),
            _ => None,
        })
        .unwrap(),
        store.clone(),
        secrets.clone(),
        clock.clone(),
    )
    .with_stripe_settings(crate::support::fast_stripe(stripe.uri()))
    .with_queue(queue.clone())
    .with_metrics(metrics.clone());
    (app, queue)
}

/// A managed connection with a workflow on `invoice.created` delivering to
/// a target that answers `target_status`, and an alert target.
async fn env(target_status: u16) -> Env {
    let stripe = FakeStripe::start().await;
    let store = Arc::new(MemoryStore::default());
    let secrets = Arc::new(MemorySecrets::default());
    let clock = Arc::new(FixedClock::at(T0));
    let metrics = Arc::new(MemoryMetrics::default());
    let (app, queue) = app_on(&store, &secrets, &clock, &stripe, &metrics);
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(target_status))
        .mount(&target)
        .await;
    let alerts = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&alerts)
        .await;
    let (s, c) = crate::support::call(
        &app,
        "POST",
        "/connections",
        Some(json!({"name": "Catch-up", "api_key": "sk_test_catchup"})),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_string();
    let (s, w) = crate::support::call(
        &app,
        "POST",
        &format!("/connections/{conn}/workflows"),
        Some(json!({"trigger": "invoice.created", "target": {"url": format!("{}/hook", target.uri())}})),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    let (s, a) = crate::support::call(
        &app,
        "PUT",
        &format!("/connections/{conn}/alerts"),
        Some(json!({"url": format!("{}/alerts", alerts.uri())})),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let alert_secret = a["secret"].as_str().unwrap().to_string();
    assert_eq!(stripe.endpoints().len(), 1, "the workflow's endpoint");
    Env {
        app,
        store,
        secrets,
        clock,
        queue,
        stripe,
        metrics,
        target,
        alerts,
        alert_secret,
        conn,
        fanned: Default::default(),
    }
}

impl Env {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        crate::support::call(&self.app, method, uri, body).await
    }

    /// Another container of the same functions: its own app and caches,
    /// the same store, secrets, clock and Stripe.
    fn second_app(&self) -> App {
        app_on(
            &self.store,
            &self.secrets,
            &self.clock,
            &self.stripe,
            &self.metrics,
        )
        .0
    }

    /// Stripe sends `event` to every endpoint subscribed to it; answers
    /// each delivery's (status, answer). All 2xx: Stripe counts it delivered.
    async fn deliver(&self, event: &Value) -> Vec<(u16, Value)> {
        let mut out = Vec::new();
        for (body, sig) in self.stripe.deliveries(event, self.clock.now()) {
            out.push(self.post_webhook(body, &sig).await);
        }
        if !out.is_empty() && out.iter().all(|(s, _)| *s == 200) {
            self.stripe.delivered(event["id"].as_str().unwrap());
        }
        out
    }

    async fn post_webhook(&self, body: String, sig: &str) -> (u16, Value) {
        let req = http::Request::post(format!("/webhooks/{}", self.conn))
            .header("stripe-signature", sig)
            .body(Bytes::from(body))
            .unwrap();
        let resp = api::handle(&self.app, req, Routes::All).await;
        (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        )
    }

    /// What the stream and the executors do: every stored event fanned out
    /// (idempotent: a run exists once), every queued run carried out.
    async fn run_all(&self) {
        let engine = Engine::new(&self.app, "test-exec");
        let events = self
            .app
            .events
            .list_events(
                &self.conn,
                &EventQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for e in &events {
            if self.fanned.lock().unwrap().insert(e.event_id.clone()) {
                engine.fan_out(e).await.unwrap();
            }
        }
        engine.work_ready(&self.queue).await;
    }

    async fn pass(&self) -> PassReport {
        reconcile::connection(&self.app, &self.conn).await.unwrap()
    }

    /// Target deliveries, by event id.
    async fn deliveries(&self) -> BTreeMap<String, usize> {
        self.deliveries_to("/hook").await
    }

    /// Deliveries to one of the target server's paths, by event id.
    async fn deliveries_to(&self, path: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.target.received_requests().await.unwrap_or_default() {
            if r.url.path() != path {
                continue;
            }
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            *counts
                .entry(body["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        counts
    }

    /// Alerts received, each checked against its Standard Webhooks
    /// signature: (type, data), in order.
    async fn alerts(&self) -> Vec<(String, Value)> {
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for r in self.alerts.received_requests().await.unwrap_or_default() {
            let header = |n: &str| r.headers.get(n).unwrap().to_str().unwrap().to_string();
            let (id, ts, sig) = (
                header("webhook-id"),
                header("webhook-timestamp"),
                header("webhook-signature"),
            );
            let expected =
                signing::sign(&self.alert_secret, &id, ts.parse().unwrap(), &r.body).unwrap();
            assert_eq!(sig, expected, "an alert signed with the target's secret");
            assert!(ids.insert(id.clone()), "alert {id} delivered twice");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["data"]["connection_id"], self.conn.as_str());
            assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
            out.push((
                body["type"].as_str().unwrap().to_string(),
                body["data"].clone(),
            ));
        }
        out
    }

    async fn alerts_of(&self, kind: &str) -> Vec<Value> {
        self.alerts()
            .await
            .into_iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| d)
            .collect()
    }

    /// A workflow on `trigger` delivering to the target server's `path`.
    async fn workflow(&self, trigger: &str, path: &str) {
        let (s, w) = self
            .call(
                "POST",
                &format!("/connections/{}/workflows", self.conn),
                Some(json!({"trigger": trigger, "target": {"url": format!("{}{path}", self.target.uri())}})),
            )
            .await;
        assert_eq!(s, 201, "{w}");
    }

    /// `PUT …/api-version`.
    async fn set_version(&self, version: &str) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/connections/{}/api-version", self.conn),
            Some(json!({ "api_version": version })),
        )
        .await
    }

    async fn health(&self) -> Value {
        let (s, h) = self
            .call("GET", &format!("/connections/{}/health", self.conn), None)
            .await;
        assert_eq!(s, 200, "{h}");
        h
    }

    async fn endpoint_id(&self) -> String {
        let c = self
            .store
            .get_connection(&self.conn)
            .await
            .unwrap()
            .unwrap();
        c.webhook_endpoint_id.unwrap()
    }
}

#[tokio::test]
async fn missed_events_are_recovered_once_and_run_once_while_live_ones_keep_arriving() {
    let env = env(200).await;
    let live1 = env
        .stripe
        .event("evt_live1", "invoice.created", T0 + 10, "in_1");
    assert_eq!(
        env.deliver(&live1).await,
        vec![(200, json!({"received": true, "duplicate": false}))]
    );
    // An outage: Stripe's deliveries of these two fail.
    env.stripe
        .event("evt_missed2", "invoice.created", T0 + 20, "in_2");
    env.stripe
        .event("evt_missed3", "invoice.created", T0 + 30, "in_3");
    // Not subscribed: never stored, never asked for.
    env.stripe
        .event("evt_other", "customer.created", T0 + 35, "cus_1");
    let live4 = env
        .stripe
        .event("evt_live4", "invoice.created", T0 + 40, "in_4");
    env.deliver(&live4).await;
    env.run_all().await;
    // A workflow made after the outage was never owed its events.
    env.clock.set(T0 + 50);
    env.workflow("invoice.created", "/late").await;

    // Ten minutes on: two reconcilers at once (two containers, one store),
    // while a live delivery arrives.
    env.clock.set(T0 + 600);
    let live5 = env
        .stripe
        .event("evt_live5", "invoice.created", T0 + 590, "in_5");
    let other = env.second_app();
    let (a, b, delivered) = tokio::join!(
        reconcile::connection(&env.app, &env.conn),
        reconcile::connection(&other, &env.conn),
        env.deliver(&live5),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(delivered[0].0, 200);
    assert_eq!(a.recovered + b.recovered, 2, "{a:?} {b:?}");
    let mut recovered: Vec<String> = a
        .recovered_ids
        .iter()
        .chain(&b.recovered_ids)
        .cloned()
        .collect();
    recovered.sort();
    assert_eq!(recovered, ["evt_missed2", "evt_missed3"]);
    assert!(a.error.is_none() && b.error.is_none(), "{a:?} {b:?}");
    assert!(!a.behind && !b.behind);
    env.run_all().await;

    // Stripe's own retry of a missed event comes later: a duplicate.
    let missed2 = env.stripe.state.lock().unwrap().events[1].clone();
    let again = env.deliver(&missed2).await;
    assert_eq!(again[0].1["duplicate"], true);
    // The next pass finds nothing new (evt_live5 arrived live).
    env.clock.set(T0 + 1200);
    let c = env.pass().await;
    assert_eq!(c.recovered, 0, "{c:?}");
    env.run_all().await;

    // Every event ran once for the first workflow; the late one ran only
    // for what happened after it was made.
    let want: BTreeMap<String, usize> = [
        "evt_live1",
        "evt_live4",
        "evt_live5",
        "evt_missed2",
        "evt_missed3",
    ]
    .iter()
    .map(|id| (id.to_string(), 1))
    .collect();
    assert_eq!(env.deliveries_to("/hook").await, want);
    assert_eq!(
        env.deliveries_to("/late").await,
        BTreeMap::from([("evt_live5".to_string(), 1)])
    );
    // The events API says which were recovered.
    let (_, events) = env
        .call("GET", &format!("/connections/{}/events", env.conn), None)
        .await;
    let flags: BTreeMap<String, bool> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["recovered"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flags.len(), 5, "{events}");
    assert!(flags["evt_missed2"] && flags["evt_missed3"]);
    assert!(!flags["evt_live1"] && !flags["evt_live4"] && !flags["evt_live5"]);
    // Health and the alert say so too; each recovered event is named once.
    let h = env.health().await;
    assert_eq!(h["reconcile"]["recovered_total"], 2, "{h}");
    assert_eq!(h["reconcile"]["cursor"], T0 + 1200 - reconcile::SETTLE_SECS);
    assert_eq!(h["last_event"]["id"], "evt_live5");
    assert_eq!(h["endpoint"]["status"], "enabled");
    assert_eq!(h["status"], "ok", "{h}");
    let notices = env.alerts_of("events.recovered").await;
    let mut named: Vec<String> = notices
        .iter()
        .flat_map(|n| {
            n["event_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
        })
        .collect();
    named.sort();
    assert_eq!(named, ["evt_missed2", "evt_missed3"], "{notices:?}");
    let counted: u32 = env
        .metrics
        .taken()
        .iter()
        .map(|m| match m {
            Measure::EventsRecovered { count } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(counted, 2, "the recovered events are counted once");
    // The sweeps asked for the connection's types only, 20 at most a time.
    // (The trigger sample at the workflow's creation asked for one event.)
    for q in env
        .stripe
        .requests("GET", "/v1/events")
        .into_iter()
        .filter(|q| q.contains("created["))
    {
        assert!(q.contains("types[]=invoice.created"), "{q}");
        assert!(!q.contains("customer.created"), "{q}");
    }
    assert!(
        env.stripe
            .requests("GET", "/v1/events")
            .iter()
            .any(|q| q.contains("delivery_success=false")),
        "the failed deliveries are asked for first"
    );
}

/// A connection whose workflow subscribes to every trigger (`*`): the
/// types go 20 a request, and a window too full for one pass is narrowed
/// and read over several, the cursor only moving past what was read whole.
#[tokio::test]
async fn many_types_go_twenty_a_request_and_a_long_outage_is_read_over_several_passes() {
    let env = env(200).await;
    env.workflow("*", "/all").await;
    // 2,600 missed events over a day: more than one pass reads, as the
    // connection's test budget (20 requests a second) bounds each pass.
    for i in 0..2600 {
        env.stripe.event(
            &format!("evt_many{i:05}"),
            "invoice.created",
            T0 + 100 + i * 30,
            "in_x",
        );
    }
    let now = T0 + 100 + 2600 * 30 + 3600;
    let mut total = 0;
    let mut passes = 0;
    loop {
        // Each pass in its own second: the connection's Stripe budget
        // (requests a second) paces every pass, as it paces runs.
        env.clock.set(now + passes);
        let r = env.pass().await;
        passes += 1;
        assert!(r.error.is_none(), "{r:?}");
        total += r.recovered;
        if !r.behind {
            break;
        }
        assert!(passes < 20, "no progress: {r:?}");
    }
    assert_eq!(total, 2600);
    for q in env
        .stripe
        .requests("GET", "/v1/events")
        .into_iter()
        .filter(|q| q.contains("created["))
    {
        let types = q.matches("types[]=").count();
        assert!((1..=20).contains(&types), "{types} types in {q}");
    }
}

#[tokio::test]
async fn history_older_than_stripes_30_days_is_reported_as_a_gap() {
    let env = env(200).await;
    let now = T0 + 40 * 86_400;
    env.clock.set(now);
    // The connector was down 40 days: its cursor is that old.
    let mut c = env.store.get_connection(&env.conn).await.unwrap().unwrap();
    c.reconcile.cursor = Some(T0);
    c.version += 1;
    env.store.update_connection(&c).await.unwrap();
    env.stripe
        .event("evt_recent", "invoice.created", now - 86_400, "in_r");
    // Two passes at once (two containers) find the gap; it is recorded
    // and reported once.
    let other = env.second_app();
    let (a, b) = tokio::join!(env.pass(), reconcile::connection(&other, &env.conn));
    let b = b.unwrap();
    assert_eq!(
        u32::from(a.gap.is_some()) + u32::from(b.gap.is_some()),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(a.recovered + b.recovered, 1);
    let r = if a.gap.is_some() { a } else { b };
    let horizon = now - STRIPE_RETENTION_SECS + reconcile::RETENTION_MARGIN_SECS;
    let gap = r.gap.clone().expect("a gap");
    assert_eq!((gap.from, gap.to), (T0, horizon));

    // Nothing older than Stripe keeps was asked for.
    for q in env
        .stripe
        .requests("GET", "/v1/events")
        .into_iter()
        .filter(|q| q.contains("created["))
    {
        let gte: i64 = q
            .split('&')
            .find_map(|p| p.strip_prefix("created[gte]="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(gte >= horizon, "{q}");
    }
    let h = env.health().await;
    assert_eq!(h["reconcile"]["gaps"][0]["from"], T0, "{h}");
    assert_eq!(h["reconcile"]["gaps"][0]["to"], horizon);
    assert_eq!(h["status"], "attention");
    assert_eq!(env.metrics.count(|m| *m == Measure::EventGap), 1);
    // Reported once: the next pass starts inside the 30 days.
    env.clock.set(now + 600);
    assert!(env.pass().await.gap.is_none());
    assert_eq!(env.metrics.count(|m| *m == Measure::EventGap), 1);
    assert_eq!(
        env.health().await["reconcile"]["gaps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_disabled_a_drifted_and_a_deleted_endpoint_are_repaired() {
    let env = env(200).await;
    let first = env.endpoint_id().await;
    let old_secret = env.stripe.endpoint(&first).unwrap().secret;

    // Stripe disabled it (days of failed deliveries).
    env.stripe.edit_endpoint(&first, |e| e.disabled = true);
    assert_eq!(env.health().await["endpoint"]["status"], "disabled");
    env.clock.set(T0 + 300);
    let r = env.pass().await;
    assert_eq!(r.repairs.len(), 1, "{r:?}");
    assert_eq!(
        (r.repairs[0].problem.as_str(), r.repairs[0].action.as_str()),
        ("disabled", "re-enabled")
    );
    assert!(!env.stripe.endpoint(&first).unwrap().disabled);
    env.clock.set(T0 + 600);
    assert!(env.pass().await.repairs.is_empty(), "repaired once");
    assert_eq!(env.alerts_of("endpoint.disabled").await.len(), 1);
    assert_eq!(env.alerts_of("endpoint.repaired").await.len(), 1);

    // Someone changed its events in the dashboard.
    env.stripe.edit_endpoint(&first, |e| {
        e.enabled_events = vec!["customer.created".into()];
    });
    let r = env.pass().await;
    assert_eq!(r.repairs[0].problem, "enabled_events");
    assert_eq!(
        env.stripe.endpoint(&first).unwrap().enabled_events,
        ["invoice.created"]
    );

    // Someone deleted it.
    env.stripe.state.lock().unwrap().endpoints.remove(&first);
    assert_eq!(env.health().await["endpoint"]["status"], "deleted");
    env.clock.set(T0 + 900);
    let r = env.pass().await;
    assert_eq!(
        (r.repairs[0].problem.as_str(), r.repairs[0].action.as_str()),
        ("deleted", "recreated")
    );
    let second = env.endpoint_id().await;
    assert_ne!(second, first);
    let made = env.stripe.endpoint(&second).unwrap();
    assert_eq!(made.url, format!("{BASE}/webhooks/{}", env.conn));
    assert_eq!(made.enabled_events, ["invoice.created"]);
    assert_eq!(made.api_version, "2023-08-16");
    assert_eq!(env.stripe.endpoints().len(), 1);
    assert_eq!(env.alerts_of("endpoint.repaired").await.len(), 3);
    for problem in ["disabled", "enabled_events", "deleted"] {
        assert_eq!(
            env.metrics
                .count(|m| *m == Measure::EndpointRepair { problem }),
            1,
            "{problem}"
        );
    }
    assert_eq!(env.health().await["endpoint"]["status"], "enabled");

    // Both secrets verify during the grace, only the new one after it.
    let event = json!({"id": "evt_grace", "object": "event", "type": "invoice.created", "created": T0 + 900,
                       "livemode": false, "data": {"object": {"id": "in_g"}}})
    .to_string();
    let signed = |secret: &str, now: i64| {
        connector_core::webhook::sign_header(event.as_bytes(), secret, now)
    };
    assert_eq!(
        env.post_webhook(event.clone(), &signed(&old_secret, T0 + 900))
            .await
            .0,
        200
    );
    assert_eq!(
        env.post_webhook(event.clone(), &signed(&made.secret, T0 + 900))
            .await
            .0,
        200
    );
    let after = T0 + 900 + connector_core::service::endpoint::SECRET_GRACE_SECS + 1;
    env.clock.set(after);
    env.pass().await;
    assert_eq!(
        env.post_webhook(event.clone(), &signed(&old_secret, after))
            .await
            .0,
        400
    );
    assert_eq!(
        env.post_webhook(event.clone(), &signed(&made.secret, after))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn an_api_version_upgrade_loses_and_duplicates_nothing_and_resumes_after_an_interruption() {
    let env = env(200).await;
    let old = env.endpoint_id().await;
    let e1 = env
        .stripe
        .event("evt_up1", "invoice.created", T0 + 10, "in_1");
    env.deliver(&e1).await;

    // The old endpoint's delete fails (past the client's retries): the
    // request fails with the upgrade recorded halfway.
    env.stripe.state.lock().unwrap().fail_deletes = 100;
    env.clock.set(T0 + 100);
    let (s, e) = env.set_version("2024-06-20").await;
    assert_eq!(s, 502, "{e}");
    let endpoints = env.stripe.endpoints();
    assert_eq!(endpoints.len(), 2, "old and new deliver side by side");
    let new = endpoints.iter().find(|e| e.id != old).unwrap().clone();
    assert_eq!(new.api_version, "2024-06-20");
    assert_eq!(new.enabled_events, ["invoice.created"]);
    let h = env.health().await;
    assert_eq!(h["upgrade"]["to"], "2024-06-20", "{h}");
    assert_eq!(h["status"], "attention");
    // Another version meanwhile: finish this one first.
    let (s, e) = env.set_version("2025-01-27").await;
    assert_eq!(
        (s, e["error"]["type"].as_str()),
        (409, Some("upgrade_in_progress")),
        "{e}"
    );

    // Events keep coming: both endpoints deliver each, one is stored.
    let e2 = env
        .stripe
        .event("evt_up2", "invoice.created", T0 + 110, "in_2");
    let both = env.deliver(&e2).await;
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|(s, _)| *s == 200), "{both:?}");
    assert_eq!(
        both.iter().filter(|(_, b)| b["duplicate"] == true).count(),
        1
    );
    // One is lost to an outage meanwhile.
    env.stripe
        .event("evt_up3", "invoice.created", T0 + 120, "in_3");
    // A workflow on another trigger meanwhile: the endpoint in use follows.
    env.workflow("customer.created", "/customers").await;

    // The reconciler finishes the upgrade (Stripe works again) and
    // recovers what was lost.
    env.stripe.state.lock().unwrap().fail_deletes = 0;
    env.clock.set(T0 + 600);
    let r = env.pass().await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.recovered_ids, ["evt_up3"]);
    let endpoints = env.stripe.endpoints();
    assert_eq!(endpoints.len(), 1, "the old endpoint is deleted");
    assert_eq!(endpoints[0].id, new.id);
    assert_eq!(
        endpoints[0].enabled_events,
        ["customer.created", "invoice.created"]
    );
    assert_eq!(env.endpoint_id().await, new.id);
    let h = env.health().await;
    assert!(h["upgrade"].is_null(), "{h}");
    assert_eq!(h["endpoint"]["api_version"], "2024-06-20");
    assert_eq!(h["endpoint"]["api_version_match"], true);
    let (_, c) = env
        .call("GET", &format!("/connections/{}", env.conn), None)
        .await;
    assert_eq!(c["api_version"], "2024-06-20");
    // After the switch only the new endpoint delivers.
    let e4 = env
        .stripe
        .event("evt_up4", "invoice.created", T0 + 610, "in_4");
    assert_eq!(env.deliver(&e4).await.len(), 1);
    // The same PUT again changes nothing.
    let (s, _) = env.set_version("2024-06-20").await;
    assert_eq!(s, 200);
    assert_eq!(env.stripe.endpoints().len(), 1);

    env.run_all().await;
    let want: BTreeMap<String, usize> = ["evt_up1", "evt_up2", "evt_up3", "evt_up4"]
        .iter()
        .map(|id| (id.to_string(), 1))
        .collect();
    assert_eq!(env.deliveries().await, want, "nothing lost, nothing twice");
}

#[tokio::test]
async fn an_upgrade_needs_a_free_endpoint_and_changes_nothing_without_one() {
    let env = env(200).await;
    {
        let mut s = env.stripe.state.lock().unwrap();
        for i in 0..15 {
            let id = format!("we_someoneelse{i:02}");
            s.endpoints.insert(
                id.clone(),
                Endpoint {
                    id,
                    url: "https://elsewhere.example".into(),
                    enabled_events: vec!["*".into()],
                    api_version: "2023-08-16".into(),
                    disabled: false,
                    secret: "whsec_other".into(),
                    metadata: BTreeMap::new(),
                },
            );
        }
    }
    let before = env.store.get_connection(&env.conn).await.unwrap().unwrap();
    let (s, e) = env.set_version("2024-06-20").await;
    assert_eq!(
        (s, e["error"]["type"].as_str()),
        (409, Some("webhook_endpoint_limit")),
        "{e}"
    );
    let after = env.store.get_connection(&env.conn).await.unwrap().unwrap();
    assert_eq!(after.api_version, "2023-08-16");
    assert!(after.upgrade.is_none());
    assert_eq!(after.webhook_endpoint_id, before.webhook_endpoint_id);
    assert_eq!(env.stripe.endpoints().len(), 16);
    // A version Stripe refuses: nothing made, and another may be asked for.
    env.stripe
        .state
        .lock()
        .unwrap()
        .endpoints
        .retain(|id, _| !id.starts_with("we_someoneelse"));
    let (s, e) = env.set_version("2099-01-01").await;
    assert_eq!(s / 100, 4, "{e}");
    let after = env.store.get_connection(&env.conn).await.unwrap().unwrap();
    assert!(after.upgrade.is_none(), "{after:?}");
    assert_eq!(env.stripe.endpoints().len(), 1);
    let (s, e) = env.set_version("2024-06-20").await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(env.stripe.endpoints()[0].api_version, "2024-06-20");
    // A malformed or overlong version is refused before anything.
    let long = format!("2024-01-01.{}", "a".repeat(40));
    let (s, e) = env.set_version(&long).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("api_version")),
        "{e}"
    );
    let (s, e) = env.set_version("yesterday").await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("api_version")),
        "{e}"
    );
}

#[tokio::test]
async fn dead_stuck_and_circuit_alerts_arrive_once_each_signed() {
    // A target refusing the payload: the run dies (a 4xx is permanent).
    let env = env(400).await;
    let e1 = env
        .stripe
        .event("evt_dead", "invoice.created", T0 + 10, "in_1");
    env.deliver(&e1).await;
    env.run_all().await;
    env.run_all().await;
    let dead = env.alerts_of("run.dead").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event_id"], "evt_dead");
    assert_eq!(dead[0]["status"], "dead");
    assert!(dead[0]["last_error"].as_str().unwrap().contains("400"));

    // A run whose message came back past the limit is set aside: stuck.
    let e2 = env
        .stripe
        .event("evt_stuck", "invoice.created", T0 + 20, "in_2");
    env.deliver(&e2).await;
    let stored = env
        .app
        .events
        .get_event(&env.conn, "evt_stuck")
        .await
        .unwrap()
        .unwrap();
    let engine = Engine::new(&env.app, "crashy");
    let refs: Vec<RunRef> = engine.fan_out(&stored).await.unwrap();
    for _ in 0..2 {
        engine
            .handle_message(
                &refs[0],
                connector_core::workflow::engine::STUCK_AFTER_RECEIVES + 1,
            )
            .await
            .unwrap();
    }
    let stuck = env.alerts_of("run.stuck").await;
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0]["event_id"], "evt_stuck");

    // The alert target gone: nothing more is sent.
    let (s, _) = env
        .call("DELETE", &format!("/connections/{}/alerts", env.conn), None)
        .await;
    assert_eq!(s, 200);
    let e3 = env
        .stripe
        .event("evt_quiet", "invoice.created", T0 + 30, "in_3");
    env.deliver(&e3).await;
    env.run_all().await;
    assert_eq!(env.alerts_of("run.dead").await.len(), 1);
}

#[tokio::test]
async fn a_target_failing_opens_its_circuit_and_says_so_once() {
    let env = env(503).await;
    for i in 0..8 {
        let e = env
            .stripe
            .event(&format!("evt_cb{i}"), "invoice.created", T0 + i, "in_cb");
        env.deliver(&e).await;
    }
    env.run_all().await;
    let opened = env.alerts_of("circuit.opened").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["failures"], 5);
    assert_eq!(opened[0]["target_host"], "127.0.0.1");
}

#[tokio::test]
async fn alert_targets_follow_the_target_rules_and_the_secret_is_shown_once() {
    let env = env(200).await;
    let uri = format!("/connections/{}/alerts", env.conn);
    for bad in ["http://", "ftp://example.com/x", "not a url"] {
        let (s, e) = env.call("PUT", &uri, Some(json!({"url": bad}))).await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (400, Some("url")),
            "{bad}: {e}"
        );
    }
    let (s, e) = env
        .call(
            "PUT",
            &uri,
            Some(json!({"url": "https://a.example", "extra": 1})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = env
        .call(
            "PUT",
            "/connections/conn_nobody000000000000000000/alerts",
            Some(json!({"url": "https://a.example"})),
        )
        .await;
    assert_eq!(s, 404);
    // Neither the connection nor its health shows the secret.
    let (_, c) = env
        .call("GET", &format!("/connections/{}", env.conn), None)
        .await;
    let h = env.health().await;
    for shown in [c.to_string(), h.to_string()] {
        assert!(!shown.contains(&env.alert_secret), "{shown}");
    }
    assert!(h["alerts_url"].as_str().unwrap().ends_with("/alerts"));
    let debug = format!("{:?}", env.store.get_connection(&env.conn).await.unwrap());
    assert!(!debug.contains(&env.alert_secret), "{debug}");
}

/// A manual connection's endpoint is its user's: an upgrade changes the
/// version of the connector's own calls and makes no endpoint.
#[tokio::test]
async fn a_manual_connections_upgrade_changes_only_its_calls() {
    let env = env(200).await;
    let (s, c) = env
        .call(
            "POST",
            "/connections",
            Some(json!({"name": "Manual", "api_key": "sk_test_manual",
                        "webhook": {"mode": "manual", "secret": "whsec_manualsecret"}})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap();
    let (s, out) = env
        .call(
            "PUT",
            &format!("/connections/{id}/api-version"),
            Some(json!({"api_version": "2024-06-20"})),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["api_version"], "2024-06-20");
    assert_eq!(env.stripe.endpoints().len(), 1, "only the managed one's");
    let h = env
        .call("GET", &format!("/connections/{id}/health"), None)
        .await
        .1;
    assert_eq!(h["endpoint"]["status"], "manual", "{h}");
}

/// An alert target that is down when a run dies: the notice waits on the
/// connection, health says so, and the next pass delivers it once, with
/// the id and payload of the first try.
#[tokio::test]
async fn an_alert_the_target_did_not_take_is_delivered_by_the_next_pass() {
    let env = env(400).await;
    env.alerts.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&env.alerts)
        .await;
    let e = env
        .stripe
        .event("evt_waits", "invoice.created", T0 + 10, "in_w");
    env.deliver(&e).await;
    env.run_all().await;
    let tried = env.alerts.received_requests().await.unwrap();
    assert_eq!(
        u32::try_from(tried.len()).unwrap(),
        connector_core::service::alerts::ATTEMPTS
    );
    let id = tried[0].headers.get("webhook-id").unwrap().clone();
    let body = tried[0].body.clone();
    assert!(
        tried
            .iter()
            .all(|r| r.headers.get("webhook-id") == Some(&id) && r.body == body)
    );
    let h = env.health().await;
    assert_eq!(h["alerts_waiting"], 1, "{h}");
    assert_eq!(h["status"], "attention");

    // The target is back: the next pass delivers it, once.
    env.alerts.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&env.alerts)
        .await;
    env.clock.set(T0 + 300);
    env.pass().await;
    env.clock.set(T0 + 600);
    env.pass().await;
    let dead = env.alerts_of("run.dead").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let delivered = env.alerts.received_requests().await.unwrap();
    assert_eq!(delivered[0].headers.get("webhook-id"), Some(&id));
    assert_eq!(delivered[0].body, body, "the same payload as the first try");
    assert_eq!(env.health().await["alerts_waiting"], 0);
}

/// Two containers keeping notices at once (the target down): both wait,
/// neither write loses the other's; the next pass delivers both.
#[tokio::test]
async fn notices_kept_by_two_containers_at_once_both_wait_and_arrive() {
    use connector_core::service::alerts;
    let env = env(200).await;
    env.alerts.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&env.alerts)
        .await;
    let other = env.second_app();
    let c = env.store.get_connection(&env.conn).await.unwrap().unwrap();
    let (a, b) = tokio::join!(
        alerts::notify(&env.app, &c, alerts::RUN_DEAD, "evt_a/wf_a", json!({})),
        alerts::notify(&other, &c, alerts::RUN_DEAD, "evt_b/wf_b", json!({})),
    );
    assert!(!a && !b);
    assert_eq!(env.health().await["alerts_waiting"], 2);
    env.alerts.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&env.alerts)
        .await;
    env.clock.set(T0 + 300);
    env.pass().await;
    assert_eq!(env.alerts_of("run.dead").await.len(), 2);
    assert_eq!(env.health().await["alerts_waiting"], 0);
}
