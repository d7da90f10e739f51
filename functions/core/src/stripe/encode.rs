//! Stripe's bracket form encoding, used for POST bodies and GET queries.
//!
//! `{"metadata": {"k": "v"}, "items": [{"price": "p"}], "expand": ["a"]}`
//! becomes `metadata[k]=v&items[0][price]=p&expand[]=a`. Booleans are
//! lowercase, nulls are left out, an empty string is kept (it unsets a field
//! such as a metadata key), an empty array is sent as `key=` (it clears a
//! list), and an empty object is left out. Arrays of scalars use `[]`, arrays
//! of objects use indices, as Stripe's own libraries send them.

use serde_json::Value;

/// Encodes a JSON object as Stripe form pairs. A non-object encodes to nothing.
pub fn to_pairs(params: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(map) = params {
        for (k, v) in map {
            walk(k.clone(), v, &mut out);
        }
    }
    out
}

/// Encodes a JSON object as an `application/x-www-form-urlencoded` string with
/// readable brackets (`metadata[k]=v`); keys and values are percent-encoded.
pub fn encode(params: &Value) -> String {
    let mut s = String::new();
    for (i, (k, v)) in to_pairs(params).iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        push_key(&mut s, k);
        s.push('=');
        s.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
    s
}

fn push_key(out: &mut String, key: &str) {
    // Brackets structure the key and stay readable; every other byte is encoded.
    let mut start = 0;
    for (i, c) in key.char_indices() {
        if c == '[' || c == ']' {
            out.extend(form_urlencoded::byte_serialize(&key.as_bytes()[start..i]));
            out.push(c);
            start = i + 1;
        }
    }
    out.extend(form_urlencoded::byte_serialize(&key.as_bytes()[start..]));
}

fn walk(prefix: String, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((prefix, b.to_string())),
        Value::Number(n) => out.push((prefix, n.to_string())),
        Value::String(s) => out.push((prefix, s.clone())),
        Value::Array(items) if items.is_empty() => out.push((prefix, String::new())),
        Value::Array(items) => {
            let scalars = items
                .iter()
                .all(|v| !matches!(v, Value::Array(_) | Value::Object(_)));
            for (i, item) in items.iter().enumerate() {
                let key = if scalars {
                    format!("{prefix}[]")
                } else {
                    format!("{prefix}[{i}]")
                };
                walk(key, item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                walk(format!("{prefix}[{k}]"), v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_arrays_and_scalars() {
        let body = json!({
            "email": "a+b@example.com",
            "metadata": {"order id": "42", "cleared": ""},
            "recurring": {"interval": "month"},
            "items": [{"price": "price_1", "quantity": 2}, {"price": "price_2"}],
            "expand": ["customer", "latest_invoice.payment_intent"],
            "livemode": false,
            "description": null,
            "empty": {},
        });
        assert_eq!(
            encode(&body),
            "email=a%2Bb%40example.com&metadata[order+id]=42&metadata[cleared]=\
             &recurring[interval]=month&items[0][price]=price_1&items[0][quantity]=2\
             &items[1][price]=price_2&expand[]=customer&expand[]=latest_invoice.payment_intent\
             &livemode=false"
        );
    }

    #[test]
    fn empty_array_clears_the_list() {
        assert_eq!(
            encode(&json!({"default_tax_rates": []})),
            "default_tax_rates="
        );
    }

    #[test]
    fn non_object_encodes_to_nothing() {
        assert_eq!(encode(&json!(null)), "");
        assert_eq!(encode(&json!("x")), "");
    }

    #[test]
    fn values_with_reserved_characters_are_escaped() {
        assert_eq!(encode(&json!({"q": "a&b=c[d]"})), "q=a%26b%3Dc%5Bd%5D");
    }
}
