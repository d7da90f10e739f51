//! The Stripe connector's library: domain, ports and adapters shared by every
//! Lambda function and the dev server.

// `ApiError` is a rich answer (status, message, param, Stripe's error object)
// that only travels the cold path of a failed request; boxing it would buy
// nothing measurable.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod adapters;
pub mod api;
pub mod app;
pub mod catalog;
pub mod config;
pub mod http;
pub mod ids;
pub mod lambda;
pub mod model;
pub mod ports;
pub mod service;
pub mod stripe;
pub mod webhook;
pub mod workflow;
