//! Webhook verification against vectors made by the official stripe-python
//! library (infra/gen_webhook_vectors.py), and properties over random input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use connector_core::webhook::{SignatureError, compute_signature, sign_header, verify};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::Value;

fn secret(s: &str) -> Vec<SecretString> {
    vec![SecretString::from(s.to_string())]
}

#[test]
fn agrees_with_stripe_python_on_every_vector() {
    let data: Value = serde_json::from_str(include_str!("../data/webhook_vectors.json")).unwrap();
    let vectors = data["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 30);
    for v in vectors {
        let payload = v["payload"].as_str().unwrap().as_bytes();
        let header = v["header"].as_str().unwrap();
        let ts = v["timestamp"].as_i64().unwrap();
        let ours = verify(
            payload,
            Some(header),
            &secret(v["secret"].as_str().unwrap()),
            ts,
            300,
        );
        let expected = match v["stripe_python"].as_str().unwrap() {
            "ok" => Ok(()),
            "No signatures found matching the expected signature for payload" => Err("mismatch"),
            "No signatures found with expected scheme v1" => Err("no_v1"),
            "Unable to extract timestamp and signatures from header" => Err("malformed"),
            other => panic!("unknown verdict {other}"),
        };
        let got = ours.map_err(|e| match e {
            SignatureError::NoMatchingSignature => "mismatch",
            SignatureError::NoV1Signature => "no_v1",
            SignatureError::MalformedHeader(_) => "malformed",
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, expected, "vector {:?} with header {header}", v["name"]);
        if v["name"] == "valid" {
            // Our signer produces the official header byte for byte.
            assert_eq!(
                sign_header(payload, v["secret"].as_str().unwrap(), ts),
                header
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_holds(body in proptest::collection::vec(any::<u8>(), 0..2048),
                              key in "whsec_[A-Za-z0-9]{8,40}",
                              ts in 1_000_000_000i64..2_000_000_000) {
        let header = sign_header(&body, &key, ts);
        prop_assert_eq!(verify(&body, Some(&header), &secret(&key), ts, 300), Ok(()));
    }

    #[test]
    fn any_one_byte_change_to_the_body_fails(body in proptest::collection::vec(any::<u8>(), 1..512),
                                             idx in any::<prop::sample::Index>(),
                                             flip in 1u8..=255) {
        let key = "whsec_prop";
        let ts = 1_700_000_000;
        let header = sign_header(&body, key, ts);
        let mut changed = body.clone();
        let i = idx.index(changed.len());
        changed[i] ^= flip;
        prop_assert_eq!(verify(&changed, Some(&header), &secret(key), ts, 300), Err(SignatureError::NoMatchingSignature));
    }

    #[test]
    fn any_change_to_the_timestamp_fails(body in proptest::collection::vec(any::<u8>(), 0..256),
                                         delta in 1i64..=300) {
        let key = "whsec_prop";
        let ts = 1_700_000_000;
        let sig = compute_signature(&body, key, ts);
        for moved in [ts + delta, ts - delta] {
            let header = format!("t={moved},v1={sig}");
            prop_assert_eq!(verify(&body, Some(&header), &secret(key), ts, 300), Err(SignatureError::NoMatchingSignature));
        }
    }

    #[test]
    fn any_one_character_change_to_the_signature_fails(body in proptest::collection::vec(any::<u8>(), 0..256),
                                                        idx in 0usize..64,
                                                        c in proptest::char::range('0', 'z')) {
        let key = "whsec_prop";
        let ts = 1_700_000_000;
        let sig = compute_signature(&body, key, ts);
        let mut chars: Vec<char> = sig.chars().collect();
        prop_assume!(!chars[idx].eq_ignore_ascii_case(&c));
        chars[idx] = c;
        let header = format!("t={ts},v1={}", chars.into_iter().collect::<String>());
        prop_assert_eq!(verify(&body, Some(&header), &secret(key), ts, 300), Err(SignatureError::NoMatchingSignature));
    }

    #[test]
    fn the_parser_never_panics(header in ".{0,300}") {
        let _ = verify(b"{}", Some(&header), &secret("whsec_x"), 0, 300);
    }
}
