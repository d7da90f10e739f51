//! The catalog's JSON Schemas and its validator give the same verdict.
//!
//! A client (a workflow builder's form, a code generator) checks inputs
//! with the schema from `GET /catalog`; the connector checks them with
//! `catalog::validate`. Where they disagree a user sees a form accept what
//! the connector refuses, or the reverse. Every action's example input is
//! run through both, and so is every variation of it that changes one field
//! to an edge value: null, control characters, lengths at and past a cap,
//! numbers as floats, out-of-range timestamps, malformed emails, URLs, ids.

use connector_core::catalog::{self, ACTIONS, Field, Kind};
use serde_json::{Value, json};

/// A valid value of a kind, and an object of them (the exact-request tests' own).
use super::actions::{sample as example, sample_object as example_object};

/// Values at the edges of what a kind accepts, valid or not.
fn edges(kind: &Kind) -> Vec<Value> {
    let mut out = vec![
        Value::Null,
        json!(true),
        json!(7),
        json!(7.0),
        json!(7.5),
        json!(-1),
        json!(""),
        json!("text"),
        json!([]),
        json!({}),
        json!(u64::MAX),
        json!(1e20),
    ];
    match kind {
        Kind::Text(max) => out.extend([
            json!("a".repeat(*max)),
            json!("a".repeat(*max + 1)),
            json!("é".repeat(*max)),
            json!("tab\there\nnew line\r"),
            json!("bell\u{7}"),
            json!("nul\u{0}"),
            json!("del\u{7f}"),
            json!("c1\u{85}"),
            json!("emoji 🎉"),
        ]),
        Kind::Id(prefixes) => {
            let p = prefixes[0];
            out.extend([
                json!(p),
                json!(format!("{p}abc_DEF_123")),
                json!(format!("{p}{}", "a".repeat(200))),
                json!(format!("{p}{}", "a".repeat(201))),
                json!(format!("{p}a-b")),
                json!(format!("{p}é")),
                json!(format!("{p}a/b")),
                json!(format!("x{p}1")),
            ]);
        }
        Kind::CouponId => out.extend([
            json!("a".repeat(200)),
            json!("a".repeat(201)),
            json!("A-b_9"),
            json!("a b"),
            json!("é"),
        ]),
        Kind::Email => out.extend([
            json!("a@b.c"),
            json!("a@b"),
            json!("@b.c"),
            json!("a@.b"),
            json!("a@b."),
            json!("a@b..c"),
            json!("a b@c.d"),
            json!("a@b@c.d"),
            json!("a@b.c\u{7}"),
            json!("ü@exämple.de"),
            json!(format!("{}@b.c", "a".repeat(508))),
            json!(format!("{}@b.c", "a".repeat(509))),
        ]),
        Kind::Currency => out.extend([json!("usd"), json!("USD"), json!("us"), json!("usdd")]),
        Kind::Amount | Kind::Int(..) | Kind::Timestamp | Kind::Range | Kind::Percent => {
            out.extend([
                json!(0),
                json!(0.0),
                json!(1),
                json!(100),
                json!(100.5),
                json!(1000.0),
                json!(99_999_999_999i64),
                json!(100_000_000_000i64),
                json!(253_402_300_799i64),
                json!(253_402_300_800i64),
                json!("5"),
                json!({"gt": 1}),
                json!({"gt": 1.0}),
                json!({"gt": 1.5}),
                json!({"gt": "1"}),
                json!({"eq": 1}),
                json!({"lte": -99_999_999_999i64}),
                json!({"lte": -100_000_000_000i64}),
            ]);
            if let Kind::Int(min, max) = kind {
                out.extend([json!(min), json!(max), json!(min - 1), json!(max + 1)]);
            }
        }
        Kind::IntOr(word, min, max) => out.extend([
            json!(word),
            json!(word.to_uppercase()),
            json!(min),
            json!(max),
            json!(min - 1),
            json!(max + 1),
            json!(format!("{min}")),
        ]),
        Kind::Bool => out.push(json!(false)),
        Kind::Enum(values) => out.extend(values.iter().map(|v| json!(v)).chain([
            json!(values[0].to_uppercase()),
            json!(format!("{} ", values[0])),
        ])),
        Kind::Metadata => out.extend([
            json!({"k": "v"}),
            json!({"k": ""}),
            json!({"k": 5}),
            json!({"k": 1.5}),
            json!({"k": false}),
            json!({"k": null}),
            json!({"k": ["v"]}),
            json!({"k": {"v": 1}}),
            json!({"": "v"}),
            json!({"a[b]": "v"}),
            json!({"k".repeat(40): "v"}),
            json!({"k".repeat(41): "v"}),
            json!({"é".repeat(40): "v"}),
            json!({"k": "v".repeat(500)}),
            json!({"k": "v".repeat(501)}),
            Value::Object((0..50).map(|i| (format!("k{i}"), json!("v"))).collect()),
            Value::Object((0..51).map(|i| (format!("k{i}"), json!("v"))).collect()),
        ]),
        Kind::Object(fields) => {
            // The whole object with one field changed, for each field.
            let base = example_object(fields);
            for f in *fields {
                for v in edges(&f.kind) {
                    let mut m = base.clone();
                    m.insert(f.name.to_string(), v);
                    out.push(Value::Object(m));
                }
                if f.required {
                    let mut m = base.clone();
                    m.remove(f.name);
                    out.push(Value::Object(m));
                }
            }
            let mut m = base;
            m.insert("not_a_field".into(), json!(1));
            out.push(Value::Object(m));
        }
        Kind::List(item, max) => {
            out.extend([
                json!([example(item)]),
                json!([null]),
                json!(vec![example(item); *max]),
                json!(vec![example(item); *max + 1]),
            ]);
            for v in edges(item).into_iter().take(40) {
                out.push(json!([example(item), v]));
            }
        }
        Kind::Url => out.extend([
            json!("http://x"),
            json!("https://example.com/a?b=c#d"),
            json!("ftp://example.com"),
            json!("https://exa mple.com"),
            json!("https://example.com/\u{7}"),
            json!("https://exämple.com/ü"),
            json!(format!("https://{}", "a".repeat(2040))),
            json!(format!("https://{}", "a".repeat(2041))),
            json!("HTTPS://example.com"),
        ]),
        Kind::PageToken => out.extend([
            json!("a".repeat(5000)),
            json!("a".repeat(5001)),
            json!("page with space"),
            json!("pageé"),
        ]),
    }
    out
}

