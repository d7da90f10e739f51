//! `retry-scheduler` Lambda: EventBridge schedule -> due runs, through the shared bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    connector_core::lambda::run_scheduler().await
}
