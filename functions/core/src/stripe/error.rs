//! Typed Stripe errors: Stripe's own error object, kept whole, apart from
//! transport, timeout and decode failures.

use serde::{Deserialize, Serialize};

/// Stripe's error object (`{"error": {...}}`), as documented in the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeApiError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
}

/// Prefixes of Stripe secrets: secret and restricted keys, webhook secrets.
const SECRET_PREFIXES: [&str; 5] = ["sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_"];

/// `text` with whatever follows a secret's prefix replaced, so a message
/// that quotes a key (Stripe's "Invalid API Key provided: sk_test_…")
/// keeps its meaning and loses the key.
pub fn redact_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, prefix)) = SECRET_PREFIXES
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, *p)))
        .min_by_key(|(i, _)| *i)
    {
        out.push_str(&rest[..at + prefix.len()]);
        out.push_str("[REDACTED]");
        let tail = &rest[at + prefix.len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '*'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[derive(Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: StripeApiError,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error object.
    #[error("Stripe answered {status}: {}", .error.message.as_deref().unwrap_or(&.error.kind))]
    Api {
        status: u16,
        error: StripeApiError,
        request_id: Option<String>,
        /// Stripe's own verdict on retrying (`Stripe-Should-Retry`), if given.
        should_retry: Option<bool>,
        /// How long Stripe asked to wait (`Retry-After`), if it said.
        retry_after: Option<std::time::Duration>,
    },
    /// The connection's own Stripe rate budget is spent for now: the call
    /// was not sent. Try again after the duration.
    #[error("the connection's Stripe request budget is used up; try again in {0:?}")]
    Budget(std::time::Duration),
    /// Stripe (or a proxy in front of it) answered with a body that is not
    /// Stripe's JSON: an HTML 502, a truncated body.
    #[error("unreadable answer from Stripe (HTTP {status}): {message}")]
    Decode {
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    #[error("Stripe did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("could not reach Stripe: {0}")]
    Transport(#[source] reqwest::Error),
    /// The request could not be built (a bad base URL or path).
    #[error("invalid Stripe request: {0}")]
    InvalidRequest(String),
}

impl StripeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } | Self::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Stripe said too many requests (429), or the budget held the call
    /// back: wait, do not count it as a failure. The wait, when known.
    pub fn rate_limited(&self) -> Option<Option<std::time::Duration>> {
        match self {
            Self::Api {
                status: 429,
                retry_after,
                ..
            } => Some(*retry_after),
            Self::Decode { status: 429, .. } => Some(None),
            Self::Budget(wait) => Some(Some(*wait)),
            _ => None,
        }
    }

    pub fn api_error(&self) -> Option<&StripeApiError> {
        match self {
            Self::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// True when the same request may succeed later: network failures,
    /// timeouts, 409, 429, 5xx, or Stripe saying so. Stripe's explicit
    /// `Stripe-Should-Retry` wins over the status.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api {
                status,
                should_retry,
                ..
            } => should_retry.unwrap_or(matches!(status, 409 | 429 | 500..=599)),
            Self::Decode { status, .. } => *status >= 500 || *status == 429,
            Self::Timeout(_) | Self::Transport(_) | Self::Budget(_) => true,
            Self::InvalidRequest(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_keys;

    #[test]
    fn keys_quoted_in_a_message_are_redacted() {
        assert_eq!(
            redact_keys("Invalid API Key provided: sk_test_abc*****123."),
            "Invalid API Key provided: sk_test_[REDACTED]."
        );
        assert_eq!(
            redact_keys("rk_live_x and whsec_y"),
            "rk_live_[REDACTED] and whsec_[REDACTED]"
        );
        assert_eq!(
            redact_keys("No such customer: cus_1"),
            "No such customer: cus_1"
        );
    }
}
