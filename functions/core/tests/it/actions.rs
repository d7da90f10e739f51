//! Every action: the exact Stripe request(s) it sends, a bad input that is
//! refused with nothing sent, what it may send checked against Stripe's
//! OpenAPI spec, and Stripe's refusals passed on with their meaning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use connector_core::actions::run;
use connector_core::catalog::{self, ACTIONS, Action, Kind, Plan, TRIGGERS};
use connector_core::http::ApiError;
use connector_core::stripe::{StripeClient, StripeSettings, http_client};
use http::StatusCode;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_test_actions123";

async fn stripe_answering(body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> StripeClient {
    StripeClient::new(
        http_client(),
        Arc::new(StripeSettings {
            api_base: server.uri(),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..StripeSettings::default()
        }),
        SecretString::from(KEY.to_string()),
    )
}

/// (method, path, body for POST or query otherwise)
type Sent = (String, String, String);

async fn sent(server: &MockServer) -> Vec<Sent> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let payload = if r.method.as_str() == "POST" {
                String::from_utf8(r.body.clone()).unwrap()
            } else {
                r.url.query().unwrap_or_default().to_string()
            };
            (r.method.to_string(), r.url.path().to_string(), payload)
        })
        .collect()
}

/// One Stripe mock per test, reset between cases: wiremock's drop blocks on
/// a lock, and a loop creating and dropping servers can deadlock on it.
struct Stripe {
    server: MockServer,
    client: StripeClient,
}

impl Stripe {
    async fn new() -> Self {
        let server = MockServer::start().await;
        let client = client(&server);
        Self { server, client }
    }

    async fn run(&self, key: &str, input: Value) -> (Result<Value, ApiError>, Vec<Sent>) {
        self.server.reset().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"id": "obj_1", "object": "thing", "status": "draft", "data": [], "has_more": false}),
            ))
            .mount(&self.server)
            .await;
        let action = catalog::action_by_key(key).unwrap();
        // As a caller sees it: the one mapping of ActionError to HTTP.
        let result = run(action, &input, &self.client, None)
            .await
            .map_err(ApiError::from);
        (result, sent(&self.server).await)
    }
}

fn s(m: &str, p: &str, b: &str) -> Sent {
    (m.to_string(), p.to_string(), b.to_string())
}

