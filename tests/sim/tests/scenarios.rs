//! Scenarios: a seed's cluster and workload with a scripted fault instead of random ones, each
//! for a defect the simulation found or an issue named, kept so it stays fixed.

use sim::plan::Scripted;
use std::time::Duration;

/// Issue 24's defect: a follower that stopped hearing the leader (here cut off by a partition;
/// in the probe, busy installing a snapshot) ran for election with terms the others had not
/// seen, and when it heard the leader again its higher term made the healthy leader step down:
/// no leader for seconds, every NBD client disconnected. With PreVote it cannot raise its term
/// without a majority that would elect it, so the leader the majority still hears stays.
/// (Without `server::pre_vote` this seed sees new terms after the cut.)
#[test]
fn a_follower_cut_off_and_back_does_not_depose_the_leader() {
    let cut_at = Duration::from_secs(6);
    let report = sim::run_with(24, |plan| {
        let mut plan = plan.quiet();
        plan.script = vec![(cut_at, Scripted::CutFollower(Duration::from_secs(12)))];
        plan.safety_time = Duration::from_secs(30);
        plan
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.faults.get("partition"), Some(&1), "{report:?}");
    let after: Vec<_> = report.terms.iter().filter(|(at, ..)| *at >= cut_at).collect();
    assert!(
        after.is_empty(),
        "new terms after the cut: {after:?} (all: {:?})",
        report.terms
    );
}
