//! End to end on the dev server: connect an account, let localstripe send
//! real signed webhooks, see each event stored once; redeliveries, auth and
//! restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::time::Duration;

use connector_core::ports::EventQuery;
use connector_core::stripe::{StripeClient, StripeSettings, http_client};
use connector_core::webhook::sign_header;
use integration_tests::{TOKEN, account_mock, localstripe, start};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

const SECRET: &str = "whsec_devserverlocalstripe";

fn unique() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstripe_events_are_stored_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_localstripe").await;
    let server = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let (status, conn) = server
        .call(
            Method::POST,
            "/connections",
            Some(json!({"name": "Local", "api_key": "sk_test_localstripe123", "webhook": {"mode": "manual", "secret": SECRET}})),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    let conn_id = conn["id"].as_str().unwrap().to_string();

    // localstripe signs and posts its events to the connection's webhook URL.
    let hook = reqwest::Client::new()
        .post(format!("{}/_config/webhooks/{}", localstripe(), unique()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(connector_core::stripe::encode::encode(
            &json!({"url": conn["webhook_url"], "secret": SECRET, "events": ["customer.created"]}),
        ))
        .send()
        .await
        .unwrap();
    assert!(hook.status().is_success(), "{}", hook.text().await.unwrap());

    let stripe = StripeClient::new(
        http_client(),
        std::sync::Arc::new(StripeSettings {
            api_base: localstripe(),
            ..Default::default()
        }),
        SecretString::from("sk_test_localstripe123".to_string()),
    );
    let mut customers = Vec::new();
    for i in 0..3 {
        let c = stripe
            .post(
                "/v1/customers",
                &json!({"email": format!("e2e-{i}-{}@example.com", unique())}),
                None,
            )
            .await
            .unwrap();
        customers.push(c["id"].as_str().unwrap().to_string());
    }

    // localstripe waits a second before it sends; poll the API until all three arrived.
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..100 {
        let (status, list) = server
            .call(
                Method::GET,
                &format!("/connections/{conn_id}/events?type=customer.created&limit=100"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        seen.clear();
        for e in list["data"].as_array().unwrap() {
            let (_, one) = server
                .call(
                    Method::GET,
                    &format!(
                        "/connections/{conn_id}/events/{}",
                        e["id"].as_str().unwrap()
                    ),
                    None,
                )
                .await;
            seen.push(
                one["event"]["data"]["object"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if customers.iter().all(|c| seen.contains(c)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &customers {
        assert_eq!(
            seen.iter().filter(|s| *s == c).count(),
            1,
            "customer.created for {c} stored exactly once; saw {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_redeliveries_store_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_redeliver").await;
    let server = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let (_, conn) = server
        .call(
            Method::POST,
            "/connections",
            Some(json!({"name": "Redeliver", "api_key": "sk_test_redeliver123", "webhook": {"mode": "manual", "secret": SECRET}})),
        )
        .await;
    let conn_id = conn["id"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = json!({"id": format!("evt_{}", unique()), "object": "event", "type": "invoice.created", "created": now, "livemode": false,
                      "data": {"object": {"id": "in_1", "object": "invoice"}}})
        .to_string();
    let signature = sign_header(body.as_bytes(), SECRET, now);
    let server = std::sync::Arc::new(server);
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (server, conn_id, body, signature) = (
                server.clone(),
                conn_id.clone(),
                body.clone(),
                signature.clone(),
            );
            tokio::spawn(async move {
                server
                    .post_webhook(&conn_id, body.as_bytes(), &signature)
                    .await
            })
        })
        .collect();
    let mut fresh = 0;
    for h in handles {
        let (status, out) = h.await.unwrap();
        assert_eq!(status, 200, "{out}");
        if out["duplicate"] == false {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one delivery is new");
    let stored = server
        .app
        .events
        .list_events(
            &conn_id,
            &EventQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
}

#[tokio::test]
async fn every_route_but_health_and_webhooks_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_auth").await;
    let server = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let http = reqwest::Client::new();
    for (path, auth) in [
        ("/connections", None),
        ("/connections", Some("Bearer wrong")),
        ("/catalog", Some(TOKEN)),
    ] {
        let mut req = http.get(server.url(path));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 401, "{path} {auth:?}: {body}");
        assert_eq!(body["error"]["type"], "unauthorized");
    }
    let (status, body) = server.call(Method::GET, "/catalog", None).await;
    assert_eq!(status, 200, "{body}");
    let health = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, body) = server
        .post_webhook("conn_unknown", b"{}", "t=1,v1=00")
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("not_found"))
    );
    assert!(
        stripe_mock.received_requests().await.unwrap().is_empty(),
        "nothing reached Stripe"
    );
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_big").await;
    let server = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let big = vec![b' '; 2 * 1024 * 1024];
    let resp = reqwest::Client::new()
        .post(server.url("/connections"))
        .bearer_auth(TOKEN)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let resp = reqwest::Client::new()
        .post(server.url("/connections"))
        .bearer_auth(TOKEN)
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_json");
    assert!(
        server
            .app
            .connections
            .list_connections()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn nothing_is_lost_when_the_dev_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_restart").await;
    let first = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let (_, conn) = first
        .call(
            Method::POST,
            "/connections",
            Some(json!({"name": "Restart", "api_key": "sk_test_restart123", "webhook": {"mode": "manual", "secret": SECRET}})),
        )
        .await;
    let conn_id = conn["id"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = json!({"id": "evt_restart1", "object": "event", "type": "customer.created", "created": now, "livemode": false}).to_string();
    let sig = sign_header(body.as_bytes(), SECRET, now);
    assert_eq!(
        first.post_webhook(&conn_id, body.as_bytes(), &sig).await.1["duplicate"],
        false
    );
    drop(first);

    let second = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let (status, got) = second
        .call(Method::GET, &format!("/connections/{conn_id}"), None)
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["webhook"]["secrets"], 1, "the secret survived too");
    assert_eq!(
        second.post_webhook(&conn_id, body.as_bytes(), &sig).await.1["duplicate"],
        true
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secrets.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localstripe_event_runs_its_workflow_once_and_changes_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_e2e").await;
    // The dev server reaches localstripe for actions; only GET /v1/account is mocked.
    let server = start(dir.path().to_path_buf(), &localstripe()).await;
    let id = connector_core::ids::new_id("conn_");
    let key = "sk_test_e2eworkflow";
    server
        .app
        .secrets
        .put_secrets(
            &id,
            &connector_core::model::ConnectionSecrets {
                api_key: SecretString::from(key.to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                target_secrets: Default::default(),
            },
        )
        .await
        .unwrap();
    server
        .app
        .connections
        .insert_connection(&connector_core::model::Connection {
            id: id.clone(),
            name: "e2e".into(),
            account_id: "acct_e2e".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: connector_core::model::WebhookMode::Manual,
            webhook_endpoint_id: None,
            triggers: vec![],
            created_at: 1,
            updated_at: 1,
            version: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    drop(stripe_mock);
    let marker = unique();
    let (status, wf) = server
        .call(
            Method::POST,
            &format!("/connections/{id}/workflows"),
            Some(json!({
                "trigger": "customer.created",
                "filter": {"event.data.object.description": marker},
                "steps": [{"action": "customers.update", "input": {"id": "{{event.data.object.id}}", "metadata": {"greeted": "yes", "run": "{{event.id}}"}}}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{wf}");
    let hook = reqwest::Client::new()
        .post(format!("{}/_config/webhooks/{}", localstripe(), unique()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(connector_core::stripe::encode::encode(
            &json!({"url": server.url(&format!("/webhooks/{id}")), "secret": SECRET, "events": ["customer.created"]}),
        ))
        .send()
        .await
        .unwrap();
    assert!(hook.status().is_success());

    let stripe = StripeClient::new(
        http_client(),
        std::sync::Arc::new(StripeSettings {
            api_base: localstripe(),
            ..Default::default()
        }),
        SecretString::from(key.to_string()),
    );
    let customer = stripe
        .post(
            "/v1/customers",
            &json!({"email": "e2e@example.com", "description": marker}),
            None,
        )
        .await
        .unwrap();
    let cus = customer["id"].as_str().unwrap().to_string();
    let mut updated = Value::Null;
    for _ in 0..100 {
        updated = stripe
            .get(&format!("/v1/customers/{cus}"), &json!({}))
            .await
            .unwrap();
        if updated["metadata"]["greeted"] == "yes" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        updated["metadata"]["greeted"], "yes",
        "the workflow changed the customer in localstripe"
    );
    // The run is saved as succeeded just after its step's Stripe call returns.
    let mut runs = Value::Null;
    for _ in 0..100 {
        runs = server
            .call(Method::GET, &format!("/connections/{id}/runs"), None)
            .await
            .1;
        let done = runs["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["workflow_id"] == wf["id"] && r["status"] == "succeeded");
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ours: Vec<&Value> = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["workflow_id"] == wf["id"])
        .collect();
    assert_eq!(ours.len(), 1, "one run: {runs}");
    assert_eq!(ours[0]["status"], "succeeded", "{runs}");
    assert_eq!(ours[0]["steps"][0]["input"]["id"], cus.as_str());
    assert_eq!(updated["metadata"]["run"], ours[0]["event_id"]);
}

/// Issue 14's guards through the dev server, end to end over HTTP: a
/// workflow's own write does not start it again, an older event arriving
/// after a newer one is skipped (`skip_stale`), and the target gets the
/// current object (`fetch_latest`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_and_stale_events_do_not_run_and_the_latest_state_is_delivered() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_latest").await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"id": "sub_1", "object": "subscription", "status": "canceled"}),
            ),
        )
        .mount(&stripe_mock)
        .await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&target)
        .await;
    let server = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let (_, conn) = server
        .call(
            Method::POST,
            "/connections",
            Some(json!({"name": "Latest", "api_key": "sk_test_latest123", "webhook": {"mode": "manual", "secret": SECRET}})),
        )
        .await;
    let conn_id = conn["id"].as_str().unwrap().to_string();
    let (status, wf) = server
        .call(
            Method::POST,
            &format!("/connections/{conn_id}/workflows"),
            Some(json!({"trigger": "customer.subscription.updated", "target": {"url": format!("{}/in", target.uri())},
                        "fetch_latest": true, "skip_stale": true})),
        )
        .await;
    assert_eq!(status, 201, "{wf}");
    let wf_id = wf["id"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let own_key = connector_core::workflow::step_idempotency_key("evt_x", &wf_id, 0);
    let send = |id: String, created: i64, request: Value| {
        let body = json!({"id": id, "object": "event", "type": "customer.subscription.updated", "created": created, "livemode": false,
                          "request": request, "data": {"object": {"id": "sub_1", "object": "subscription", "status": "active"}}})
            .to_string();
        let signature = sign_header(body.as_bytes(), SECRET, now);
        let server = &server;
        let conn_id = conn_id.clone();
        async move {
            server
                .post_webhook(&conn_id, body.as_bytes(), &signature)
                .await
        }
    };
    let newer = format!("evt_newer{}", unique());
    let older = format!("evt_older{}", unique());
    let echo = format!("evt_echo{}", unique());
    assert_eq!(send(newer.clone(), now, Value::Null).await.0, 200);
    // Wait for the newer one's run before the older one arrives.
    let runs = |event: String| {
        let server = &server;
        let conn_id = conn_id.clone();
        async move {
            server
                .call(
                    Method::GET,
                    &format!("/connections/{conn_id}/runs?event_id={event}"),
                    None,
                )
                .await
                .1["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let finished = |r: &Vec<Value>| r.first().is_some_and(|r| r["status"] == "succeeded");
    let mut done = false;
    for _ in 0..100 {
        if finished(&runs(newer.clone()).await) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the newer event's run finished");
    assert_eq!(send(older.clone(), now - 60, Value::Null).await.0, 200);
    assert_eq!(
        send(
            echo.clone(),
            now,
            json!({"id": "req_1", "idempotency_key": own_key})
        )
        .await
        .0,
        200
    );
    let mut older_run = Vec::new();
    for _ in 0..100 {
        older_run = runs(older.clone()).await;
        if finished(&older_run) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        older_run[0]["skipped"]
            .as_str()
            .unwrap_or_default()
            .starts_with("stale"),
        "{older_run:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        runs(echo).await.is_empty(),
        "its own write did not start it"
    );
    let delivered = target.received_requests().await.unwrap();
    assert_eq!(
        delivered.len(),
        1,
        "only the newer event reached the target"
    );
    let body: Value = serde_json::from_slice(&delivered[0].body).unwrap();
    assert_eq!(body["current"]["status"], "canceled");
    assert_eq!(body["event"]["id"], newer.as_str());
}

/// The dev server's fan-out survives a crash: an event stored by a process
/// that died before fanning it out (the outbox still owes it) gets all its
/// runs when the server starts again, and those runs go out at once, side
/// by side: a slow target does not hold up the event's other workflows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_a_crash_left_unfanned_gets_all_its_runs_after_a_restart() {
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let dir = tempfile::tempdir().unwrap();
    let stripe_mock = account_mock("acct_outbox").await;
    let first = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    let (_, conn) = first
        .call(
            Method::POST,
            "/connections",
            Some(json!({"name": "Outbox", "api_key": "sk_test_outbox123", "webhook": {"mode": "manual", "secret": SECRET}})),
        )
        .await;
    let conn_id = conn["id"].as_str().unwrap().to_string();
    let slow = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(3)))
        .mount(&slow)
        .await;
    let fast = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fast)
        .await;
    for url in [
        format!("{}/slow", slow.uri()),
        format!("{}/fast1", fast.uri()),
        format!("{}/fast2", fast.uri()),
    ] {
        let (status, wf) = first
            .call(
                Method::POST,
                &format!("/connections/{conn_id}/workflows"),
                Some(json!({"trigger": "customer.created", "target": {"url": url}})),
            )
            .await;
        assert_eq!(status, 201, "{wf}");
    }
    drop(first);

    // Ingest stored the event, then the process died before its fan-out.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    {
        let d = dir.path().display().to_string();
        let config = connector_core::config::Config::from_lookup(|k| {
            (k == "CONNECTOR_DATA_DIR").then(|| d.clone())
        })
        .unwrap();
        let store = connector_embedded::app(config).unwrap();
        let body = json!({"id": "evt_owed", "object": "event", "type": "customer.created", "created": now, "livemode": false, "data": {"object": {"id": "cus_1"}}});
        store
            .events
            .insert_event(&connector_core::model::StoredEvent {
                connection_id: conn_id.clone(),
                event_id: "evt_owed".into(),
                event_type: "customer.created".into(),
                created: now,
                livemode: false,
                api_version: None,
                account: None,
                body: Some(body.to_string()),
                body_omitted: false,
                received_at: now,
                expires_at: now + 86_400,
                recovered: false,
            })
            .await
            .unwrap();
    }

    let started = std::time::Instant::now();
    let second = start(dir.path().to_path_buf(), &stripe_mock.uri()).await;
    // Both fast targets get theirs while the slow one is still answering.
    while fast.received_requests().await.unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the fast targets waited for the slow one"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = loop {
        let (_, runs) = second
            .call(
                Method::GET,
                &format!("/connections/{conn_id}/runs?event_id=evt_owed"),
                None,
            )
            .await;
        let done = runs["data"]
            .as_array()
            .is_some_and(|r| r.len() == 3 && r.iter().all(|r| r["status"] == "succeeded"));
        if done {
            break runs;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(runs["data"].as_array().unwrap().len(), 3);
    assert_eq!(fast.received_requests().await.unwrap().len(), 2);
    assert_eq!(slow.received_requests().await.unwrap().len(), 1);
}

/// Stripe cannot reach 127.0.0.1: what it sent while the dev server was
/// stopped (or `stripe listen` was not running) is read from Stripe's
/// event list when the server starts, stored once, marked recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_server_catches_up_on_start_with_what_stripe_sent_meanwhile() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, ResponseTemplate};

    let dir = tempfile::tempdir().unwrap();
    let stripe = account_mock("acct_catchup").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let missed = json!({"id": "evt_whilestopped", "object": "event", "type": "customer.created",
        "created": now - 600, "livemode": false, "api_version": "2023-08-16",
        "data": {"object": {"id": "cus_whilestopped", "object": "customer"}}});
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .and(query_param("types[]", "customer.created"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "list", "data": [missed], "has_more": false})),
        )
        .mount(&stripe)
        .await;
    // The connection existed before the server stopped.
    let config = connector_core::config::Config::from_lookup(|k| match k {
        "STRIPE_API_BASE" => Some(stripe.uri()),
        "CONNECTOR_DATA_DIR" => Some(dir.path().display().to_string()),
        _ => None,
    })
    .unwrap();
    let app = connector_embedded::app(config).unwrap();
    let id = connector_core::ids::new_id("conn_");
    app.secrets
        .put_secrets(
            &id,
            &connector_core::model::ConnectionSecrets {
                api_key: SecretString::from("sk_test_catchup".to_string()),
                webhook_secrets: vec![SecretString::from(SECRET.to_string())],
                target_secrets: Default::default(),
            },
        )
        .await
        .unwrap();
    app.connections
        .insert_connection(&connector_core::model::Connection {
            id: id.clone(),
            name: "catch-up".into(),
            account_id: "acct_catchup".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: connector_core::model::WebhookMode::Manual,
            triggers: vec!["customer.created".into()],
            created_at: now - 3600,
            updated_at: now - 3600,
            ..Default::default()
        })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = integration_tests::serve(app, listener);
    let mut found = Value::Null;
    for _ in 0..100 {
        let (status, list) = server
            .call(Method::GET, &format!("/connections/{id}/events"), None)
            .await;
        assert_eq!(status, 200, "{list}");
        if let Some(e) = list["data"].as_array().and_then(|d| d.first()) {
            found = e.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found["id"], "evt_whilestopped", "caught up at start");
    assert_eq!(found["recovered"], true);
    let (_, health) = server
        .call(Method::GET, &format!("/connections/{id}/health"), None)
        .await;
    assert_eq!(health["reconcile"]["recovered_total"], 1, "{health}");
    assert_eq!(health["endpoint"]["status"], "manual");
}
