//! Least privilege, checked against template.yaml:
//! - every route but the Stripe webhook needs IAM auth;
//! - every policy names the connector's own table, index, secrets or queue,
//!   never `*`, and only connections-api may write secrets;
//! - each function is granted exactly the AWS calls its code makes: its
//!   handler runs its scenarios against moto through SDK clients that record
//!   every call, and the recorded (action, resource) pairs must equal the
//!   pairs its policy grants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use connector_core::adapters::dynamo::{DynamoStore, create_table};
use connector_core::adapters::memory::FixedClock;
use connector_core::adapters::sqs::SqsQueue;
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::lambda::{process_stream, reconcile_tick, scheduler_tick};
use connector_core::model::StoredEvent;
use connector_core::webhook::sign_header;
use connector_testkit::recorder::Recorder;
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PREFIX: &str = "lp-test/";
const KEY: &str = "sk_test_51LeastPrivilegeKey";
const HOST: &str = "abc123defg.execute-api.us-east-1.amazonaws.com";

fn template() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
        .expect("template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

fn functions(t: &Yaml) -> BTreeMap<String, Yaml> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, r)| (k.as_str().expect("logical id").to_string(), r.clone()))
        .collect()
}

/// The resources a policy statement names, in the test's vocabulary.
fn resource_names(r: &Yaml) -> Vec<String> {
    match r {
        Yaml::Sequence(items) => items.iter().flat_map(resource_names).collect(),
        Yaml::Tagged(tagged) => {
            let value = tagged.value.as_str().unwrap_or_default();
            match (tagged.tag.to_string().as_str(), value) {
                ("!GetAtt", "Table.Arn") => vec!["table".into()],
                ("!Sub", "${Table.Arn}/index/gsi1") => vec!["table/index/gsi1".into()],
                ("!Sub", "${Table.Arn}/index/gsi2") => vec!["table/index/gsi2".into()],
                ("!Sub", v) if v.ends_with(":secret:${SecretPrefix}*") => {
                    vec!["secret-prefix".into()]
                }
                ("!GetAtt", "FanoutFailures.Arn") => vec!["fanout-failures-queue".into()],
                ("!GetAtt", "RunQueue.Arn") => vec!["run-queue".into()],
                (tag, v) => vec![format!("unexpected {tag} {v}")],
            }
        }
        other => vec![format!("unexpected {other:?}")],
    }
}

/// (action, resource) pairs a function's policies grant.
fn granted(f: &Yaml) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    for policy in f["Properties"]["Policies"].as_sequence().expect("Policies") {
        let statements = policy["Statement"]
            .as_sequence()
            .unwrap_or_else(|| panic!("only inline statements, not {policy:?}"));
        for s in statements {
            assert_eq!(s["Effect"].as_str(), Some("Allow"));
            let actions: Vec<&str> = match &s["Action"] {
                Yaml::Sequence(a) => a.iter().map(|a| a.as_str().expect("action")).collect(),
                Yaml::String(a) => vec![a.as_str()],
                other => panic!("Action {other:?}"),
            };
            for resource in resource_names(&s["Resource"]) {
                for action in &actions {
                    pairs.insert((action.to_string(), resource.clone()));
                }
            }
        }
    }
    pairs
}

