//! One test binary for the crate (each binary links the AWS SDK, so one
//! link instead of several); each module is one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

mod support;

mod actions;
mod catalog_schema;
mod engine;
mod observability;
mod reconcile;
mod samples;
mod secret_stores;
mod store_conformance;
mod stripe_client;
mod webhook_signature;
