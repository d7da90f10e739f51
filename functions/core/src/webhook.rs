//! Stripe webhook signature verification.
//!
//! Stripe signs `"{t}.{raw body}"` with HMAC-SHA256 keyed by the endpoint's
//! whole `whsec_…` secret and sends `Stripe-Signature: t=…,v1=…[,v1=…][,v0=…]`.
//! As in stripe-php's `WebhookSignature`, the payload is genuine when ANY `v1`
//! matches (Stripe sends several while a secret is being rolled), `v0` and
//! unknown schemes are ignored, and the timestamp must be within the tolerance
//! of now — in the past or in the future.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's own default tolerance.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused. Each is a 400 with a short reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header: {0}")]
    MalformedHeader(&'static str),
    #[error("no v1 signature in Stripe-Signature header")]
    NoV1Signature,
    #[error("no signature matches the payload")]
    NoMatchingSignature,
    #[error("timestamp outside the tolerance of {tolerance} s")]
    TimestampOutsideTolerance { tolerance: i64 },
    #[error("no webhook secret is configured")]
    NoSecret,
}

impl SignatureError {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_signature",
            Self::MalformedHeader(_) => "malformed_signature",
            Self::NoV1Signature => "no_v1_signature",
            Self::NoMatchingSignature => "signature_mismatch",
            Self::TimestampOutsideTolerance { .. } => "timestamp_outside_tolerance",
            Self::NoSecret => "no_webhook_secret",
        }
    }
}

/// The parsed `Stripe-Signature` header: timestamp and every `v1` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    pub timestamp: i64,
    pub v1: Vec<&'a str>,
}

fn items(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
}

/// Reads the timestamp and checks that a `v1` is present, without allocating.
fn scan(header: &str) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut has_v1 = false;
    for (key, value) in items(header) {
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::MalformedHeader("more than one timestamp"));
                }
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::MalformedHeader("timestamp is not an integer"))?;
                timestamp = Some(t);
            }
            "v1" => has_v1 = true,
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader("no timestamp"))?;
    if !has_v1 {
        return Err(SignatureError::NoV1Signature);
    }
    Ok(timestamp)
}

/// Parses `t=…,v1=…,…`. Items are `key=value`, separated by commas; unknown
/// keys are ignored; `t` must be present once as an integer.
pub fn parse_header(header: &str) -> Result<SignatureHeader<'_>, SignatureError> {
    let timestamp = scan(header)?;
    let v1 = items(header)
        .filter(|(k, _)| *k == "v1")
        .map(|(_, v)| v)
        .collect();
    Ok(SignatureHeader { timestamp, v1 })
}

/// HMAC-SHA256 of `"{t}.{payload}"`, with no allocation.
fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    let mut digits = [0u8; 21];
    mac.update(format_i64(timestamp, &mut digits));
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two MACs, compared as four words: the same
/// guarantee as a byte-wise `subtle` compare at an eighth of its cost.
fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    let word = |x: &[u8; 32], i: usize| {
        u64::from_ne_bytes(x[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
    };
    (0..4).fold(subtle::Choice::from(1u8), |acc, i| {
        acc & word(a, i).ct_eq(&word(b, i))
    })
}

/// Writes `n` in decimal into `buf` and returns the digits.
fn format_i64(n: i64, buf: &mut [u8; 21]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Verifies a delivery. `secrets` are all the endpoint's active secrets (more
/// than one during a rotation); the payload is genuine if any of them produced
/// any of the `v1` signatures. `now` is Unix seconds from an injectable clock.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
    now: i64,
    tolerance: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::MissingHeader)?;
    let timestamp = scan(header)?;
    // As stripe-python does, a blank secret counts as none.
    let mut any_secret = false;
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets
        .iter()
        .filter(|s| !s.expose_secret().trim().is_empty())
    {
        any_secret = true;
        let expected = mac(secret.expose_secret(), timestamp, payload);
        for (_, sig) in items(header).filter(|(k, _)| *k == "v1") {
            // A value that is not 64 hex digits cannot match; it is not an
            // error, a good v1 beside it still counts.
            let mut candidate = [0u8; 32];
            if hex::decode_to_slice(sig, &mut candidate).is_ok() {
                matched |= ct_eq_32(&expected, &candidate);
            }
        }
    }
    if !any_secret {
        return Err(SignatureError::NoSecret);
    }
    if !bool::from(matched) {
        return Err(SignatureError::NoMatchingSignature);
    }
    if tolerance > 0 && (now - timestamp).abs() > tolerance {
        return Err(SignatureError::TimestampOutsideTolerance { tolerance });
    }
    Ok(())
}

