//! Workflows: what runs when an event arrives. This module holds the rules,
//! free of I/O: templates and filters over an event, the run state machine
//! with its lease and retry schedule, how failures are classified, the
//! idempotency key of each step, and Standard Webhooks signing for targets.
//! The stores, fan-out and retry functions build on it (issue #5).

pub mod breaker;
pub mod engine;
pub mod filter;
pub mod limits;
pub mod run;
pub mod signing;
pub mod template;

use sha2::{Digest, Sha256};

/// The `Idempotency-Key` of a workflow step's Stripe write: a stable function
/// of (event, run, step), so a step retried after a timeout, by any worker,
/// can never create a second object. It names the workflow
/// (`sc-{workflow}-{hash}`), so the event Stripe sends about the write can
/// be told apart as the workflow's own ([`workflow_of_key`]).
pub fn step_idempotency_key(event_id: &str, run_key: &str, step: usize) -> String {
    let workflow = run_key.split('#').next().unwrap_or(run_key);
    format!("sc-{workflow}-{}", key_hash(event_id, run_key, step))
}

/// The workflow whose step made a Stripe write with this idempotency key.
pub fn workflow_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("sc-")?;
    let (workflow, hash) = rest.rsplit_once('-')?;
    (crate::ids::is_id(workflow, "wf_") && hash.len() == 32).then_some(workflow)
}

/// 32 hex characters of SHA-256 over the length-prefixed parts.
pub fn key_hash(event_id: &str, run_key: &str, step: usize) -> String {
    let workflow_id = run_key;
    let mut h = Sha256::new();
    for part in [
        event_id.as_bytes(),
        workflow_id.as_bytes(),
        step.to_string().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_keys_are_stable_distinct_and_unambiguous() {
        let k = step_idempotency_key("evt_1", "wf_1", 0);
        assert_eq!(k, step_idempotency_key("evt_1", "wf_1", 0));
        assert_eq!(k.len(), "sc-wf_1-".len() + 32);
        assert_ne!(k, step_idempotency_key("evt_1", "wf_1", 1));
        assert_ne!(k, step_idempotency_key("evt_2", "wf_1", 0));
        assert_ne!(k, step_idempotency_key("evt_1", "wf_2", 0));
        // Length-prefixed parts: moving a character across a boundary changes the key.
        assert_ne!(
            step_idempotency_key("evt_1a", "wf_1", 0),
            step_idempotency_key("evt_1", "awf_1", 0)
        );
    }

    #[test]
    fn a_key_names_its_workflow_and_nothing_else_does() {
        let k = step_idempotency_key("evt_1", "wf_abc#rpl_9", 2);
        assert_eq!(workflow_of_key(&k), Some("wf_abc"));
        for other in [
            "",
            "sc-",
            "sc-wf_abc",
            "sc-cus_1-0123456789abcdef0123456789abcdef",
            "stripe-node-1234",
            "sc-wf_abc-short",
        ] {
            assert_eq!(workflow_of_key(other), None, "{other}");
        }
    }
}