fn binary(f: &Yaml) -> String {
    f["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .expect("Binary")
        .to_string()
}

#[test]
fn every_route_but_the_webhook_needs_iam_auth() {
    let t = template();
    let api = &t["Resources"]["HttpApi"]["Properties"]["Auth"];
    assert_eq!(api["DefaultAuthorizer"].as_str(), Some("AWS_IAM"));
    assert_eq!(api["EnableIamAuthorizer"].as_bool(), Some(true));
    let mut routes = 0;
    let mut public = Vec::new();
    for (name, f) in functions(&t) {
        let Some(events) = f["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, e) in events {
            if e["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            routes += 1;
            let p = &e["Properties"];
            match &p["ApiId"] {
                Yaml::Tagged(t) => assert_eq!(
                    (t.tag.to_string().as_str(), t.value.as_str()),
                    ("!Ref", Some("HttpApi")),
                    "{name}: every route is on the one HttpApi"
                ),
                other => panic!("{name}: ApiId {other:?}"),
            }
            let authorizer = p["Auth"]["Authorizer"].as_str();
            assert!(
                authorizer.is_none() || authorizer == Some("NONE") || authorizer == Some("AWS_IAM"),
                "{name}: {authorizer:?}"
            );
            if authorizer == Some("NONE") {
                public.push(format!(
                    "{} {}",
                    p["Method"].as_str().unwrap_or_default(),
                    p["Path"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    assert!(routes > 20, "{routes} routes");
    assert_eq!(public, vec!["POST /webhooks/{connection_id}"]);
}

#[test]
fn policies_name_only_the_connectors_own_resources() {
    let t = template();
    for (name, f) in functions(&t) {
        for (action, resource) in granted(&f) {
            let fits = match action.split_once(':').map(|(service, _)| service) {
                Some("dynamodb") => {
                    resource == "table"
                        || resource == "table/index/gsi1"
                        || resource == "table/index/gsi2"
                }
                Some("secretsmanager") => resource == "secret-prefix",
                Some("sqs") => resource == "fanout-failures-queue" || resource == "run-queue",
                _ => false,
            };
            assert!(fits, "{name}: {action} on {resource}");
        }
        let writes_secrets = granted(&f)
            .iter()
            .any(|(a, _)| a.starts_with("secretsmanager:") && a != "secretsmanager:GetSecretValue");
        // The reconciler stores the secret of an endpoint it had to recreate.
        assert_eq!(
            writes_secrets,
            name == "ConnectionsApiFunction" || name == "ReconcilerFunction",
            "{name}: only connections-api and the reconciler write secrets"
        );
    }
}

// ---- what each function's code calls, recorded against moto ----

struct Env {
    app: App,
    /// What a fresh process of any function starts from.
    parts: (
        Config,
        aws_sdk_dynamodb::Client,
        aws_sdk_secretsmanager::Client,
    ),
    recorder: Recorder,
    table: String,
    stripe: MockServer,
    target: MockServer,
    /// The run queue on moto, its URL, and a poller acting as the event
    /// source mapping (its calls are the Lambda service's, not recorded).
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    poller: connector_testkit::sqs::Poller,
}

async fn env() -> Env {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is set by infra/test.sh (moto server): run the tests with it");
    assert!(endpoint.starts_with("http://127.0.0.1:"));
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("lp-{}", uuid::Uuid::new_v4().simple());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("table on moto");
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "acct_lp", "object": "account"})),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "we_lp", "object": "webhook_endpoint", "secret": "whsec_fromstripelp"}),
        ))
        .mount(&stripe)
        .await;
    Mock::given(path_regex("^/v1/webhook_endpoints/we_lp$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "we_lp", "deleted": true})),
        )
        .mount(&stripe)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "obj_lp", "object": "customer", "status": "open", "data": [], "has_more": false}),
        ))
        .mount(&stripe)
        .await;
    let target = MockServer::start().await;
    let (base, table_name) = (stripe.uri(), table.clone());
    let config = Config::from_lookup(|k| match k {
        "STRIPE_API_BASE" => Some(base.clone()),
        "TABLE_NAME" => Some(table_name.clone()),
        "SECRET_PREFIX" => Some(PREFIX.to_string()),
        // The target is a local mock.
        "CONNECTOR_ALLOW_PRIVATE_TARGETS" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    let recorder = Recorder::default();
    let (dynamo, secrets) = recorder.clients(&sdk);
    let sqs = recorder.sqs_client(&sdk);
    let (queue_url, _) = connector_testkit::sqs::create_run_queue(
        &aws_sdk_sqs::Client::new(&sdk),
        &format!("lp-runs-{}", uuid::Uuid::new_v4().simple()),
        30,
        6,
    )
    .await;
    let app = App::aws_clients(config.clone(), dynamo.clone(), secrets.clone())
        .unwrap()
        .with_queue(Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone())));
    let poller = connector_testkit::sqs::Poller {
        client: aws_sdk_sqs::Client::new(&sdk),
        url: queue_url.clone(),
        batch: 10,
        visibility: None,
    };
    Env {
        app,
        parts: (config, dynamo, secrets),
        recorder,
        table,
        stripe,
        target,
        sqs,
        queue_url,
        poller,
    }
}

