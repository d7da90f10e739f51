//! Workflow filters: conditions on event fields, all of which must hold.
//! `{"event.data.object.status": "draft"}` is equality;
//! `{"event.data.object.customer": {"exists": true}}` is presence (a null
//! value counts as absent).
//!
//! For `*.updated` triggers, `"changed"` fires only when a field the
//! workflow cares about changed, read from Stripe's
//! `data.previous_attributes`: `{"changed": ["status", "metadata.plan"]}`
//! (any of them changed), or `{"changed": {"status": {"to": "past_due"}}}`
//! (that field changed, to and/or `from` these values; `{}` for any change).

use serde_json::{Map, Value};

use super::template::lookup;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter path {0:?} must start with event.")]
    BadPath(String),
    #[error("filter condition on {0:?}: {{\"exists\": …}} takes true or false")]
    BadExists(String),
    #[error("{0}")]
    BadChanged(String),
}

/// The reserved filter key for changes on `*.updated` events.
pub const CHANGED: &str = "changed";

/// The JSON Schema of a workflow's `filter`, for the catalog.
pub fn schema() -> Value {
    let field = serde_json::json!({"type": "string", "pattern": "^[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*$", "description": "a field of the object, dotted for nested ones (metadata.plan)"});
    serde_json::json!({
        "type": "object",
        "description": "All conditions must hold. Keys starting with event. compare a field of the event: a value is equality, {\"exists\": bool} presence. \"changed\" (only for *.updated triggers) fires when a field changed, from data.previous_attributes.",
        "properties": {
            "changed": {
                "oneOf": [
                    {"type": "array", "items": field, "minItems": 1, "maxItems": 20, "description": "any of these fields changed"},
                    {"type": "object", "maxProperties": 20, "additionalProperties": {
                        "type": "object",
                        "properties": {"to": {"description": "its new value"}, "from": {"description": "its old value"}},
                        "additionalProperties": false
                    }, "description": "each named field changed (to and/or from these values)"}
                ]
            }
        },
        "patternProperties": {
            "^event\\.": {"description": "a value (equality) or {\"exists\": true|false}"}
        },
        "additionalProperties": false
    })
}

fn field_ok(field: &str) -> bool {
    !field.is_empty()
        && field.len() <= 200
        && field
            .split('.')
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// Checks a `changed` condition's form, and that the trigger has
/// `previous_attributes` (`*.updated`, or `*`).
pub fn check_changed(condition: &Value, trigger: &str) -> Result<(), FilterError> {
    if trigger != "*" && !trigger.ends_with(".updated") {
        return Err(FilterError::BadChanged(format!(
            "\"changed\" needs an *.updated trigger (Stripe says what changed only there), not {trigger}"
        )));
    }
    let bad = |m: &str| Err(FilterError::BadChanged(m.to_string()));
    match condition {
        Value::Array(fields) if !fields.is_empty() && fields.len() <= 20 => {
            for f in fields {
                if !f.as_str().is_some_and(field_ok) {
                    return bad(
                        "\"changed\" lists field names such as \"status\" or \"metadata.plan\"",
                    );
                }
            }
            Ok(())
        }
        Value::Object(fields) if !fields.is_empty() && fields.len() <= 20 => {
            for (f, rule) in fields {
                if !field_ok(f) {
                    return bad("\"changed\" names fields such as \"status\" or \"metadata.plan\"");
                }
                let Value::Object(rule) = rule else {
                    return bad("each field of \"changed\" takes {\"to\"?, \"from\"?}");
                };
                if rule.keys().any(|k| k != "to" && k != "from") {
                    return bad("each field of \"changed\" takes only \"to\" and \"from\"");
                }
            }
            Ok(())
        }
        _ => bad(
            "\"changed\" is a list of 1 to 20 fields, or an object of 1 to 20 fields with {\"to\"?, \"from\"?}",
        ),
    }
}

/// Whether `field` changed in an `*.updated` event, per `rule`
/// (`{"to"?, "from"?}`; `None` for any change).
fn changed(event: &Value, field: &str, rule: Option<&Map<String, Value>>) -> bool {
    fn walk<'a>(mut node: &'a Value, field: &str) -> Option<&'a Value> {
        for part in field.split('.') {
            node = node.get(part)?;
        }
        Some(node)
    }
    // Present in previous_attributes (even as null: it was unset) means it
    // changed; absent means it did not.
    let Some(previous) = walk(&event["data"]["previous_attributes"], field) else {
        return false;
    };
    let current = walk(&event["data"]["object"], field).unwrap_or(&Value::Null);
    rule.is_none_or(|rule| {
        rule.get("to").is_none_or(|to| to == current)
            && rule.get("from").is_none_or(|from| from == previous)
    })
}

/// Checks a filter's form when a workflow is created.
pub fn check(filter: &Map<String, Value>, trigger: &str) -> Result<(), FilterError> {
    for (path, condition) in filter {
        if path == CHANGED {
            check_changed(condition, trigger)?;
            continue;
        }
        let ok_path = path.starts_with("event.") && path.split('.').all(|s| !s.is_empty());
        if !ok_path {
            return Err(FilterError::BadPath(path.clone()));
        }
        if let Some(exists) = exists_condition(condition)
            && !exists.is_boolean()
        {
            return Err(FilterError::BadExists(path.clone()));
        }
    }
    Ok(())
}

fn exists_condition(condition: &Value) -> Option<&Value> {
    match condition {
        Value::Object(map) if map.len() == 1 => map.get("exists"),
        _ => None,
    }
}

