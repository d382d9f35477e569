//! The drain of a server process. SIGTERM and SIGINT (the CLI) call
//! [`Shutdown::begin`] once; from then on `/_/ready` answers 503, event streams end
//! with a reconnection hint, the accept loop stops, and the requests in flight
//! finish. Everything that must end cleanly waits on [`Shutdown::draining`].

use std::sync::Arc;

use tokio::sync::watch;

/// Whether this process is draining; cloning shares the flag.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown(Arc::new(watch::Sender::new(false)))
    }
}

impl Shutdown {
    /// Starts the drain (again is a no-op).
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the drain has begun (at once if it has).
    pub async fn draining(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only ends when draining.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_completes_after_begin_and_stays() {
        let s = Shutdown::default();
        assert!(!s.is_draining());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.draining().await }
        });
        s.begin();
        waiter.await.unwrap();
        assert!(s.is_draining());
        // Late waiters see it at once.
        s.draining().await;
    }
}