fn cases() -> Vec<(&'static str, Value, Vec<Sent>)> {
    vec![
        (
            "customers.create",
            json!({"email": "jenny@example.com", "name": "Jenny Rosen", "address": {"city": "Berlin", "country": "DE"}, "metadata": {"crm": "42"}}),
            vec![s(
                "POST",
                "/v1/customers",
                "name=Jenny+Rosen&email=jenny%40example.com&address[city]=Berlin&address[country]=DE&metadata[crm]=42",
            )],
        ),
        (
            "customers.update",
            json!({"id": "cus_123", "email": "new@example.com", "metadata": {"crm": ""}}),
            vec![s(
                "POST",
                "/v1/customers/cus_123",
                "email=new%40example.com&metadata[crm]=",
            )],
        ),
        (
            "customers.find",
            json!({"id": "cus_123"}),
            vec![s("GET", "/v1/customers/cus_123", "")],
        ),
        (
            "customers.find",
            json!({"id": "cus_123", "expand": ["default_source", "test_clock"]}),
            vec![s(
                "GET",
                "/v1/customers/cus_123",
                "expand[]=default_source&expand[]=test_clock",
            )],
        ),
        // A list expands inside its data.
        (
            "customers.find",
            json!({"email": "jenny@example.com", "expand": ["test_clock"]}),
            vec![s(
                "GET",
                "/v1/customers",
                "email=jenny%40example.com&limit=10&expand[]=data.test_clock",
            )],
        ),
        (
            "customers.find",
            json!({"email": "jenny@example.com"}),
            vec![s(
                "GET",
                "/v1/customers",
                "email=jenny%40example.com&limit=10",
            )],
        ),
        (
            "customers.delete",
            json!({"id": "cus_123"}),
            vec![s("DELETE", "/v1/customers/cus_123", "")],
        ),
        (
            "products.create",
            json!({"name": "Pro", "shippable": false, "url": "https://example.com/pro", "metadata": {"tier": "pro"}}),
            vec![s(
                "POST",
                "/v1/products",
                "name=Pro&shippable=false&url=https%3A%2F%2Fexample.com%2Fpro&metadata[tier]=pro",
            )],
        ),
        (
            "products.update",
            json!({"id": "prod_123", "active": false}),
            vec![s("POST", "/v1/products/prod_123", "active=false")],
        ),
        (
            "products.find",
            json!({"id": "prod_123"}),
            vec![s("GET", "/v1/products/prod_123", "")],
        ),
        (
            "products.search",
            json!({"active": true, "metadata": {"tier": "pro"}, "limit": 5}),
            vec![s(
                "GET",
                "/v1/products/search",
                "query=active%3A%22true%22+AND+metadata%5B%22tier%22%5D%3A%22pro%22&limit=5",
            )],
        ),
        (
            "products.delete",
            json!({"id": "prod_123"}),
            vec![s("DELETE", "/v1/products/prod_123", "")],
        ),
        (
            "prices.create",
            json!({"product": "prod_123", "currency": "usd", "unit_amount": 1500, "recurring": {"interval": "month", "interval_count": 3}, "lookup_key": "pro_quarterly"}),
            vec![s(
                "POST",
                "/v1/prices",
                "product=prod_123&currency=usd&unit_amount=1500&recurring[interval]=month&recurring[interval_count]=3&lookup_key=pro_quarterly",
            )],
        ),
        (
            "prices.create",
            json!({"product": "prod_123", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "graduated",
                   "tiers": [{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 400, "flat_amount": 100}],
                   "recurring": {"interval": "month", "usage_type": "metered", "aggregate_usage": "sum"}}),
            vec![s(
                "POST",
                "/v1/prices",
                "product=prod_123&currency=usd&recurring[interval]=month&recurring[usage_type]=metered&recurring[aggregate_usage]=sum&billing_scheme=tiered&tiers[0][up_to]=10&tiers[0][unit_amount]=500&tiers[1][up_to]=inf&tiers[1][unit_amount]=400&tiers[1][flat_amount]=100&tiers_mode=graduated",
            )],
        ),
        (
            "prices.create",
            json!({"product": "prod_123", "currency": "usd", "custom_unit_amount": {"enabled": true, "minimum": 500, "preset": 1000}}),
            vec![s(
                "POST",
                "/v1/prices",
                "product=prod_123&currency=usd&custom_unit_amount[enabled]=true&custom_unit_amount[minimum]=500&custom_unit_amount[preset]=1000",
            )],
        ),
        (
            "prices.update",
            json!({"id": "price_123", "nickname": "Quarterly"}),
            vec![s("POST", "/v1/prices/price_123", "nickname=Quarterly")],
        ),
        (
            "prices.find",
            json!({"id": "price_123"}),
            vec![s("GET", "/v1/prices/price_123", "")],
        ),
        (
            "prices.search",
            json!({"product": "prod_123", "type": "recurring"}),
            vec![s(
                "GET",
                "/v1/prices/search",
                "query=product%3A%22prod_123%22+AND+type%3A%22recurring%22&limit=10",
            )],
        ),
        (
            "prices.archive",
            json!({"id": "price_123"}),
            vec![s("POST", "/v1/prices/price_123", "active=false")],
        ),
        (
            "subscriptions.create",
            json!({"customer": "cus_123", "items": [{"price": "price_123", "quantity": 2}], "trial_period_days": 14}),
            vec![s(
                "POST",
                "/v1/subscriptions",
                "customer=cus_123&items[0][price]=price_123&items[0][quantity]=2&trial_period_days=14",
            )],
        ),
        (
            "subscriptions.create",
            json!({"customer": "cus_123", "items": [{"price": "price_123"}], "trial_end": "now",
                   "payment_behavior": "default_incomplete", "promotion_code": "promo_123"}),
            vec![s(
                "POST",
                "/v1/subscriptions",
                "customer=cus_123&items[0][price]=price_123&trial_end=now&payment_behavior=default_incomplete&promotion_code=promo_123",
            )],
        ),
        (
            "subscriptions.update",
            json!({"id": "sub_123", "items": [{"id": "si_123", "quantity": 5}], "proration_behavior": "none"}),
            vec![s(
                "POST",
                "/v1/subscriptions/sub_123",
                "items[0][id]=si_123&items[0][quantity]=5&proration_behavior=none",
            )],
        ),
        (
            "subscriptions.find",
            json!({"id": "sub_123"}),
            vec![s("GET", "/v1/subscriptions/sub_123", "")],
        ),
        (
            "subscriptions.find",
            json!({"id": "si_123"}),
            vec![s("GET", "/v1/subscription_items/si_123", "")],
        ),
        (
            "subscriptions.cancel",
            json!({"id": "sub_123", "invoice_now": true, "prorate": true}),
            vec![s(
                "DELETE",
                "/v1/subscriptions/sub_123",
                "invoice_now=true&prorate=true",
            )],
        ),
        (
            "subscriptions.cancel",
            json!({"id": "sub_123", "at_period_end": true, "cancellation_details": {"feedback": "too_expensive"}}),
            vec![s(
                "POST",
                "/v1/subscriptions/sub_123",
                "cancel_at_period_end=true&cancellation_details[feedback]=too_expensive",
            )],
        ),
        (
            "subscriptions.search",
            json!({"status": "active", "created": {"gte": 1700000000}}),
            vec![s(
                "GET",
                "/v1/subscriptions/search",
                "query=status%3A%22active%22+AND+created%3E%3D1700000000&limit=10",
            )],
        ),
        (
            "invoices.create",
            json!({"customer": "cus_123", "collection_method": "send_invoice", "days_until_due": 30}),
            vec![s(
                "POST",
                "/v1/invoices",
                "customer=cus_123&collection_method=send_invoice&days_until_due=30",
            )],
        ),
        // A change a finalized invoice may take goes straight to Stripe…
        (
            "invoices.update",
            json!({"id": "in_123", "description": "Thanks", "custom_fields": [{"name": "PO", "value": "4711"}]}),
            vec![s(
                "POST",
                "/v1/invoices/in_123",
                "description=Thanks&custom_fields[0][name]=PO&custom_fields[0][value]=4711",
            )],
        ),
        // …one only a draft may take checks the status first.
        (
            "invoices.update",
            json!({"id": "in_123", "due_date": 1_900_000_000}),
            vec![
                s("GET", "/v1/invoices/in_123", ""),
                s("POST", "/v1/invoices/in_123", "due_date=1900000000"),
            ],
        ),
        (
            "invoices.find",
            json!({"id": "in_123"}),
            vec![s("GET", "/v1/invoices/in_123", "")],
        ),
        (
            "invoices.search",
            json!({"status": "open", "total": {"gt": 10000}}),
            vec![s(
                "GET",
                "/v1/invoices/search",
                "query=status%3A%22open%22+AND+total%3E10000&limit=10",
            )],
        ),
        (
            "invoices.delete",
            json!({"id": "in_123"}),
            vec![
                s("GET", "/v1/invoices/in_123", ""),
                s("DELETE", "/v1/invoices/in_123", ""),
            ],
        ),
        (
            "invoices.finalize",
            json!({"id": "in_123", "auto_advance": false}),
            vec![s(
                "POST",
                "/v1/invoices/in_123/finalize",
                "auto_advance=false",
            )],
        ),
        (
            "invoices.pay",
            json!({"id": "in_123", "paid_out_of_band": true}),
            vec![s(
                "POST",
                "/v1/invoices/in_123/pay",
                "paid_out_of_band=true",
            )],
        ),
        (
            "invoices.mark_uncollectible",
            json!({"id": "in_123"}),
            vec![s("POST", "/v1/invoices/in_123/mark_uncollectible", "")],
        ),
        (
            "invoices.void",
            json!({"id": "in_123"}),
            vec![s("POST", "/v1/invoices/in_123/void", "")],
        ),
        (
            "invoices.send",
            json!({"id": "in_123"}),
            vec![s("POST", "/v1/invoices/in_123/send", "")],
        ),
        (
            "coupons.create",
            json!({"id": "SUMMER25", "percent_off": 25, "duration": "repeating", "duration_in_months": 3}),
            vec![s(
                "POST",
                "/v1/coupons",
                "id=SUMMER25&percent_off=25&duration=repeating&duration_in_months=3",
            )],
        ),
        (
            "coupons.update",
            json!({"id": "SUMMER25", "name": "Summer"}),
            vec![s("POST", "/v1/coupons/SUMMER25", "name=Summer")],
        ),
        (
            "coupons.find",
            json!({"id": "SUMMER25"}),
            vec![s("GET", "/v1/coupons/SUMMER25", "")],
        ),
        (
            "coupons.delete",
            json!({"id": "SUMMER25"}),
            vec![s("DELETE", "/v1/coupons/SUMMER25", "")],
        ),
        (
            "payments.create",
            json!({"amount": 2000, "currency": "eur", "customer": "cus_123", "payment_method_types": ["card"], "metadata": {"order": "7"}}),
            vec![s(
                "POST",
                "/v1/payment_intents",
                "amount=2000&currency=eur&customer=cus_123&payment_method_types[]=card&metadata[order]=7",
            )],
        ),
        (
            "payments.create",
            json!({"amount": 500, "currency": "usd", "confirm": true, "payment_method": "pm_123",
                   "automatic_payment_methods": {"enabled": true, "allow_redirects": "never"},
                   "off_session": true, "setup_future_usage": "off_session"}),
            vec![s(
                "POST",
                "/v1/payment_intents",
                "amount=500&currency=usd&payment_method=pm_123&confirm=true&automatic_payment_methods[enabled]=true&automatic_payment_methods[allow_redirects]=never&off_session=true&setup_future_usage=off_session",
            )],
        ),
        (
            "payments.update",
            json!({"id": "pi_123", "metadata": {"order": "8"}}),
            vec![s("POST", "/v1/payment_intents/pi_123", "metadata[order]=8")],
        ),
        (
            "payments.find",
            json!({"id": "pi_123"}),
            vec![s("GET", "/v1/payment_intents/pi_123", "")],
        ),
        (
            "payments.cancel",
            json!({"id": "pi_123", "cancellation_reason": "requested_by_customer"}),
            vec![s(
                "POST",
                "/v1/payment_intents/pi_123/cancel",
                "cancellation_reason=requested_by_customer",
            )],
        ),
        (
            "payments.capture",
            json!({"id": "pi_123", "amount_to_capture": 1500}),
            vec![s(
                "POST",
                "/v1/payment_intents/pi_123/capture",
                "amount_to_capture=1500",
            )],
        ),
        (
            "payments.confirm",
            json!({"id": "pi_123", "payment_method": "pm_123", "return_url": "https://shop.example.com/done"}),
            vec![s(
                "POST",
                "/v1/payment_intents/pi_123/confirm",
                "payment_method=pm_123&return_url=https%3A%2F%2Fshop.example.com%2Fdone",
            )],
        ),
        (
            "events.retrieve",
            json!({"id": "evt_123"}),
            vec![s("GET", "/v1/events/evt_123", "")],
        ),
        (
            "events.account",
            json!({}),
            vec![s("GET", "/v1/account", "")],
        ),
        (
            "events.account",
            json!({"id": "acct_123"}),
            vec![s("GET", "/v1/accounts/acct_123", "")],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_sends_exactly_its_stripe_request() {
    let stripe = Stripe::new().await;
    let cases = cases();
    let covered: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(covered.len(), 41, "every action has a case");
    for (key, input, expected) in cases {
        let (result, got) = stripe.run(key, input.clone()).await;
        assert!(result.is_ok(), "{key} {input}: {result:?}");
        assert_eq!(got, expected, "{key} {input}");
    }
}

/// A payment of nothing is refused before Stripe, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_of_zero_is_refused() {
    let stripe = Stripe::new().await;
    let (result, got) = stripe
        .run("payments.create", json!({"amount": 0, "currency": "usd"}))
        .await;
    let e = result.unwrap_err();
    assert_eq!(
        (e.status, e.param.as_deref()),
        (StatusCode::BAD_REQUEST, Some("amount"))
    );
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_refuses_bad_input_without_calling_stripe() {
    let stripe = Stripe::new().await;
    for action in ACTIONS {
        let mut input = sample_object(action.fields);
        input.insert("not_a_field".into(), json!(1));
        let (result, got) = stripe.run(action.key, Value::Object(input)).await;
        let e = result.unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (StatusCode::BAD_REQUEST, Some("not_a_field")),
            "{}",
            action.key
        );
        assert!(got.is_empty(), "{}: nothing is sent", action.key);
        // Each required field missing; each id with another prefix; each
        // bounded number past its bound.
        for field in action.fields {
            let mut bad: Vec<Value> = Vec::new();
            if field.required {
                let mut input = sample_object(action.fields);
                input.remove(field.name);
                bad.push(Value::Object(input));
            }
            let wrong = match field.kind {
                Kind::Id(_) => Some(json!("wrong_123")),
                Kind::Int(_, max) => Some(json!(max + 1)),
                Kind::Amount => Some(json!(-1)),
                Kind::Timestamp => Some(json!(253_402_300_800i64)),
                _ => None,
            };
            if let Some(wrong) = wrong {
                let mut input = sample_object(action.fields);
                input.insert(field.name.into(), wrong);
                bad.push(Value::Object(input));
            }
            for input in bad {
                let (result, got) = stripe.run(action.key, input.clone()).await;
                let e = result.unwrap_err();
                assert_eq!(
                    (e.status, e.param.as_deref()),
                    (StatusCode::BAD_REQUEST, Some(field.name)),
                    "{} {input}",
                    action.key
                );
                assert!(got.is_empty(), "{}: nothing is sent", action.key);
            }
        }
        // And a value of the wrong type in its first field.
        if let Some(first) = action.fields.first() {
            let mut input = sample_object(action.fields);
            input.insert(first.name.into(), json!({"nested": ["wrong"]}));
            let (result, got) = stripe.run(action.key, Value::Object(input)).await;
            assert_eq!(
                result.unwrap_err().param.as_deref(),
                Some(first.name),
                "{}",
                action.key
            );
            assert!(got.is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_between_fields_are_checked_before_sending() {
    let stripe = Stripe::new().await;
    for (key, input, param) in [
        ("customers.find", json!({}), "id"),
        (
            "customers.find",
            json!({"id": "cus_1", "email": "a@b.co"}),
            "email",
        ),
        (
            "subscriptions.cancel",
            json!({"id": "sub_1", "at_period_end": true, "prorate": true}),
            "prorate",
        ),
        ("coupons.create", json!({"duration": "once"}), "percent_off"),
        (
            "coupons.create",
            json!({"duration": "once", "percent_off": 5, "amount_off": 100, "currency": "usd"}),
            "amount_off",
        ),
        (
            "coupons.create",
            json!({"duration": "once", "amount_off": 100}),
            "currency",
        ),
        (
            "coupons.create",
            json!({"duration": "repeating", "percent_off": 5}),
            "duration_in_months",
        ),
        (
            "coupons.update",
            json!({"id": "SUMMER", "duration": "forever"}),
            "duration",
        ),
        (
            "coupons.update",
            json!({"id": "SUMMER", "percent_off": 10}),
            "percent_off",
        ),
        ("invoices.search", json!({"limit": 10}), ""),
        // A price is priced one way, with what that way needs.
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd"}),
            "unit_amount",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume"}),
            "tiers",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "unit_amount": 5, "billing_scheme": "tiered",
                   "tiers_mode": "volume", "tiers": [{"up_to": "inf", "unit_amount": 5}]}),
            "unit_amount",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "tiers_mode": "volume",
                   "tiers": [{"up_to": "inf", "unit_amount": 5}]}),
            "tiers",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
                   "tiers": [{"up_to": "inf", "unit_amount": 5}, {"up_to": 10, "unit_amount": 4}]}),
            "tiers[0].up_to",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
                   "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": 5, "unit_amount": 4}, {"up_to": "inf", "unit_amount": 3}]}),
            "tiers[1].up_to",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
                   "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": "inf"}]}),
            "tiers[1]",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "custom_unit_amount": {"enabled": true},
                   "recurring": {"interval": "month"}}),
            "custom_unit_amount",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "unit_amount": 5,
                   "recurring": {"interval": "month", "aggregate_usage": "sum"}}),
            "recurring.aggregate_usage",
        ),
        (
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "unit_amount": 5,
                   "tiers": [{"up_to": "infinity", "unit_amount": 5}]}),
            "tiers[0].up_to",
        ),
        // Paging everything, expanding, and fields that exclude each other.
        (
            "invoices.search",
            json!({"status": "open", "all": true, "limit": 5}),
            "limit",
        ),
        ("customers.find", json!({"id": "cus_1", "all": true}), "all"),
        (
            "customers.find",
            json!({"id": "cus_1", "expand": ["subscriptions"]}),
            "expand[0]",
        ),
        (
            "subscriptions.find",
            json!({"id": "si_1", "expand": ["customer"]}),
            "expand",
        ),
        (
            "subscriptions.create",
            json!({"customer": "cus_1", "items": [{"price": "price_1"}], "trial_end": "now", "trial_period_days": 7}),
            "trial_end",
        ),
        (
            "subscriptions.create",
            json!({"customer": "cus_1", "items": [{"price": "price_1"}], "trial_end": "tomorrow"}),
            "trial_end",
        ),
        (
            "subscriptions.create",
            json!({"customer": "cus_1", "items": [{"price": "price_1"}], "days_until_due": 30}),
            "days_until_due",
        ),
        (
            "subscriptions.create",
            json!({"customer": "cus_1", "items": [{"price": "price_1"}], "promotion_code": "SUMMER"}),
            "promotion_code",
        ),
        (
            "invoices.update",
            json!({"id": "in_1", "custom_fields": vec![json!({"name": "a", "value": "b"}); 5]}),
            "custom_fields",
        ),
        (
            "invoices.update",
            json!({"id": "in_1", "custom_fields": [{"name": "a"}]}),
            "custom_fields[0].value",
        ),
    ] {
        let (result, got) = stripe.run(key, input.clone()).await;
        let e = result.unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{key} {input}");
        assert_eq!(
            e.param.as_deref().unwrap_or(""),
            param,
            "{key} {input}: {}",
            e.message
        );
        assert!(got.is_empty(), "{key}: nothing sent");
    }
    let (result, _) = stripe
        .run("coupons.update", json!({"id": "SUMMER", "percent_off": 10}))
        .await;
    assert!(
        result
            .unwrap_err()
            .message
            .contains("accepts id, name, metadata")
    );
}

