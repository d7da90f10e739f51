//! The Stripe connector's library: domain, ports and adapters shared by every
//! Lambda function and the dev server.

pub mod actions;
pub mod adapters;
pub mod api;
pub mod app;
pub mod catalog;
pub mod config;
#[cfg(feature = "test-util")]
pub mod conformance;
pub mod http;
pub mod ids;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod service;
pub mod stripe;
pub mod target;
pub mod webhook;
pub mod workflow;
