//! Every trigger and action as data. The catalog endpoint, the endpoint's
//! `enabled_events`, the action Lambdas, input validation, JSON Schemas and
//! docs/catalog.md are all driven from it.

mod actions;
pub mod search;
mod triggers;
mod validate;

pub use actions::ACTIONS;
pub use triggers::{TRIGGERS, Trigger, trigger};
pub use validate::{InvalidInput, check as check_value, schema, validate};

use serde_json::{Value, json};

/// HTTP verbs an action uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn method(self) -> reqwest::Method {
        match self {
            Verb::Get => reqwest::Method::GET,
            Verb::Post => reqwest::Method::POST,
            Verb::Delete => reqwest::Method::DELETE,
        }
    }
}

/// What a field accepts. Every kind is checked before anything is sent.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string of at most this many characters.
    Text(usize),
    /// A Stripe id with one of these prefixes and Stripe's charset.
    Id(&'static [&'static str]),
    /// A user-chosen coupon id: letters, digits, `-` and `_`.
    CouponId,
    Email,
    /// Three lowercase letters.
    Currency,
    /// A non-negative whole number in the currency's minor unit.
    Amount,
    /// A whole number in a range.
    Int(i64, i64),
    /// A whole number in a range, or one word: a price tier's `up_to`
    /// (a quantity, or `inf` for the last tier), `trial_end` (a time, or `now`).
    IntOr(&'static str, i64, i64),
    /// A percentage above 0 and at most 100.
    Percent,
    Bool,
    Enum(&'static [&'static str]),
    /// Up to 50 keys of at most 40 characters (no `[` or `]`), string values up to 500.
    Metadata,
    Object(&'static [Field]),
    List(&'static Kind, usize),
    /// `{"gt"?, "gte"?, "lt"?, "lte"?}` of whole numbers, at least one.
    Range,
    /// An http(s) URL.
    Url,
    /// Unix seconds.
    Timestamp,
    /// A search `next_page` token.
    PageToken,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub doc: &'static str,
}

/// How an action's validated input becomes Stripe requests.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// One request; `{id}` in the path is the `id` field; the other fields
    /// are the form body (POST) or the query (GET, DELETE).
    Call(Verb, &'static str),
    /// A search: the fields build Stripe's query language.
    Search(&'static str),
    /// `active=false` on the object.
    Archive(&'static str),
    /// By id, or a list filtered by email.
    CustomerFind,
    /// `sub_…` retrieves the subscription, `si_…` the item.
    SubscriptionFind,
    /// Immediate `DELETE`, or `cancel_at_period_end` by update.
    SubscriptionCancel,
    /// Only for drafts: the invoice's status is checked first.
    DraftInvoice(Verb, &'static str),
    /// `POST /v1/invoices/{id}`; when a field only a draft may change is
    /// given, the invoice's status is checked first.
    InvoiceUpdate { draft_only: &'static [&'static str] },
    /// Exactly one of percent_off / amount_off; amount_off needs currency.
    CouponCreate,
    /// The own account, or a connected one.
    Account,
}

#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// `group.operation`, e.g. `customers.create`.
    pub key: &'static str,
    pub group: &'static str,
    pub operation: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub fields: &'static [Field],
    pub plan: Plan,
}

/// Stripe's sample objects (from its OpenAPI fixtures), by `object` type.
static SAMPLES: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("samples.json")).unwrap_or(Value::Null)
});

/// Stripe's sample object of this `object` type (`{}` for one it lacks).
pub fn stripe_sample(object: &str) -> Value {
    SAMPLES.get(object).cloned().unwrap_or(json!({}))
}

/// The Stripe object type a trigger carries (`customer.subscription.created` → subscription).
fn trigger_object(trigger: &str) -> &'static str {
    match trigger.rsplit_once('.').map(|(prefix, _)| prefix) {
        Some("customer.subscription") => "subscription",
        Some("customer") => "customer",
        Some("product") => "product",
        Some("price") => "price",
        Some("invoice") => "invoice",
        Some("payment_intent") => "payment_intent",
        Some("coupon") => "coupon",
        _ => "event",
    }
}

/// A sample event of this type, carrying Stripe's sample object.
pub fn sample_event(trigger: &str) -> Value {
    let object = stripe_sample(trigger_object(trigger));
    json!({
        "id": "evt_sample", "object": "event", "api_version": crate::stripe::DEFAULT_API_VERSION,
        "created": 1_700_000_000, "livemode": false, "type": trigger, "data": {"object": object},
    })
}

