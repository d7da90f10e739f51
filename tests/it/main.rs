//! End-to-end tests, one binary (each links the AWS SDK): the dev server
//! with localstripe, the action Lambdas, least privilege against
//! template.yaml, and the load test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

mod action_lambdas;
mod actions_localstripe;
mod concurrency;
mod dev_server;
mod least_privilege;
mod load;
mod run_queue;