// ---- Stripe's OpenAPI spec ----

pub(crate) fn sample(kind: &Kind) -> Value {
    match kind {
        Kind::Text(max) => json!(&"text"[..(*max).min(4)]),
        Kind::Id(prefixes) => json!(format!("{}123", prefixes[0])),
        Kind::CouponId => json!("SUMMER-25"),
        Kind::Email => json!("jenny@example.com"),
        Kind::Currency => json!("usd"),
        Kind::Amount => json!(1000),
        Kind::Int(min, max) => json!((*min).max(1).min(*max)),
        Kind::Timestamp => json!(1_900_000_000),
        Kind::IntOr(_, min, _) => json!(min.max(&10)),
        Kind::Percent => json!(25.5),
        Kind::Bool => json!(true),
        Kind::Enum(values) => json!(values[0]),
        Kind::Metadata => json!({"order_id": "42"}),
        Kind::Object(fields) => Value::Object(sample_object(fields)),
        Kind::List(item, _) => json!([sample(item)]),
        Kind::Range => json!({"gte": 1, "lt": 2}),
        Kind::Url => json!("https://example.com"),
        Kind::PageToken => json!("page_abc"),
    }
}

pub(crate) fn sample_object(fields: &[catalog::Field]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.name.to_string(), sample(&f.kind)))
        .collect()
}

