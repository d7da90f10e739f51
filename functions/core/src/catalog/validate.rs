//! Checks an action's input against its fields before anything is sent to
//! Stripe, and renders the same fields as JSON Schema.

use serde_json::{Map, Value, json};

use super::{Action, Field, Kind};
use crate::ids;

/// An action input that breaks a rule of its action: nothing is sent.
/// `param` names the field as a JSON path (`metadata.plan`, `items[0].price`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    pub param: Option<String>,
    pub message: String,
}

impl InvalidInput {
    /// A rule of the whole input.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            param: None,
            message: message.into(),
        }
    }

    /// A rule of one field.
    pub fn at(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

fn bad(path: &str, message: impl Into<String>) -> InvalidInput {
    InvalidInput::at(path, message)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Validates `input` for `action`: a JSON object whose fields are all known,
/// required ones present, each of the right kind. Nulls count as absent.
/// Answers the cleaned object; an error names the field as a JSON path.
pub fn validate(action: &Action, input: &Value) -> Result<Value, InvalidInput> {
    let Value::Object(map) = input else {
        return Err(InvalidInput::new(format!(
            "the input of {} must be a JSON object",
            action.key
        )));
    };
    check_object(action.fields, map, "", action.key).map(Value::Object)
}

fn check_object(
    fields: &[Field],
    map: &Map<String, Value>,
    prefix: &str,
    owner: &str,
) -> Result<Map<String, Value>, InvalidInput> {
    for key in map.keys() {
        if !fields.iter().any(|f| f.name == key) {
            let accepted: Vec<&str> = fields.iter().map(|f| f.name).collect();
            return Err(bad(
                &join(prefix, key),
                format!(
                    "unknown field `{key}`; {owner} accepts {}",
                    accepted.join(", ")
                ),
            ));
        }
    }
    let mut out = Map::new();
    for field in fields {
        let path = join(prefix, field.name);
        match map.get(field.name) {
            None | Some(Value::Null) if field.required => {
                return Err(bad(&path, format!("missing field `{}`", field.name)));
            }
            None | Some(Value::Null) => {}
            Some(value) => {
                out.insert(field.name.to_string(), check(&field.kind, value, &path)?);
            }
        }
    }
    Ok(out)
}

fn string<'a>(value: &'a Value, path: &str, what: &str) -> Result<&'a str, InvalidInput> {
    value
        .as_str()
        .ok_or_else(|| bad(path, format!("`{path}` must be {what}")))
}

/// A whole number: `5`, or `5.0` as JSON Schema's `integer` also counts
/// it (a template or a float-only client may produce it).
fn whole(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            // Whole and below 2^53 in magnitude: the cast is exact.
            .map(|f| {
                #[allow(clippy::cast_possible_truncation)]
                let n = f as i64;
                n
            })
    })
}

fn integer(value: &Value, path: &str, min: i64, max: i64) -> Result<i64, InvalidInput> {
    whole(value)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            bad(
                path,
                format!("`{path}` must be a whole number from {min} to {max}"),
            )
        })
}

/// Characters refused in text: control characters but tab, newline and
/// carriage return. [`TEXT_PATTERN`] says the same to a JSON Schema validator.
fn refused_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t' && c != '\r'
}
const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";
/// No whitespace and no control character: a character of a URL.
const VISIBLE: &str = "[^\\s\\u0000-\\u001F\\u007F-\\u009F]";

