//! The connector's records: connections, stored events, and the secrets kept
//! apart from them.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookMode {
    /// The connector creates and maintains the account's Stripe endpoint.
    #[default]
    Managed,
    /// The user made the endpoint in Stripe's dashboard and gave its secret.
    Manual,
}

/// A connected Stripe account. Holds no secret: the key and the webhook
/// secrets live in the secret store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub account_id: String,
    pub livemode: bool,
    pub api_version: String,
    pub webhook_mode: WebhookMode,
    /// The managed Stripe endpoint (`we_…`), once one exists.
    pub webhook_endpoint_id: Option<String>,
    /// The triggers the connection's endpoint is subscribed to, sorted.
    pub triggers: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Bumped by every update; an update names the version it replaces, so
    /// two writers can never both succeed on the same state.
    #[serde(default)]
    pub version: u64,
    /// The URL the managed endpoint was last given: what the reconciler
    /// restores it to (it runs on a schedule, with no request to read a
    /// host from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Where notices about this connection go (Standard Webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertTarget>,
    /// What the reconciler has done and seen ([`crate::service::reconcile`]).
    #[serde(default)]
    pub reconcile: ReconcileState,
    /// An API-version upgrade under way: recorded before each step, so an
    /// interrupted one is carried on where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,
    /// After a managed endpoint was replaced, the older webhook secrets keep
    /// verifying until then (Unix seconds): deliveries Stripe signed with
    /// them may still be on their way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_secrets_at: Option<i64>,
    /// Notices the alert target did not take, waiting for the reconciler's
    /// next try ([`crate::service::alerts`]); a few at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_alerts: Vec<PendingAlert>,
}

/// A notice waiting for another try: sent again with the same id and
/// payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAlert {
    /// Its `webhook-id`.
    pub id: String,
    pub kind: String,
    pub data: serde_json::Value,
    /// When it happened (the payload's `timestamp`).
    pub at: i64,
    /// Tries by reconcile passes so far.
    #[serde(default)]
    pub tries: u32,
}

/// A connection's alert target: notices are POSTed to `url`, signed with
/// `secret` (shown once, when set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTarget {
    pub url: String,
    pub secret: TargetSecret,
}

/// The reconciler's record for one connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileState {
    /// Every event created before this (Unix seconds, Stripe's `created`)
    /// has been read from Stripe's list, or reported as a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<i64>,
    /// How much of Stripe's history one read takes (seconds): halved when a
    /// window holds more than a pass may read, doubled back after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<i64>,
    /// Events the last pass stored that had not arrived by webhook.
    #[serde(default)]
    pub last_recovered: u32,
    #[serde(default)]
    pub recovered_total: u64,
    /// The last pass's error (Stripe refused, the store failed), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Spans of Stripe's history the connector could not read any more
    /// (Stripe keeps events 30 days), newest last, at most a few.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// Since when the managed endpoint has been seen disabled (cleared once
    /// it is enabled again): `endpoint.disabled` is sent once per episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_disabled_since: Option<i64>,
    /// The last repair of the managed endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repair: Option<Repair>,
}

/// Events that were created while the connector could not receive them and
/// that Stripe no longer lists: lost, and said so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gap {
    /// Unix seconds: from (inclusive) …
    pub from: i64,
    /// … to (exclusive).
    pub to: i64,
    pub reported_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Repair {
    pub at: i64,
    /// `disabled`, `deleted`, `enabled_events`, `url` or `api_version`.
    pub problem: String,
    /// `re-enabled`, `recreated`, `updated` or `replaced`.
    pub action: String,
    pub endpoint_id: String,
}

/// An API-version upgrade of a managed endpoint, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upgrade {
    /// The version being moved to.
    pub to: String,
    /// The endpoint being replaced.
    pub old_endpoint_id: Option<String>,
    /// The endpoint at the new version, once made.
    pub new_endpoint_id: Option<String>,
    pub started_at: i64,
}

/// One Stripe event as received, stored once per (connection, event id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub connection_id: String,
    pub event_id: String,
    pub event_type: String,
    /// Stripe's `created` (Unix seconds).
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// `account` on Connect events.
    pub account: Option<String>,
    /// The raw body as Stripe sent it; `None` when it was too large to store
    /// (then `body_omitted` is set and the event is fetched from Stripe).
    pub body: Option<String>,
    pub body_omitted: bool,
    pub received_at: i64,
    /// When the store may forget the event (Unix seconds; DynamoDB TTL).
    pub expires_at: i64,
    /// Read from Stripe's event list by the reconciler: it never arrived by
    /// webhook.
    #[serde(default)]
    pub recovered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum InsertOutcome {
    Inserted,
    Duplicate,
}

