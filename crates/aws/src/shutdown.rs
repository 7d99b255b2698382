//! Graceful shutdown: SIGTERM (ECS, `docker stop`) or SIGINT (Ctrl-C) flips a watch flag that the
//! service loops check before each receive and race against their long polls.

use tokio::sync::watch;

/// A flag that turns true once on the first SIGTERM or SIGINT.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Installs the signal handlers. Must be called inside a tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(
                signal = which,
                "shutting down: no new messages; finishing the work in hand"
            );
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    /// A flag that never turns (for embedding and tests).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Self(rx)
    }

    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the sender is gone: nothing will ever request it.
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