/// [`is_email`] as a pattern: a local part, `@`, and a domain holding a dot
/// that is neither its first nor its last character; no second `@`.
fn email_pattern() -> String {
    let part = "[^@\\s\\u0000-\\u001F\\u007F-\\u009F]";
    let edge = "[^@.\\s\\u0000-\\u001F\\u007F-\\u009F]";
    format!("^{part}+@{edge}{part}*\\.{part}*{edge}$")
}
/// The latest Unix second that is still a four-digit year (9999-12-31).
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;
/// The largest amount Stripe takes (in the minor unit), and the bound of a range.
pub const MAX_AMOUNT: i64 = 99_999_999_999;

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.chars().count() <= 512
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks one value against a kind; `path` names it in the error.
pub fn check(kind: &Kind, value: &Value, path: &str) -> Result<Value, InvalidInput> {
    match kind {
        Kind::Text(max) => {
            let s = string(value, path, "a string")?;
            if s.chars().count() > *max {
                return Err(bad(
                    path,
                    format!("`{path}` must be at most {max} characters"),
                ));
            }
            if s.chars().any(refused_control) {
                return Err(bad(
                    path,
                    format!("`{path}` must not contain control characters"),
                ));
            }
        }
        Kind::Id(prefixes) => {
            let s = string(value, path, "a string")?;
            if !prefixes.iter().any(|p| ids::is_id(s, p)) {
                let want: Vec<String> = prefixes.iter().map(|p| format!("{p}…")).collect();
                return Err(bad(
                    path,
                    format!("`{path}` must be an id like {}", want.join(" or ")),
                ));
            }
        }
        Kind::CouponId => {
            let s = string(value, path, "a string")?;
            if s.is_empty()
                || s.len() > 200
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(
                    path,
                    format!("`{path}` must be 1 to 200 letters, digits, '-' or '_'"),
                ));
            }
        }
        Kind::Email => {
            if !is_email(string(value, path, "an email address")?) {
                return Err(bad(path, format!("`{path}` must be an email address")));
            }
        }
        Kind::Currency => {
            let s = string(value, path, "a currency code")?;
            if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(bad(
                    path,
                    format!("`{path}` must be a three-letter lowercase currency code such as usd"),
                ));
            }
        }
        Kind::Amount => {
            let Some(n) = whole(value).filter(|n| (0..=MAX_AMOUNT).contains(n)) else {
                return Err(bad(
                    path,
                    format!(
                        "`{path}` must be a non-negative whole number in the currency's minor unit (e.g. cents)"
                    ),
                ));
            };
            return Ok(Value::from(n));
        }
        Kind::Int(min, max) => {
            return integer(value, path, *min, *max).map(Value::from);
        }
        Kind::Timestamp => {
            return integer(value, path, 0, MAX_TIMESTAMP).map(Value::from);
        }
        Kind::IntOr(word, min, max) => {
            if value.as_str() == Some(*word) {
                return Ok(value.clone());
            }
            return whole(value)
                .filter(|n| (*min..=*max).contains(n))
                .map(Value::from)
                .ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "`{path}` must be a whole number from {min} to {max}, or \"{word}\""
                        ),
                    )
                });
        }
        Kind::Percent => {
            if value.as_f64().filter(|p| *p > 0.0 && *p <= 100.0).is_none() {
                return Err(bad(
                    path,
                    format!("`{path}` must be a number above 0 and at most 100"),
                ));
            }
        }
        Kind::Bool => {
            if !value.is_boolean() {
                return Err(bad(path, format!("`{path}` must be true or false")));
            }
        }
        Kind::Enum(values) => {
            let s = string(value, path, "a string")?;
            if !values.contains(&s) {
                return Err(bad(
                    path,
                    format!("`{path}` must be one of {}", values.join(", ")),
                ));
            }
        }
        Kind::Metadata => {
            let Value::Object(map) = value else {
                return Err(bad(
                    path,
                    format!("`{path}` must be an object of string values"),
                ));
            };
            if map.len() > 50 {
                return Err(bad(path, format!("`{path}` may have at most 50 keys")));
            }
            for (k, v) in map {
                let kp = format!("{path}.{k}");
                if k.is_empty() || k.chars().count() > 40 || k.contains('[') || k.contains(']') {
                    return Err(bad(
                        &kp,
                        "metadata keys must be 1 to 40 characters without '[' or ']'",
                    ));
                }
                // Form encoding sends numbers and booleans as text, as Stripe keeps them.
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(bad(
                            &kp,
                            format!("`{kp}` must be a string, number or boolean"),
                        ));
                    }
                };
                if text.chars().count() > 500 {
                    return Err(bad(&kp, "metadata values must be at most 500 characters"));
                }
            }
        }
        Kind::Object(fields) => {
            let Value::Object(map) = value else {
                return Err(bad(path, format!("`{path}` must be an object")));
            };
            return check_object(fields, map, path, path).map(Value::Object);
        }
        Kind::List(item, max) => {
            let Value::Array(items) = value else {
                return Err(bad(path, format!("`{path}` must be a list")));
            };
            if items.is_empty() || items.len() > *max {
                return Err(bad(path, format!("`{path}` must hold 1 to {max} entries")));
            }
            let checked: Result<Vec<Value>, InvalidInput> = items
                .iter()
                .enumerate()
                .map(|(i, v)| check(item, v, &format!("{path}[{i}]")))
                .collect();
            return checked.map(Value::Array);
        }
        Kind::Range => {
            let Value::Object(map) = value else {
                return Err(bad(
                    path,
                    format!("`{path}` must be an object with gt, gte, lt or lte"),
                ));
            };
            if map.is_empty() {
                return Err(bad(
                    path,
                    format!("`{path}` needs at least one of gt, gte, lt, lte"),
                ));
            }
            let mut out = Map::new();
            for (k, v) in map {
                if !["gt", "gte", "lt", "lte"].contains(&k.as_str()) {
                    return Err(bad(
                        &format!("{path}.{k}"),
                        format!("unknown field `{k}`; a range accepts gt, gte, lt, lte"),
                    ));
                }
                let n = integer(v, &format!("{path}.{k}"), -MAX_AMOUNT, MAX_AMOUNT)?;
                out.insert(k.clone(), Value::from(n));
            }
            return Ok(Value::Object(out));
        }
        Kind::Url => {
            let s = string(value, path, "a URL")?;
            if !(s.starts_with("https://") || s.starts_with("http://"))
                || s.chars().count() > 2048
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(bad(path, format!("`{path}` must be an http(s) URL")));
            }
        }
        Kind::PageToken => {
            let s = string(value, path, "a string")?;
            if s.is_empty() || s.len() > 5000 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    path,
                    format!("`{path}` must be a next_page token from a previous search"),
                ));
            }
        }
    }
    Ok(value.clone())
}

