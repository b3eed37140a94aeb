//! The checker is itself tested: each deliberately broken variant of the product
//! (`statemachine/src/sabotage.rs`) must be caught within a bounded number of seeds.
//! Runs with `cargo test -p sim --features sabotage --test sabotage` (as `scripts/test` does).
#![cfg(feature = "sabotage")]

use statemachine::sabotage::{self, Sabotage};

/// Seeds tried per variant, at most.
const BOUND: u64 = 12;

/// The first seed whose run fails with `variant` active, and how. Even seeds run without
/// random faults (a freeze's held writes then mostly end acknowledged, so their order shows),
/// odd seeds with them.
fn caught(variant: Sabotage) -> Option<(u64, String)> {
    (1..=BOUND).find_map(|seed| {
        sabotage::set(Some(variant));
        let result = sim::run_with(seed, |plan| if seed % 2 == 0 { plan.quiet() } else { plan });
        sabotage::set(None);
        result.err().map(|failure| (seed, failure.what))
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
