//! Configuration, read once per process from the environment into one typed value.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::stripe::{DEFAULT_API_BASE, DEFAULT_API_VERSION, StripeSettings};

#[derive(Debug, Clone)]
pub struct Config {
    /// Stripe API base URL (`STRIPE_API_BASE`).
    pub stripe_api_base: String,
    /// Default pinned `Stripe-Version` for new connections (`STRIPE_API_VERSION`).
    pub stripe_api_version: String,
    /// DynamoDB table (`TABLE_NAME`); required by the Lambdas.
    pub table_name: Option<String>,
    /// Secrets Manager name prefix (`SECRET_PREFIX`).
    pub secret_prefix: String,
    /// Base URL Stripe posts webhooks to (`PUBLIC_BASE_URL`).
    pub public_base_url: Option<String>,
    /// Dev server listen address (`CONNECTOR_ADDR`).
    pub addr: String,
    /// Dev server data directory (`CONNECTOR_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Dev server bearer token (`CONNECTOR_API_TOKEN`); generated when unset.
    pub api_token: Option<SecretString>,
    /// Stripe retries per call (`STRIPE_MAX_RETRIES`).
    pub stripe_max_retries: u32,
    /// Stripe per-attempt timeout in seconds (`STRIPE_TIMEOUT_SECS`).
    pub stripe_timeout: Duration,
    /// Whether workflow targets may be private addresses
    /// (`CONNECTOR_ALLOW_PRIVATE_TARGETS`); `None` when unset, which means
    /// no in AWS and yes on the dev server.
    pub allow_private_targets: Option<bool>,
    /// The run queue (`RUN_QUEUE_URL`), for the functions that queue runs.
    pub run_queue_url: Option<String>,
    /// Deliveries to one target at once, across executors (`TARGET_CONCURRENCY`).
    pub target_concurrency: u32,
    /// Stripe requests a second per connection from workflow steps
    /// (`STRIPE_BUDGET_LIVE`, `STRIPE_BUDGET_TEST`, `STRIPE_BUDGET_SEARCH`):
    /// 80% of Stripe's published limits (100 live, 25 test, 20 search).
    pub stripe_budget: StripeBudget,
    /// CloudWatch namespace of the connector's metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// The Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`, set by Lambda):
    /// a dimension of every metric.
    pub function_name: Option<String>,
}

/// Requests a second one connection's steps may make to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeBudget {
    pub live: u32,
    pub test: u32,
    pub search: u32,
}

impl Default for StripeBudget {
    fn default() -> Self {
        Self {
            live: 80,
            test: 20,
            search: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

impl Config {
    /// Whether targets may be private addresses; unset means no.
    pub fn private_targets_allowed(&self) -> bool {
        self.allow_private_targets.unwrap_or(false)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Builds the config from any key lookup (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| ConfigError {
                    name,
                    reason: format!("{v:?} is not a whole number"),
                }),
            }
        };
        let positive = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            match u32::try_from(number(name, u64::from(default))?) {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(ConfigError {
                    name,
                    reason: "must be a whole number from 1 to 4294967295".into(),
                }),
            }
        };
        let stripe_api_base =
            get("STRIPE_API_BASE").unwrap_or_else(|| DEFAULT_API_BASE.to_string());
        if !(stripe_api_base.starts_with("https://") || stripe_api_base.starts_with("http://")) {
            return Err(ConfigError {
                name: "STRIPE_API_BASE",
                reason: "must be an http(s) URL".into(),
            });
        }
        let allow_private_targets = match get("CONNECTOR_ALLOW_PRIVATE_TARGETS").as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => {
                return Err(ConfigError {
                    name: "CONNECTOR_ALLOW_PRIVATE_TARGETS",
                    reason: format!("{v:?} is not true or false"),
                });
            }
        };
        let public_base_url = get("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_string());
        Ok(Self {
            stripe_api_base: stripe_api_base.trim_end_matches('/').to_string(),
            stripe_api_version: get("STRIPE_API_VERSION")
                .unwrap_or_else(|| DEFAULT_API_VERSION.to_string()),
            table_name: get("TABLE_NAME"),
            secret_prefix: get("SECRET_PREFIX").unwrap_or_else(|| "stripe-connector/".to_string()),
            public_base_url,
            addr: get("CONNECTOR_ADDR").unwrap_or_else(|| "127.0.0.1:3000".to_string()),
            data_dir: PathBuf::from(
                get("CONNECTOR_DATA_DIR").unwrap_or_else(|| "./.connector".to_string()),
            ),
            api_token: get("CONNECTOR_API_TOKEN").map(SecretString::from),
            stripe_max_retries: u32::try_from(number("STRIPE_MAX_RETRIES", 2)?).unwrap_or(u32::MAX),
            stripe_timeout: Duration::from_secs(number("STRIPE_TIMEOUT_SECS", 20)?),
            allow_private_targets,
            run_queue_url: get("RUN_QUEUE_URL"),
            target_concurrency: positive("TARGET_CONCURRENCY", 4)?,
            stripe_budget: StripeBudget {
                live: positive("STRIPE_BUDGET_LIVE", 80)?,
                test: positive("STRIPE_BUDGET_TEST", 20)?,
                search: positive("STRIPE_BUDGET_SEARCH", 16)?,
            },
            metrics_namespace: get("METRICS_NAMESPACE")
                .unwrap_or_else(|| "StripeConnector".to_string()),
            function_name: get("AWS_LAMBDA_FUNCTION_NAME"),
        })
    }

    pub fn stripe_settings(&self) -> StripeSettings {
        StripeSettings {
            api_base: self.stripe_api_base.clone(),
            max_retries: self.stripe_max_retries,
            timeout: self.stripe_timeout,
            ..StripeSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.stripe_api_base, "https://api.stripe.com");
        assert_eq!(c.stripe_api_version, "2023-08-16");
        assert_eq!(c.secret_prefix, "stripe-connector/");
        assert_eq!(c.addr, "127.0.0.1:3000");
        assert_eq!(c.stripe_max_retries, 2);
        assert_eq!(c.stripe_timeout, Duration::from_secs(20));
    }

    #[test]
    fn overrides_and_bad_values() {
        let c = from(&[
            ("STRIPE_API_BASE", "http://127.0.0.1:8420/"),
            ("PUBLIC_BASE_URL", "https://x.example/"),
        ])
        .unwrap();
        assert_eq!(c.stripe_api_base, "http://127.0.0.1:8420");
        assert_eq!(c.public_base_url.as_deref(), Some("https://x.example"));
        assert_eq!(
            from(&[("STRIPE_MAX_RETRIES", "many")]).unwrap_err().name,
            "STRIPE_MAX_RETRIES"
        );
        assert_eq!(
            from(&[("STRIPE_API_BASE", "ftp://x")]).unwrap_err().name,
            "STRIPE_API_BASE"
        );
        assert_eq!(
            from(&[("TARGET_CONCURRENCY", "0")]).unwrap_err().name,
            "TARGET_CONCURRENCY"
        );
        let c = from(&[("STRIPE_BUDGET_TEST", "5")]).unwrap();
        assert_eq!((c.stripe_budget.test, c.stripe_budget.live), (5, 80));
    }

    #[test]
    fn debug_redacts_the_token() {
        let c = from(&[("CONNECTOR_API_TOKEN", "tok_very_secret_value")]).unwrap();
        assert!(!format!("{c:?}").contains("tok_very_secret_value"));
    }
}
