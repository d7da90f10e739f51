//! One conformance suite ([`connector_core::conformance`]), run here against
//! the in-memory store and DynamoDB on moto through the real SDK; the
//! embedded SQLite store runs it in its own crate. Same inputs, same answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test or harness: failing loudly is the point

use crate::support;

use std::sync::Arc;

use connector_core::adapters::dynamo::DynamoStore;
use connector_core::adapters::memory::MemoryStore;
use connector_core::conformance::{stores, workflows_and_runs};

#[tokio::test]
async fn memory_store() {
    stores(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_workflows_and_runs() {
    workflows_and_runs(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_workflows_and_runs_on_moto() {
    let (client, table) = support::dynamo_table().await;
    workflows_and_runs(Arc::new(DynamoStore::new(client, table))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_on_moto() {
    let (client, table) = support::dynamo_table().await;
    stores(Arc::new(DynamoStore::new(client, table))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_gates() {
    connector_core::conformance::gates(Arc::new(
        connector_core::adapters::memory_gates::MemoryGates::default(),
    ))
    .await;
}

/// Two clients on one table, as two Lambda containers share it: the
/// window's count and the slots hold across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_gates_on_moto() {
    let (client, table) = support::dynamo_table().await;
    connector_core::conformance::gates(Arc::new(DynamoStore::new(client, table))).await;
}
