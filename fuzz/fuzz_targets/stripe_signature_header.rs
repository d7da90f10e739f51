//! Fuzzes the `Stripe-Signature` parser and verifier with arbitrary headers
//! and bodies: they must answer, never panic. See docs/testing.md.
#![no_main]

use connector_core::webhook::{parse_header, verify};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = parse_header(header);
        let secrets = [SecretString::from("whsec_fuzz".to_string())];
        let _ = verify(body, Some(header), &secrets, 1_700_000_000, 300);
    }
});
