//! Read-index batching: one leadership confirmation serves every linearizable read waiting for
//! it (as etcd and TiKV do). A read that arrives while a round is under way waits for the next
//! round, which starts as soon as that one ends, so each read is confirmed by a round that
//! began after it arrived: linearizable, and at most one round per peer round trip.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One round: openraft's `ensure_linearizable`, or a test's stand-in.
pub type Round<E> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), E>> + Send>> + Send + Sync>;

/// Batches linearizable reads over a [`Round`].
pub struct ReadIndex<E> {
    round: Round<E>,
    pending: Arc<Mutex<Pending<E>>>,
}

struct Pending<E> {
    /// A round driver is running.
    running: bool,
    /// Reads waiting for the next round.
    waiters: Vec<oneshot::Sender<Result<(), E>>>,
    /// Rounds run so far (for metrics and tests).
    rounds: u64,
}

impl<E: Clone + Send + 'static> ReadIndex<E> {
    pub fn new(round: Round<E>) -> Self {
        ReadIndex {
            round,
            pending: Arc::new(Mutex::new(Pending {
                running: false,
                waiters: Vec::new(),
                rounds: 0,
            })),
        }
    }

    /// Waits until a round that started after this call confirms it; `None` if the round was
    /// abandoned (the runtime is shutting down).
    pub async fn wait(&self) -> Option<Result<(), E>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut pending = self.pending.lock().expect("not poisoned");
            pending.waiters.push(tx);
            !std::mem::replace(&mut pending.running, true)
        };
        if start {
            tokio::spawn(drive(self.round.clone(), self.pending.clone()));
        }
        rx.await.ok()
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.pending.lock().expect("not poisoned").rounds
    }
}

/// Runs rounds while reads wait, each for the reads that arrived before it began.
async fn drive<E: Clone>(round: Round<E>, pending: Arc<Mutex<Pending<E>>>) {
    loop {
        let waiters = {
            let mut pending = pending.lock().expect("not poisoned");
            let waiters = std::mem::take(&mut pending.waiters);
            if waiters.is_empty() {
                pending.running = false;
                return;
            }
            pending.rounds += 1;
            waiters
        };
        let result = round().await;
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn reads_waiting_together_share_one_round_that_started_after_them() {
        // Each round takes 50 ms and reports which round it was.
        let started = Arc::new(AtomicU64::new(0));
        let counter = started.clone();
        let index = Arc::new(ReadIndex::new(Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<(), u64>(n)
            })
        })));
        // The first read starts round 1; 31 more arrive during it and share round 2.
        let first = tokio::spawn({
            let index = index.clone();
            async move { index.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let later: Vec<_> = (0..31)
            .map(|_| {
                let index = index.clone();
                tokio::spawn(async move { index.wait().await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(Err(1)));
        for read in later {
            // Not round 1: it began before these reads arrived.
            assert_eq!(read.await.unwrap(), Some(Err(2)));
        }
        assert_eq!(index.rounds(), 2);
        // Nobody waits: no round runs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }
}
