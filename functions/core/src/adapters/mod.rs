//! Implementations of the ports deployed in AWS: DynamoDB and Secrets
//! Manager; in-memory ones for tests behind the `test-util` feature. The
//! dev server's embedded SQLite store and local secrets file live in the
//! `connector-embedded` crate, so no Lambda links them.

pub mod cached_secrets;
pub mod dynamo;
pub mod local_queue;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod memory_gates;
pub mod secrets_manager;
pub mod sqs;

/// Newest first by (`created`, `event_id`); events after `starting_after`.
/// Shared by every store that pages in memory (the embedded one too).
pub fn page_events(
    mut events: Vec<crate::model::StoredEvent>,
    query: &crate::ports::EventQuery,
) -> Vec<crate::model::StoredEvent> {
    events.retain(|e| {
        query
            .event_type
            .as_deref()
            .is_none_or(|t| e.event_type == t)
    });
    events.sort_by(|a, b| (b.created, &b.event_id).cmp(&(a.created, &a.event_id)));
    let start = match &query.starting_after {
        Some(id) => events
            .iter()
            .position(|e| &e.event_id == id)
            .map(|i| i + 1)
            .unwrap_or(events.len()),
        None => 0,
    };
    events.into_iter().skip(start).take(query.limit).collect()
}
