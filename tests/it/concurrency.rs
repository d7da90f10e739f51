//! Concurrent changes of one connection through two apps sharing one
//! DynamoDB and one Secrets Manager (moto), as two warm Lambda containers of
//! connections-api would run them: every request succeeds, nothing one of
//! them wrote is lost, and the account gets exactly one endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use connector_core::adapters::dynamo::create_table;
use connector_core::api::{self, Routes};
use connector_core::app::App;
use connector_core::config::Config;
use connector_core::ports::SecretStore;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk_test_51ConcurrencyKey";

/// Stripe's endpoint creation: a new endpoint and secret each time.
struct NewEndpoint(Arc<AtomicUsize>);

impl Respond for NewEndpoint {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(
            json!({"id": format!("we_{n}"), "object": "webhook_endpoint", "secret": format!("whsec_endpoint{n}")}),
        )
    }
}

struct Env {
    apps: [App; 2],
    stripe: MockServer,
    created: Arc<AtomicUsize>,
}

async fn env() -> Env {
    let stripe = MockServer::start().await;
    let created = Arc::new(AtomicUsize::new(0));
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "acct_conc"})))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/webhook_endpoints"))
        .respond_with(NewEndpoint(created.clone()))
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/webhook_endpoints/we_[0-9]+$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "webhook_endpoint"})),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/v1/webhook_endpoints/we_[0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"deleted": true})))
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/webhook_endpoints"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&stripe)
        .await;
    Env {
        apps: two_apps(&stripe.uri()).await,
        stripe,
        created,
    }
}

/// Two apps on a new table and secret prefix (moto), talking to Stripe at
/// `stripe_base`: each with its own SDK clients and its own secrets cache,
/// as two containers have.
async fn two_apps(stripe_base: &str) -> [App; 2] {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("conc-{}", uuid::Uuid::new_v4().simple());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .unwrap();
    let prefix = format!("conc-{}/", uuid::Uuid::new_v4().simple());
    let app = || {
        let config = Config::from_lookup(|k| match k {
            "STRIPE_API_BASE" => Some(stripe_base.to_string()),
            "TABLE_NAME" => Some(table.clone()),
            "SECRET_PREFIX" => Some(prefix.clone()),
            "PUBLIC_BASE_URL" => Some("https://conc.example.com".into()),
            _ => None,
        })
        .unwrap();
        App::aws_clients(
            config,
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_secretsmanager::Client::new(&sdk),
        )
        .unwrap()
    };
    [app(), app()]
}

async fn call(app: &App, m: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(m)
        .uri(uri)
        .body(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default())
        .unwrap();
    let resp = api::handle(app, req, Routes::Connections).await;
    (
        resp.status().as_u16(),
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    )
}

impl Env {
    async fn connect(&self, webhook: Value) -> String {
        let (status, out) = call(
            &self.apps[0],
            "POST",
            "/connections",
            Some(json!({"name": "Conc", "api_key": KEY, "webhook": webhook})),
        )
        .await;
        assert_eq!(status, 201, "{out}");
        out["id"].as_str().unwrap().to_string()
    }

