//! `actions-products` Lambda: the products actions, through the shared bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    connector_core::lambda::run_http(connector_core::api::actions_router("products")).await
}
