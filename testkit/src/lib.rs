//! What tests and benchmark harnesses share: the AWS call recorder (an SDK
//! interceptor that records each DynamoDB and Secrets Manager call, for the
//! least-privilege test and the cost model).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: a failed set-up should stop the test

pub mod recorder;