/// Every input an action can be given with all its fields filled (one per
/// branch where fields exclude each other).
fn maximal_inputs(action: &Action) -> Vec<Value> {
    let full = sample_object(action.fields);
    let without = |keys: &[&str]| {
        let mut m = full.clone();
        for k in keys {
            m.remove(*k);
        }
        Value::Object(m)
    };
    // Fields that exclude each other, by action: one input per branch.
    match action.key {
        "prices.create" => {
            let mut per_unit = without(&["custom_unit_amount", "tiers", "tiers_mode"]);
            per_unit["billing_scheme"] = json!("per_unit");
            per_unit["recurring"]["usage_type"] = json!("metered");
            let mut tiered = without(&["unit_amount", "custom_unit_amount", "transform_quantity"]);
            tiered["billing_scheme"] = json!("tiered");
            tiered["tiers"] = json!([{"up_to": 10, "unit_amount": 5, "flat_amount": 1}, {"up_to": "inf", "unit_amount": 4}]);
            let custom = without(&[
                "unit_amount",
                "recurring",
                "tiers",
                "tiers_mode",
                "billing_scheme",
            ]);
            return vec![per_unit, tiered, custom];
        }
        "subscriptions.create" | "invoices.create" => {
            let mut m = without(&["trial_end"]);
            m["collection_method"] = json!("send_invoice");
            let mut other = without(&["trial_period_days", "days_until_due"]);
            other.as_object_mut().unwrap().remove("trial_period_days");
            return vec![m, other];
        }
        _ => {}
    }
    let searches = |m: Value| {
        let mut all = m.clone();
        all.as_object_mut().unwrap().remove("limit");
        let mut one = m;
        one.as_object_mut().unwrap().remove("all");
        vec![one, all]
    };
    match action.plan {
        Plan::CustomerFind => {
            let mut by_email = searches(without(&["id"]));
            by_email.push(without(&["email", "limit", "all"]));
            by_email
        }
        Plan::Search(_) => searches(Value::Object(full)),
        Plan::SubscriptionFind => vec![
            json!({"id": "sub_123", "expand": ["latest_invoice.payment_intent"]}),
            json!({"id": "si_123"}),
        ],
        Plan::SubscriptionCancel => vec![
            without(&["at_period_end"]),
            without(&["invoice_now", "prorate"]),
        ],
        Plan::CouponCreate => {
            let mut pct = without(&["amount_off"]);
            pct["duration"] = json!("repeating");
            let mut amt = without(&["percent_off"]);
            amt["duration"] = json!("repeating");
            vec![pct, amt]
        }
        Plan::Account => vec![json!({}), json!({"id": "acct_123"})],
        _ => vec![Value::Object(full)],
    }
}

