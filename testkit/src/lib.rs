//! What tests and benchmark harnesses share: the AWS call recorder (an SDK
//! interceptor that records each DynamoDB, Secrets Manager and SQS call, for
//! the least-privilege test and the cost model), an in-process SQS
//! poller that behaves like Lambda's event source mapping, and a fake
//! Stripe with state for webhook endpoints and the event list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: a failed set-up should stop the test

pub mod fake_stripe;
pub mod noisy;
pub mod recorder;
pub mod sqs;