/// True when every condition holds for `event` (the whole Stripe event).
pub fn matches(filter: &Map<String, Value>, event: &Value) -> bool {
    let root = serde_json::json!({ "event": event });
    filter.iter().all(|(path, condition)| {
        if path == CHANGED {
            return match condition {
                Value::Array(fields) => fields
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|f| changed(event, f, None)),
                Value::Object(fields) => fields
                    .iter()
                    .all(|(f, rule)| changed(event, f, rule.as_object())),
                _ => false,
            };
        }
        let found = lookup(&root, path).filter(|v| !v.is_null());
        match exists_condition(condition).and_then(Value::as_bool) {
            Some(want) => found.is_some() == want,
            None => found == Some(condition),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn updated(object: Value, previous: Value) -> Value {
        json!({"type": "customer.subscription.updated", "data": {"object": object, "previous_attributes": previous}})
    }

    #[test]
    fn changed_fires_on_added_removed_and_changed_fields_only() {
        let ev = updated(
            json!({"status": "past_due", "metadata": {"plan": "pro", "seats": "5"}, "cancel_at": null}),
            json!({"status": "active", "metadata": {"plan": null}, "cancel_at": 1_700_000_000}),
        );
        // Any of a list.
        assert!(matches(&f(json!({"changed": ["status"]})), &ev));
        assert!(
            matches(&f(json!({"changed": ["quantity", "metadata.plan"]})), &ev),
            "added"
        );
        assert!(
            matches(&f(json!({"changed": ["cancel_at"]})), &ev),
            "removed"
        );
        assert!(
            !matches(&f(json!({"changed": ["quantity", "metadata.seats"]})), &ev),
            "unchanged"
        );
        // To and from.
        assert!(matches(
            &f(json!({"changed": {"status": {"to": "past_due"}}})),
            &ev
        ));
        assert!(!matches(
            &f(json!({"changed": {"status": {"to": "canceled"}}})),
            &ev
        ));
        assert!(matches(
            &f(json!({"changed": {"status": {"from": "active", "to": "past_due"}}})),
            &ev
        ));
        assert!(!matches(
            &f(json!({"changed": {"status": {"from": "trialing"}}})),
            &ev
        ));
        assert!(matches(
            &f(json!({"changed": {"metadata.plan": {"from": null, "to": "pro"}}})),
            &ev
        ));
        assert!(matches(
            &f(json!({"changed": {"cancel_at": {"to": null}}})),
            &ev
        ));
        assert!(
            matches(&f(json!({"changed": {"status": {}}})), &ev),
            "any change"
        );
        // Each named field must change.
        assert!(!matches(
            &f(json!({"changed": {"status": {}, "quantity": {}}})),
            &ev
        ));
        // Combined with an equality condition.
        assert!(matches(
            &f(json!({"changed": ["status"], "event.data.object.metadata.plan": "pro"})),
            &ev
        ));
        // An event without previous_attributes changed nothing.
        assert!(!matches(
            &f(json!({"changed": ["status"]})),
            &json!({"data": {"object": {"status": "x"}}})
        ));
    }

    #[test]
    fn bad_changed_filters_are_refused() {
        for (bad, trigger) in [
            (json!({"changed": []}), "customer.updated"),
            (json!({"changed": "status"}), "customer.updated"),
            (json!({"changed": [5]}), "customer.updated"),
            (json!({"changed": ["a..b"]}), "customer.updated"),
            (
                json!({"changed": {"status": "past_due"}}),
                "customer.updated",
            ),
            (
                json!({"changed": {"status": {"into": 1}}}),
                "customer.updated",
            ),
            (json!({"changed": ["status"]}), "invoice.created"),
        ] {
            assert!(
                matches!(
                    check(&f(bad.clone()), trigger),
                    Err(FilterError::BadChanged(_))
                ),
                "{bad} on {trigger}"
            );
        }
        assert!(check(&f(json!({"changed": ["status"]})), "*").is_ok());
        assert!(
            check(
                &f(json!({"changed": {"status": {"to": 1}}})),
                "customer.updated"
            )
            .is_ok()
        );
    }

    fn f(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn equality_and_presence() {
        let event = json!({"type": "invoice.created", "data": {"object": {"status": "draft", "customer": "cus_1", "discount": null, "total": 0}}});
        assert!(matches(&f(json!({})), &event));
        assert!(matches(
            &f(json!({"event.data.object.status": "draft"})),
            &event
        ));
        assert!(!matches(
            &f(json!({"event.data.object.status": "open"})),
            &event
        ));
        assert!(matches(
            &f(json!({"event.data.object.total": 0, "event.type": "invoice.created"})),
            &event
        ));
        assert!(
            !matches(&f(json!({"event.data.object.total": "0"})), &event),
            "types must match"
        );
        assert!(matches(
            &f(json!({"event.data.object.customer": {"exists": true}})),
            &event
        ));
        assert!(
            matches(
                &f(json!({"event.data.object.discount": {"exists": false}})),
                &event
            ),
            "null is absent"
        );
        assert!(!matches(
            &f(json!({"event.data.object.missing": {"exists": true}})),
            &event
        ));
        assert!(!matches(
            &f(json!({"event.data.object.missing": "x"})),
            &event
        ));
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert_eq!(
            check(
                &f(json!({"data.object.status": "draft"})),
                "invoice.created"
            ),
            Err(FilterError::BadPath("data.object.status".into()))
        );
        assert_eq!(
            check(&f(json!({"event..x": 1})), "invoice.created"),
            Err(FilterError::BadPath("event..x".into()))
        );
        assert!(matches!(
            check(&f(json!({"event.x": {"exists": "yes"}})), "invoice.created"),
            Err(FilterError::BadExists(_))
        ));
        assert!(
            check(
                &f(json!({"event.x": {"exists": true}, "event.y": [1, 2]})),
                "invoice.created"
            )
            .is_ok()
        );
    }
}