    /// The enabled events of the endpoint's last creation or update.
    async fn endpoint_events(&self) -> Vec<String> {
        let reqs = self.stripe.received_requests().await.unwrap();
        let last = reqs
            .iter()
            .rev()
            .find(|r| {
                r.method.as_str() == "POST" && r.url.path().starts_with("/v1/webhook_endpoints")
            })
            .unwrap();
        form_urlencoded::parse(&last.body)
            .filter(|(k, _)| k == "enabled_events[]")
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

/// 2× PUT triggers and 2× POST workflows at once, through both apps: all
/// succeed, Stripe is asked for exactly one endpoint, and it ends up with
/// every workflow's trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_make_exactly_one_endpoint_and_lose_nothing() {
    let env = env().await;
    for round in 0..3 {
        let before = env.created.load(Ordering::SeqCst);
        let conn = env.connect(json!({"mode": "managed"})).await;
        let triggers = format!("/connections/{conn}/triggers");
        let workflows = format!("/connections/{conn}/workflows");
        let [a, b] = &env.apps;
        let (t1, t2, w1, w2) = tokio::join!(
            call(
                a,
                "PUT",
                &triggers,
                Some(json!({"triggers": ["invoice.created"]}))
            ),
            call(
                b,
                "PUT",
                &triggers,
                Some(json!({"triggers": ["invoice.created", "customer.created"]}))
            ),
            call(
                a,
                "POST",
                &workflows,
                Some(
                    json!({"trigger": "invoice.paid", "target": {"url": "https://hooks.example.com/a"}})
                )
            ),
            call(
                b,
                "POST",
                &workflows,
                Some(
                    json!({"trigger": "product.created", "target": {"url": "https://hooks.example.com/b"}})
                )
            ),
        );
        for (status, out) in [&t1, &t2] {
            assert_eq!(*status, 200, "round {round}: {out}");
        }
        for (status, out) in [&w1, &w2] {
            assert_eq!(*status, 201, "round {round}: {out}");
        }
        assert_eq!(
            env.created.load(Ordering::SeqCst) - before,
            1,
            "round {round}: exactly one endpoint created"
        );
        let stored = a.connections.get_connection(&conn).await.unwrap().unwrap();
        let endpoint = stored.webhook_endpoint_id.clone().unwrap();
        assert_eq!(endpoint, format!("we_{}", before + 1), "round {round}");
        let events = env.endpoint_events().await;
        for needed in ["invoice.created", "invoice.paid", "product.created"] {
            assert!(
                events.iter().any(|e| e == needed),
                "round {round}: {needed} missing from {events:?}"
            );
        }
        // The endpoint's secret is the one that verifies, fresh from the store.
        let secrets = a.secrets.get_secrets_fresh(&conn).await.unwrap().unwrap();
        let verifying: Vec<&str> = secrets
            .webhook_secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert_eq!(verifying, [format!("whsec_endpoint{}", before + 1)]);
        // Deleting the connection removes the one endpoint.
        let (status, out) = call(b, "DELETE", &format!("/connections/{conn}"), None).await;
        assert_eq!(
            (status, &out["webhook_endpoint_deleted"]),
            (200, &json!(true)),
            "{out}"
        );
    }
}

/// 20 workflows with targets created at once through both apps: every one
/// keeps the signing secret it answered (they used to overwrite each
/// other's in the connection's one secrets document).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_workflows_all_keep_their_target_secrets() {
    let env = env().await;
    let conn = env
        .connect(json!({"mode": "manual", "secret": "whsec_manual"}))
        .await;
    let uri = format!("/connections/{conn}/workflows");
    let made = futures::future::join_all((0..20).map(|i| {
        let app = &env.apps[i % 2];
        let uri = uri.clone();
        async move {
            call(app, "POST", &uri, Some(json!({"trigger": "customer.created", "target": {"url": format!("https://hooks.example.com/{i}")}}))).await
        }
    }))
    .await;
    for (status, out) in &made {
        assert_eq!(*status, 201, "{out}");
        let id = out["id"].as_str().unwrap();
        let stored = env.apps[0]
            .workflows
            .get_workflow(&conn, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.target.unwrap().secret.unwrap().expose(),
            out["target_secret"].as_str().unwrap()
        );
    }
}

