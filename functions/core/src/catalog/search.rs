//! Stripe's search query language, built from structured fields: values
//! quoted with `"` and `\` escaped, `metadata["key"]:"value"`, numeric ranges
//! with `>`, `>=`, `<`, `<=`, clauses joined with AND. Nothing a user types can
//! leave its quoted value.

use serde_json::{Map, Value};

use super::validate::InvalidInput;
use super::{Action, Kind};

/// Quotes a value for the query language.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The fields of a search that say how to page, not what to find.
const PAGING: [&str; 3] = ["limit", "page", "all"];

/// Builds the `query` from a validated search input (without its paging fields).
pub fn build_query(action: &Action, input: &Map<String, Value>) -> Result<String, InvalidInput> {
    let mut clauses = Vec::new();
    for field in action.fields {
        let Some(value) = input.get(field.name) else {
            continue;
        };
        if PAGING.contains(&field.name) {
            continue;
        }
        match (&field.kind, value) {
            (Kind::Metadata, Value::Object(map)) => {
                for (k, v) in map {
                    // Stripe keeps metadata as text: a number or boolean is
                    // searched as the text create and update stored.
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(InvalidInput::at(
                                format!("{}.{k}", field.name),
                                format!("a metadata value to search for cannot be {other}"),
                            ));
                        }
                    };
                    clauses.push(format!("metadata[{}]:{}", quote(k), quote(&text)));
                }
            }
            (Kind::Range, Value::Object(map)) => {
                for (op, symbol) in [("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")] {
                    if let Some(n) = map.get(op).and_then(Value::as_i64) {
                        clauses.push(format!("{}{symbol}{n}", field.name));
                    }
                }
            }
            (_, Value::Bool(b)) => {
                clauses.push(format!("{}:{}", field.name, quote(&b.to_string())));
            }
            // Substring: `name~"gold"`.
            (_, Value::String(s)) if field.name.ends_with("_contains") => clauses.push(format!(
                "{}~{}",
                field.name.trim_end_matches("_contains"),
                quote(s)
            )),
            (_, Value::String(s)) => clauses.push(format!("{}:{}", field.name, quote(s))),
            (_, Value::Number(n)) => clauses.push(format!("{}:{n}", field.name)),
            _ => {}
        }
    }
    if clauses.is_empty() {
        let fields: Vec<&str> = action
            .fields
            .iter()
            .map(|f| f.name)
            .filter(|n| !PAGING.contains(n))
            .collect();
        return Err(InvalidInput::new(format!(
            "{} needs at least one of {}",
            action.key,
            fields.join(", ")
        )));
    }
    Ok(clauses.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{action_by_key, validate};
    use serde_json::json;

    fn query(key: &str, input: Value) -> String {
        let a = action_by_key(key).unwrap();
        let v = validate(a, &input).unwrap();
        build_query(a, v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn fields_metadata_and_ranges() {
        assert_eq!(
            query(
                "invoices.search",
                json!({"status": "paid", "customer": "cus_1", "total": {"gte": 1000, "lt": 5000},
                                          "created": {"gt": 1700000000}, "metadata": {"order": "42"}, "limit": 5})
            ),
            r#"status:"paid" AND customer:"cus_1" AND created>1700000000 AND metadata["order"]:"42" AND total>=1000 AND total<5000"#
        );
        assert_eq!(
            query(
                "products.search",
                json!({"active": true, "name": "Pro plan"})
            ),
            r#"active:"true" AND name:"Pro plan""#
        );
    }

    /// Create and update send `{"seats": 5, "vip": true}` as "5" and
    /// "true"; a search for the same metadata must look for the same text,
    /// not for empty values.
    #[test]
    fn number_and_boolean_metadata_are_searched_as_the_text_stripe_keeps() {
        for key in ["products.search", "subscriptions.search", "invoices.search"] {
            assert_eq!(
                query(
                    key,
                    json!({"metadata": {"seats": 5, "vip": true, "ratio": 0.5}})
                ),
                r#"metadata["seats"]:"5" AND metadata["vip"]:"true" AND metadata["ratio"]:"0.5""#,
                "{key}"
            );
        }
    }

    #[test]
    fn an_injected_or_stays_inside_the_quoted_value() {
        let q = query("invoices.search", json!({"number": "x\" OR status:\"paid"}));
        assert_eq!(q, r#"number:"x\" OR status:\"paid""#);
        let q = query(
            "products.search",
            json!({"name": "a\\\" OR active:\"true", "metadata": {"k\":\"x": "v\\"}}),
        );
        assert_eq!(
            q,
            r#"name:"a\\\" OR active:\"true" AND metadata["k\":\"x"]:"v\\""#
        );
    }

    #[test]
    fn a_name_part_is_searched_with_the_substring_operator() {
        assert_eq!(
            query(
                "products.search",
                json!({"name_contains": "gold", "active": true})
            ),
            r#"active:"true" AND name~"gold""#
        );
    }

    /// `all` and `ended` filter the list endpoint; as a search status they
    /// find nothing, so they are refused naming the field.
    #[test]
    fn subscription_search_offers_only_real_statuses() {
        let a = action_by_key("subscriptions.search").unwrap();
        for status in ["all", "ended"] {
            let e = validate(a, &json!({"status": status})).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("status"), "{status}");
        }
        assert_eq!(
            query("subscriptions.search", json!({"status": "past_due"})),
            r#"status:"past_due""#
        );
    }

    #[test]
    fn a_search_needs_a_criterion() {
        let a = action_by_key("prices.search").unwrap();
        let v = validate(a, &json!({"limit": 3})).unwrap();
        let e = build_query(a, v.as_object().unwrap()).unwrap_err();
        assert!(
            e.message.contains("at least one of active, currency"),
            "{}",
            e.message
        );
    }
}
