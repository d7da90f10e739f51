//! Templates in step inputs: `{{event.data.object.id}}` reads the Stripe
//! event, `{{steps.0.id}}` an earlier step's result. A string that is one
//! whole template keeps the value's JSON type; templates inside a longer
//! string are replaced by the value's text.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed template in {0:?}")]
    Unclosed(String),
    #[error("template {{{{{0}}}}} must start with event., current. or steps.N.")]
    BadRoot(String),
    #[error("template {{{{{0}}}}} has an empty or invalid segment")]
    BadPath(String),
    #[error("template {{{{{0}}}}} matched nothing in the event or earlier steps")]
    Missing(String),
    #[error("the filled-in input is larger than {0} bytes")]
    TooLarge(usize),
}

/// Most bytes (as JSON) one rendered input may take: far above any Stripe
/// request, far below what would strain a function's memory.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024;

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
        // `current` is the object re-read from Stripe (`fetch_latest`).
        (Some("event" | "current"), _) => {}
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
    Renderer {
        left: MAX_RENDERED_BYTES,
        missing_as_null: false,
        missing: false,
    }
    .render(value, context)
}

/// As [`render`], but a path that matches nothing reads as `null`: for
/// checking a `*` workflow, whose events' shapes are not known in advance,
/// against a sample. Answers the input and whether any path was missing.
pub fn render_lenient(value: &Value, context: &Value) -> Result<(Value, bool), TemplateError> {
    let mut r = Renderer {
        left: MAX_RENDERED_BYTES,
        missing_as_null: true,
        missing: false,
    };
    let filled = r.render(value, context)?;
    Ok((filled, r.missing))
}

/// Fills templates within a byte budget: the output is charged as it is
/// made, before any large value is copied, so no input and event can make
/// it allocate more than [`MAX_RENDERED_BYTES`] and the event itself.
struct Renderer {
    /// Bytes the output may still take.
    left: usize,
    /// A path that matches nothing reads as null (else it is an error)…
    missing_as_null: bool,
    /// … and this records that one did.
    missing: bool,
}

impl Renderer {
    fn charge(&mut self, bytes: usize) -> Result<(), TemplateError> {
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(TemplateError::TooLarge(MAX_RENDERED_BYTES))?;
        Ok(())
    }

    fn render(&mut self, value: &Value, context: &Value) -> Result<Value, TemplateError> {
        match value {
            Value::String(s) => self.render_str(s, context),
            Value::Array(items) => {
                self.charge(2 + items.len())?;
                items
                    .iter()
                    .map(|v| self.render(v, context))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
            Value::Object(map) => {
                self.charge(2 + map.len())?;
                map.iter()
                    .map(|(k, v)| {
                        self.charge(k.len() + 3)?;
                        self.render(v, context).map(|r| (k.clone(), r))
                    })
                    .collect::<Result<serde_json::Map<_, _>, _>>()
                    .map(Value::Object)
            }
            other => {
                self.charge(json_size(other, self.left)?)?;
                Ok(other.clone())
            }
        }
    }

    fn lookup<'a>(
        &mut self,
        context: &'a Value,
        path: &str,
    ) -> Result<Option<&'a Value>, TemplateError> {
        match lookup(context, path) {
            Some(v) => Ok(Some(v)),
            None if self.missing_as_null => {
                self.missing = true;
                Ok(None)
            }
            None => Err(TemplateError::Missing(path.to_string())),
        }
    }
}

/// The size of a value as JSON, counted up to `limit` (past it: `TooLarge`),
/// without serializing it.
fn json_size(value: &Value, limit: usize) -> Result<usize, TemplateError> {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Null => 4,
            Value::Bool(_) => 5,
            Value::Number(n) => n.to_string().len(),
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(map) => {
                for (k, item) in map {
                    total += k.len() + 3;
                    stack.push(item);
                }
                2 + map.len()
            }
        };
        if total > limit {
            return Err(TemplateError::TooLarge(MAX_RENDERED_BYTES));
        }
    }
    Ok(total)
}

impl Renderer {
    fn render_str(&mut self, s: &str, context: &Value) -> Result<Value, TemplateError> {
        let paths = scan(s)?;
        if paths.is_empty() {
            self.charge(s.len() + 2)?;
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
            return match self.lookup(context, &paths[0])? {
                Some(found) => {
                    self.charge(json_size(found, self.left)?)?;
                    Ok(found.clone())
                }
                None => Ok(Value::Null),
            };
        }
        self.charge(s.len() + 2)?;
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(s.to_string()))?;
            let path = after[..end].trim();
            match self.lookup(context, path)? {
                Some(Value::String(text)) => {
                    self.charge(text.len())?;
                    out.push_str(text);
                }
                None | Some(Value::Null) => {}
                Some(other) => {
                    self.charge(json_size(other, self.left)?)?;
                    out.push_str(&other.to_string());
                }
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rendering_is_bounded_whatever_the_input_and_event() {
        let big = "x".repeat(100 * 1024);
        let ctx = json!({"event": {"data": {"object": {"big": big, "small": "ok"}}}, "steps": []});
        // One whole-value template of a 100 KB string.
        assert_eq!(
            render(&json!({"a": "{{event.data.object.big}}"}), &ctx),
            Err(TemplateError::TooLarge(MAX_RENDERED_BYTES))
        );
        // 2,000 copies inside strings and as whole values: refused early.
        let many: Vec<Value> = (0..2000)
            .map(|i| {
                if i % 2 == 0 {
                    json!("{{event.data.object.big}}")
                } else {
                    json!("a {{event.data.object.big}} b")
                }
            })
            .collect();
        assert_eq!(
            render(&Value::Array(many), &ctx),
            Err(TemplateError::TooLarge(MAX_RENDERED_BYTES))
        );
        // The same count of small values is fine.
        let small: Vec<Value> = (0..2000)
            .map(|_| json!("{{event.data.object.small}}"))
            .collect();
        assert!(render(&Value::Array(small), &ctx).is_ok());
        // A large literal input is bounded too.
        let literal = json!({"description": "y".repeat(MAX_RENDERED_BYTES)});
        assert!(render(&literal, &ctx).is_err());
    }

    #[test]
    fn lenient_rendering_reads_missing_paths_as_null_and_says_so() {
        let ctx = json!({"event": {"id": "evt_1"}, "steps": []});
        let (filled, missing) = render_lenient(
            &json!({"a": "{{event.nope}}", "b": "x{{event.nope}}y", "c": "{{event.id}}"}),
            &ctx,
        )
        .unwrap();
        assert!(missing);
        assert_eq!(filled, json!({"a": null, "b": "xy", "c": "evt_1"}));
        let (_, missing) = render_lenient(&json!({"c": "{{event.id}}"}), &ctx).unwrap();
        assert!(!missing);
    }

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
