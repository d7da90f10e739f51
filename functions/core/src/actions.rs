//! Runs one catalog action against Stripe: validate, then the request(s) its
//! plan describes. Nothing is sent when the input is invalid.

use serde_json::{Map, Value, json};

use crate::catalog::{self, Action, InvalidInput, Plan, Verb};
use crate::stripe::{StripeClient, StripeError};

const DEFAULT_LIMIT: i64 = 10;
/// Most objects `"all": true` collects, and most bytes of them: the answer
/// stays well inside a Lambda response (6 MB) and a worker's memory.
pub const MAX_ALL_OBJECTS: usize = 1_000;
const MAX_ALL_BYTES: usize = 4 * 1024 * 1024;
/// Stripe's largest page.
const PAGE_SIZE: usize = 100;

/// Why an action did not run, by cause: its input, Stripe's answer, or the
/// state of the object it acts on. The HTTP status is chosen in one place
/// (`From<ActionError> for ApiError`); the retry class in
/// `workflow::run::classify_action_error`.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The input breaks a rule of the action; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Stripe refused or failed.
    #[error(transparent)]
    Stripe(#[from] StripeError),
    /// The object's state forbids the action (a finalized invoice, a
    /// product with prices, a payment intent in another state): it will
    /// not heal by retrying. `stripe` is Stripe's refusal, when it said so.
    #[error("{message}")]
    State {
        kind: &'static str,
        message: String,
        stripe: Option<StripeError>,
    },
}