/// Dropping old webhook secrets (a leaked one, say) is never undone by a
/// change computed at the same time, or from what another container had
/// cached: a revocation racing an addition ends with the leaked secret gone
/// either way. A key rotation made meanwhile is kept too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_webhook_secret_stays_revoked_across_containers() {
    let env = env().await;
    let [a, b] = &env.apps;
    for round in 0..10 {
        let conn = env
            .connect(json!({"mode": "manual", "secret": "whsec_leaked"}))
            .await;
        // Container b has the connection's secrets in its cache.
        let (status, _) = call(b, "GET", &format!("/connections/{conn}"), None).await;
        assert_eq!(status, 200);
        let secret_uri = format!("/connections/{conn}/webhook-secret");
        let key_uri = format!("/connections/{conn}/api-key");
        let (revoke, add, rotate) = tokio::join!(
            call(
                a,
                "PUT",
                &secret_uri,
                Some(json!({"secret": "whsec_fresh", "keep_previous": false}))
            ),
            call(
                b,
                "PUT",
                &secret_uri,
                Some(json!({"secret": "whsec_second", "keep_previous": true}))
            ),
            call(
                b,
                "PUT",
                &key_uri,
                Some(json!({"api_key": "sk_test_51RotatedKey"}))
            ),
        );
        assert_eq!(
            (revoke.0, add.0, rotate.0),
            (200, 200, 200),
            "{revoke:?} {add:?} {rotate:?}"
        );
        let secrets = a.secrets.get_secrets_fresh(&conn).await.unwrap().unwrap();
        let verifying: Vec<&str> = secrets
            .webhook_secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert!(
            verifying == ["whsec_second", "whsec_fresh"] || verifying == ["whsec_fresh"],
            "round {round}: {verifying:?}: the leaked one must stay gone"
        );
        assert_eq!(
            secrets.api_key.expose_secret(),
            "sk_test_51RotatedKey",
            "round {round}"
        );
    }
}

/// Issue 14's guards on the AWS path: DynamoDB and Secrets Manager (moto)
/// through the engine trigger-fanout runs. An older event for an object
/// already acted on is skipped, the workflow's own write does not start it
/// again, and steps read the object re-read from Stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_events_and_own_writes_on_the_aws_path() {
    use connector_core::model::StoredEvent;
    use connector_core::workflow::engine::{Engine, Outcome};
    use connector_core::workflow::run::RunStatus;
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/v1/subscriptions/sub_9"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"id": "sub_9", "object": "subscription", "status": "past_due"}),
            ),
        )
        .mount(&env.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions/sub_9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "sub_9"})))
        .mount(&env.stripe)
        .await;
    let conn = env
        .connect(json!({"mode": "manual", "secret": "whsec_aws"}))
        .await;
    let app = &env.apps[0];
    let (status, wf) = call(
        app,
        "POST",
        &format!("/connections/{conn}/workflows"),
        Some(json!({"trigger": "customer.subscription.updated", "fetch_latest": true, "skip_stale": true,
                    "steps": [{"action": "subscriptions.update", "input": {"id": "{{event.data.object.id}}", "metadata": {"status_now": "{{current.status}}"}}}]})),
    )
    .await;
    assert_eq!(status, 201, "{wf}");
    let wf_id = wf["id"].as_str().unwrap().to_string();
    let event = |id: &str, created: i64, request: Value| {
        StoredEvent {
        connection_id: conn.clone(),
        event_id: id.into(),
        event_type: "customer.subscription.updated".into(),
        created,
        livemode: false,
        api_version: None,
        account: None,
        body: Some(json!({"id": id, "type": "customer.subscription.updated", "created": created, "request": request,
                          "data": {"object": {"id": "sub_9", "object": "subscription", "status": "active"}}}).to_string()),
        body_omitted: false,
        received_at: created,
        expires_at: created + 86_400,
        recovered: false,
    }
    };
    let engine = Engine::new(app, "aws-test");
    let newer = event("evt_aws_newer", 2_000, Value::Null);
    app.events.insert_event(&newer).await.unwrap();
    let queued = engine.fan_out(&newer).await.unwrap();
    assert_eq!(
        engine.execute(&queued[0]).await.unwrap(),
        Outcome::Finished(RunStatus::Succeeded)
    );
    let run = app
        .runs
        .get_run(&conn, "evt_aws_newer", &wf_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.steps[0].input["metadata"]["status_now"], "past_due",
        "read back from Stripe"
    );
    let key = connector_core::workflow::step_idempotency_key("evt_aws_newer", &wf_id, 0);

    let older = event("evt_aws_older", 1_000, Value::Null);
    app.events.insert_event(&older).await.unwrap();
    let queued = engine.fan_out(&older).await.unwrap();
    engine.execute(&queued[0]).await.unwrap();
    let run = app
        .runs
        .get_run(&conn, "evt_aws_older", &wf_id)
        .await
        .unwrap()
        .unwrap();
    assert!(run.skipped.unwrap_or_default().starts_with("stale"));
    assert!(run.steps.is_empty());

    let echo = event(
        "evt_aws_echo",
        2_000,
        json!({"id": "req_1", "idempotency_key": key}),
    );
    app.events.insert_event(&echo).await.unwrap();
    assert!(
        engine.fan_out(&echo).await.unwrap().is_empty(),
        "its own write does not start it"
    );
}