/// A connection's secrets. `Debug` shows neither value.
#[derive(Clone)]
pub struct ConnectionSecrets {
    pub api_key: SecretString,
    /// Active webhook signing secrets, newest first; more than one during a rotation.
    pub webhook_secrets: Vec<SecretString>,
    /// Per workflow: the secret its target deliveries are signed with.
    pub target_secrets: std::collections::BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for ConnectionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSecrets")
            .field("api_key", &"[REDACTED]")
            .field(
                "webhook_secrets",
                &format_args!("[{} REDACTED]", self.webhook_secrets.len()),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct SecretsWire {
    api_key: String,
    #[serde(default)]
    webhook_secrets: Vec<String>,
    #[serde(default)]
    target_secrets: std::collections::BTreeMap<String, String>,
}

impl ConnectionSecrets {
    /// The JSON kept in the secret store. Only adapters call this.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&SecretsWire {
            api_key: self.api_key.expose_secret().to_string(),
            webhook_secrets: self
                .webhook_secrets
                .iter()
                .map(|s| s.expose_secret().to_string())
                .collect(),
            target_secrets: self
                .target_secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose_secret().to_string()))
                .collect(),
        })
        .unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let wire: SecretsWire = serde_json::from_str(text)?;
        Ok(Self {
            api_key: SecretString::from(wire.api_key),
            webhook_secrets: wire
                .webhook_secrets
                .into_iter()
                .map(SecretString::from)
                .collect(),
            target_secrets: wire
                .target_secrets
                .into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_debug_redacts() {
        let s = ConnectionSecrets {
            api_key: SecretString::from("sk_test_topsecret123".to_string()),
            webhook_secrets: vec![SecretString::from("whsec_alsosecret".to_string())],
            target_secrets: [(
                "wf_1".to_string(),
                SecretString::from("whsec_targetsecret".to_string()),
            )]
            .into(),
        };
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("topsecret") && !debug.contains("alsosecret"),
            "{debug}"
        );
        let back = ConnectionSecrets::from_json(&s.to_json()).unwrap();
        assert_eq!(back.api_key.expose_secret(), "sk_test_topsecret123");
        assert_eq!(back.webhook_secrets[0].expose_secret(), "whsec_alsosecret");
        assert_eq!(
            back.target_secrets["wf_1"].expose_secret(),
            "whsec_targetsecret"
        );
    }
}

/// A workflow: on `trigger` (a catalog trigger, or `*` for every event the
/// connection receives), when `filter` holds, deliver the event to `target`
/// and/or run `steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub id: String,
    pub connection_id: String,
    pub trigger: String,
    #[serde(default)]
    pub filter: serde_json::Map<String, serde_json::Value>,
    pub target: Option<Target>,
    #[serde(default)]
    pub steps: Vec<Step>,
    pub enabled: bool,
    /// Events caused by this workflow's own Stripe writes do not start it
    /// again (default); `false` lets them.
    #[serde(default = "yes")]
    pub ignore_own_writes: bool,
    /// Re-read the event's object from Stripe before delivering and running
    /// steps; the delivery carries `{"event", "current"}`.
    #[serde(default)]
    pub fetch_latest: bool,
    /// Skip an event older than one this workflow already acted on for the
    /// same object (Stripe does not order events).
    #[serde(default)]
    pub skip_stale: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub url: String,
    /// Deliveries are signed with it. Kept with its workflow, so creating or
    /// removing a workflow never rewrites the connection's secrets (older
    /// workflows keep theirs in `ConnectionSecrets::target_secrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TargetSecret>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// A catalog action key, e.g. `invoices.finalize`.
    pub action: String,
    /// The action's input, with templates.
    pub input: serde_json::Value,
}

/// A target's signing secret (`whsec_…`): shown to its user once, at
/// creation; `Debug` never shows it.
#[derive(Clone)]
pub struct TargetSecret(SecretString);

impl TargetSecret {
    pub fn new(secret: String) -> Self {
        Self(SecretString::from(secret))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for TargetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetSecret([REDACTED])")
    }
}

impl PartialEq for TargetSecret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.expose().as_bytes().ct_eq(other.expose().as_bytes()))
    }
}

impl Serialize for TargetSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for TargetSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    /// A target's signing secret, now kept in its workflow, never shows in
    /// `Debug` (logs), while the stored record still holds it.
    #[test]
    fn a_workflows_target_secret_is_redacted_in_debug_but_stored() {
        let workflow = Workflow {
            id: "wf_1".into(),
            connection_id: "conn_1".into(),
            trigger: "customer.created".into(),
            filter: serde_json::Map::new(),
            target: Some(Target {
                url: "https://hooks.example.com".into(),
                secret: Some(TargetSecret::new("whsec_topsecret".into())),
            }),
            steps: vec![],
            enabled: true,
            ignore_own_writes: true,
            fetch_latest: false,
            skip_stale: false,
            created_at: 1,
            updated_at: 1,
        };
        let debug = format!("{workflow:?} {:#?}", workflow.target);
        assert!(!debug.contains("whsec_topsecret"), "{debug}");
        assert!(debug.contains("REDACTED"));
        let stored = serde_json::to_string(&workflow).unwrap();
        assert!(stored.contains("whsec_topsecret"));
        let back: Workflow = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, workflow);
    }
}

fn yes() -> bool {
    true
}
