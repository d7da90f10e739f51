//! One test binary for the crate (each binary links the AWS SDK, so one
//! link instead of several); each module is one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

mod handler;
mod workflows;
