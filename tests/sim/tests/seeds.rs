//! The simulation in the test suite: a few dozen seeds, determinism, and the seeds that once
//! found a defect (kept so it stays fixed). `cargo run -p sim --bin sim -- --seeds N` runs
//! thousands; `--seed N` replays one.

/// Seeds every CI run goes through (each a whole cluster under faults, ~1 s of real time).
const SEEDS: std::ops::RangeInclusive<u64> = 1..=24;

fn pass(seed: u64) -> sim::Report {
    sim::run(seed).unwrap_or_else(|failure| panic!("{failure}"))
}

#[test]
fn seeds_keep_every_invariant_under_faults() {
    let mut faults = 0;
    for seed in SEEDS {
        let report = pass(seed);
        assert!(report.checks > 0, "seed {seed} checked nothing");
        faults += report.faults.values().sum::<u64>();
    }
    assert!(faults > 0, "the seeds injected no fault at all");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let first = pass(7);
    let second = pass(7);
    assert!(first.trace_lines > 10, "{first:?}");
    assert_eq!(
        (first.trace_hash, first.trace_lines, first.simulated),
        (second.trace_hash, second.trace_lines, second.simulated)
    );
    assert_ne!(pass(8).trace_hash, first.trace_hash);
}
