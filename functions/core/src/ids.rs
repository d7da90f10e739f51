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
}
