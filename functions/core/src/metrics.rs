//! What the connector counts: events received, duplicate and rejected;
//! runs by outcome; target deliveries by status class and their latency;
//! Stripe calls, retries and 429s per connection.
//!
//! In AWS each measure is one line of CloudWatch's embedded metric format
//! (EMF) on stdout: the log group turns it into a metric, with no API call
//! and no extension. It is written by hand: a line is a small JSON object,
//! and the crates that produce it bring a metrics facade and a global
//! registry this needs none of (docs/benchmarks.md, "Metrics"). Dimensions
//! stay few and bounded: a rejection's reason, a status class, an outcome,
//! a connection id; never an event or run id.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// Every metric name the connector emits (the dashboard and the alarms in
/// template.yaml read them; a test holds the template to this list).
pub const NAMES: [&str; 10] = [
    "EventsReceived",
    "EventsDuplicate",
    "EventsRejected",
    "Runs",
    "DeliveryLatency",
    "StripeCalls",
    "EventsRecovered",
    "EventGaps",
    "EndpointRepairs",
    "Alerts",
];

/// The run outcomes an alarm watches: a run lost to its workflow.
pub const LOST_RUN_OUTCOMES: [&str; 2] = ["dead", "stuck"];

/// One thing that happened, to be counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// A verified Stripe event was taken (stored now, or a duplicate).
    EventReceived { duplicate: bool },
    /// A webhook request was refused: `reason` is the error's type
    /// (`invalid_signature`, `not_found`, `payload_too_large`, …).
    EventRejected { reason: &'static str },
    /// A run attempt ended: `succeeded`, `retrying`, `dead`, `stuck`,
    /// `deferred` (put back without spending an attempt).
    Run { outcome: &'static str },
    /// A delivery to a workflow's target: its status class (`2xx` … `5xx`,
    /// `none` when nothing answered) and how long it took.
    Delivery { class: &'static str, millis: u64 },
    /// A Stripe request of a connection: `ok`, `retried` (one retry of
    /// it), `rate_limited` (a 429 answer), `failed`.
    StripeCall {
        connection: String,
        outcome: &'static str,
    },
    /// A reconcile pass stored `count` events no delivery had brought.
    EventsRecovered { count: u32 },
    /// A reconcile pass found history Stripe no longer lists: events lost.
    EventGap,
    /// The reconciler repaired a managed endpoint: `problem` is
    /// `disabled`, `deleted`, `missing`, `enabled_events`, `url` or
    /// `api_version`.
    EndpointRepair { problem: &'static str },
    /// A notice to a connection's alert target: `sent` or `lost` (every
    /// try failed).
    Alert { outcome: &'static str },
}

impl Measure {
    /// The metric's name, its value and unit, and its dimensions.
    fn parts(&self) -> (&'static str, f64, &'static str, Vec<(&'static str, String)>) {
        match self {
            Measure::EventReceived { duplicate: false } => ("EventsReceived", 1.0, "Count", vec![]),
            Measure::EventReceived { duplicate: true } => ("EventsDuplicate", 1.0, "Count", vec![]),
            Measure::EventRejected { reason } => (
                "EventsRejected",
                1.0,
                "Count",
                vec![("Reason", (*reason).to_string())],
            ),
            Measure::Run { outcome } => (
                "Runs",
                1.0,
                "Count",
                vec![("Outcome", (*outcome).to_string())],
            ),
            #[allow(clippy::cast_precision_loss)] // milliseconds: far below 2^52
            Measure::Delivery { class, millis } => (
                "DeliveryLatency",
                *millis as f64,
                "Milliseconds",
                vec![("StatusClass", (*class).to_string())],
            ),
            Measure::EventsRecovered { count } => {
                ("EventsRecovered", f64::from(*count), "Count", vec![])
            }
            Measure::EventGap => ("EventGaps", 1.0, "Count", vec![]),
            Measure::EndpointRepair { problem } => (
                "EndpointRepairs",
                1.0,
                "Count",
                vec![("Problem", (*problem).to_string())],
            ),
            Measure::Alert { outcome } => (
                "Alerts",
                1.0,
                "Count",
                vec![("Outcome", (*outcome).to_string())],
            ),
            Measure::StripeCall {
                connection,
                outcome,
            } => (
                "StripeCalls",
                1.0,
                "Count",
                vec![
                    ("Connection", connection.clone()),
                    ("Outcome", (*outcome).to_string()),
                ],
            ),
        }
    }
}

/// Where measures go.
pub trait Metrics: Send + Sync {
    fn record(&self, measure: Measure);
}

/// Measures dropped (the dev server, tests that do not look).
#[derive(Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _: Measure) {}
}

/// Measures kept in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryMetrics(Mutex<Vec<Measure>>);

impl MemoryMetrics {
    pub fn taken(&self) -> Vec<Measure> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// How many of the recorded measures `matches` holds for.
    pub fn count(&self, matches: impl Fn(&Measure) -> bool) -> usize {
        self.taken().iter().filter(|m| matches(m)).count()
    }
}

impl Metrics for MemoryMetrics {
    fn record(&self, measure: Measure) {
        if let Ok(mut all) = self.0.lock() {
            all.push(measure);
        }
    }
}

/// CloudWatch EMF lines on stdout, in `namespace`, each with the function's
/// name as a dimension too.
#[derive(Debug)]
pub struct EmfMetrics {
    namespace: String,
    function: String,
}

impl EmfMetrics {
    pub fn new(namespace: impl Into<String>, function: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            function: function.into(),
        }
    }

    /// The EMF object for one measure at `timestamp_ms`.
    pub fn line(&self, measure: &Measure, timestamp_ms: i64) -> Value {
        let (name, value, unit, dims) = measure.parts();
        let mut keys = vec![Value::from("Function")];
        let mut out = Map::new();
        out.insert("Function".into(), json!(self.function));
        for (k, v) in dims {
            keys.push(json!(k));
            out.insert(k.into(), json!(v));
        }
        out.insert(name.into(), json!(value));
        out.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [keys],
                    "Metrics": [{"Name": name, "Unit": unit}],
                }],
            }),
        );
        Value::Object(out)
    }
}

