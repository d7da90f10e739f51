//! Workflows: what runs when an event arrives. This module holds the rules,
//! free of I/O: templates and filters over an event, the run state machine
//! with its lease and retry schedule, how failures are classified, the
//! idempotency key of each step, and Standard Webhooks signing for targets.
//! The stores, fan-out and retry functions build on it (issue #5).

pub mod engine;
pub mod filter;
pub mod run;
pub mod signing;
pub mod template;

use sha2::{Digest, Sha256};

/// The `Idempotency-Key` of a workflow step's Stripe write: a stable function
/// of (event, workflow, step), so a step retried after a timeout, by any
/// worker, can never create a second object.
pub fn step_idempotency_key(event_id: &str, workflow_id: &str, step: usize) -> String {
    let mut h = Sha256::new();
    for part in [
        event_id.as_bytes(),
        workflow_id.as_bytes(),
        step.to_string().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    format!("sc-{}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_keys_are_stable_distinct_and_unambiguous() {
        let k = step_idempotency_key("evt_1", "wf_1", 0);
        assert_eq!(k, step_idempotency_key("evt_1", "wf_1", 0));
        assert_eq!(k.len(), 3 + 32);
        assert_ne!(k, step_idempotency_key("evt_1", "wf_1", 1));
        assert_ne!(k, step_idempotency_key("evt_2", "wf_1", 0));
        assert_ne!(k, step_idempotency_key("evt_1", "wf_2", 0));
        // Length-prefixed parts: moving a character across a boundary changes the key.
        assert_ne!(
            step_idempotency_key("evt_1a", "wf_1", 0),
            step_idempotency_key("evt_1", "awf_1", 0)
        );
    }
}
