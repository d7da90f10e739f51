//! The one bootstrap every HTTP Lambda shares: tracing, config and clients
//! once per cold start, then each API Gateway request through `api::handle`.

use std::sync::Arc;

use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;

use crate::adapters::dynamo::DynamoStore;
use crate::app::App;
use crate::config::Config;
use crate::workflow::engine::Engine;

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

/// Runs one HTTP function: its router (`api::ingest_router()`, …), built
/// once per cold start, over `lambda_http` (API Gateway's request and answer).
pub async fn run_http(router: axum::Router<Arc<App>>) -> Result<(), lambda_http::Error> {
    init_tracing();
    let config = Config::from_env()?;
    let app = App::aws(config).await?;
    lambda_http::run(router.with_state(std::sync::Arc::new(app))).await
}

/// Fans out the new events of one DynamoDB Stream batch. Only inserted event
/// items count (runs and connections share the table). A record whose
/// fan-out failed is reported by its sequence number, so Lambda retries the
/// batch from there; the runs already made are not made again.
pub async fn process_stream(
    app: &App,
    batch: aws_lambda_events::event::dynamodb::Event,
) -> DynamoDbEventResponse {
    let engine = Engine::new(app, format!("fanout-{}", uuid::Uuid::new_v4()));
    let mut response = DynamoDbEventResponse::default();
    for record in batch.records {
        if record.event_name != "INSERT" {
            continue;
        }
        let item = record.change.new_image;
        let is_event = matches!(item.get("kind"), Some(serde_dynamo::AttributeValue::S(kind)) if kind == "event");
        if !is_event {
            continue;
        }
        let event = match DynamoStore::event_from_image(item) {
            Ok(e) => e,
            Err(e) => {
                // Retrying cannot mend an unreadable item; it is logged and passed.
                tracing::error!(error = %e, sequence = ?record.change.sequence_number, "unreadable event item");
                continue;
            }
        };
        if let Err(e) = engine.fan_out(&event).await {
            tracing::error!(error = %e, event_id = %event.event_id, "fan-out failed; the batch is retried from here");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The trigger-fanout function: the table's stream, batch item failures reported.
pub async fn run_fanout() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let app = Arc::new(App::aws(Config::from_env()?).await?);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(process_stream(&app, event.payload).await) }
    }))
    .await
}

/// How many due runs one scheduler invocation takes on.
pub const RETRY_BATCH: usize = 200;

/// One scheduler invocation: run what is due; answers how many runs it took on.
pub async fn scheduler_tick(
    app: &App,
) -> Result<serde_json::Value, crate::workflow::engine::EngineError> {
    let outcomes = Engine::new(app, format!("retry-{}", uuid::Uuid::new_v4()))
        .run_due(RETRY_BATCH)
        .await?;
    Ok(serde_json::json!({"due_runs": outcomes.len()}))
}

/// The retry-scheduler function: every minute, the runs that are due.
pub async fn run_scheduler() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let app = Arc::new(App::aws(Config::from_env()?).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: LambdaEvent<serde_json::Value>| {
            let app = app.clone();
            async move { scheduler_tick(&app).await }
        },
    ))
    .await
}

/// A scheduler failure as Lambda reports it: the store could not be read or
/// written; the next tick tries again.
impl From<crate::workflow::engine::EngineError> for lambda_runtime::Diagnostic {
    fn from(e: crate::workflow::engine::EngineError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "StoreUnavailable".into(),
            error_message: e.to_string(),
        }
    }
}