impl Env {
    /// A cold start: a new process of the next function, with empty caches.
    fn cold_start(&mut self) {
        let (config, dynamo, secrets) = self.parts.clone();
        let clock = self.app.clock.clone();
        self.app = App::aws_clients(config, dynamo, secrets)
            .unwrap()
            .with_queue(Arc::new(SqsQueue::new(
                self.sqs.clone(),
                self.queue_url.clone(),
            )));
        self.app.clock = clock;
    }

    async fn call(
        &self,
        routes: Routes,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .body(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let resp = api::handle(&self.app, req, routes).await;
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        )
    }

    async fn webhook(&self, conn: &str, body: &str, secret: &str) -> (u16, Value) {
        let req = http::Request::post(format!("/webhooks/{conn}"))
            .header("host", HOST)
            .header(
                "stripe-signature",
                sign_header(body.as_bytes(), secret, self.app.clock.now()),
            )
            .body(Bytes::from(body.to_string()))
            .unwrap();
        let resp = api::handle(&self.app, req, Routes::Ingest).await;
        (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        )
    }

    /// The (action, resource) pairs recorded since the last call.
    fn calls(&self) -> BTreeSet<(String, String)> {
        self.recorder
            .take()
            .into_iter()
            .map(|c| {
                let resource = if c.action.starts_with("secretsmanager:") {
                    assert!(c.resource.starts_with(PREFIX), "{c:?}");
                    "secret-prefix".to_string()
                } else if c.action.starts_with("sqs:") {
                    assert_eq!(c.resource, self.queue_url, "{c:?}");
                    "run-queue".to_string()
                } else {
                    c.resource.replacen(&self.table, "table", 1)
                };
                (c.action, resource)
            })
            .collect()
    }
}

fn event_body(id: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2023-08-16", "type": "invoice.created",
           "created": 1_800_000_000, "livemode": false, "data": {"object": object}})
    .to_string()
}

fn stream_batch(event: &StoredEvent) -> aws_lambda_events::event::dynamodb::Event {
    let image: serde_dynamo::Item = DynamoStore::event_item(event).into();
    serde_json::from_value(json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {"NewImage": image, "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"
    }]}))
    .unwrap()
}