/// The example input of an action and each variation of one field.
fn inputs(fields: &[Field]) -> Vec<Value> {
    let base = example_object(fields);
    let mut out = vec![
        Value::Object(base.clone()),
        json!({}),
        json!([]),
        json!("x"),
    ];
    for f in fields {
        for v in edges(&f.kind) {
            let mut m = base.clone();
            m.insert(f.name.to_string(), v);
            out.push(Value::Object(m));
        }
        let mut m = base.clone();
        m.remove(f.name);
        out.push(Value::Object(m));
    }
    let mut m = base;
    m.insert("not_a_field".into(), json!(1));
    out.push(Value::Object(m));
    out
}

#[test]
fn the_json_schema_and_the_validator_agree_on_every_input() {
    let mut checked = 0;
    let mut disagreements = Vec::new();
    for action in ACTIONS {
        let schema = catalog::schema(action);
        let validator = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{}: the schema does not compile: {e}", action.key));
        for input in inputs(action.fields) {
            let ours = catalog::validate(action, &input);
            let theirs = validator.is_valid(&input);
            checked += 1;
            if ours.is_ok() != theirs {
                let why = match &ours {
                    Ok(_) => validator
                        .iter_errors(&input)
                        .map(|e| format!("{} at {}", e, e.instance_path()))
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(e) => e.to_string(),
                };
                let shown: String = input.to_string().chars().take(200).collect();
                disagreements.push(format!(
                    "{}: validator {}, schema {}: {shown}: {why}",
                    action.key,
                    if ours.is_ok() { "accepts" } else { "refuses" },
                    if theirs { "accepts" } else { "refuses" },
                ));
            }
        }
    }
    assert!(checked > 4_000, "only {checked} inputs were generated");
    assert!(
        disagreements.is_empty(),
        "{} of {checked} inputs get different verdicts, e.g.:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
