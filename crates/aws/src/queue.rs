//! An SQS queue: long-polling receive, send with message attributes (W3C trace context travels
//! there), batched delete, and visibility changes (heartbeat and release).

use std::time::Duration;

use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
};

use async_trait::async_trait;
use flowmerge_protocol::ports::{Delivery, JobQueue, QueueError};

use crate::error::{AwsError, Result};

/// A received message: the protocol's [`Delivery`].
pub type Received = Delivery;

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    name: String,
}

/// SQS's limit on entries per batch call.
const BATCH: usize = 10;

impl SqsQueue {
    /// Opens a queue by URL, or by name (looked up with GetQueueUrl) when `url_or_name` is not
    /// an `http(s)://` URL — handy where URLs differ between emulators (LocalStack's depend on
    /// its endpoint strategy).
    pub async fn open(client: aws_sdk_sqs::Client, url_or_name: &str) -> Result<Self> {
        if url_or_name.starts_with("http://") || url_or_name.starts_with("https://") {
            return Ok(Self::new(client, url_or_name));
        }
        let url = client
            .get_queue_url()
            .queue_name(url_or_name)
            .send()
            .await
            .map_err(|e| AwsError::api("sqs:GetQueueUrl", e))?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        Ok(Self::new(client, &url))
    }

    /// Opens the queue a variable names and checks that it exists and may be read, so a worker
    /// with a wrong queue stops at start with one line naming the variable.
    pub async fn open_checked(
        client: aws_sdk_sqs::Client,
        var: &'static str,
        url_or_name: &str,
    ) -> Result<Self> {
        let unreachable = |e: AwsError| AwsError::Config {
            var,
            reason: format!("queue {url_or_name:?} cannot be used: {e}"),
        };
        let queue = Self::open(client, url_or_name).await.map_err(unreachable)?;
        queue
            .client
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| unreachable(AwsError::api("sqs:GetQueueAttributes", e)))?;
        Ok(queue)
    }

    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        let name = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(url)
            .to_owned();
        Self {
            client,
            url: url.to_owned(),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue's name (last part of its URL), for logs and span attributes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Receives up to `max` (1–10) messages, waiting up to `wait` (≤ 20 s) for the first.
    pub async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(secs(visibility))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| AwsError::api("sqs:ReceiveMessage", e))?;
        let mut received = Vec::new();
        for m in out.messages() {
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            let attributes = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            let system = m.attributes();
            let sys = |name: MessageSystemAttributeName| system.and_then(|s| s.get(&name));
            received.push(Received {
                message_id: id.to_owned(),
                receipt_handle: receipt.to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                attributes,
                receive_count: sys(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                sent_at_ms: sys(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|v| v.parse().ok()),
            });
        }
        Ok(received)
    }

    /// Sends one message with string attributes; returns its message id once SQS has stored it.
    pub async fn send(&self, body: &str, attributes: &[(String, String)]) -> Result<String> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (k, v) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| AwsError::api("sqs:SendMessage", e))?;
            req = req.message_attributes(k, value);
        }
        let out = req
            .send()
            .await
            .map_err(|e| AwsError::api("sqs:SendMessage", e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// Deletes messages by receipt handle, in batches; any entry SQS refuses is an error.
    pub async fn delete(&self, receipts: &[String]) -> Result<()> {
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(|e| AwsError::api("sqs:DeleteMessageBatch", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::api("sqs:DeleteMessageBatch", e))?;
            first_failure("sqs:DeleteMessageBatch", out.failed())?;
        }
        Ok(())
    }

    /// Sets the visibility timeout of held messages: extends them while working (heartbeat), or
    /// releases them at once with zero.
    pub async fn set_visibility(&self, receipts: &[String], timeout: Duration) -> Result<()> {
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(secs(timeout))
                        .build()
                        .map_err(|e| AwsError::api("sqs:ChangeMessageVisibilityBatch", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::api("sqs:ChangeMessageVisibilityBatch", e))?;
            first_failure("sqs:ChangeMessageVisibilityBatch", out.failed())?;
        }
        Ok(())
    }
}

/// A batch call succeeds as a whole but may refuse entries: the first refusal is an error.
fn first_failure(operation: &'static str, failed: &[BatchResultErrorEntry]) -> Result<()> {
    match failed.first() {
        None => Ok(()),
        Some(f) => Err(AwsError::Api {
            operation,
            message: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
        }),
    }
}

/// Records how long a received job waited in `queue` (metric `flowmerge.queue.wait`).
pub fn record_wait(queue: &str, m: &Delivery) {
    if let Some(sent) = m.sent_at_ms {
        let wait = (chrono::Utc::now().timestamp_millis() - sent).max(0) as f64 / 1000.0;
        let metrics = flowmerge_telemetry::metrics::get();
        metrics
            .queue_wait
            .record(wait, &flowmerge_telemetry::metrics::queue_attributes(queue));
    }
}

fn secs(d: Duration) -> i32 {
    d.as_secs().min(43_200) as i32
}

/// The SQS adapter of the protocol's job-queue port; `flowmerge_core::conformance` holds the
/// expectations it shares with the in-process queue.
#[async_trait]
impl JobQueue for SqsQueue {
    async fn send_job(
        &self,
        body: &str,
        attributes: &[(String, String)],
    ) -> std::result::Result<String, QueueError> {
        Ok(self.send(body, attributes).await?)
    }

    async fn receive_jobs(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> std::result::Result<Vec<Delivery>, QueueError> {
        Ok(self.receive(max.min(10) as i32, wait, visibility).await?)
    }

    async fn extend(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> std::result::Result<(), QueueError> {
        Ok(self
            .set_visibility(&[receipt.to_owned()], visibility)
            .await?)
    }

    async fn ack(&self, receipt: &str) -> std::result::Result<(), QueueError> {
        Ok(self.delete(&[receipt.to_owned()]).await?)
    }

    async fn release(&self, receipt: &str) -> std::result::Result<(), QueueError> {
        Ok(self
            .set_visibility(&[receipt.to_owned()], Duration::ZERO)
            .await?)
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn ack_all(&self, receipts: &[String]) -> std::result::Result<(), QueueError> {
        Ok(self.delete(receipts).await?)
    }

    async fn extend_all(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> std::result::Result<(), QueueError> {
        Ok(self.set_visibility(receipts, visibility).await?)
    }
}