/// Runs every function's scenarios in turn; answers what each called.
async fn recorded() -> (BTreeMap<&'static str, BTreeSet<(String, String)>>, Env) {
    let mut env = env().await;
    let mut seen = BTreeMap::new();
    const SECRET: &str = "whsec_leastprivilege0000000000";

    // connections-api: the whole lifecycle of connections and workflows.
    let c = Routes::Connections;
    let (s, conn) = env
        .call(
            c,
            "POST",
            "/connections",
            Some(json!({"name": "LP", "api_key": KEY})),
        )
        .await;
    assert_eq!(s, 201, "{conn}");
    let id = conn["id"].as_str().unwrap().to_string();
    let (s, manual) = env
        .call(c, "POST", "/connections", Some(json!({"name": "LP manual", "api_key": KEY, "webhook": {"mode": "manual", "secret": SECRET}})))
        .await;
    assert_eq!(s, 201, "{manual}");
    let manual = manual["id"].as_str().unwrap().to_string();
    for (m, uri, body) in [
        ("GET", "/catalog".to_string(), None),
        ("GET", "/connections".into(), None),
        ("GET", format!("/connections/{id}"), None),
        (
            "PUT",
            format!("/connections/{id}/api-key"),
            Some(json!({"api_key": KEY})),
        ),
        (
            "PUT",
            format!("/connections/{manual}/webhook-secret"),
            Some(json!({"secret": SECRET})),
        ),
        (
            "PUT",
            format!("/connections/{id}/triggers"),
            Some(json!({"triggers": ["invoice.created"]})),
        ),
        ("GET", format!("/connections/{id}/events"), None),
        ("GET", format!("/connections/{id}/runs"), None),
    ] {
        let (s, out) = env.call(c, m, &uri, body).await;
        assert!(s < 300, "{m} {uri}: {s} {out}");
    }
    let (s, wf) = env
        .call(c, "POST", &format!("/connections/{manual}/workflows"),
              Some(json!({"trigger": "invoice.created", "target": {"url": format!("{}/hook", env.target.uri())},
                          "steps": [{"action": "invoices.finalize", "input": {"id": "{{event.data.object.id}}"}}]})))
        .await;
    assert_eq!(s, 201, "{wf}");
    let wf = wf["id"].as_str().unwrap().to_string();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&env.target)
        .await;
    for (m, uri, body) in [
        ("GET", format!("/connections/{manual}/workflows"), None),
        ("GET", format!("/connections/{manual}/workflows/{wf}"), None),
        (
            "PATCH",
            format!("/connections/{manual}/workflows/{wf}"),
            Some(json!({"enabled": false})),
        ),
        (
            "PATCH",
            format!("/connections/{manual}/workflows/{wf}"),
            Some(json!({"enabled": true})),
        ),
        (
            "POST",
            format!("/connections/{manual}/workflows/{wf}/test"),
            Some(json!({})),
        ),
    ] {
        let (s, out) = env.call(c, m, &uri, body).await;
        assert!(s < 300, "{m} {uri}: {s} {out}");
    }
    let connections_calls = env.calls();

    env.cold_start();
    // webhook-ingest: a new event, its redelivery, an unknown connection.
    let body = event_body(
        "evt_1LeastPrivilege",
        json!({"id": "in_1LeastPrivilege", "object": "invoice"}),
    );
    assert_eq!(
        env.webhook(&manual, &body, SECRET).await.1["duplicate"],
        false
    );
    assert_eq!(
        env.webhook(&manual, &body, SECRET).await.1["duplicate"],
        true
    );
    assert_eq!(
        env.webhook("conn_nobodyhome00000000000000", &body, SECRET)
            .await
            .0,
        404
    );
    seen.insert("webhook-ingest", env.calls());

    env.cold_start();
    // Back in connections-api: the stored event, its replay, then deletions.
    for (m, uri) in [
        (
            "GET",
            format!("/connections/{manual}/events/evt_1LeastPrivilege"),
        ),
        (
            "POST",
            format!("/connections/{manual}/events/evt_1LeastPrivilege/replay"),
        ),
    ] {
        let (s, out) = env.call(c, m, &uri, Some(json!({}))).await;
        assert!(s < 300, "{m} {uri}: {s} {out}");
    }
    let mut connections_calls2 = env.calls();
    // The test's own reads are not any function's.
    let stored = env
        .app
        .events
        .get_event(&manual, "evt_1LeastPrivilege")
        .await
        .unwrap()
        .unwrap();
    let body2 = event_body(
        "evt_1LeastPrivilegeRetry",
        json!({"id": "in_1LeastPrivilege2", "object": "invoice"}),
    );
    assert_eq!(env.webhook(&manual, &body2, SECRET).await.0, 200);
    let failing = env
        .app
        .events
        .get_event(&manual, "evt_1LeastPrivilegeRetry")
        .await
        .unwrap()
        .unwrap();
    env.calls();

    env.cold_start();
    // trigger-fanout: the stream record of the new event, twice (a
    // redelivered batch), and another event: runs made and queued.
    for _ in 0..2 {
        let out = process_stream(&env.app, stream_batch(&stored)).await;
        assert!(out.batch_item_failures.is_empty());
    }
    let out = process_stream(&env.app, stream_batch(&failing)).await;
    assert!(out.batch_item_failures.is_empty());
    seen.insert("trigger-fanout", env.calls());

    env.cold_start();
    // run-executor: the queued runs (the replays too); the target answers
    // the first delivery and fails the others, whose runs are queued for
    // their retry.
    env.target.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .mount(&env.target)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&env.target)
        .await;
    let executor = Arc::new(env.app.clone());
    let polled = env.poller.drain(&executor, 0).await;
    assert!(polled.received >= 3 && polled.failed == 0, "{polled:?}");
    seen.insert("run-executor", env.calls());

    env.cold_start();
    // retry-scheduler: an hour on, the retries are due: queued, not executed.
    let later = env.app.clock.now() + 3600;
    env.app.clock = Arc::new(FixedClock::at(later));
    let ticked = scheduler_tick(&env.app).await.unwrap();
    assert!(ticked["queued_runs"].as_u64().unwrap() >= 1, "{ticked}");
    seen.insert("retry-scheduler", env.calls());

    env.cold_start();
    // reconciler: the managed connection's endpoint was deleted in Stripe
    // (recreated: its new secret stored) and an event never arrived
    // (stored, recovered, with the pass's record and the Stripe budget).
    Mock::given(method("GET"))
        .and(path("/v1/webhook_endpoints/we_lp"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"type": "invalid_request_error", "message": "No such webhook endpoint"}}),
        ))
        .with_priority(1)
        .mount(&env.stripe)
        .await;
    let missed = serde_json::from_str::<Value>(&event_body(
        "evt_1LeastPrivilegeMissed",
        json!({"id": "in_1LeastPrivilege3", "object": "invoice"}),
    ))
    .unwrap();
    let mut missed = missed;
    missed["created"] = json!(later - 600);
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "list", "data": [missed], "has_more": false})),
        )
        .with_priority(1)
        .mount(&env.stripe)
        .await;
    let ticked = reconcile_tick(&env.app).await.unwrap();
    // Both connections subscribe to invoice.created: each stores its copy.
    assert_eq!(ticked["recovered_events"], 2, "{ticked}");
    assert_eq!(ticked["failed"], 0, "{ticked}");
    seen.insert("reconciler", env.calls());

    // Every action group: one action on the connection's key.
    for group in connector_core::catalog::GROUPS {
        env.cold_start();
        let (name, text) = integration_tests::action_fixture(group);
        let text = text.replace("conn_fixture000000000000000001", &manual);
        let req = lambda_http::request::from_str(&text).unwrap();
        let resp = api::handle(&env.app, req, Routes::Actions(group)).await;
        assert_eq!(resp.status().as_u16(), 200, "{name}: {:?}", resp.body());
        seen.insert(group_binary(group), env.calls());
    }

    env.cold_start();
    for (m, uri) in [
        ("DELETE", format!("/connections/{manual}/workflows/{wf}")),
        ("DELETE", format!("/connections/{manual}")),
        ("DELETE", format!("/connections/{id}")),
    ] {
        let (s, out) = env.call(c, m, &uri, None).await;
        assert!(s < 300, "{m} {uri}: {s} {out}");
    }
    connections_calls2.extend(env.calls());
    connections_calls2.extend(connections_calls);
    seen.insert("connections-api", connections_calls2);
    (seen, env)
}