fn spec() -> Value {
    serde_json::from_str(include_str!("../data/stripe_spec_subset.json")).unwrap()
}

/// The spec operation a request is for: same method, path segments equal or a `{param}`.
fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<(&'a String, &'a Value)> {
    spec["operations"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(key, _)| {
            let (m, template) = key.split_once(' ').unwrap();
            let (a, b): (Vec<&str>, Vec<&str>) =
                (template.split('/').collect(), path.split('/').collect());
            m == method
                && a.len() == b.len()
                && a.iter().zip(&b).all(|(t, p)| t == p || t.starts_with('{'))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_an_action_can_send_exists_in_stripes_spec() {
    let stripe = Stripe::new().await;
    let spec = spec();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for action in ACTIONS {
        for input in maximal_inputs(action) {
            let (result, sent) = stripe.run(action.key, input.clone()).await;
            assert!(result.is_ok(), "{} {input}: {result:?}", action.key);
            assert!(!sent.is_empty());
            for (m, p, payload) in sent {
                let (op, params) = operation(&spec, &m, &p)
                    .unwrap_or_else(|| panic!("{}: {m} {p} is not a Stripe operation", action.key));
                *used.entry(op.clone()).or_default() += 1;
                for (k, _) in url::form_urlencoded::parse(payload.as_bytes()) {
                    let mut parts = k
                        .split(['[', ']'])
                        .filter(|s| !s.is_empty() && s.parse::<usize>().is_err());
                    let top = parts.next().unwrap();
                    let allowed = params.get(top).unwrap_or_else(|| {
                        panic!("{}: `{top}` is not a parameter of {op}", action.key)
                    });
                    if let Some(inner) = parts.next() {
                        let nested_ok = allowed.as_array().unwrap().iter().any(|n| n == inner)
                            || top == "metadata";
                        assert!(
                            nested_ok,
                            "{}: `{top}[{inner}]` is not a parameter of {op}",
                            action.key
                        );
                    }
                }
            }
        }
    }
    assert!(
        used.len() >= 35,
        "the actions use {} Stripe operations",
        used.len()
    );
}

/// `expand` offers exactly the fields Stripe's spec lets the answer
/// expand (and paths through them), and the sample result a workflow is
/// checked against holds, at each path, the object Stripe would put there.
#[test]
fn expand_offers_what_the_spec_expands_and_samples_follow_it() {
    let spec = spec();
    let expandable = &spec["expandable"];
    let mut offered = 0;
    for action in ACTIONS {
        let Some(field) = action.fields.iter().find(|f| f.name == "expand") else {
            continue;
        };
        let Kind::List(Kind::Enum(paths), _) = field.kind else {
            panic!("{}: expand is a list of paths", action.key);
        };
        let id = match action.fields[0].kind {
            Kind::Id(prefixes) => format!("{}123", prefixes[0]),
            _ => panic!("{}: a find action takes an id first", action.key),
        };
        let plain = catalog::sample_result(action, &json!({"id": id}));
        let root = plain["object"].as_str().unwrap().to_string();
        let depth_one: std::collections::BTreeSet<&str> =
            paths.iter().filter(|p| !p.contains('.')).copied().collect();
        let in_spec: std::collections::BTreeSet<&str> = expandable[&root]
            .as_object()
            .unwrap_or_else(|| panic!("{}: {root} is not in the spec subset", action.key))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            depth_one, in_spec,
            "{}: expandable fields of {root}",
            action.key
        );
        for path in *paths {
            offered += 1;
            let sample = catalog::sample_result(action, &json!({"id": id, "expand": [path]}));
            let (mut object, mut at) = (root.clone(), &sample);
            for segment in path.split('.') {
                let targets = expandable[&object][segment].as_array().unwrap_or_else(|| {
                    panic!("{}: {object}.{segment} does not expand", action.key)
                });
                at = &at[segment];
                let got = at["object"].as_str().unwrap_or_else(|| {
                    panic!(
                        "{}: the sample for expand {path} has no object at {segment}",
                        action.key
                    )
                });
                assert!(
                    targets.iter().any(|t| t == got),
                    "{}: {object}.{segment} expands to {targets:?}, the sample holds {got}",
                    action.key
                );
                object = got.to_string();
            }
        }
    }
    assert!(offered >= 33, "{offered} expand paths");
}

#[test]
fn every_trigger_is_an_event_stripe_can_send() {
    let spec = spec();
    let events: Vec<&str> = spec["enabled_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for t in &TRIGGERS {
        assert!(
            events.contains(&t.key),
            "{} is not in enabled_events",
            t.key
        );
    }
}

/// The README's action count is the catalog's, and docs/catalog.md lists
/// every action by name (it is generated: the next test).
#[test]
fn readme_and_docs_name_every_action() {
    let readme = include_str!("../../../../README.md");
    assert!(
        readme.contains(&format!("Actions: one of the {} (8 groups", ACTIONS.len())),
        "the README's action count is not {}",
        ACTIONS.len()
    );
    let docs = include_str!("../../../../docs/catalog.md");
    assert!(docs.contains(&format!("## Actions ({})", ACTIONS.len())));
    for a in ACTIONS {
        assert!(docs.contains(&format!("#### `{}`", a.key)), "{}", a.key);
    }
}

#[test]
fn docs_catalog_md_is_generated_from_the_catalog() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/catalog.md"
    ))
    .unwrap();
    assert!(
        committed == catalog::markdown(),
        "docs/catalog.md is stale: run `cargo run -p connector-core --example catalog_md > docs/catalog.md`"
    );
}

