//! The Stripe connector's library: domain, ports and adapters shared by every
//! Lambda function and the dev server.

pub mod config;
pub mod http;
pub mod stripe;
pub mod webhook;