/// The JSON Schema (draft 2020-12) of an action's input. It and
/// [`validate`] give the same verdict on every input (a test holds them to
/// it); rules between fields (one of id or email, …) are checked after.
pub fn schema(action: &Action) -> Value {
    let mut s = object_schema(action.fields);
    s["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    s["title"] = json!(action.display_name);
    s["description"] = json!(action.description);
    s
}

fn object_schema(fields: &[Field]) -> Value {
    let mut properties = Map::new();
    for f in fields {
        let mut s = kind_schema(&f.kind);
        if !f.required {
            nullable(&mut s);
        }
        s["description"] = json!(f.doc);
        properties.insert(f.name.to_string(), s);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// An optional field may be `null`: the validator reads it as absent.
fn nullable(schema: &mut Value) {
    let kind = schema["type"].clone();
    schema["type"] = match kind {
        Value::Array(mut kinds) => {
            kinds.push(json!("null"));
            Value::Array(kinds)
        }
        one => json!([one, "null"]),
    };
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.push(Value::Null);
    }
}

fn kind_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Text(max) => json!({"type": "string", "maxLength": max, "pattern": TEXT_PATTERN}),
        Kind::Id(prefixes) => {
            let alternatives: Vec<String> = prefixes.iter().map(|p| regex_escape(p)).collect();
            json!({"type": "string", "pattern": format!("^({})[A-Za-z0-9_]{{1,200}}$", alternatives.join("|"))})
        }
        Kind::CouponId => json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,200}$"}),
        Kind::Email => json!({
            "type": "string", "format": "email", "maxLength": 512, "pattern": email_pattern(),
        }),
        Kind::Currency => json!({"type": "string", "pattern": "^[a-z]{3}$"}),
        Kind::Amount => json!({"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT}),
        Kind::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Timestamp => json!({"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP}),
        // `minimum`/`maximum` bind the number, `pattern` the string.
        Kind::IntOr(word, min, max) => json!({
            "type": ["integer", "string"], "minimum": min, "maximum": max, "pattern": format!("^{word}$"),
        }),
        Kind::Percent => json!({"type": "number", "exclusiveMinimum": 0, "maximum": 100}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Enum(values) => json!({"type": "string", "enum": values}),
        Kind::Metadata => json!({
            "type": "object", "maxProperties": 50,
            "propertyNames": {"minLength": 1, "maxLength": 40, "pattern": "^[^\\[\\]]*$"},
            "additionalProperties": {"type": ["string", "number", "boolean"], "maxLength": 500},
        }),
        Kind::Object(fields) => object_schema(fields),
        Kind::List(item, max) => {
            json!({"type": "array", "items": kind_schema(item), "minItems": 1, "maxItems": max})
        }
        Kind::Range => {
            let bound = json!({"type": "integer", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT});
            json!({
            "type": "object", "minProperties": 1, "additionalProperties": false,
            "properties": {"gt": bound, "gte": bound, "lt": bound, "lte": bound},
            })
        }
        Kind::Url => {
            json!({"type": "string", "format": "uri", "pattern": format!("^https?://{VISIBLE}*$"), "maxLength": 2048})
        }
        Kind::PageToken => json!({"type": "string", "pattern": "^[!-~]{1,5000}$"}),
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// A short human description of a kind, for docs/catalog.md.
pub(super) fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Text(max) => format!("string (≤ {max})"),
        Kind::Id(prefixes) => format!(
            "id ({})",
            prefixes
                .iter()
                .map(|p| format!("`{p}…`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Kind::CouponId => "coupon id".into(),
        Kind::Email => "email".into(),
        Kind::Currency => "currency (`usd`)".into(),
        Kind::Amount => "amount (minor unit)".into(),
        Kind::Int(min, max) => format!("integer {min}–{max}"),
        Kind::Timestamp => "Unix time".into(),
        Kind::IntOr(word, min, max) => format!("integer {min}–{max} or `{word}`"),
        Kind::Percent => "number (0–100]".into(),
        Kind::Bool => "boolean".into(),
        Kind::Enum(values) => values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", "),
        Kind::Metadata => "metadata".into(),
        Kind::Object(fields) => format!(
            "object ({})",
            fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
        ),
        Kind::List(item, max) => format!("list of ≤ {max} {}", describe(item)),
        Kind::Range => "range {gt, gte, lt, lte}".into(),
        Kind::Url => "URL".into(),
        Kind::PageToken => "page token".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::action_by_key;

    fn err(key: &str, input: Value) -> InvalidInput {
        validate(action_by_key(key).unwrap(), &input).unwrap_err()
    }

    #[test]
    fn unknown_fields_are_named_with_what_is_accepted() {
        let e = err("coupons.update", json!({"id": "SUMMER", "percent_off": 10}));
        assert_eq!(e.param.as_deref(), Some("percent_off"));
        assert!(
            e.message.contains("accepts id, name, metadata"),
            "{}",
            e.message
        );
    }

    #[test]
    fn ids_reject_path_characters() {
        for bad in [
            "cus_../x", "cus_a/b", "cus_a?b", "cus_a#b", "cus_ a", "cus_\n", "prod_123", "cus_",
        ] {
            assert_eq!(
                err("customers.find", json!({"id": bad})).param.as_deref(),
                Some("id"),
                "{bad:?}"
            );
        }
        assert_eq!(
            err("coupons.find", json!({"id": "a/b"})).param.as_deref(),
            Some("id")
        );
    }

    #[test]
    fn amounts_currencies_emails_and_enums() {
        let e = err("payments.create", json!({"amount": -5, "currency": "usd"}));
        assert_eq!(e.param.as_deref(), Some("amount"));
        assert_eq!(
            err(
                "payments.create",
                json!({"amount": 10.5, "currency": "usd"})
            )
            .param
            .as_deref(),
            Some("amount")
        );
        assert_eq!(
            err("payments.create", json!({"amount": 10, "currency": "USD"}))
                .param
                .as_deref(),
            Some("currency")
        );
        assert_eq!(
            err(
                "payments.create",
                json!({"amount": "10", "currency": "usd"})
            )
            .param
            .as_deref(),
            Some("amount")
        );
        assert_eq!(
            err("customers.create", json!({"email": "not-an-email"}))
                .param
                .as_deref(),
            Some("email")
        );
        assert_eq!(
            err("customers.create", json!({"email": "a b@c.de"}))
                .param
                .as_deref(),
            Some("email")
        );
        let e = err(
            "prices.create",
            json!({"product": "prod_1", "currency": "usd", "recurring": {"interval": "fortnight"}}),
        );
        assert_eq!(e.param.as_deref(), Some("recurring.interval"));
        assert!(e.message.contains("day, week, month, year"));
        assert_eq!(err("subscriptions.create", json!({"customer": "cus_1", "items": [{"price": "price_1"}], "collection_method": "cash"})).param.as_deref(), Some("collection_method"));
        assert_eq!(
            err(
                "coupons.create",
                json!({"duration": "sometimes", "percent_off": 5})
            )
            .param
            .as_deref(),
            Some("duration")
        );
        assert_eq!(
            err(
                "subscriptions.cancel",
                json!({"id": "sub_1", "cancellation_details": {"feedback": "meh"}})
            )
            .param
            .as_deref(),
            Some("cancellation_details.feedback")
        );
    }

    #[test]
    fn metadata_limits() {
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            err("customers.create", json!({"metadata": many}))
                .param
                .as_deref(),
            Some("metadata")
        );
        assert_eq!(
            err("customers.create", json!({"metadata": {"a[b]": "v"}}))
                .param
                .as_deref(),
            Some("metadata.a[b]")
        );
        assert_eq!(
            err(
                "customers.create",
                json!({"metadata": {"k".repeat(41): "v"}})
            )
            .param
            .as_deref(),
            Some(format!("metadata.{}", "k".repeat(41)).as_str())
        );
        assert_eq!(
            err(
                "customers.create",
                json!({"metadata": {"k": "v".repeat(501)}})
            )
            .param
            .as_deref(),
            Some("metadata.k")
        );
        assert_eq!(
            err("customers.create", json!({"metadata": {"k": [5]}}))
                .param
                .as_deref(),
            Some("metadata.k")
        );
        assert_eq!(
            err("customers.create", json!({"metadata": {"k": null}}))
                .param
                .as_deref(),
            Some("metadata.k")
        );
        assert!(
            validate(
                action_by_key("customers.create").unwrap(),
                &json!({"metadata": {"n": 5, "b": true}})
            )
            .is_ok()
        );
        assert!(
            validate(
                action_by_key("customers.create").unwrap(),
                &json!({"metadata": {"k": ""}})
            )
            .is_ok(),
            "empty unsets"
        );
    }

    #[test]
    fn lists_and_nesting_name_the_index() {
        let e = err(
            "subscriptions.create",
            json!({"customer": "cus_1", "items": [{"price": "price_1"}, {"price": "cus_2"}]}),
        );
        assert_eq!(e.param.as_deref(), Some("items[1].price"));
        let e = err(
            "subscriptions.create",
            json!({"customer": "cus_1", "items": []}),
        );
        assert_eq!(e.param.as_deref(), Some("items"));
        let e = err(
            "subscriptions.create",
            json!({"customer": "cus_1", "items": [{"price": "price_1", "qty": 1}]}),
        );
        assert_eq!(e.param.as_deref(), Some("items[0].qty"));
        assert_eq!(
            err("subscriptions.create", json!({"customer": "cus_1"})).message,
            "missing field `items`"
        );
    }

    #[test]
    fn nulls_are_absent_and_non_objects_are_refused() {
        let a = action_by_key("customers.create").unwrap();
        assert_eq!(validate(a, &json!({"name": null})).unwrap(), json!({}));
        assert!(validate(a, &json!([1])).is_err());
        assert_eq!(
            err("customers.update", json!({"id": null}))
                .param
                .as_deref(),
            Some("id")
        );
    }

    #[test]
    fn every_schema_is_a_closed_object_and_lists_its_required_fields() {
        for a in crate::catalog::ACTIONS {
            let s = schema(a);
            assert_eq!(s["type"], "object", "{}", a.key);
            assert_eq!(s["additionalProperties"], false);
            let required: Vec<&str> = s["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let expected: Vec<&str> = a
                .fields
                .iter()
                .filter(|f| f.required)
                .map(|f| f.name)
                .collect();
            assert_eq!(required, expected);
            assert_eq!(s["properties"].as_object().unwrap().len(), a.fields.len());
        }
    }
}
