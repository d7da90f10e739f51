//! `reconciler` Lambda: EventBridge schedule -> a reconcile pass over every
//! connection (`connector_core::service::reconcile`), through the shared
//! bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    connector_core::lambda::run_reconciler().await
}
