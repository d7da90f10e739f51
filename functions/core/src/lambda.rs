//! The one bootstrap every HTTP Lambda shares: tracing, config and clients
//! once per cold start, then each API Gateway request through `api::handle`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;

use crate::adapters::dynamo::DynamoStore;
use crate::app::App;
use crate::config::Config;
use crate::ports::RunRef;
use crate::workflow::engine::Engine;

/// Logs as JSON lines (CloudWatch). The level follows Lambda's own setting
/// (`ApplicationLogLevel`, which Lambda passes as `AWS_LAMBDA_LOG_LEVEL`),
/// unless `RUST_LOG` gives finer directives; info when neither is set.
pub fn init_tracing() {
    let directives = log_directives(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let _ = tracing::subscriber::set_global_default(log_subscriber(&directives, std::io::stdout));
}

/// The functions' log format: one JSON object a line, the message's fields
/// flattened, and the spans it happened in (`Lambda runtime invoke` with its
/// `requestId`; `run` with its connection, event and run) listed in
/// `spans`. Lambda adds the time. Tests capture it through `writer`.
pub fn log_subscriber<W>(directives: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(true)
        .without_time()
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// The filter's directives: `RUST_LOG` when set, else Lambda's level
/// (`FATAL` has no tracing level: error), else info.
pub fn log_directives(rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    if let Some(directives) = rust_log.filter(|d| !d.trim().is_empty()) {
        return directives.to_string();
    }
    match lambda_level
        .map(|l| l.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some(level @ ("trace" | "debug" | "info" | "warn" | "error")) => level.to_string(),
        Some("fatal") => "error".to_string(),
        _ => "info".to_string(),
    }
}

/// Runs one HTTP function: its router (`api::ingest_router()`, …), built
/// once per cold start, over `lambda_http` (API Gateway's request and answer).
pub async fn run_http(router: axum::Router<Arc<App>>) -> Result<(), lambda_http::Error> {
    init_tracing();
    let config = Config::from_env()?;
    let app = App::aws(config).await?;
    lambda_http::run(router.with_state(std::sync::Arc::new(app))).await
}

/// Fans out the new events of one DynamoDB Stream batch: each event's runs
/// are made and queued (nothing is executed here). Only inserted event
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

/// One scheduler invocation: queue the runs falling due soon; answers how
/// many it queued. It executes nothing: executors take them from the queue.
pub async fn scheduler_tick(
    app: &App,
) -> Result<serde_json::Value, crate::workflow::engine::EngineError> {
    let queued = Engine::new(app, format!("scheduler-{}", uuid::Uuid::new_v4()))
        .enqueue_due()
        .await?;
    Ok(serde_json::json!({"queued_runs": queued}))
}

/// The retry-scheduler function: every minute, the runs falling due.
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

/// One reconciler invocation: a pass over every connection (endpoint
/// repair, events missed, notices). A connection's failure is in its
/// report and log; the invocation fails only when the connections cannot
/// be listed.
pub async fn reconcile_tick(app: &App) -> Result<serde_json::Value, crate::service::Error> {
    let reports = crate::service::reconcile::all(app).await?;
    let recovered: u64 = reports.iter().map(|r| u64::from(r.recovered)).sum();
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    Ok(serde_json::json!({
        "connections": reports.len(),
        "recovered_events": recovered,
        "repairs": reports.iter().map(|r| r.repairs.len()).sum::<usize>(),
        "failed": failed,
    }))
}

/// The reconciler function: on its schedule, [`reconcile_tick`].
pub async fn run_reconciler() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let app = Arc::new(App::aws(Config::from_env()?).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: LambdaEvent<serde_json::Value>| {
            let app = app.clone();
            async move { reconcile_tick(&app).await.map_err(|e| e.to_string()) }
        },
    ))
    .await
}

/// One batch of run messages from SQS, executed concurrently (one slow
/// target never holds up the batch's other runs). A message whose run
/// could not be carried on (the store failed) is reported, so SQS delivers
/// it again after its visibility timeout; all others are done with. An
/// unreadable message is logged and dropped: retrying cannot mend it.
pub async fn process_queue(
    app: &Arc<App>,
    batch: aws_lambda_events::event::sqs::SqsEvent,
) -> SqsBatchResponse {
    let worker = format!("exec-{}", uuid::Uuid::new_v4());
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let Some(run) = message.body.as_deref().and_then(RunRef::parse) else {
            tracing::error!(message_id = %id, "unreadable run message dropped");
            continue;
        };
        let receives = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let app = app.clone();
        let worker = worker.clone();
        let task = tasks.spawn(async move {
            let outcome = Engine::new(&app, worker).handle_message(&run, receives).await;
            if let Err(e) = &outcome {
                tracing::error!(error = %e, connection = %run.connection_id, event_id = %run.event_id, "run not carried on; its message comes back");
            }
            outcome.is_ok()
        });
        ids.insert(task.id(), id);
    }
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (task, done) = match joined {
            Ok((task, done)) => (task, done),
            // A task that panicked: its message comes back.
            Err(e) => {
                tracing::error!(error = %e, "run task failed");
                (e.id(), false)
            }
        };
        if !done && let Some(id) = ids.remove(&task) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The run-executor function: the run queue's event source mapping,
/// partial batch failures reported.
pub async fn run_executor() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let app = Arc::new(App::aws(Config::from_env()?).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(process_queue(&app, event.payload).await) }
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

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn the_log_level_follows_lambdas_setting_unless_rust_log_says_more() {
        assert_eq!(log_directives(None, Some("WARN")), "warn");
        assert_eq!(log_directives(None, Some("FATAL")), "error");
        assert_eq!(log_directives(None, Some("LOUD")), "info");
        assert_eq!(log_directives(None, None), "info");
        assert_eq!(
            log_directives(Some("connector_core=debug"), Some("WARN")),
            "connector_core=debug"
        );
    }
}
