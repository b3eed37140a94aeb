//! The leader's sweep of kept tracks nobody reads any more (`statemachine`'s `kept_sweep.rs`):
//! one bounded `SweepKept` step at a time for each volume whose sweep bookmark is set, on a
//! task of its own, so it neither waits for the background copy's pacing nor holds it up. The
//! bookmarks are replicated state: a new leader or a restarted node carries on where it stood.

use crate::server::consensus::Propose;
use statemachine::{Command, SWEEP_TRACKS};
use std::sync::Arc;
use std::time::Duration;
use storage::{SharedState, StateQuery};

/// The pause after a step that was not committed, so an unavailable cluster is not asked again
/// at once.
const FAILED_STEP_PAUSE: Duration = Duration::from_millis(100);

/// Sweeps while this node leads and some volume's bookmark is set, then ends. The copy
/// scheduler starts it when it sees a bookmark (so an idle node runs no sweeper at all).
pub async fn run<P: Propose>(proposer: Arc<P>, state: SharedState) {
    loop {
        let volumes = state.query(|s| s.kept_sweeps());
        if volumes.is_empty() || !proposer.is_leader() {
            return;
        }
        for volume in volumes {
            let step = Command::SweepKept {
                volume,
                max_tracks: SWEEP_TRACKS,
            };
            if let Err(e) = proposer.propose(step).await {
                tracing::debug!(error = %e, "kept-track sweep step not proposed");
                tokio::time::sleep(FAILED_STEP_PAUSE).await;
            }
        }
    }
}