// ---- Stripe's refusals ----

async fn refused_by_stripe(
    key: &str,
    input: Value,
    status: u16,
    error: Value,
) -> (ApiError, Vec<Sent>) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/invoices/in_123"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "in_123", "status": "draft"})),
        )
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(status)
                .insert_header("request-id", "req_x")
                .set_body_json(json!({"error": error})),
        )
        .mount(&server)
        .await;
    let e = run(
        catalog::action_by_key(key).unwrap(),
        &input,
        &client(&server),
        None,
    )
    .await
    .unwrap_err();
    (ApiError::from(e), sent(&server).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_errors_missing_objects_conflicts_and_limits_keep_their_meaning() {
    let (e, _) = refused_by_stripe("payments.create", json!({"amount": 100, "currency": "usd", "confirm": true}), 402,
        json!({"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."})).await;
    assert_eq!(e.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(e.message, "Your card has insufficient funds.");
    let stripe = e.stripe.unwrap();
    assert_eq!(
        (
            stripe["type"].as_str(),
            stripe["decline_code"].as_str(),
            stripe["request_id"].as_str()
        ),
        (
            Some("card_error"),
            Some("insufficient_funds"),
            Some("req_x")
        )
    );

    let (e, _) = refused_by_stripe("customers.find", json!({"id": "cus_404"}), 404,
        json!({"type": "invalid_request_error", "code": "resource_missing", "param": "id", "message": "No such customer: 'cus_404'"})).await;
    assert_eq!(
        (e.status, e.param.as_deref()),
        (StatusCode::NOT_FOUND, Some("id"))
    );

    let (e, sent) = refused_by_stripe("customers.create", json!({"name": "A"}), 409,
        json!({"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."})).await;
    assert_eq!(e.status, StatusCode::CONFLICT);
    assert_eq!(sent.len(), 3, "409 is retried, then passed on");

    let (e, sent) = refused_by_stripe(
        "products.find",
        json!({"id": "prod_1"}),
        429,
        json!({"type": "invalid_request_error", "message": "Too many requests"}),
    )
    .await;
    assert_eq!((e.status, sent.len()), (StatusCode::TOO_MANY_REQUESTS, 3));

    let (e, _) = refused_by_stripe(
        "prices.find",
        json!({"id": "price_1"}),
        500,
        json!({"type": "api_error", "message": "Something went wrong"}),
    )
    .await;
    assert_eq!(
        (e.status, e.kind),
        (StatusCode::BAD_GATEWAY, "stripe_unavailable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_draft_invoices_are_deleted_or_take_draft_only_changes() {
    for (key, input) in [
        (
            "invoices.update",
            json!({"id": "in_123", "description": "ok", "due_date": 1_900_000_000, "collection_method": "send_invoice"}),
        ),
        ("invoices.delete", json!({"id": "in_123"})),
    ] {
        let server =
            stripe_answering(json!({"id": "in_123", "object": "invoice", "status": "open"})).await;
        let e = run(
            catalog::action_by_key(key).unwrap(),
            &input,
            &client(&server),
            None,
        )
        .await
        .unwrap_err();
        let e = ApiError::from(e);
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::CONFLICT, "invoice_not_draft"),
            "{key}"
        );
        assert!(e.message.contains("in_123 is open"), "{}", e.message);
        if key == "invoices.update" {
            // The 409 names the fields only a draft takes, and no others.
            assert!(
                e.message
                    .contains("collection_method, due_date can only change on a draft"),
                "{}",
                e.message
            );
        }
        assert_eq!(
            sent(&server).await,
            vec![s("GET", "/v1/invoices/in_123", "")],
            "{key}: only the status check"
        );
    }
    // A finalized invoice still takes a new description, footer, custom
    // fields and metadata: sent without a status check.
    let server =
        stripe_answering(json!({"id": "in_123", "object": "invoice", "status": "open"})).await;
    let updated = run(
        catalog::action_by_key("invoices.update").unwrap(),
        &json!({"id": "in_123", "footer": "Paid by PO", "metadata": {"po": "4711"}}),
        &client(&server),
        None,
    )
    .await
    .unwrap();
    assert_eq!(updated["status"], "open");
    assert_eq!(
        sent(&server).await,
        vec![s(
            "POST",
            "/v1/invoices/in_123",
            "footer=Paid+by+PO&metadata[po]=4711"
        )]
    );
    // Stripe's own refusal (the invoice left draft between the check and the write).
    let (e, _) = refused_by_stripe(
        "invoices.delete",
        json!({"id": "in_123"}),
        400,
        json!({"type": "invalid_request_error", "message": "You can only delete draft invoices."}),
    )
    .await;
    assert_eq!(
        (e.status, e.kind),
        (StatusCode::CONFLICT, "invoice_not_draft")
    );
    assert_eq!(e.message, "You can only delete draft invoices.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_with_prices_is_a_conflict_that_suggests_archiving() {
    let (e, _) = refused_by_stripe("products.delete", json!({"id": "prod_1"}), 400,
        json!({"type": "invalid_request_error", "message": "This product cannot be deleted because it has one or more user-created prices."})).await;
    assert_eq!(
        (e.status, e.kind),
        (StatusCode::CONFLICT, "product_has_prices")
    );
    assert!(e.message.contains("Archive it instead"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_intent_state_errors_are_conflicts() {
    for key in ["payments.cancel", "payments.update"] {
        let (e, _) = refused_by_stripe(key, json!({"id": "pi_1"}), 400, json!({
            "type": "invalid_request_error", "code": "payment_intent_unexpected_state",
            "message": "You cannot cancel this PaymentIntent because it has a status of succeeded."})).await;
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::CONFLICT, "payment_intent_unexpected_state"),
            "{key}"
        );
        assert!(e.message.contains("status of succeeded"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_idempotency_key_reaches_stripe_on_writes_only() {
    let server = stripe_answering(json!({"id": "cus_1"})).await;
    let c = client(&server);
    run(
        catalog::action_by_key("customers.create").unwrap(),
        &json!({"name": "A"}),
        &c,
        Some("order-42"),
    )
    .await
    .unwrap();
    run(
        catalog::action_by_key("customers.find").unwrap(),
        &json!({"id": "cus_1"}),
        &c,
        Some("order-42"),
    )
    .await
    .unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs[0].headers.get("idempotency-key").unwrap(), "order-42");
    assert!(reqs[1].headers.get("idempotency-key").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_data_has_more_and_next_page() {
    let server = stripe_answering(json!({"object": "search_result", "data": [{"id": "in_1"}], "has_more": true, "next_page": "pg_2", "url": "/v1/invoices/search"})).await;
    let out = run(
        catalog::action_by_key("invoices.search").unwrap(),
        &json!({"status": "paid", "page": "pg_1"}),
        &client(&server),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"data": [{"id": "in_1"}], "has_more": true, "next_page": "pg_2"})
    );
    assert_eq!(
        sent(&server).await[0].2,
        "query=status%3A%22paid%22&limit=10&page=pg_1"
    );
}

/// `"all": true` pages through for the caller: a list by `starting_after`,
/// a search by `next_page`, 100 at a time, stopping at 1,000 objects with
/// `has_more` (and the search's `next_page`) saying what was left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_pages_through_lists_and_searches_up_to_the_cap() {
    use wiremock::matchers::query_param;
    let customers = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| json!({"id": format!("cus_{i}"), "object": "customer"}))
            .collect()
    };
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param("starting_after", "cus_99"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"object": "list", "data": customers(100, 5), "has_more": false}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"object": "list", "data": customers(0, 100), "has_more": true}),
            ),
        )
        .mount(&server)
        .await;
    let found = run(
        catalog::action_by_key("customers.find").unwrap(),
        &json!({"email": "jenny@example.com", "all": true}),
        &client(&server),
        None,
    )
    .await
    .unwrap();
    assert_eq!(found["data"].as_array().unwrap().len(), 105);
    assert_eq!(found["data"][104]["id"], "cus_104");
    assert_eq!(found["has_more"], false);
    assert_eq!(
        sent(&server).await,
        vec![
            s(
                "GET",
                "/v1/customers",
                "email=jenny%40example.com&limit=100"
            ),
            s(
                "GET",
                "/v1/customers",
                "email=jenny%40example.com&limit=100&starting_after=cus_99"
            ),
        ]
    );

    // A search that never ends stops at the cap and hands on its cursor.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/invoices/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "search_result", "data": customers(0, 100), "has_more": true, "next_page": "tok_next",
        })))
        .mount(&server)
        .await;
    let found = run(
        catalog::action_by_key("invoices.search").unwrap(),
        &json!({"status": "open", "all": true}),
        &client(&server),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        found["data"].as_array().unwrap().len(),
        connector_core::actions::MAX_ALL_OBJECTS
    );
    assert_eq!(found["has_more"], true);
    assert_eq!(found["next_page"], "tok_next");
    let requests = sent(&server).await;
    assert_eq!(requests.len(), 10, "1,000 objects in pages of 100");
    assert_eq!(
        requests[0].2, "query=status%3A%22open%22&limit=100",
        "the first page has no cursor"
    );
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.2.ends_with("&page=tok_next"))
    );
}

