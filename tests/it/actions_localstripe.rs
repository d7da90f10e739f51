//! Actions through the dev server's HTTP route against localstripe, where it
//! implements the call: the object really changes in a stateful Stripe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use connector_core::model::{Connection, ConnectionSecrets, WebhookMode};
use integration_tests::{Running, localstripe, start};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk_test_localstripeactions";

async fn connected() -> (tempfile::TempDir, Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path().to_path_buf(), &localstripe()).await;
    // localstripe has no GET /v1/account, so the connection is put in place directly.
    let id = connector_core::ids::new_id("conn_");
    server
        .app
        .secrets
        .put_secrets(
            &id,
            &ConnectionSecrets {
                target_secrets: Default::default(),
                api_key: SecretString::from(KEY.to_string()),
                webhook_secrets: vec![],
            },
        )
        .await
        .unwrap();
    server
        .app
        .connections
        .insert_connection(&Connection {
            id: id.clone(),
            name: "localstripe".into(),
            account_id: "acct_local".into(),
            livemode: false,
            api_version: "2023-08-16".into(),
            webhook_mode: WebhookMode::Manual,
            webhook_endpoint_id: None,
            triggers: vec![],
            created_at: 1,
            updated_at: 1,
            version: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    (dir, server, id)
}

async fn act(server: &Running, conn: &str, action: &str, input: Value) -> (u16, Value) {
    let (group, op) = action.split_once('.').unwrap();
    server
        .call(
            Method::POST,
            &format!("/connections/{conn}/actions/{group}/{op}"),
            Some(input),
        )
        .await
}

async fn ok(server: &Running, conn: &str, action: &str, input: Value) -> Value {
    let (status, out) = act(server, conn, action, input.clone()).await;
    assert_eq!(status, 200, "{action} {input}: {out}");
    out
}

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
async fn customers_round_trip() {
    let (_dir, server, conn) = connected().await;
    let email = format!("round-{}@example.com", unique());
    let created = ok(
        &server,
        &conn,
        "customers.create",
        json!({"email": email, "name": "Ada", "metadata": {"crm": "1"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let found = ok(&server, &conn, "customers.find", json!({"id": id})).await;
    assert_eq!(found["email"], email.as_str());
    let by_email = ok(&server, &conn, "customers.find", json!({"email": email})).await;
    assert_eq!(by_email["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_email["data"][0]["id"], id.as_str());
    assert_eq!(by_email["has_more"], false);
    let updated = ok(
        &server,
        &conn,
        "customers.update",
        json!({"id": id, "name": "Ada Lovelace"}),
    )
    .await;
    assert_eq!(updated["name"], "Ada Lovelace");
    assert_eq!(
        ok(&server, &conn, "customers.find", json!({"id": id})).await["name"],
        "Ada Lovelace"
    );
    assert_eq!(
        ok(&server, &conn, "customers.delete", json!({"id": id})).await["deleted"],
        true
    );
    let (status, out) = act(&server, &conn, "customers.find", json!({"id": id})).await;
    assert_eq!(status, 404, "{out}");
    assert!(out["error"]["stripe"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_round_trip() {
    let (_dir, server, conn) = connected().await;
    let created = ok(
        &server,
        &conn,
        "products.create",
        json!({"name": "Pro plan", "metadata": {"tier": "pro"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        ok(
            &server,
            &conn,
            "products.update",
            json!({"id": id, "name": "Pro plan v2"})
        )
        .await["name"],
        "Pro plan v2"
    );
    assert_eq!(
        ok(&server, &conn, "products.find", json!({"id": id})).await["name"],
        "Pro plan v2"
    );
    assert_eq!(
        ok(&server, &conn, "products.delete", json!({"id": id})).await["deleted"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupons_round_trip_with_an_explicit_id() {
    let (_dir, server, conn) = connected().await;
    let code = format!("SAVE{}", unique());
    let created = ok(
        &server,
        &conn,
        "coupons.create",
        json!({"id": code, "percent_off": 15, "duration": "once"}),
    )
    .await;
    assert_eq!(created["id"], code.as_str());
    assert_eq!(
        ok(&server, &conn, "coupons.find", json!({"id": code})).await["percent_off"],
        15.0
    );
    let (status, out) = act(
        &server,
        &conn,
        "coupons.update",
        json!({"id": code, "percent_off": 20}),
    )
    .await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(
        ok(&server, &conn, "coupons.delete", json!({"id": code})).await["deleted"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_intents_round_trip_including_cancel() {
    let (_dir, server, conn) = connected().await;
    let customer = ok(
        &server,
        &conn,
        "customers.create",
        json!({"email": "pi@example.com"}),
    )
    .await;
    let pi = ok(
        &server,
        &conn,
        "payments.create",
        json!({"amount": 1999, "currency": "usd", "customer": customer["id"]}),
    )
    .await;
    let id = pi["id"].as_str().unwrap().to_string();
    assert_eq!(pi["amount"], 1999);
    let updated = ok(
        &server,
        &conn,
        "payments.update",
        json!({"id": id, "metadata": {"order": "77"}}),
    )
    .await;
    assert_eq!(updated["metadata"]["order"], "77");
    assert_eq!(
        ok(&server, &conn, "payments.find", json!({"id": id})).await["id"],
        id.as_str()
    );
    assert_eq!(
        ok(&server, &conn, "payments.cancel", json!({"id": id})).await["status"],
        "canceled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_made_from_plans_can_be_found_changed_and_canceled() {
    let (_dir, server, conn) = connected().await;
    let stripe = connector_core::stripe::StripeClient::new(
        connector_core::stripe::http_client(),
        std::sync::Arc::new(connector_core::stripe::StripeSettings {
            api_base: localstripe(),
            ..Default::default()
        }),
        SecretString::from(KEY.to_string()),
    );
    // localstripe subscribes to plans (items[0][plan]), which the action does not send; set up directly.
    let customer = ok(
        &server,
        &conn,
        "customers.create",
        json!({"email": "sub@example.com"}),
    )
    .await;
    let cus = customer["id"].as_str().unwrap();
    let product = ok(&server, &conn, "products.create", json!({"name": "Seat"})).await;
    let plan = format!("plan{}", unique());
    stripe.post("/v1/plans", &json!({"id": plan, "amount": 500, "currency": "usd", "interval": "month", "product": product["id"]}), None).await.unwrap();
    let pm = stripe
        .post("/v1/payment_methods", &json!({"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}), None)
        .await
        .unwrap();
    stripe
        .post(
            &format!("/v1/payment_methods/{}/attach", pm["id"].as_str().unwrap()),
            &json!({"customer": cus}),
            None,
        )
        .await
        .unwrap();
    stripe
        .post(
            &format!("/v1/customers/{cus}"),
            &json!({"invoice_settings": {"default_payment_method": pm["id"]}}),
            None,
        )
        .await
        .unwrap();
    let sub = stripe
        .post(
            "/v1/subscriptions",
            &json!({"customer": cus, "items": [{"plan": plan}]}),
            None,
        )
        .await
        .unwrap();
    let sub_id = sub["id"].as_str().unwrap().to_string();

    let found = ok(&server, &conn, "subscriptions.find", json!({"id": sub_id})).await;
    assert_eq!(found["customer"], cus);
    let item = found["items"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ok(&server, &conn, "subscriptions.find", json!({"id": item})).await["id"],
        item.as_str()
    );
    let later = ok(
        &server,
        &conn,
        "subscriptions.cancel",
        json!({"id": sub_id, "at_period_end": true}),
    )
    .await;
    assert_eq!(later["cancel_at_period_end"], true);
    // The subscription's first invoice is no draft: it takes a new
    // description, and the connector refuses a change only drafts take.
    let invoice = found["latest_invoice"].as_str().map(str::to_string);
    if let Some(invoice) = invoice {
        let got = ok(&server, &conn, "invoices.find", json!({"id": invoice})).await;
        assert_ne!(got["status"], "draft");
        let described = ok(
            &server,
            &conn,
            "invoices.update",
            json!({"id": invoice, "description": "x"}),
        )
        .await;
        assert_eq!(described["description"], "x");
        let (status, out) = act(
            &server,
            &conn,
            "invoices.update",
            json!({"id": invoice, "collection_method": "send_invoice"}),
        )
        .await;
        assert_eq!(
            (status, out["error"]["type"].as_str()),
            (409, Some("invoice_not_draft")),
            "{out}"
        );
    }
    let now = ok(
        &server,
        &conn,
        "subscriptions.cancel",
        json!({"id": sub_id}),
    )
    .await;
    assert_eq!(now["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_can_be_retrieved() {
    let (_dir, server, conn) = connected().await;
    ok(
        &server,
        &conn,
        "customers.create",
        json!({"email": "evt@example.com"}),
    )
    .await;
    let stripe = connector_core::stripe::StripeClient::new(
        connector_core::stripe::http_client(),
        std::sync::Arc::new(connector_core::stripe::StripeSettings {
            api_base: localstripe(),
            ..Default::default()
        }),
        SecretString::from(KEY.to_string()),
    );
    let events = stripe
        .get("/v1/events", &json!({"limit": 1}))
        .await
        .unwrap();
    let id = events["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        ok(&server, &conn, "events.retrieve", json!({"id": id})).await["id"],
        id.as_str()
    );
}

/// `capture_method: manual` has its way through: confirm authorizes the
/// card, capture takes part of it (localstripe confirms only a payment
/// method given at creation; the exact requests with one given at confirm
/// are in functions/core/tests/it/actions.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_capture_payment_is_confirmed_then_captured() {
    let (_dir, server, conn) = connected().await;
    // A card, made in localstripe directly (the connector has no action for it).
    let pm: Value = reqwest::Client::new()
        .post(format!("{}/v1/payment_methods", localstripe()))
        .basic_auth("sk_test_localstripe123", Some(""))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(connector_core::stripe::encode::encode(&json!({
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        })))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pi = ok(
        &server,
        &conn,
        "payments.create",
        json!({"amount": 5000, "currency": "usd", "payment_method": pm["id"], "capture_method": "manual"}),
    )
    .await;
    let id = pi["id"].as_str().unwrap().to_string();
    let confirmed = ok(&server, &conn, "payments.confirm", json!({"id": id})).await;
    assert_eq!(confirmed["status"], "requires_capture", "{confirmed}");
    let captured = ok(
        &server,
        &conn,
        "payments.capture",
        json!({"id": id, "amount_to_capture": 3000}),
    )
    .await;
    assert_eq!(captured["status"], "succeeded", "{captured}");
}

/// A find action returns related objects whole when asked to expand them
/// (localstripe has no prices: their requests are checked against the
/// spec and a mock instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_actions_expand_related_objects() {
    let (_dir, server, conn) = connected().await;
    let customer = ok(
        &server,
        &conn,
        "customers.create",
        json!({"name": "Expanded"}),
    )
    .await;
    let payment = ok(
        &server,
        &conn,
        "payments.create",
        json!({"amount": 2000, "currency": "usd", "customer": customer["id"], "payment_method_types": ["card"]}),
    )
    .await;
    let plain = ok(
        &server,
        &conn,
        "payments.find",
        json!({"id": payment["id"]}),
    )
    .await;
    assert_eq!(plain["customer"], customer["id"]);
    let expanded = ok(
        &server,
        &conn,
        "payments.find",
        json!({"id": payment["id"], "expand": ["customer"]}),
    )
    .await;
    assert_eq!(expanded["customer"]["id"], customer["id"], "{expanded}");
    assert_eq!(expanded["customer"]["name"], "Expanded");
    // A path the payment intent cannot expand is refused before Stripe.
    let (status, out) = act(
        &server,
        &conn,
        "payments.find",
        json!({"id": payment["id"], "expand": ["charges"]}),
    )
    .await;
    assert_eq!(
        (status, out["error"]["param"].as_str()),
        (400, Some("expand[0]"))
    );
}

/// `"all": true` pages a list through for the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_customers_with_an_email_are_found_across_pages() {
    let (_dir, server, conn) = connected().await;
    let email = format!("many-{}@example.com", unique());
    for _ in 0..3 {
        ok(&server, &conn, "customers.create", json!({"email": email})).await;
    }
    let one_page = ok(
        &server,
        &conn,
        "customers.find",
        json!({"email": email, "limit": 2}),
    )
    .await;
    assert_eq!(one_page["data"].as_array().unwrap().len(), 2);
    assert_eq!(one_page["has_more"], true);
    let all = ok(
        &server,
        &conn,
        "customers.find",
        json!({"email": email, "all": true}),
    )
    .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(all["has_more"], false);
}
