//! The one bootstrap every HTTP Lambda shares: tracing, config and clients
//! once per cold start, then each API Gateway request through `api::handle`.

use std::sync::Arc;

use bytes::Bytes;
use lambda_http::{Body, service_fn};

use crate::api::{self, Routes};
use crate::app::App;
use crate::config::Config;
use crate::http::{Request, Response};

/// Logs as JSON lines (CloudWatch), level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Converts API Gateway's request (body already base64-decoded by lambda_http).
pub fn from_lambda(req: lambda_http::Request) -> Request {
    let (parts, body) = req.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    http::Request::from_parts(parts, bytes)
}

pub fn to_lambda(resp: Response) -> lambda_http::Response<Body> {
    let (parts, body) = resp.into_parts();
    let body = match String::from_utf8(body.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    http::Response::from_parts(parts, body)
}

/// Runs one HTTP function serving `routes`.
pub async fn run_http(routes: Routes) -> Result<(), lambda_http::Error> {
    init_tracing();
    let config = Config::from_env()?;
    let app = Arc::new(App::aws(config).await?);
    lambda_http::run(service_fn(move |req: lambda_http::Request| {
        let app = app.clone();
        async move {
            Ok::<_, std::convert::Infallible>(to_lambda(
                api::handle(&app, from_lambda(req), routes).await,
            ))
        }
    }))
    .await
}