/// Answers each request as Stripe's spec says that operation answers:
/// Stripe's sample object of the response type, a deletion stub, or a list
/// or search page of samples (a draft invoice, so draft-only actions go on).
struct SpecShaped(Value);

impl wiremock::Respond for SpecShaped {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let (op, _) = operation(&self.0, request.method.as_str(), request.url.path())
            .unwrap_or_else(|| panic!("{} {} is not in the spec", request.method, request.url));
        let response = &self.0["responses"][op];
        let object = response["object"].as_str().unwrap();
        let mut sample = catalog::stripe_sample(object);
        if response["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "deleted")
        {
            sample = json!({"id": sample["id"], "object": object, "deleted": true});
        } else if object == "invoice" {
            sample["status"] = json!("draft");
        }
        let body = match response["page"].as_str() {
            Some("list") => {
                json!({"object": "list", "data": [sample], "has_more": false, "url": request.url.path()})
            }
            Some(_) => {
                json!({"object": "search_result", "data": [sample], "has_more": false, "next_page": null, "url": request.url.path()})
            }
            None => sample,
        };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// What a template can read of a value: its `object`, its keys, and the
/// same of a page's first item.
fn shape(v: &Value) -> Value {
    let keys = |v: &Value| {
        let mut k: Vec<String> = v
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    let item = v["data"]
        .get(0)
        .map(|i| json!({"object": i["object"], "keys": keys(i)}));
    json!({"object": v["object"], "keys": keys(v), "item": item})
}

/// The sample result a workflow is checked against at creation has the
/// shape the action really answers for that input (the object by id, a
/// page by email, an item for si_…, a stub for a delete), when Stripe
/// answers as its spec says; and what the sample holds is what the spec's
/// response has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_results_have_the_shape_each_action_answers() {
    let spec = spec();
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(SpecShaped(spec.clone()))
        .mount(&server)
        .await;
    let stripe = client(&server);
    let mut checked = 0;
    for action in ACTIONS {
        for mut input in maximal_inputs(action) {
            // Expansion is the spec's own test (above); here each answer as sent.
            input.as_object_mut().unwrap().remove("expand");
            server.reset().await;
            Mock::given(wiremock::matchers::any())
                .respond_with(SpecShaped(spec.clone()))
                .mount(&server)
                .await;
            let answer = run(action, &input, &stripe, None)
                .await
                .unwrap_or_else(|e| panic!("{} {input}: {e}", action.key));
            let sample = catalog::sample_result(action, &input);
            assert_eq!(shape(&sample), shape(&answer), "{} {input}", action.key);
            // Everything the sample offers, Stripe's answer has.
            let requests = sent(&server).await;
            let (m, p, _) = requests.last().unwrap();
            let (op, _) = operation(&spec, m, p).unwrap();
            let response = &spec["responses"][op];
            let object = if response.get("page").is_some() {
                &sample["data"][0]
            } else {
                &sample
            };
            assert_eq!(
                object["object"], response["object"],
                "{} {input}",
                action.key
            );
            let properties = response["properties"].as_array().unwrap();
            for key in object.as_object().unwrap().keys() {
                assert!(
                    properties.iter().any(|p| p == key),
                    "{}: the sample has {key}, {op} does not answer it",
                    action.key
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= ACTIONS.len(), "{checked}");
}
