//! `webhook-ingest` Lambda: API Gateway requests through the shared bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    connector_core::lambda::run_http(connector_core::api::ingest_router()).await
}
