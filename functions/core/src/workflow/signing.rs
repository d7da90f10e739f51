//! Standard Webhooks signing for workflow targets: `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, keyed with the base64 bytes of a `whsec_…` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("a target secret must be whsec_ followed by base64")]
    BadSecret,
}

/// A new target secret: `whsec_` and 24 random bytes in base64.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` header value for one delivery.
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    payload: &[u8],
) -> Result<String, SigningError> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| SigningError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SigningError::BadSecret)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The reference libraries' own test vector.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_fresh_and_usable_and_bad_ones_refused() {
        let a = generate_secret();
        assert!(a.starts_with("whsec_") && a.len() == 6 + 32);
        assert_ne!(a, generate_secret());
        assert!(sign(&a, "msg_1", 1, b"{}").unwrap().starts_with("v1,"));
        assert_eq!(
            sign("whsec_***", "msg_1", 1, b"{}"),
            Err(SigningError::BadSecret)
        );
    }
}
