//! `run-executor` Lambda: the run queue (SQS) -> runs carried out, through the shared bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    connector_core::lambda::run_executor().await
}
