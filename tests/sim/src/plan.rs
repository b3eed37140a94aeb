//! What a seed decides before the run: the cluster's size and settings, the network's latency,
//! how often faults strike, and how long the workload runs.

use rand::rngs::StdRng;
use rand::Rng;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Plan {
    pub nodes: u64,
    /// Per node: how far its wall clock is off, in milliseconds (negative: behind).
    pub clock_skew_ms: Vec<i64>,
    /// `--snapshot-every`: small, so snapshots and purges happen mid-run.
    pub snapshot_every: u64,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Chance per simulated step (1 ms) of each kind of fault while faults are on.
    pub crash_rate: f64,
    pub partition_rate: f64,
    pub oneway_rate: f64,
    pub hold_rate: f64,
    /// A node's disk fills up (host writes refused) for a while.
    pub full_rate: f64,
    /// Chance that the leader crashes right after a command started a background copy, a
    /// refresh, a reverse or a freeze.
    pub mid_crash: f64,
    /// turmoil's link failures: per message, the chance a link goes down (dropping what is in
    /// flight on it), and per message sent on a downed link, the chance it comes back.
    pub fail_rate: f64,
    pub repair_rate: f64,
    /// Operations the workload runs with faults on, at least.
    pub operations: u64,
    /// Simulated time the faults stay on, at least (a scenario's script must play out).
    pub safety_time: Duration,
    /// Bytes per volume.
    pub volume_size: u64,
    /// Faults at fixed times, besides the random ones (a scenario's).
    pub script: Vec<(Duration, Scripted)>,
    /// Workload steps run in order before the random operations (a scenario's).
    pub steps: Vec<Step>,
    /// No random faults (`quiet`).
    pub quiet: bool,
    /// The workload makes `c`, a second target of `a`, now and then. Off for the seeds kept as
    /// regression cases (`sim --no-second-target`): they were kept before `c` existed, and a
    /// run that makes `c` is another run.
    pub second_target: bool,
}

/// A fault a scenario places at a fixed time.
#[derive(Clone, Copy, Debug)]
pub enum Scripted {
    /// Cut a node that does not lead off from the others for this long.
    CutFollower(Duration),
}

/// A workload step a scenario places before the random operations.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// `mkflash a:b` without a background copy (so the bitmap stays partly copied), perhaps
    /// with `--freeze`.
    MkFlash { freeze: bool },
    /// A host write to volume `a`'s bytes `offset..offset + length`, through the leader, issued
    /// once the volume's write before it ended or is held; left running if it is held.
    Write { offset: u64, length: u64 },
    /// `unfreezeflash a`.
    Thaw,
    /// Nothing, for this long.
    Wait(Duration),
}

impl Plan {
    pub fn draw(rng: &mut StdRng) -> Plan {
        let nodes = if rng.gen_bool(0.7) { 3 } else { 5 };
        let skewed = rng.gen_bool(0.3);
        let clock_skew_ms = (0..nodes)
            .map(|_| if skewed { rng.gen_range(-30_000..30_000) } else { 0 })
            .collect();
        let min_latency = Duration::from_micros(rng.gen_range(100..2_000));
        Plan {
            nodes,
            clock_skew_ms,
            snapshot_every: rng.gen_range(10..200),
            min_latency,
            max_latency: min_latency + Duration::from_millis(rng.gen_range(1..40)),
            crash_rate: rng.gen_range(0.0..0.0004),
            partition_rate: rng.gen_range(0.0..0.0004),
            oneway_rate: rng.gen_range(0.0..0.0002),
            hold_rate: rng.gen_range(0.0..0.0002),
            full_rate: rng.gen_range(0.0..0.0001),
            fail_rate: if rng.gen_bool(0.5) {
                rng.gen_range(0.0..0.0005)
            } else {
                0.0
            },
            repair_rate: rng.gen_range(0.01..0.3),
            operations: rng.gen_range(60..160),
            safety_time: Duration::ZERO,
            volume_size: 1 << 20,
            script: Vec::new(),
            steps: Vec::new(),
            quiet: false,
            second_target: true,
            // Drawn last: the draws before it are as they were.
            mid_crash: rng.gen_range(0.0..0.5),
        }
    }

    /// No random faults: only the script's.
    pub fn quiet(mut self) -> Plan {
        (self.crash_rate, self.partition_rate, self.oneway_rate, self.hold_rate) = (0.0, 0.0, 0.0, 0.0);
        self.full_rate = 0.0;
        self.fail_rate = 0.0;
        self.mid_crash = 0.0;
        self.quiet = true;
        self
    }

    /// No second target (`c`): the workload runs as it did before `c` was added.
    pub fn without_second_target(mut self) -> Plan {
        self.second_target = false;
        self
    }

    /// The command line that runs this plan again for `seed`, if one does (a scenario's script
    /// or steps are its test's to run).
    pub fn replay(&self, seed: u64) -> Option<String> {
        if !self.script.is_empty() || !self.steps.is_empty() {
            return None;
        }
        let (features, sabotage) = match sabotage_variant() {
            Some(variant) => (" --features sabotage", format!(" --sabotage {variant}")),
            None => ("", String::new()),
        };
        let quiet = if self.quiet { " --quiet" } else { "" };
        let second = if self.second_target { "" } else { " --no-second-target" };
        Some(format!(
            "cargo run -p sim{features} --bin sim -- --seed {seed}{sabotage}{quiet}{second}"
        ))
    }
}

/// The broken variant this thread runs, by name.
#[cfg(feature = "sabotage")]
fn sabotage_variant() -> Option<String> {
    statemachine::sabotage::current().map(|v| format!("{v:?}"))
}

#[cfg(not(feature = "sabotage"))]
fn sabotage_variant() -> Option<String> {
    None
}
