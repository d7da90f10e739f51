//! Workflow filters: conditions on event fields, all of which must hold.
//! `{"event.data.object.status": "draft"}` is equality;
//! `{"event.data.object.customer": {"exists": true}}` is presence (a null
//! value counts as absent).

use serde_json::{Map, Value};

use super::template::lookup;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter path {0:?} must start with event.")]
    BadPath(String),
    #[error("filter condition on {0:?}: {{\"exists\": …}} takes true or false")]
    BadExists(String),
}

/// Checks a filter's form when a workflow is created.
pub fn check(filter: &Map<String, Value>) -> Result<(), FilterError> {
    for (path, condition) in filter {
        let ok_path = path.starts_with("event.") && path.split('.').all(|s| !s.is_empty());
        if !ok_path {
            return Err(FilterError::BadPath(path.clone()));
        }
        if let Some(exists) = exists_condition(condition) {
            if !exists.is_boolean() {
                return Err(FilterError::BadExists(path.clone()));
            }
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
            check(&f(json!({"data.object.status": "draft"}))),
            Err(FilterError::BadPath("data.object.status".into()))
        );
        assert_eq!(
            check(&f(json!({"event..x": 1}))),
            Err(FilterError::BadPath("event..x".into()))
        );
        assert!(matches!(
            check(&f(json!({"event.x": {"exists": "yes"}}))),
            Err(FilterError::BadExists(_))
        ));
        assert!(check(&f(json!({"event.x": {"exists": true}, "event.y": [1, 2]}))).is_ok());
    }
}
