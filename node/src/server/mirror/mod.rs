//! Metro Mirror, the node's part: the tap (what apply says landed on full-duplex primaries),
//! the links to remote clusters, the leader's per-pair drivers that send and copy, and the wait
//! that holds a host write's acknowledgement until its secondary has it. The rules — what is
//! sent under which sequence number, what a suspension marks, when a pair is full duplex — are
//! the state machine's (`statemachine/src/pprc.rs`).

mod driver;
mod link;
mod stream;
mod tap;

pub use driver::run;
pub use link::{LinkError, LinkStats, Links};

use crate::server::metrics::Metrics;
use statemachine::{PairState, VolumeId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::{MirrorTap, SharedState, StateQuery};
use tap::Tap;
use tokio::sync::watch;

pub struct Mirror {
    tap: Tap,
    pub links: Links,
    state: SharedState,
    /// Per volume: (generation, highest sequence number the secondary confirmed to this node).
    confirmed: Mutex<BTreeMap<VolumeId, (u64, u64)>>,
    /// Bumped whenever something confirms: waiting host writes look again.
    changed: watch::Sender<u64>,
    /// How long the secondary may take to confirm before the pair suspends.
    pub timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Mirror {
    pub fn new(state: SharedState, timeout: Duration, metrics: Arc<Metrics>) -> Arc<Mirror> {
        Arc::new(Mirror {
            tap: Tap::default(),
            links: Links::default(),
            state,
            confirmed: Mutex::default(),
            changed: watch::channel(0).0,
            timeout,
            metrics,
        })
    }

    /// What apply calls with the writes it landed on full-duplex primaries.
    pub fn tap_fn(self: &Arc<Self>) -> MirrorTap {
        let mirror = self.clone();
        Arc::new(move |index, mirrored| {
            mirror.tap.push(index, mirrored);
            // The pair's driver sends at once.
            mirror.changed.send_modify(|n| *n += 1);
        })
    }

    /// Holds a host write applied at `index` to `volume` until the secondary has it — or until
    /// the pair is no longer full duplex, since then every track it wrote is out of sync and
    /// will be copied. Nothing to wait for on a volume that is not mirrored.
    pub async fn wait(&self, volume: VolumeId, index: u64) {
        let Some((generation, seq)) = self.tap.seq_at(volume, index) else {
            return;
        };
        let mut changed = self.changed.subscribe();
        let started = tokio::time::Instant::now();
        loop {
            if self.confirmed_here(volume, generation) >= seq {
                break;
            }
            let done = self
                .state
                .query(|s| match s.record(volume).and_then(|r| r.mirror.as_ref()) {
                    Some(m) => m.generation != generation || m.state != PairState::FullDuplex || m.confirmed >= seq,
                    None => true,
                });
            if done {
                break;
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        self.metrics.mirror_wait.observe(started.elapsed());
    }

    /// Waits (within the mirror timeout) until every full-duplex primary among `volumes` has
    /// nothing sent and unconfirmed: the secondaries hold every write so far.
    pub async fn drained(&self, volumes: &[VolumeId]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        for &volume in volumes {
            loop {
                let pair = self.state.query(|s| {
                    let m = s.record(volume)?.mirror.as_ref()?;
                    Some((m.generation, m.state, m.sent, m.confirmed))
                });
                let Some((generation, state, sent, confirmed)) = pair else {
                    break;
                };
                if state != PairState::FullDuplex {
                    return Err("a mirror pair of the relationship is not full duplex".into());
                }
                if confirmed.max(self.confirmed_here(volume, generation)) >= sent {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err("the secondary did not confirm the writes so far in time; try again".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    fn confirmed_here(&self, volume: VolumeId, generation: u64) -> u64 {
        match self.confirmed.lock().expect("not poisoned").get(&volume) {
            Some((g, seq)) if *g == generation => *seq,
            _ => 0,
        }
    }

    /// The secondary confirmed `seq`: writes waiting for it are acknowledged.
    fn note_confirmed(&self, volume: VolumeId, generation: u64, seq: u64) {
        {
            let mut confirmed = self.confirmed.lock().expect("not poisoned");
            let entry = confirmed.entry(volume).or_insert((generation, 0));
            if entry.0 != generation {
                *entry = (generation, 0);
            }
            entry.1 = entry.1.max(seq);
        }
        self.tap.confirmed(volume, generation, seq);
        self.changed.send_modify(|n| *n += 1);
    }
}
