//! The run queue in AWS: one SQS message per run, sent ten to a request
//! (`SendMessageBatch`), the run-executor function consuming it through an
//! event source mapping.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::ports::{MAX_QUEUE_DELAY, QueueError, RunQueue, RunRef};

/// SQS takes at most ten messages a batch.
const BATCH: usize = 10;

pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl RunQueue for SqsQueue {
    async fn send(&self, runs: &[RunRef], delay_secs: u32) -> Result<(), QueueError> {
        let delay = i32::try_from(delay_secs.min(MAX_QUEUE_DELAY)).unwrap_or(0);
        for chunk in runs.chunks(BATCH) {
            let mut pending: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| (i.to_string(), r.to_body()))
                .collect();
            // Entries SQS refused for a passing reason are sent once more.
            for _ in 0..2 {
                if pending.is_empty() {
                    break;
                }
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body)
                            .delay_seconds(delay)
                            .build()
                            .map_err(|e| QueueError(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
                let failed: std::collections::HashSet<&str> = out
                    .failed()
                    .iter()
                    .map(aws_sdk_sqs::types::BatchResultErrorEntry::id)
                    .collect();
                if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                    return Err(QueueError(format!(
                        "SQS refused a message: {}",
                        f.message().unwrap_or(f.code())
                    )));
                }
                pending.retain(|(id, _)| failed.contains(id.as_str()));
            }
            if !pending.is_empty() {
                return Err(QueueError(format!(
                    "SQS did not take {} of the messages",
                    pending.len()
                )));
            }
        }
        Ok(())
    }
}

/// The queue of a function deployed without `RUN_QUEUE_URL`: refuses, so
/// a missing setting is an error where it matters, never a lost run.
pub struct Unconfigured;

#[async_trait]
impl RunQueue for Unconfigured {
    async fn send(&self, _runs: &[RunRef], _delay_secs: u32) -> Result<(), QueueError> {
        Err(QueueError(
            "RUN_QUEUE_URL is not set for this function".into(),
        ))
    }
}
