//! A trigger's sample event: what `GET …/triggers/{trigger}/sample`
//! answers, what a workflow's templates are checked against when it is
//! created, and what `POST …/workflows/{id}/test` runs on. One function, so
//! the three always agree.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Error, Result, connection};
use crate::app::App;
use crate::catalog;
use crate::model::Connection;
use crate::ports::EventQuery;

/// Where a sample came from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    /// The latest event of the type this connection received.
    Stored,
    /// The latest event of the type in the Stripe account (Stripe keeps 30 days).
    Stripe,
    /// Stripe's sample object in an event of the type, bundled with the connector.
    Fixture,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sample {
    pub source: SampleSource,
    /// A Stripe event: `{"id", "type", "data": {"object"}, …}`.
    #[schema(value_type = Object)]
    pub event: Value,
}

/// The trigger `*` (every event) is sampled with this type's fixture.
const ANY_EVENT_FIXTURE: &str = "customer.created";

/// Checks a trigger key: one of the catalog's, or `*`.
pub fn check_trigger(trigger: &str) -> Result<()> {
    if trigger == "*" || catalog::trigger(trigger).is_some() {
        return Ok(());
    }
    Err(catalog::InvalidInput::at(
        "trigger",
        format!("unknown trigger {trigger:?}; see GET /catalog, or use * for every event"),
    )
    .into())
}

/// The bundled sample of a trigger.
pub fn fixture(trigger: &str) -> Sample {
    Sample {
        source: SampleSource::Fixture,
        event: catalog::sample_event(if trigger == "*" {
            ANY_EVENT_FIXTURE
        } else {
            trigger
        }),
    }
}

/// The latest stored event of the type, else the latest from Stripe
/// (`GET /v1/events?type=…&limit=1`), else the fixture. A Stripe that
/// cannot be asked (key refused, down) falls through to the fixture: a
/// sample is a convenience, never a reason to fail.
pub async fn trigger_sample(app: &App, conn: &str, trigger: &str) -> Result<Sample> {
    check_trigger(trigger)?;
    let connection = connection(app, conn).await?;
    let event_type = (trigger != "*").then(|| trigger.to_string());
    let stored = app
        .events
        .list_events(
            conn,
            &EventQuery {
                event_type: event_type.clone(),
                limit: 1,
                starting_after: None,
            },
        )
        .await?;
    // An event too large to store has no body here: Stripe has it.
    if let Some(event) = stored
        .first()
        .and_then(|e| e.body.as_deref())
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
    {
        return Ok(Sample {
            source: SampleSource::Stored,
            event,
        });
    }
    match latest_from_stripe(app, &connection, event_type.as_deref()).await {
        Ok(Some(event)) => Ok(Sample {
            source: SampleSource::Stripe,
            event,
        }),
        Ok(None) => Ok(fixture(trigger)),
        Err(e) => {
            tracing::warn!(connection = %conn, trigger, error = %e, "could not read a sample event from Stripe; using the bundled one");
            Ok(fixture(trigger))
        }
    }
}

/// The connection was read by the caller: only its secrets are read here.
async fn latest_from_stripe(
    app: &App,
    connection: &Connection,
    event_type: Option<&str>,
) -> Result<Option<Value>> {
    let secrets = app
        .secrets
        .get_secrets(&connection.id)
        .await?
        .ok_or_else(|| Error::Internal(format!("connection {} has no secrets", connection.id)))?;
    let stripe = app.stripe_for(connection, &secrets.api_key);
    let mut query = json!({"limit": 1});
    if let Some(t) = event_type {
        query["type"] = json!(t);
    }
    let page = stripe
        .get("/v1/events", &query)
        .await
        .map_err(|e| Error::Stripe(Box::new(e)))?;
    Ok(page["data"]
        .get(0)
        .filter(|e| e["data"]["object"].is_object())
        .cloned())
}

/// What a workflow's templates are checked against: the sample, with what
/// it leaves out or null filled from the trigger's bundled sample. A real
/// event may lack what others of its type have (a null address, a field of
/// a later API version): a path is refused only when neither has it.
pub fn for_checking(sample: &Sample, trigger: &str) -> Value {
    if sample.source == SampleSource::Fixture {
        return sample.event.clone();
    }
    let mut merged = fixture(trigger).event;
    fill(&mut merged, &sample.event);
    merged
}

/// `base` overwritten by `over`, object by object; a null in `over` keeps
/// what `base` has.
fn fill(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                match base.get_mut(k) {
                    Some(slot) => fill(slot, v),
                    None => {
                        base.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (_, Value::Null) => {}
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_sample_is_filled_from_the_bundled_one_where_it_is_empty() {
        let real = Sample {
            source: SampleSource::Stripe,
            event: json!({"id": "evt_real", "type": "customer.created", "data": {"object": {
                "id": "cus_real", "invoice_settings": null, "metadata": {"crm": "42"}, "email": "a@b.co"}}}),
        };
        let merged = for_checking(&real, "customer.created");
        let object = &merged["data"]["object"];
        assert_eq!(merged["id"], "evt_real");
        assert_eq!(object["id"], "cus_real");
        assert_eq!(object["email"], "a@b.co");
        assert_eq!(object["metadata"]["crm"], "42");
        // Null in the real event: the bundled sample's settings.
        assert!(object["invoice_settings"].is_object(), "{object}");
        // Absent from the real event: the bundled sample's field.
        assert!(object.get("invoice_prefix").is_some());
    }
}