fn group_binary(group: &str) -> &'static str {
    match group {
        "customers" => "actions-customers",
        "products" => "actions-products",
        "prices" => "actions-prices",
        "subscriptions" => "actions-subscriptions",
        "invoices" => "actions-invoices",
        "coupons" => "actions-coupons",
        "payments" => "actions-payments",
        "events" => "actions-events",
        other => panic!("unknown group {other}"),
    }
}

/// What the Lambda service itself does with a function's role, not its code.
fn service_needs(binary: &str) -> BTreeSet<(String, String)> {
    match binary {
        // The stream event source's on-failure destination.
        "trigger-fanout" => {
            BTreeSet::from([("sqs:SendMessage".into(), "fanout-failures-queue".into())])
        }
        _ => BTreeSet::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_is_granted_exactly_the_aws_calls_its_code_makes() {
    let (seen, _env) = recorded().await;
    let t = template();
    let mut checked = 0;
    for (name, f) in functions(&t) {
        let bin = binary(&f);
        let calls = seen
            .get(bin.as_str())
            .unwrap_or_else(|| panic!("no scenario exercised {bin}"));
        let mut needed = calls.clone();
        needed.extend(service_needs(&bin));
        let granted = granted(&f);
        let missing: Vec<_> = needed.difference(&granted).collect();
        let unused: Vec<_> = granted.difference(&needed).collect();
        assert!(
            missing.is_empty() && unused.is_empty(),
            "{name} ({bin}): called but not granted {missing:?}; granted but never called {unused:?}"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        seen.len(),
        "every exercised function is in the template"
    );
    assert_eq!(checked, 14);
}

/// Every function logs to its own log group, made by the stack (so it is
/// deleted with it) with the `LogRetentionDays` retention, in JSON, at the
/// `LogLevel` the code follows; log groups need no grant beyond the role's
/// basic execution policy.
#[test]
fn every_function_logs_to_its_own_log_group_with_retention() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let mut groups = BTreeSet::new();
    for (name, f) in functions(&t) {
        let logging = &f["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{name}");
        let level = match &logging["ApplicationLogLevel"] {
            Yaml::Tagged(t) => t.value.as_str().unwrap_or_default().to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(level, "LogLevel", "{name}");
        let group = match &logging["LogGroup"] {
            Yaml::Tagged(t) if t.tag == "!Ref" => t.value.as_str().unwrap().to_string(),
            other => panic!("{name}: LogGroup {other:?}"),
        };
        let resource = &resources[Yaml::String(group.clone())];
        assert_eq!(
            resource["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{name}"
        );
        let retention = match &resource["Properties"]["RetentionInDays"] {
            Yaml::Tagged(t) => t.value.as_str().unwrap_or_default().to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(retention, "LogRetentionDays", "{name}");
        assert_eq!(
            resource["DeletionPolicy"].as_str(),
            Some("Delete"),
            "{name}"
        );
        assert!(groups.insert(group), "{name} shares its log group");
    }
    assert_eq!(groups.len(), 14);
}

/// Every queue has an alarm on messages waiting in it (the fan-out failure
/// queue and the run dead-letter queue must stay empty; the run queue is
/// watched through the executor's errors and throttles), every alarm
/// notifies `AlarmTopicArn` when one is given, and no function claims
/// X-Ray tracing it does not do (no spans are sent: `Tracing` is off).
#[test]
fn queues_are_alarmed_alarms_notify_and_no_tracing_without_spans() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let of_type = |ty: &str| -> Vec<(String, Yaml)> {
        resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(ty))
            .map(|(k, r)| (k.as_str().unwrap().to_string(), r.clone()))
            .collect()
    };
    let alarms = of_type("AWS::CloudWatch::Alarm");
    let watched: BTreeSet<String> = alarms
        .iter()
        .flat_map(|(_, a)| {
            a["Properties"]["Dimensions"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|d| d["Name"].as_str() == Some("QueueName"))
        .filter_map(|d| match &d["Value"] {
            Yaml::Tagged(t) => t
                .value
                .as_str()
                .map(|v| v.trim_end_matches(".QueueName").to_string()),
            _ => None,
        })
        .collect();
    for (queue, _) in of_type("AWS::SQS::Queue") {
        if queue == "RunQueue" {
            continue;
        }
        assert!(watched.contains(&queue), "no alarm on {queue}");
    }
    assert!(alarms.len() >= 5, "{}", alarms.len());
    for (name, a) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            let Yaml::Tagged(t) = &a["Properties"][actions] else {
                panic!("{name}: {actions} is not conditional on the topic");
            };
            assert_eq!(t.tag, "!If", "{name}");
            assert_eq!(t.value[0].as_str(), Some("HasAlarmTopic"), "{name}");
        }
    }
    // The error and throttle alarms sum every function of the stack.
    for alarm in ["FunctionErrorsAlarm", "FunctionThrottlesAlarm"] {
        let metrics = t["Resources"][alarm]["Properties"]["Metrics"]
            .as_sequence()
            .unwrap();
        assert_eq!(metrics.len(), functions(&t).len() + 1, "{alarm}");
    }
    assert!(t["Globals"]["Function"]["Tracing"].is_null());
    for (name, f) in functions(&t) {
        assert!(f["Properties"]["Tracing"].is_null(), "{name}");
    }
}

/// The public webhook route is throttled at the API, from parameters.
#[test]
fn the_public_webhook_route_is_throttled() {
    let t = template();
    let settings =
        &t["Resources"]["HttpApi"]["Properties"]["RouteSettings"]["POST /webhooks/{connection_id}"];
    for (key, param) in [
        ("ThrottlingBurstLimit", "WebhookBurstLimit"),
        ("ThrottlingRateLimit", "WebhookRateLimit"),
    ] {
        let Yaml::Tagged(r) = &settings[key] else {
            panic!("{key}: {settings:?}");
        };
        assert_eq!((r.tag == "!Ref", r.value.as_str()), (true, Some(param)));
        assert!(
            t["Parameters"][param]["Default"].as_u64().is_some(),
            "{param}"
        );
    }
}

/// The metrics the code emits are on the stack's dashboard, in the
/// namespace the functions are given; an alarm fires on any dead or stuck
/// run the executor reports.
#[test]
fn the_dashboard_shows_every_metric_and_lost_runs_are_alarmed() {
    let t = template();
    let namespace = &t["Globals"]["Function"]["Environment"]["Variables"]["METRICS_NAMESPACE"];
    let Yaml::Tagged(ns) = namespace else {
        panic!("METRICS_NAMESPACE: {namespace:?}");
    };
    let ns = ns.value.as_str().unwrap().to_string();
    assert!(
        ns.contains("${AWS::StackName}"),
        "one namespace a stack: {ns}"
    );
    let body = &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"];
    let body_text = body[0].as_str().unwrap();
    assert_eq!(
        body[1]["Ns"], *namespace,
        "the dashboard reads the functions' namespace"
    );
    for name in connector_core::metrics::NAMES {
        assert!(
            body_text.contains(&format!("MetricName=\\\"{name}\\\"")),
            "{name} is not on the dashboard"
        );
    }
    let alarm = &t["Resources"]["DeadRunsAlarm"]["Properties"];
    let watched: BTreeSet<String> = alarm["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let metric = &m["MetricStat"]["Metric"];
            (metric["Namespace"] == *namespace && metric["MetricName"].as_str() == Some("Runs"))
                .then_some(metric)
        })
        .map(|metric| {
            let dims = metric["Dimensions"].as_sequence().unwrap();
            let function = dims
                .iter()
                .find(|d| d["Name"].as_str() == Some("Function"))
                .unwrap();
            let Yaml::Tagged(f) = &function["Value"] else {
                panic!("{function:?}")
            };
            assert_eq!(f.value.as_str(), Some("RunExecutorFunction"));
            dims.iter()
                .find(|d| d["Name"].as_str() == Some("Outcome"))
                .and_then(|d| d["Value"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    let lost: BTreeSet<String> = connector_core::metrics::LOST_RUN_OUTCOMES
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert_eq!(watched, lost);
    assert_eq!(alarm["Threshold"].as_u64(), Some(1));

    // Lost events (a gap past Stripe's 30 days) alarm, wherever the pass
    // that found them ran: the schedule or a request.
    let gaps = &t["Resources"]["EventGapsAlarm"]["Properties"];
    let from: BTreeSet<String> = gaps["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let metric = &m["MetricStat"]["Metric"];
            (metric["Namespace"] == *namespace
                && metric["MetricName"].as_str() == Some("EventGaps"))
            .then(|| {
                let Yaml::Tagged(f) = &metric["Dimensions"][0]["Value"] else {
                    panic!("{metric:?}")
                };
                f.value.as_str().unwrap().to_string()
            })
        })
        .collect();
    assert_eq!(
        from,
        BTreeSet::from(["ReconcilerFunction".into(), "ConnectionsApiFunction".into()])
    );
    assert_eq!(gaps["Threshold"].as_u64(), Some(1));
}

/// `sam build` builds every function from one `cargo lambda build`: each
/// function's make target copies its own binary out of it, and the build
/// names every binary of the template.
#[test]
fn one_cargo_lambda_build_serves_every_function() {
    let t = template();
    let makefile = include_str!("../../Makefile");
    let binaries_line = makefile
        .lines()
        .find(|l| l.starts_with("BINARIES := "))
        .unwrap();
    let built: BTreeSet<&str> = binaries_line["BINARIES := ".len()..]
        .split_whitespace()
        .collect();
    let functions = functions(&t);
    assert_eq!(built.len(), functions.len());
    for (name, f) in &functions {
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("makefile"),
            "{name}"
        );
        let bin = binary(f);
        assert!(built.contains(bin.as_str()), "{bin} is not built");
        let target = format!(
            "build-{name}: lambdas\n\tcp target/lambda/{bin}/bootstrap $(ARTIFACTS_DIR)/bootstrap\n"
        );
        assert!(
            makefile.contains(&target),
            "no make target for {name}:\n{target}"
        );
    }
    assert!(makefile.contains("cargo lambda build --release --arm64"));
    let samconfig = include_str!("../../samconfig.toml");
    assert!(samconfig.contains("build_in_source = true"));
}