/// A sample of what an action answers for this input, in the shape it
/// really has: the bare object, a page (`{"data", "has_more"}`) for a
/// search or a find by email, a deletion stub for a delete, expanded
/// fields as objects. Workflow creation checks `{{steps.N.…}}` against it.
pub fn sample_result(action: &Action, input: &Value) -> Value {
    let object = match action.group {
        "customers" => "customer",
        "products" => "product",
        "prices" => "price",
        "subscriptions" if input["id"].as_str().is_some_and(|id| id.starts_with("si_")) => {
            "subscription_item"
        }
        "subscriptions" => "subscription",
        "invoices" => "invoice",
        "coupons" => "coupon",
        "payments" => "payment_intent",
        _ if action.operation == "account" => "account",
        _ => "event",
    };
    let mut sample = stripe_sample(object);
    if let Some(paths) = input.get("expand").and_then(Value::as_array) {
        for path in paths.iter().filter_map(Value::as_str) {
            expand_sample(&mut sample, path);
        }
    }
    let page = match action.plan {
        Plan::Search(_) => true,
        // By id, the customer; else (by email) a page.
        Plan::CustomerFind => input.get("id").is_none_or(Value::is_null),
        _ => false,
    };
    if page {
        return json!({"data": [sample], "has_more": false});
    }
    if action.operation == "delete" {
        return json!({"id": sample["id"], "object": object, "deleted": true});
    }
    sample
}

/// The object an expandable field holds once expanded (from the spec's
/// `x-expansionResources`; `default_source` can be several, a card here).
pub fn expansion_object(field: &str) -> Option<&'static str> {
    Some(match field {
        "customer" => "customer",
        "product" => "product",
        "default_price" => "price",
        "latest_invoice" | "invoice" | "latest_revision" => "invoice",
        "payment_intent" => "payment_intent",
        "subscription" => "subscription",
        "charge" | "latest_charge" => "charge",
        "default_payment_method" | "payment_method" => "payment_method",
        "default_source" => "card",
        "test_clock" => "test_helpers.test_clock",
        "on_behalf_of" => "account",
        "application" => "application",
        "pending_setup_intent" => "setup_intent",
        "schedule" => "subscription_schedule",
        "tax_code" => "tax_code",
        "quote" => "quote",
        "review" => "review",
        _ => return None,
    })
}

/// Replaces the id at `path` (dotted, each step expandable) with the
/// sample object it expands to.
fn expand_sample(sample: &mut Value, path: &str) {
    let mut at = sample;
    for field in path.split('.') {
        let Some(object) = expansion_object(field) else {
            return;
        };
        let Some(slot) = at.get_mut(field) else {
            return;
        };
        if !slot.is_object() {
            *slot = stripe_sample(object);
        }
        at = slot;
    }
}

/// The eight action groups, one Lambda each.
pub const GROUPS: [&str; 8] = [
    "customers",
    "products",
    "prices",
    "subscriptions",
    "invoices",
    "coupons",
    "payments",
    "events",
];

pub fn action(group: &str, operation: &str) -> Option<&'static Action> {
    ACTIONS
        .iter()
        .find(|a| a.group == group && a.operation == operation)
}

pub fn action_by_key(key: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.key == key)
}

/// The whole catalog as served by `GET /catalog`.
pub fn to_json() -> Value {
    json!({
        "triggers": TRIGGERS,
        "actions": ACTIONS.iter().map(|a| json!({
            "key": a.key,
            "display_name": a.display_name,
            "group": a.group,
            "operation": a.operation,
            "description": a.description,
            "input_schema": schema(a),
        })).collect::<Vec<_>>(),
        "workflow_filter_schema": crate::workflow::filter::schema(),
        "workflow_options": workflow_options(),
    })
}

/// A workflow's switches against misfires, as the catalog describes them.
pub fn workflow_options() -> Value {
    json!({
        "ignore_own_writes": {"type": "boolean", "default": true, "description": "Events caused by this workflow's own Stripe writes (their request.idempotency_key names it) do not start it again."},
        "fetch_latest": {"type": "boolean", "default": false, "description": "Re-read the event's object from Stripe before delivering and running steps; the delivery is {\"event\", \"current\"} and templates read {{current.…}}."},
        "skip_stale": {"type": "boolean", "default": false, "description": "Skip an event older than one this workflow already acted on for the same object; the run succeeds with skipped saying why."},
    })
}