/// The reconciler on two containers at once, an API-version upgrade
/// through one of them and a live delivery through the other, on DynamoDB
/// and Secrets Manager (moto) against a fake Stripe with state: each
/// missed event is stored once and counted once, the upgrade ends with one
/// endpoint at the new version, and the record agrees with Stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcilers_and_an_upgrade_on_two_containers_agree_with_stripe() {
    use connector_core::adapters::memory::FixedClock;
    use connector_core::ports::{Clock, EventQuery};
    use connector_testkit::fake_stripe::FakeStripe;

    let stripe = FakeStripe::start().await;
    let now = 1_900_000_000;
    let clock = Arc::new(FixedClock::at(now));
    let [mut a, mut b] = two_apps(&stripe.uri()).await;
    a.clock = clock.clone();
    b.clock = clock.clone();
    let (s, c) = call(
        &a,
        "POST",
        "/connections",
        Some(json!({"name": "Conc", "api_key": KEY})),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let (s, out) = call(
        &b,
        "PUT",
        &format!("/connections/{id}/triggers"),
        Some(json!({"triggers": ["invoice.created"]})),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    // Five events Stripe could not deliver.
    for i in 0..5 {
        stripe.event(
            &format!("evt_conc{i}"),
            "invoice.created",
            now + 10 + i,
            "in_c",
        );
    }
    clock.set(now + 600);
    let live = stripe.event("evt_conclive", "invoice.created", now + 590, "in_l");
    let deliver = async {
        for (body, sig) in stripe.deliveries(&live, clock.now()) {
            let req = http::Request::post(format!("/webhooks/{id}"))
                .header("stripe-signature", sig)
                .body(Bytes::from(body))
                .unwrap();
            let resp = api::handle(&b, req, Routes::Ingest).await;
            assert_eq!(resp.status().as_u16(), 200);
        }
    };
    let upgrade_uri = format!("/connections/{id}/api-version");
    let upgrade = call(
        &a,
        "PUT",
        &upgrade_uri,
        Some(json!({"api_version": "2024-06-20"})),
    );
    use connector_core::service::reconcile;
    let (ra, rb, (s, up), ()) = tokio::join!(
        reconcile::connection(&a, &id),
        reconcile::connection(&b, &id),
        upgrade,
        deliver,
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(s, 200, "{up}");
    assert!(ra.error.is_none() && rb.error.is_none(), "{ra:?} {rb:?}");
    assert_eq!(ra.recovered + rb.recovered, 5, "{ra:?} {rb:?}");

    let events = a
        .events
        .list_events(
            &id,
            &EventQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 6);
    assert_eq!(events.iter().filter(|e| e.recovered).count(), 5);
    assert!(
        !events
            .iter()
            .find(|e| e.event_id == "evt_conclive")
            .unwrap()
            .recovered
    );

    let stored = a.connections.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(stored.reconcile.recovered_total, 5);
    assert_eq!(stored.api_version, "2024-06-20");
    assert!(stored.upgrade.is_none());
    let endpoints = stripe.endpoints();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(Some(&endpoints[0].id), stored.webhook_endpoint_id.as_ref());
    assert_eq!(endpoints[0].api_version, "2024-06-20");
    assert_eq!(endpoints[0].enabled_events, ["invoice.created"]);
    let secrets = b.secrets.get_secrets_fresh(&id).await.unwrap().unwrap();
    assert_eq!(
        secrets.webhook_secrets[0].expose_secret(),
        endpoints[0].secret
    );
}
