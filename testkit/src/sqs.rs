//! An in-process stand-in for Lambda's SQS event source mapping: receives
//! a batch (long polling, the queue's visibility timeout), hands it to the
//! run executor's handler as the `SqsEvent` Lambda would, and deletes the
//! messages the handler did not report as failed — the rest come back
//! after their visibility timeout, with their receive count raised.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use connector_core::app::App;
use serde_json::json;

pub struct Poller {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    /// Messages a batch (the mapping's `BatchSize`, at most 10).
    pub batch: i32,
    /// Seconds a received message stays hidden (the queue's own when `None`).
    pub visibility: Option<i32>,
}

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub failed: usize,
}

impl Poller {
    /// One batch, as the event source mapping would invoke the function
    /// with it; waits up to `wait_secs` for messages. (Short polls every
    /// 100 ms rather than SQS's long polling: the test server, moto, answers
    /// one request at a time, and a long poll would hold everyone else.)
    pub async fn poll(&self, app: &Arc<App>, wait_secs: i32) -> Polled {
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs(u64::try_from(wait_secs).unwrap_or(0));
        let out = loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(self.batch)
                .set_visibility_timeout(self.visibility)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .expect("receive from the run queue");
            if !out.messages().is_empty() || std::time::Instant::now() >= deadline {
                break out;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let messages = out.messages();
        if messages.is_empty() {
            return Polled::default();
        }
        let records: Vec<_> = messages
            .iter()
            .map(|m| {
                let receives = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .cloned()
                    .unwrap_or_else(|| "1".into());
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": {"ApproximateReceiveCount": receives},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:run-queue",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        let event: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).expect("an SqsEvent");
        let response = connector_core::lambda::process_queue(app, event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for m in messages {
            if failed.contains(&m.message_id().unwrap_or_default()) {
                continue;
            }
            self.client
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete a handled message");
        }
        Polled {
            received: messages.len(),
            failed: failed.len(),
        }
    }

    /// Polls until a poll of `wait_secs` finds nothing.
    pub async fn drain(&self, app: &Arc<App>, wait_secs: i32) -> Polled {
        let mut total = Polled::default();
        loop {
            let p = self.poll(app, wait_secs).await;
            if p.received == 0 {
                return total;
            }
            total.received += p.received;
            total.failed += p.failed;
        }
    }
}

/// A new queue on the local server (moto), with a dead-letter queue after
/// `max_receives`, as template.yaml declares it. Answers (queue URL, DLQ URL).
pub async fn create_run_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    visibility: i32,
    max_receives: u32,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the DLQ")
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string(),
        )
        .send()
        .await
        .expect("create the run queue")
        .queue_url()
        .unwrap_or_default()
        .to_string();
    (url, dlq)
}
