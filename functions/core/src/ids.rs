//! Ids the connector makes (`conn_…`, `wf_…`) and the checks every id passes
//! before it goes into a URL path or a key.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A new id: the prefix and 24 random alphanumerics (~143 bits).
pub fn new_id(prefix: &str) -> String {
    let tail: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// `prefix` followed by 1 to 200 ASCII letters, digits or underscores: the
/// charset of every Stripe and connector id. Nothing else (`/`, `?`, `#`,
/// `.`, spaces, control characters) can pass into a path.
pub fn is_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|tail| {
        !tail.is_empty()
            && tail.len() <= 200
            && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

pub fn is_connection_id(value: &str) -> bool {
    is_id(value, "conn_")
}

/// Ids parsed once, at the edge: a value of one of these types has passed
/// [`is_id`] for its prefix, so it is safe in a URL path or a key. Parsing
/// fails with the message a caller sees for an id that names nothing
/// ("unknown connection"), the same whether it is malformed or absent.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new random id of this kind.
            pub fn generate() -> Self {
                Self(new_id($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownId;
            fn try_from(value: String) -> Result<Self, UnknownId> {
                if is_id(&value, $prefix) {
                    Ok(Self(value))
                } else {
                    Err(UnknownId($what))
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownId;
            fn from_str(value: &str) -> Result<Self, UnknownId> {
                Self::try_from(value.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// An id that does not parse: it can name nothing, so it reads as unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {0}")]
pub struct UnknownId(pub &'static str);

typed_id!(
    /// `conn_…`: a connected Stripe account.
    ConnectionId,
    "conn_",
    "connection"
);
typed_id!(
    /// `evt_…`: a Stripe event.
    EventId,
    "evt_",
    "event"
);
typed_id!(
    /// `wf_…`: a workflow.
    WorkflowId,
    "wf_",
    "workflow"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_well_formed_and_distinct() {
        let a = new_id("conn_");
        assert!(is_connection_id(&a), "{a}");
        assert_eq!(a.len(), 29);
        assert_ne!(a, new_id("conn_"));
    }

    #[test]
    fn ids_with_path_characters_are_refused() {
        for bad in [
            "conn_",
            "conn_a/b",
            "conn_a?b",
            "conn_a#b",
            "conn_..",
            "conn_a b",
            "conn_a\nb",
            "cus_123",
            "conn_é",
        ] {
            assert!(!is_connection_id(bad), "{bad:?}");
        }
        assert!(is_id("cus_NffrFeUfNV2Hib", "cus_"));
    }

    #[test]
    fn typed_ids_parse_once_and_name_what_they_are() {
        let id: ConnectionId = "conn_abc".parse().unwrap();
        assert_eq!(id.as_str(), "conn_abc");
        assert_eq!(
            "conn_a/b".parse::<ConnectionId>().unwrap_err().to_string(),
            "unknown connection"
        );
        assert_eq!(
            serde_json::from_str::<WorkflowId>("\"evt_1\"")
                .unwrap_err()
                .to_string(),
            "unknown workflow"
        );
        assert!(EventId::try_from("evt_1".to_string()).is_ok());
        assert!(ConnectionId::generate().starts_with("conn_"));
    }
}