/// The hex `v1` signature Stripe would send for this payload. For tests, the
/// dev tooling and the load benchmark.
pub fn compute_signature(payload: &[u8], secret: &str, timestamp: i64) -> String {
    hex::encode(mac(secret, timestamp, payload))
}

/// A complete `Stripe-Signature` header value for this payload.
pub fn sign_header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!(
        "t={timestamp},v1={}",
        compute_signature(payload, secret, timestamp)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const PAYLOAD: &[u8] = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect()
    }

    fn check(header: &str) -> Result<(), SignatureError> {
        verify(
            PAYLOAD,
            Some(header),
            &secrets(&[SECRET]),
            NOW,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn valid_header_and_signature() {
        assert_eq!(check(&sign_header(PAYLOAD, SECRET, NOW)), Ok(()));
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            verify(PAYLOAD, None, &secrets(&[SECRET]), NOW, 300),
            Err(SignatureError::MissingHeader)
        );
    }

    #[test]
    fn header_that_is_not_key_values() {
        assert_eq!(
            check("bad_header"),
            Err(SignatureError::MalformedHeader("no timestamp"))
        );
        assert_eq!(
            check(""),
            Err(SignatureError::MalformedHeader("no timestamp"))
        );
    }

    #[test]
    fn empty_timestamp() {
        assert_eq!(
            check("t="),
            Err(SignatureError::MalformedHeader(
                "timestamp is not an integer"
            ))
        );
    }

    #[test]
    fn v1_without_timestamp_value() {
        // stripe-node's `v1,t=1` shape: a bare `v1` item and a timestamp with no signature.
        assert_eq!(check("v1,t=1"), Err(SignatureError::NoV1Signature));
    }

    #[test]
    fn non_integer_timestamp() {
        assert_eq!(
            check("t=abc,v1=00"),
            Err(SignatureError::MalformedHeader(
                "timestamp is not an integer"
            ))
        );
    }

    #[test]
    fn only_v0_signature_is_no_v1() {
        let good = compute_signature(PAYLOAD, SECRET, NOW);
        assert_eq!(
            check(&format!("t={NOW},v0={good}")),
            Err(SignatureError::NoV1Signature)
        );
    }

    #[test]
    fn unknown_schemes_are_ignored() {
        let good = compute_signature(PAYLOAD, SECRET, NOW);
        assert_eq!(
            check(&format!("t={NOW},v0=abc,v2=def,v1={good},foo=bar")),
            Ok(())
        );
    }

    #[test]
    fn bad_signature() {
        assert_eq!(
            check(&format!("t={NOW},v1=bad_signature")),
            Err(SignatureError::NoMatchingSignature)
        );
        let zeros = "0".repeat(64);
        assert_eq!(
            check(&format!("t={NOW},v1={zeros}")),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn good_v1_among_bad_ones() {
        let good = compute_signature(PAYLOAD, SECRET, NOW);
        let header = format!("t={NOW},v1=bad,v1={},v1={good},v0={good}", "f".repeat(64));
        assert_eq!(check(&header), Ok(()));
    }

    #[test]
    fn rolled_key_new_secret_signs_old_still_configured() {
        let header = sign_header(PAYLOAD, "whsec_new", NOW);
        assert_eq!(
            verify(
                PAYLOAD,
                Some(&header),
                &secrets(&["whsec_old", "whsec_new"]),
                NOW,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(PAYLOAD, Some(&header), &secrets(&["whsec_old"]), NOW, 300),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn stripe_sends_both_signatures_while_rolling() {
        let header = format!(
            "t={NOW},v1={},v1={}",
            compute_signature(PAYLOAD, "whsec_old", NOW),
            compute_signature(PAYLOAD, "whsec_new", NOW)
        );
        for s in ["whsec_old", "whsec_new"] {
            assert_eq!(
                verify(PAYLOAD, Some(&header), &secrets(&[s]), NOW, 300),
                Ok(())
            );
        }
    }

    #[test]
    fn timestamp_too_old_and_too_new() {
        let old = sign_header(PAYLOAD, SECRET, NOW - 301);
        let new = sign_header(PAYLOAD, SECRET, NOW + 301);
        let tolerance = Err(SignatureError::TimestampOutsideTolerance { tolerance: 300 });
        assert_eq!(check(&old), tolerance);
        assert_eq!(check(&new), tolerance);
        // Exactly at the edge is accepted.
        assert_eq!(check(&sign_header(PAYLOAD, SECRET, NOW - 300)), Ok(()));
        assert_eq!(check(&sign_header(PAYLOAD, SECRET, NOW + 300)), Ok(()));
    }

    #[test]
    fn zero_tolerance_disables_the_time_check() {
        let old = sign_header(PAYLOAD, SECRET, 12_345);
        assert_eq!(
            verify(PAYLOAD, Some(&old), &secrets(&[SECRET]), NOW, 0),
            Ok(())
        );
    }

    #[test]
    fn bad_signature_is_reported_before_timestamp() {
        // As the SDKs do: a wrong signature on an old timestamp is a mismatch.
        let header = format!("t={},v1={}", NOW - 1000, "0".repeat(64));
        assert_eq!(check(&header), Err(SignatureError::NoMatchingSignature));
    }

    #[test]
    fn empty_body() {
        let header = sign_header(b"", SECRET, NOW);
        assert_eq!(
            verify(b"", Some(&header), &secrets(&[SECRET]), NOW, 300),
            Ok(())
        );
        assert_eq!(
            verify(b" ", Some(&header), &secrets(&[SECRET]), NOW, 300),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn non_utf8_body_bytes() {
        let body = [0xff, 0xfe, 0x00, b'{', 0x80];
        let header = sign_header(&body, SECRET, NOW);
        assert_eq!(
            verify(&body, Some(&header), &secrets(&[SECRET]), NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn unicode_payload() {
        let body = "{\"name\": \"Zoë 😀 日本\"}".as_bytes();
        let header = sign_header(body, SECRET, NOW);
        assert_eq!(
            verify(body, Some(&header), &secrets(&[SECRET]), NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn whitespace_around_secret_is_a_different_key() {
        // Like every official SDK, the secret is used byte for byte; the API
        // trims a secret once, where a user enters it.
        let header = sign_header(PAYLOAD, SECRET, NOW);
        assert_eq!(
            verify(
                PAYLOAD,
                Some(&header),
                &secrets(&[" whsec_test_secret \n"]),
                NOW,
                300
            ),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn whitespace_around_header_items_is_tolerated() {
        let good = compute_signature(PAYLOAD, SECRET, NOW);
        assert_eq!(check(&format!("t={NOW}, v1={good}")), Ok(()));
    }

    #[test]
    fn duplicate_timestamp_is_malformed() {
        let good = compute_signature(PAYLOAD, SECRET, NOW);
        assert_eq!(
            check(&format!("t={NOW},t={NOW},v1={good}")),
            Err(SignatureError::MalformedHeader("more than one timestamp"))
        );
    }

    #[test]
    fn no_secret_configured() {
        let header = sign_header(PAYLOAD, SECRET, NOW);
        assert_eq!(
            verify(PAYLOAD, Some(&header), &[], NOW, 300),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(PAYLOAD, Some(&header), &secrets(&[" \t\n"]), NOW, 300),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn timestamps_format_like_to_string() {
        let mut buf = [0u8; 21];
        for n in [0, 7, -7, 1_700_000_000, i64::MAX, i64::MIN] {
            assert_eq!(format_i64(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn uppercase_hex_signature_matches() {
        // Stripe sends lowercase; hex decoding is case-insensitive, as a byte compare should be.
        let good = compute_signature(PAYLOAD, SECRET, NOW).to_uppercase();
        assert_eq!(check(&format!("t={NOW},v1={good}")), Ok(()));
    }
}
