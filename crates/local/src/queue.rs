//! In-process job queue: bounded, many producers and consumers, closed when the producers are
//! done so workers drain it and stop. The embedded counterpart of the SQS merge queue.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

/// A bounded FIFO of jobs shared by workers.
pub struct LocalQueue<T> {
    tx: Mutex<Option<mpsc::Sender<T>>>,
    rx: Arc<Mutex<mpsc::Receiver<T>>>,
}

impl<T: Send> LocalQueue<T> {
    /// A queue holding at most `capacity` jobs; `send` waits when it is full (back-pressure).
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx: Mutex::new(Some(tx)),
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    /// Queues a job; gives it back if the queue was closed.
    pub async fn send(&self, job: T) -> Result<(), T> {
        let tx = self.tx.lock().await.clone();
        match tx {
            Some(tx) => tx.send(job).await.map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// No more jobs: receivers get `None` once the queue is drained.
    pub async fn close(&self) {
        self.tx.lock().await.take();
    }

    /// The next job, or `None` when the queue is closed and empty.
    pub async fn receive(&self) -> Option<T> {
        self.rx.lock().await.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_then_ends() {
        let q = Arc::new(LocalQueue::new(2));
        let producer = {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                for i in 0..10 {
                    q.send(i).await.unwrap();
                }
                q.close().await;
            })
        };
        let mut got = Vec::new();
        while let Some(i) = q.receive().await {
            got.push(i);
        }
        producer.await.unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(q.send(11).await, Err(11), "closed");
    }
}