/// docs/catalog.md, generated; a test keeps the committed file equal to it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Catalog\n\nGenerated from `functions/core/src/catalog` (`cargo run -p connector-core --example catalog_md > docs/catalog.md`); a test fails when this file and the code differ.\n\n## Triggers (25)\n\n| key | name | group |\n|---|---|---|\n",
    );
    for t in &TRIGGERS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            t.key, t.display_name, t.group
        ));
    }
    out.push_str("\n## Workflow filters\n\nA workflow's `filter` (also in `GET /catalog` as `workflow_filter_schema`). All conditions must hold: `{\"event.data.object.status\": \"draft\"}` is equality, `{\"event.data.object.customer\": {\"exists\": true}}` presence. For `*.updated` triggers, `{\"changed\": [\"status\", \"metadata.plan\"]}` fires when any of those fields changed and `{\"changed\": {\"status\": {\"from\": \"active\", \"to\": \"past_due\"}}}` when each named field changed as given (`{}`: any change), read from Stripe's `data.previous_attributes`.\n\n```json\n");
    out.push_str(
        &serde_json::to_string_pretty(&crate::workflow::filter::schema()).unwrap_or_default(),
    );
    out.push_str("\n```\n\n## Workflow options\n\n| option | default | does |\n|---|---|---|\n");
    if let Value::Object(options) = workflow_options() {
        for (name, option) in options {
            out.push_str(&format!(
                "| `{name}` | `{}` | {} |\n",
                option["default"],
                option["description"].as_str().unwrap_or_default()
            ));
        }
    }
    out.push_str(&format!("\n## Actions ({})\n\n`POST /connections/{{id}}/actions/{{group}}/{{operation}}` with the input as a JSON body.\n", ACTIONS.len()));
    for group in GROUPS {
        out.push_str(&format!("\n### {group}\n"));
        for a in ACTIONS.iter().filter(|a| a.group == group) {
            out.push_str(&format!("\n#### `{}` — {}\n\n{}\n\n| field | type | required | description |\n|---|---|---|---|\n", a.key, a.display_name, a.description));
            for f in a.fields {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    f.name,
                    validate::describe(&f.kind),
                    if f.required { "yes" } else { "" },
                    f.doc
                ));
            }
        }
    }
    out
}

/// Where an event's object is read back: the API path of a Stripe object of
/// this type, for the types the triggers carry. `None` for another type or
/// an id that could not go into a path.
pub fn object_path(object_type: &str, id: &str) -> Option<String> {
    let collection = match object_type {
        "customer" => "customers",
        "product" => "products",
        "price" => "prices",
        "subscription" => "subscriptions",
        "invoice" => "invoices",
        "payment_intent" => "payment_intents",
        "coupon" => "coupons",
        _ => return None,
    };
    let safe = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    safe.then(|| format!("/v1/{collection}/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_read_back_from_their_own_path_only() {
        assert_eq!(
            object_path("customer", "cus_1").as_deref(),
            Some("/v1/customers/cus_1")
        );
        assert_eq!(
            object_path("subscription", "sub_1").as_deref(),
            Some("/v1/subscriptions/sub_1")
        );
        assert_eq!(object_path("charge", "ch_1"), None);
        for bad in ["", "cus_1/../x", "cus 1", "cus_1?x=1"] {
            assert_eq!(object_path("customer", bad), None, "{bad}");
        }
    }

    #[test]
    fn every_trigger_has_a_sample_of_its_object() {
        for t in &TRIGGERS {
            let e = sample_event(t.key);
            assert_eq!(e["type"], t.key);
            assert!(e["data"]["object"]["id"].is_string(), "{}", t.key);
        }
        assert_eq!(
            sample_event("customer.subscription.updated")["data"]["object"]["object"],
            "subscription"
        );
        assert_eq!(
            sample_result(action_by_key("invoices.finalize").unwrap(), &json!({}))["object"],
            "invoice"
        );
        assert!(
            sample_result(action_by_key("invoices.search").unwrap(), &json!({}))["data"].is_array()
        );
    }

    #[test]
    fn forty_one_actions_in_eight_groups_with_unique_keys() {
        assert_eq!(ACTIONS.len(), 41);
        let mut keys: Vec<_> = ACTIONS.iter().map(|a| a.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 41);
        for a in ACTIONS {
            assert!(GROUPS.contains(&a.group), "{}", a.key);
            assert_eq!(a.key, format!("{}.{}", a.group, a.operation));
        }
        let per_group: Vec<usize> = GROUPS
            .iter()
            .map(|g| ACTIONS.iter().filter(|a| a.group == *g).count())
            .collect();
        assert_eq!(per_group, [4, 5, 5, 5, 10, 4, 6, 2]);
    }
}
