//! `trigger-fanout` Lambda: the table's DynamoDB Stream -> runs, through the shared bootstrap.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    connector_core::lambda::run_fanout().await
}
