//! The checker is itself tested: each deliberately broken variant of the product
//! (`statemachine/src/sabotage.rs`) must be caught within a bounded number of seeds.
//! Runs with `cargo test -p sim --features sabotage --test sabotage` (as `scripts/test` does).
#![cfg(feature = "sabotage")]

use sim::plan::{Plan, Scripted, Step};
use statemachine::sabotage::{self, Sabotage};
use std::time::Duration;

/// Seeds tried per variant, at most.
const BOUND: u64 = 12;

/// The first seed whose run fails with `variant` active and passes without it (so the variant
/// is what failed it), and how. Even seeds run without random faults (a freeze's held writes
/// then mostly end acknowledged, so their order shows), odd seeds with them.
fn caught(variant: Sabotage) -> Option<(u64, String)> {
    let plan = |seed: u64| move |plan: Plan| if seed.is_multiple_of(2) { plan.quiet() } else { plan };
    (1..=BOUND).find_map(|seed| {
        sabotage::set(Some(variant));
        let broken = sim::run_with(seed, plan(seed));
        sabotage::set(None);
        let failure = broken.err()?;
        let intact = sim::run_with(seed, plan(seed));
        assert!(intact.is_ok(), "seed {seed} fails intact too: {}", intact.unwrap_err());
        Some((
            seed,
            format!("{} ({})", failure.what, failure.replay.unwrap_or_default()),
        ))
    })
}

#[test]
fn every_broken_variant_is_caught_within_a_few_seeds() {
    let mut missed = Vec::new();
    for variant in Sabotage::ALL {
        match caught(variant) {
            Some((seed, what)) => eprintln!("{variant:?}: caught by seed {seed}: {what}"),
            None => missed.push(variant),
        }
    }
    assert!(missed.is_empty(), "not caught within {BOUND} seeds: {missed:?}");
}

/// A snapshot installed while a relationship's bitmap is partly copied: a follower is cut off
/// while writes to the source (each a copy-on-write) carry the log past a snapshot and its
/// purge, so it catches up by installing the snapshot.
fn snapshot_mid_copy(plan: Plan) -> Plan {
    let mut plan = plan.quiet();
    plan.nodes = 3;
    plan.clock_skew_ms = vec![0; 3];
    plan.snapshot_every = 10;
    plan.operations = 0;
    plan.script = vec![(Duration::from_secs(5), Scripted::CutFollower(Duration::from_secs(15)))];
    let mut steps = vec![Step::MkFlash { freeze: false }, Step::Wait(Duration::from_secs(6))];
    steps.extend((0..16).map(|track| Step::Write {
        offset: track * 65_536 + 512,
        length: 4096,
    }));
    // The cut heals with the faults still on: the install happens in the safety phase.
    steps.push(Step::Wait(Duration::from_secs(20)));
    plan.steps = steps;
    plan
}

/// Two overlapping writes held by a freeze, then a thaw: they must land in the order issued.
fn held_then_thawed(plan: Plan) -> Plan {
    let mut plan = plan.quiet();
    plan.operations = 0;
    plan.steps = vec![
        Step::MkFlash { freeze: true },
        Step::Write {
            offset: 0,
            length: 8192,
        },
        Step::Write {
            offset: 4096,
            length: 8192,
        },
        Step::Thaw,
        Step::Wait(Duration::from_secs(2)),
    ];
    plan
}

/// The variants the random mix catches only when their moment comes up, each met head-on by
/// a scenario: it passes with the product intact and fails with the variant.
#[test]
fn aimed_scenarios_catch_their_variants_and_pass_without_them() {
    type Scenario = fn(Plan) -> Plan;
    let aimed: [(Sabotage, Scenario); 2] = [
        (Sabotage::SnapshotDropsBitmaps, snapshot_mid_copy),
        (Sabotage::ReleaseHeldOutOfOrder, held_then_thawed),
    ];
    for (variant, scenario) in aimed {
        let intact = sim::run_with(7, scenario);
        assert!(
            intact.is_ok(),
            "{variant:?}'s scenario fails without it: {}",
            intact.unwrap_err()
        );
        sabotage::set(Some(variant));
        let broken = sim::run_with(7, scenario);
        sabotage::set(None);
        match broken {
            Ok(report) => panic!(
                "{variant:?} not caught by its scenario; trace:\n{}",
                report.trace.join("\n")
            ),
            Err(failure) => eprintln!("{variant:?}: caught by its scenario: {}", failure.what),
        }
    }
}
