//! Templates in step inputs: `{{event.data.object.id}}` reads the Stripe
//! event, `{{steps.0.id}}` an earlier step's result. A string that is one
//! whole template keeps the value's JSON type; templates inside a longer
//! string are replaced by the value's text.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed template in {0:?}")]
    Unclosed(String),
    #[error("template {{{{{0}}}}} must start with event. or steps.N.")]
    BadRoot(String),
    #[error("template {{{{{0}}}}} has an empty or invalid segment")]
    BadPath(String),
    #[error("template {{{{{0}}}}} matched nothing in the event or earlier steps")]
    Missing(String),
}

/// Every template path in a value, checked for form. For validating a
/// workflow when it is created.
pub fn paths(value: &Value) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    collect(value, &mut out)?;
    Ok(out)
}

fn collect(value: &Value, out: &mut Vec<String>) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => {
            for path in scan(s)? {
                check_path(&path)?;
                out.push(path);
            }
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect(v, out))?,
        Value::Object(map) => map.values().try_for_each(|v| collect(v, out))?,
        _ => {}
    }
    Ok(())
}

/// The paths inside `{{ … }}` in a string, in order.
fn scan(s: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(s.to_string()))?;
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    Ok(out)
}

fn check_path(path: &str) -> Result<(), TemplateError> {
    let mut segments = path.split('.');
    match (segments.next(), path.starts_with("steps.")) {
        (Some("event"), _) => {}
        (Some("steps"), true) => {
            let n = segments.next().unwrap_or_default();
            if n.parse::<usize>().is_err() {
                return Err(TemplateError::BadRoot(path.to_string()));
            }
        }
        _ => return Err(TemplateError::BadRoot(path.to_string())),
    }
    if path.split('.').any(|seg| {
        seg.is_empty()
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(TemplateError::BadPath(path.to_string()));
    }
    Ok(())
}

/// Looks a dotted path up in a value; numeric segments index arrays.
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Fills every template in `value` from `context` = `{"event": …, "steps": […]}`.
pub fn render(value: &Value, context: &Value) -> Result<Value, TemplateError> {
    match value {
        Value::String(s) => render_str(s, context),
        Value::Array(items) => items
            .iter()
            .map(|v| render(v, context))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| render(v, context).map(|r| (k.clone(), r)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn render_str(s: &str, context: &Value) -> Result<Value, TemplateError> {
    let paths = scan(s)?;
    if paths.is_empty() {
        return Ok(Value::String(s.to_string()));
    }
    for p in &paths {
        check_path(p)?;
    }
    let trimmed = s.trim();
    let whole = paths.len() == 1
        && trimmed.starts_with("{{")
        && trimmed.ends_with("}}")
        && trimmed.matches("{{").count() == 1;
    if whole {
        return lookup(context, &paths[0])
            .cloned()
            .ok_or_else(|| TemplateError::Missing(paths[0].clone()));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(s.to_string()))?;
        let path = after[..end].trim();
        let value =
            lookup(context, path).ok_or_else(|| TemplateError::Missing(path.to_string()))?;
        match value {
            Value::String(text) => out.push_str(text),
            Value::Null => {}
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "event": {"id": "evt_1", "type": "invoice.created", "data": {"object": {
                "id": "in_1", "amount_due": 2000, "paid": false, "lines": {"data": [{"price": {"id": "price_1"}}]},
                "metadata": {"order": "42"}, "customer_email": null}}},
            "steps": [{"id": "cus_9", "email": "a@b.co"}],
        })
    }

    #[test]
    fn a_whole_template_keeps_its_json_type() {
        let input = json!({"id": "{{event.data.object.id}}", "amount": "{{ event.data.object.amount_due }}",
                           "paid": "{{event.data.object.paid}}", "meta": "{{event.data.object.metadata}}"});
        assert_eq!(
            render(&input, &ctx()).unwrap(),
            json!({"id": "in_1", "amount": 2000, "paid": false, "meta": {"order": "42"}})
        );
    }

    #[test]
    fn templates_inside_text_are_interpolated() {
        let input = json!({"description": "Invoice {{event.data.object.id}} for {{steps.0.email}} ({{event.data.object.amount_due}}){{event.data.object.customer_email}}"});
        assert_eq!(
            render(&input, &ctx()).unwrap(),
            json!({"description": "Invoice in_1 for a@b.co (2000)"})
        );
    }

    #[test]
    fn arrays_index_and_nested_inputs_render() {
        let input = json!({"items": [{"price": "{{event.data.object.lines.data.0.price.id}}", "quantity": 1}], "customer": "{{steps.0.id}}"});
        assert_eq!(
            render(&input, &ctx()).unwrap(),
            json!({"items": [{"price": "price_1", "quantity": 1}], "customer": "cus_9"})
        );
    }

    #[test]
    fn missing_values_and_malformed_templates_are_errors() {
        assert_eq!(
            render(&json!("{{event.data.object.nope}}"), &ctx()),
            Err(TemplateError::Missing("event.data.object.nope".into()))
        );
        assert_eq!(
            render(&json!("{{steps.3.id}}"), &ctx()),
            Err(TemplateError::Missing("steps.3.id".into()))
        );
        assert!(matches!(
            render(&json!("{{event.id"), &ctx()),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            paths(&json!({"a": "{{secrets.key}}"})),
            Err(TemplateError::BadRoot(_))
        ));
        assert!(matches!(
            paths(&json!({"a": "{{steps.x.id}}"})),
            Err(TemplateError::BadRoot(_))
        ));
        assert!(matches!(
            paths(&json!({"a": "{{event..id}}"})),
            Err(TemplateError::BadPath(_))
        ));
        assert_eq!(
            paths(&json!({"a": ["{{event.id}}", "x {{steps.0.id}}"]})).unwrap(),
            ["event.id", "steps.0.id"]
        );
    }

    #[test]
    fn values_without_templates_pass_through() {
        let input = json!({"n": 5, "b": true, "s": "plain {text}", "null": null});
        assert_eq!(render(&input, &ctx()).unwrap(), input);
    }
}
