//! `actions-subscriptions` Lambda: the subscriptions actions, through the shared bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    connector_core::lambda::run_http(connector_core::api::actions_router("subscriptions")).await
}