impl Metrics for EmfMetrics {
    fn record(&self, measure: Measure) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut line = self.line(&measure, now).to_string();
        line.push('\n');
        // One write per line, so concurrent measures never interleave.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// A target's HTTP status as a low-cardinality class.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measure_is_one_emf_object_cloudwatch_can_read() {
        let emf = EmfMetrics::new("StripeConnector", "stack-webhook-ingest");
        let line = emf.line(
            &Measure::EventRejected {
                reason: "invalid_signature",
            },
            1_700_000_000_123,
        );
        assert_eq!(
            line,
            json!({
                "_aws": {"Timestamp": 1_700_000_000_123i64, "CloudWatchMetrics": [{
                    "Namespace": "StripeConnector",
                    "Dimensions": [["Function", "Reason"]],
                    "Metrics": [{"Name": "EventsRejected", "Unit": "Count"}],
                }]},
                "Function": "stack-webhook-ingest",
                "Reason": "invalid_signature",
                "EventsRejected": 1.0,
            })
        );
        let latency = emf.line(
            &Measure::Delivery {
                class: "5xx",
                millis: 250,
            },
            0,
        );
        assert_eq!(latency["DeliveryLatency"], 250.0);
        assert_eq!(
            latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(latency["StatusClass"], "5xx");
    }

    #[test]
    fn every_measure_has_a_listed_name() {
        let all = [
            Measure::EventReceived { duplicate: false },
            Measure::EventReceived { duplicate: true },
            Measure::EventRejected { reason: "x" },
            Measure::Run { outcome: "dead" },
            Measure::Delivery {
                class: "2xx",
                millis: 1,
            },
            Measure::StripeCall {
                connection: "c".into(),
                outcome: "ok",
            },
            Measure::EventsRecovered { count: 2 },
            Measure::EventGap,
            Measure::EndpointRepair {
                problem: "disabled",
            },
            Measure::Alert { outcome: "sent" },
        ];
        let mut named = std::collections::BTreeSet::new();
        for m in all {
            assert!(NAMES.contains(&m.parts().0), "{m:?}");
            named.insert(m.parts().0);
        }
        assert_eq!(named.len(), NAMES.len(), "every listed name is emitted");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(429)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
    }
}