/// Validates `input` and runs `action`. A POST carries `idempotency_key`
/// (the caller's, or one the client generates).
pub async fn run(
    action: &Action,
    input: &Value,
    stripe: &StripeClient,
    idempotency_key: Option<&str>,
) -> Result<Value, ActionError> {
    let valid = catalog::validate(action, input)?;
    let mut params = match valid {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    precheck(action, &params)?;
    let result = execute(action, &mut params, stripe, idempotency_key).await;
    result.map_err(|e| refine(action, e))
}

/// Rules between fields that a per-field check cannot see.
fn precheck(action: &Action, p: &Map<String, Value>) -> Result<(), InvalidInput> {
    if p.get("all") == Some(&Value::Bool(true)) && p.contains_key("limit") {
        return Err(InvalidInput::at(
            "limit",
            "give limit or all, not both: all pages through everything",
        ));
    }
    match action.key {
        "prices.create" => return price_rules(p),
        "subscriptions.create" | "invoices.create" => {
            if p.contains_key("days_until_due")
                && p.get("collection_method").and_then(Value::as_str) != Some("send_invoice")
            {
                return Err(InvalidInput::at(
                    "days_until_due",
                    "days_until_due goes with collection_method send_invoice",
                ));
            }
            if p.contains_key("trial_end") && p.contains_key("trial_period_days") {
                return Err(InvalidInput::at(
                    "trial_end",
                    "give trial_end or trial_period_days, not both",
                ));
            }
        }
        _ => {}
    }
    match action.plan {
        Plan::CustomerFind if p.contains_key("id") && p.contains_key("all") => {
            Err(InvalidInput::at("all", "all goes with email, not id"))
        }
        Plan::SubscriptionFind
            if p.contains_key("expand")
                && p.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with("si_")) =>
        {
            Err(InvalidInput::at(
                "expand",
                "expand applies to a subscription (sub_…), not an item",
            ))
        }
        Plan::CustomerFind => match (p.contains_key("id"), p.contains_key("email")) {
            (true, true) => Err(InvalidInput::at("email", "give id or email, not both")),
            (false, false) => Err(InvalidInput::at(
                "id",
                "give the customer's id or an email address",
            )),
            (true, false) if p.contains_key("limit") => {
                Err(InvalidInput::at("limit", "limit goes with email, not id"))
            }
            _ => Ok(()),
        },
        Plan::SubscriptionCancel if p.get("at_period_end") == Some(&Value::Bool(true)) => {
            match ["invoice_now", "prorate"]
                .into_iter()
                .find(|k| p.contains_key(*k))
            {
                Some(k) => Err(InvalidInput::at(
                    k,
                    format!("{k} applies to an immediate cancel, not at_period_end"),
                )),
                None => Ok(()),
            }
        }
        Plan::CouponCreate => {
            match (p.contains_key("percent_off"), p.contains_key("amount_off")) {
                (true, true) => {
                    return Err(InvalidInput::at(
                        "amount_off",
                        "give percent_off or amount_off, not both",
                    ));
                }
                (false, false) => {
                    return Err(InvalidInput::at(
                        "percent_off",
                        "give percent_off or amount_off",
                    ));
                }
                _ => {}
            }
            if p.contains_key("amount_off") && !p.contains_key("currency") {
                return Err(InvalidInput::at("currency", "amount_off needs currency"));
            }
            let repeating = p.get("duration").and_then(Value::as_str) == Some("repeating");
            match (repeating, p.contains_key("duration_in_months")) {
                (true, false) => Err(InvalidInput::at(
                    "duration_in_months",
                    "a repeating coupon needs duration_in_months",
                )),
                (false, true) => Err(InvalidInput::at(
                    "duration_in_months",
                    "duration_in_months goes with duration repeating",
                )),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// How a price is priced: by unit_amount, by the customer's choice, or by
/// tiers, exactly one; and what each way needs. Stripe refuses the rest.
fn price_rules(p: &Map<String, Value>) -> Result<(), InvalidInput> {
    let tiered = p.get("billing_scheme").and_then(Value::as_str) == Some("tiered");
    let has = |k: &str| p.contains_key(k);
    if tiered {
        for k in ["unit_amount", "custom_unit_amount", "transform_quantity"] {
            if has(k) {
                return Err(InvalidInput::at(
                    k,
                    format!("{k} does not go with billing_scheme tiered: the tiers price it"),
                ));
            }
        }
        for k in ["tiers", "tiers_mode"] {
            if !has(k) {
                return Err(InvalidInput::at(
                    k,
                    format!("billing_scheme tiered needs {k}"),
                ));
            }
        }
        let tiers = p
            .get("tiers")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut last = 0i64;
        for (i, tier) in tiers.iter().enumerate() {
            let final_tier = i + 1 == tiers.len();
            match (&tier["up_to"], final_tier) {
                (Value::String(_), true) => {}
                (Value::String(_), false) => {
                    return Err(InvalidInput::at(
                        format!("tiers[{i}].up_to"),
                        "only the last tier is up_to \"inf\"",
                    ));
                }
                (n, true) if n.is_number() => {
                    return Err(InvalidInput::at(
                        format!("tiers[{i}].up_to"),
                        "the last tier is up_to \"inf\"",
                    ));
                }
                (n, _) => {
                    let n = n.as_i64().unwrap_or_default();
                    if n <= last {
                        return Err(InvalidInput::at(
                            format!("tiers[{i}].up_to"),
                            "tiers go by ascending up_to",
                        ));
                    }
                    last = n;
                }
            }
            if !(tier.get("unit_amount").is_some() || tier.get("flat_amount").is_some()) {
                return Err(InvalidInput::at(
                    format!("tiers[{i}]"),
                    "a tier needs unit_amount, flat_amount or both",
                ));
            }
        }
        return Ok(());
    }
    for k in ["tiers", "tiers_mode"] {
        if has(k) {
            return Err(InvalidInput::at(
                k,
                format!("{k} needs billing_scheme tiered"),
            ));
        }
    }
    match (has("unit_amount"), has("custom_unit_amount")) {
        (false, false) => {
            return Err(InvalidInput::at(
                "unit_amount",
                "a price needs unit_amount, custom_unit_amount, or billing_scheme tiered with tiers",
            ));
        }
        (true, true) => {
            return Err(InvalidInput::at(
                "custom_unit_amount",
                "give unit_amount or custom_unit_amount, not both",
            ));
        }
        _ => {}
    }
    if has("custom_unit_amount") && has("recurring") {
        return Err(InvalidInput::at(
            "custom_unit_amount",
            "custom_unit_amount is for one-time prices, not recurring ones",
        ));
    }
    if p.get("recurring")
        .is_some_and(|r| r.get("aggregate_usage").is_some() && r["usage_type"] != "metered")
    {
        return Err(InvalidInput::at(
            "recurring.aggregate_usage",
            "aggregate_usage goes with usage_type metered",
        ));
    }
    Ok(())
}

fn take_id(p: &mut Map<String, Value>) -> String {
    p.shift_remove("id")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn call(
    stripe: &StripeClient,
    verb: Verb,
    path: &str,
    params: &Value,
    key: Option<&str>,
) -> Result<Value, StripeError> {
    match verb {
        Verb::Get => stripe.get(path, params).await,
        Verb::Post => stripe.post(path, params, key).await,
        Verb::Delete => stripe.delete(path, params).await,
    }
}

async fn execute(
    action: &Action,
    p: &mut Map<String, Value>,
    stripe: &StripeClient,
    key: Option<&str>,
) -> Result<Value, ActionError> {
    match action.plan {
        Plan::Call(verb, path) => {
            let path = if path.contains("{id}") {
                path.replace("{id}", &take_id(p))
            } else {
                path.to_string()
            };
            Ok(call(stripe, verb, &path, &Value::Object(p.clone()), key).await?)
        }
        Plan::Archive(path) => {
            let path = path.replace("{id}", &take_id(p));
            Ok(stripe.post(&path, &json!({"active": false}), key).await?)
        }
        Plan::Search(path) => {
            let query = catalog::search::build_query(action, p)?;
            let mut params = json!({"query": query, "limit": p.get("limit").cloned().unwrap_or(json!(DEFAULT_LIMIT))});
            if let Some(page) = p.get("page") {
                params["page"] = page.clone();
            }
            if p.get("all") == Some(&Value::Bool(true)) {
                return Ok(all_pages(stripe, path, params, Cursor::NextPage).await?);
            }
            let result = stripe.get(path, &params).await?;
            Ok(page_answer(&result))
        }
        Plan::CustomerFind => {
            let expand = p.get("expand").cloned();
            if p.contains_key("id") {
                let mut params = json!({});
                if let Some(expand) = expand {
                    params["expand"] = expand;
                }
                return Ok(stripe
                    .get(&format!("/v1/customers/{}", take_id(p)), &params)
                    .await?);
            }
            let mut params = json!({"email": p.get("email"), "limit": p.get("limit").cloned().unwrap_or(json!(DEFAULT_LIMIT))});
            if let Some(Value::Array(paths)) = expand {
                // A list expands inside its `data`.
                let paths: Vec<String> = paths
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|e| format!("data.{e}"))
                    .collect();
                params["expand"] = json!(paths);
            }
            if p.get("all") == Some(&Value::Bool(true)) {
                return Ok(
                    all_pages(stripe, "/v1/customers", params, Cursor::StartingAfter).await?,
                );
            }
            Ok(page_answer(&stripe.get("/v1/customers", &params).await?))
        }
        Plan::SubscriptionFind => {
            let id = take_id(p);
            let path = if id.starts_with("si_") {
                format!("/v1/subscription_items/{id}")
            } else {
                format!("/v1/subscriptions/{id}")
            };
            Ok(stripe.get(&path, &Value::Object(p.clone())).await?)
        }
        Plan::InvoiceUpdate { draft_only } => {
            let id = take_id(p);
            let given: Vec<&str> = draft_only
                .iter()
                .copied()
                .filter(|k| p.contains_key(*k))
                .collect();
            // Only a change a finalized invoice refuses costs a read first.
            if !given.is_empty()
                && let Some(status) = not_draft(stripe, &id).await?
            {
                return Err(ActionError::State {
                    kind: "invoice_not_draft",
                    message: format!(
                        "invoice {id} is {status}: {} can only change on a draft invoice; a finalized one can change description, footer, custom_fields, auto_advance and metadata",
                        given.join(", ")
                    ),
                    stripe: None,
                });
            }
            Ok(stripe
                .post(
                    &format!("/v1/invoices/{id}"),
                    &Value::Object(p.clone()),
                    key,
                )
                .await?)
        }
        Plan::SubscriptionCancel => {
            let id = take_id(p);
            if p.shift_remove("at_period_end") == Some(Value::Bool(true)) {
                let mut body = json!({"cancel_at_period_end": true});
                if let Some(details) = p.get("cancellation_details") {
                    body["cancellation_details"] = details.clone();
                }
                return Ok(stripe
                    .post(&format!("/v1/subscriptions/{id}"), &body, key)
                    .await?);
            }
            Ok(stripe
                .delete(
                    &format!("/v1/subscriptions/{id}"),
                    &Value::Object(p.clone()),
                )
                .await?)
        }
        Plan::DraftInvoice(verb, path) => {
            let id = take_id(p);
            if let Some(status) = not_draft(stripe, &id).await? {
                return Err(not_a_draft(action, &id, &status));
            }
            Ok(call(
                stripe,
                verb,
                &path.replace("{id}", &id),
                &Value::Object(p.clone()),
                key,
            )
            .await?)
        }
        Plan::CouponCreate => Ok(stripe
            .post("/v1/coupons", &Value::Object(p.clone()), key)
            .await?),
        Plan::Account => match p.get("id").and_then(Value::as_str) {
            Some(id) => Ok(stripe
                .get(&format!("/v1/accounts/{id}"), &json!({}))
                .await?),
            None => Ok(stripe.get("/v1/account", &json!({})).await?),
        },
    }
}

/// The invoice's status when it is not a draft (`None` for a draft).
async fn not_draft(stripe: &StripeClient, id: &str) -> Result<Option<String>, StripeError> {
    let invoice = stripe
        .get(&format!("/v1/invoices/{id}"), &json!({}))
        .await?;
    let status = invoice["status"].as_str().unwrap_or("unknown");
    Ok((status != "draft").then(|| status.to_string()))
}

/// How a list goes on to its next page.
#[derive(Clone, Copy)]
enum Cursor {
    /// A search: the answer's `next_page` token, sent as `page`.
    NextPage,
    /// A list: the last object's id, sent as `starting_after`.
    StartingAfter,
}

/// Pages through a list or search for the caller, 100 at a time, until it
/// ends or [`MAX_ALL_OBJECTS`] objects or [`MAX_ALL_BYTES`] are collected.
/// Each page is a Stripe request like any other: paced by the connection's
/// budget, retried by the client. `has_more` says whether any were left.
async fn all_pages(
    stripe: &StripeClient,
    path: &str,
    mut params: Value,
    cursor: Cursor,
) -> Result<Value, StripeError> {
    let mut data: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    loop {
        params["limit"] = json!(PAGE_SIZE.min(MAX_ALL_OBJECTS - data.len()));
        let page = stripe.get(path, &params).await?;
        let items = match page.get("data") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let more = page
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let next = match cursor {
            Cursor::NextPage => page.get("next_page").filter(|v| v.is_string()).cloned(),
            Cursor::StartingAfter => items.last().and_then(|o| o.get("id")).cloned(),
        };
        for item in items {
            bytes += serde_json::to_vec(&item).map_or(0, |v| v.len());
            data.push(item);
        }
        let full = data.len() >= MAX_ALL_OBJECTS || bytes >= MAX_ALL_BYTES;
        match next {
            Some(next) if more && !full => match cursor {
                Cursor::NextPage => params["page"] = next,
                Cursor::StartingAfter => params["starting_after"] = next,
            },
            _ => {
                let mut out = json!({"data": data, "has_more": more});
                if let (true, Cursor::NextPage, Some(token)) = (more, cursor, page.get("next_page"))
                {
                    out["next_page"] = token.clone();
                }
                return Ok(out);
            }
        }
    }
}

/// `{"data", "has_more", "next_page"?}` from a Stripe list or search result.
fn page_answer(result: &Value) -> Value {
    let mut out = json!({
        "data": result.get("data").cloned().unwrap_or(json!([])),
        "has_more": result.get("has_more").and_then(Value::as_bool).unwrap_or(false),
    });
    if let Some(next) = result.get("next_page").filter(|v| v.is_string()) {
        out["next_page"] = next.clone();
    }
    out
}

fn not_a_draft(action: &Action, id: &str, status: &str) -> ActionError {
    let verb = if action.operation == "delete" {
        "deleted"
    } else {
        "updated"
    };
    let hint = if action.operation == "delete" {
        "; void it or mark it uncollectible instead"
    } else {
        ""
    };
    ActionError::State {
        kind: "invoice_not_draft",
        message: format!("invoice {id} is {status}: only draft invoices can be {verb}{hint}"),
        stripe: None,
    }
}

/// Gives Stripe's state refusals (400s) their meaning: a conflict with the
/// object's state, with a message that says what to do.
fn refine(action: &Action, e: ActionError) -> ActionError {
    let ActionError::Stripe(stripe) = e else {
        return e;
    };
    let (code, message) = match (stripe.status(), stripe.api_error()) {
        (Some(400), Some(api)) => (
            api.code.clone().unwrap_or_default(),
            api.message.clone().unwrap_or_default(),
        ),
        _ => return ActionError::Stripe(stripe),
    };
    let lower = message.to_ascii_lowercase();
    let refined: Option<(&'static str, String)> = match (action.key, code.as_str()) {
        ("products.delete", _) if lower.contains("price") => Some((
            "product_has_prices",
            format!("{message} Archive it instead: products.update with {{\"active\": false}}."),
        )),
        ("payments.update" | "payments.cancel", "payment_intent_unexpected_state") => {
            Some(("payment_intent_unexpected_state", message))
        }
        ("invoices.update" | "invoices.delete", _)
            if lower.contains("draft") || code == "invoice_not_editable" =>
        {
            Some(("invoice_not_draft", message))
        }
        _ => None,
    };
    match refined {
        Some((kind, message)) => ActionError::State {
            kind,
            message,
            stripe: Some(stripe),
        },
        None => ActionError::Stripe(stripe),
    }
}
