//! In-process job queue: the embedded counterpart of the SQS merge queue, with the same
//! semantics — at-least-once delivery, a visibility timeout per delivery, extend, ack and release
//! — so the same [`JobQueue`] suite (`flowmerge_core::conformance`) holds for both.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use flowmerge_protocol::ports::{Delivery, JobQueue, QueueError};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Clone)]
struct Message {
    id: String,
    body: String,
    attributes: HashMap<String, String>,
    receive_count: u32,
    sent_at_ms: i64,
}

#[derive(Default)]
struct State {
    sent: u64,
    deliveries: u64,
    ready: VecDeque<Message>,
    /// By receipt handle: the message and when it becomes visible again.
    in_flight: HashMap<String, (Message, Instant)>,
}

impl State {
    /// Messages whose visibility ran out go back to the front of the queue.
    fn requeue_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for receipt in expired {
            if let Some((m, _)) = self.in_flight.remove(&receipt) {
                self.ready.push_front(m);
            }
        }
    }
}

/// A job queue in memory, shared by the tasks of one process.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
    changed: Notify,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No job waiting and none in hand: everything sent was acknowledged.
    pub fn is_idle(&self) -> bool {
        let s = self.state();
        s.ready.is_empty() && s.in_flight.is_empty()
    }
}

fn unknown(receipt: &str) -> QueueError {
    format!("receipt {receipt:?} is not in hand (acknowledged, released or expired)").into()
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send_job(
        &self,
        body: &str,
        attributes: &[(String, String)],
    ) -> Result<String, QueueError> {
        let id = {
            let mut s = self.state();
            s.sent += 1;
            let id = format!("m{}", s.sent);
            s.ready.push_back(Message {
                id: id.clone(),
                body: body.to_owned(),
                attributes: attributes.iter().cloned().collect(),
                receive_count: 0,
                sent_at_ms: chrono::Utc::now().timestamp_millis(),
            });
            id
        };
        self.changed.notify_waiters();
        Ok(id)
    }

    async fn receive_jobs(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_expiry = {
                let now = Instant::now();
                let mut s = self.state();
                s.requeue_expired(now);
                let mut got = Vec::new();
                while got.len() < max.max(1) {
                    let Some(mut m) = s.ready.pop_front() else {
                        break;
                    };
                    m.receive_count += 1;
                    s.deliveries += 1;
                    let receipt = format!("{}#{}", m.id, s.deliveries);
                    got.push(Delivery {
                        message_id: m.id.clone(),
                        receipt_handle: receipt.clone(),
                        body: m.body.clone(),
                        attributes: m.attributes.clone(),
                        receive_count: m.receive_count,
                        sent_at_ms: Some(m.sent_at_ms),
                    });
                    s.in_flight.insert(receipt, (m, now + visibility));
                }
                if !got.is_empty() || now >= deadline {
                    return Ok(got);
                }
                s.in_flight.values().map(|(_, until)| *until).min()
            };
            let wake = next_expiry.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let mut s = self.state();
        let (_, until) = s
            .in_flight
            .get_mut(receipt)
            .ok_or_else(|| unknown(receipt))?;
        *until = Instant::now() + visibility;
        Ok(())
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.state()
            .in_flight
            .remove(receipt)
            .ok_or_else(|| unknown(receipt))?;
        self.changed.notify_waiters();
        Ok(())
    }

    async fn release(&self, receipt: &str) -> Result<(), QueueError> {
        {
            let mut s = self.state();
            let (m, _) = s
                .in_flight
                .remove(receipt)
                .ok_or_else(|| unknown(receipt))?;
            s.ready.push_front(m);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    fn name(&self) -> &str {
        "in-process"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_job_queue_conformance_suite() {
        let q = MemoryQueue::new();
        flowmerge_core::conformance::job_queue_conformance(&q).await;
        assert!(q.is_idle());
    }
}
