//! Group commit for host writes. openraft 0.9 syncs the log once per proposed entry and one
//! entry at a time, so concurrent writes proposed one by one would each pay a full fdatasync.
//! Instead, writes queue here and whatever is waiting when a proposal slot frees goes into one
//! `Command::WriteBatch` entry: one sync and one replication round for all of them.

use crate::server::consensus::{Committed, Propose, ProposeError};
use crate::server::metrics::Metrics;
use statemachine::{Command, CommandError, Event, HostWrite, WriteData};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Writes in one entry, at most.
const MAX_BATCH_WRITES: usize = 512;
/// Bytes in one entry, at most: one replication request (`HostWrites` splits larger writes).
const MAX_BATCH_BYTES: u64 = storage::REPLICATION_BYTES as u64;
/// Batches proposed and not yet applied, at most: while one is synced the next one fills.
/// openraft appends (and syncs) entries one after another, so more in flight only makes the
/// batches smaller: at 4 KiB QD16, 4 in flight gave 2.5 writes per sync and 5.6k IOPS, 2 gave
/// 4.6 writes per sync and 8.8k IOPS (docs/PERFORMANCE.md).
const MAX_IN_FLIGHT: usize = 2;
/// Bytes of writes submitted and not yet answered, at most (in 4 KiB units): a host writing
/// faster than the cluster commits waits in `submit` instead of growing the queue.
const MAX_QUEUED_UNITS: u32 = (64 << 20) / QUEUE_UNIT;
const QUEUE_UNIT: u32 = 4096;

/// How a submitted write ended, as far as its own entry says.
#[derive(Debug)]
pub enum Outcome {
    /// Applied or refused by the entry at `index`.
    Done {
        index: u64,
        result: Result<(), CommandError>,
    },
    /// Held by a freeze in the entry at `index`: a later entry releases or refuses it.
    Held { index: u64 },
}

struct Pending {
    write: HostWrite,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
    /// The write's room in the queue, held until its batch is answered (also if the
    /// submitter gave up waiting).
    _room: OwnedSemaphorePermit,
}

/// The submitting side, held by [`HostWrites`](crate::server::host_io::HostWrites).
pub struct WriteQueue {
    queue: mpsc::UnboundedSender<Pending>,
    waiting: WritesWaiting,
    /// Room for queued bytes (see `MAX_QUEUED_UNITS`).
    room: Arc<Semaphore>,
}

/// How many host writes are submitted and not yet answered: the copy scheduler yields to them.
#[derive(Clone, Default)]
pub struct WritesWaiting(Arc<AtomicUsize>);

impl WritesWaiting {
    pub fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// One write counted in `WritesWaiting` while this lives.
struct Waiting(WritesWaiting);

impl Waiting {
    fn count(waiting: &WritesWaiting) -> Waiting {
        waiting.0.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The batching side, run by [`run`].
pub struct WriteBatches {
    queue: mpsc::UnboundedReceiver<Pending>,
}

pub fn channel() -> (WriteQueue, WriteBatches) {
    let (queue, receiver) = mpsc::unbounded_channel();
    let waiting = WritesWaiting::default();
    let room = Arc::new(Semaphore::new(MAX_QUEUED_UNITS as usize));
    (WriteQueue { queue, waiting, room }, WriteBatches { queue: receiver })
}

fn stopped() -> ProposeError {
    ProposeError::Unavailable("the node is shutting down".into())
}

impl WriteQueue {
    /// Proposes `write` in the next batch and waits for that batch's entry to be applied.
    pub async fn submit(&self, write: HostWrite) -> Result<Outcome, ProposeError> {
        // Zeroing carries no bytes: one unit. A write larger than the whole room takes all of it.
        let bytes = match write.data {
            WriteData::Bytes(ref b) => b.len() as u64,
            _ => 0,
        };
        let units = bytes
            .div_ceil(u64::from(QUEUE_UNIT))
            .clamp(1, u64::from(MAX_QUEUED_UNITS)) as u32;
        // Counted until answered, also when the caller gives up waiting (a client gone).
        let _waiting = Waiting::count(&self.waiting);
        let room = self
            .room
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|_| stopped())?;
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Pending {
                write,
                reply,
                _room: room,
            })
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// A handle on the count of writes waiting here.
    pub fn waiting(&self) -> WritesWaiting {
        self.waiting.clone()
    }
}

/// Forms batches and proposes them, until every [`WriteQueue`] is dropped.
pub async fn run<P: Propose>(proposer: Arc<P>, metrics: Arc<Metrics>, mut batches: WriteBatches) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let slot = slots.clone().acquire_owned().await.expect("the slots are never closed");
        let first = match carried.take() {
            Some(pending) => pending,
            None => match batches.queue.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut bytes = first.write.data.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_WRITES {
            match batches.queue.try_recv() {
                Ok(next) if bytes + next.write.data.len() <= MAX_BATCH_BYTES => {
                    bytes += next.write.data.len();
                    batch.push(next);
                }
                Ok(next) => {
                    carried = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        let (proposer, metrics) = (proposer.clone(), metrics.clone());
        tokio::spawn(async move {
            commit(&*proposer, &metrics, batch).await;
            drop(slot);
        });
    }
}

async fn commit<P: Propose>(proposer: &P, metrics: &Metrics, batch: Vec<Pending>) {
    metrics.host_writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
    metrics.write_batches.fetch_add(1, Ordering::Relaxed);
    let mut writes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    // The writes' room is given back when this batch is answered, however it ends.
    let mut _rooms = Vec::with_capacity(batch.len());
    for Pending { write, reply, _room } in batch {
        replies.push((write.tag, reply));
        writes.push(write);
        _rooms.push(_room);
    }
    let Committed { index, result, events } = match proposer.propose(Command::WriteBatch(writes)).await {
        Ok(committed) => committed,
        Err(e) => {
            for (_, reply) in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    if let Err(refused) = result {
        for (_, reply) in replies {
            let _ = reply.send(Ok(Outcome::Done {
                index,
                result: Err(refused.clone()),
            }));
        }
        return;
    }
    let mut outcomes: HashMap<u64, Outcome> = events
        .into_iter()
        .filter_map(|event| match event {
            Event::Written { tag, .. } => Some((tag, Outcome::Done { index, result: Ok(()) })),
            Event::WriteRefused { tag, error, .. } => Some((
                tag,
                Outcome::Done {
                    index,
                    result: Err(error),
                },
            )),
            Event::WriteHeld { tag, .. } => Some((tag, Outcome::Held { index })),
            _ => None,
        })
        .collect();
    for (tag, reply) in replies {
        let outcome = outcomes
            .remove(&tag)
            .ok_or_else(|| ProposeError::Unavailable(format!("entry {index} reported nothing for write {tag}")));
        let _ = reply.send(outcome);
    }
}
