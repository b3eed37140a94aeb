//! One seeded run: draw the plan, start the nodes and the workload, step the simulation with
//! faults on and the invariants checked between steps, heal, and require convergence.

use crate::cluster::{add_node, NodeSpec};
use crate::disk::SimDisk;
use crate::faults::Faults;
use crate::invariants::{converged, journals_agree, journals_replay, Digests, Leaders};
use crate::plan::Plan;
use crate::workload::Workload;
use crate::world::{Phase, World};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// Simulated time a run may take, at most (the workload's waits are bounded well inside it).
const RUN_BOUND: Duration = Duration::from_secs(3600);
/// After the workload, how long the nodes have to apply the same index.
const CONVERGE_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub nodes: u64,
    pub simulated: Duration,
    pub trace_hash: u64,
    pub trace_lines: usize,
    pub operations: u64,
    pub checks: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// Each term's leader as first seen: (when, term, leader).
    pub terms: Vec<(Duration, u64, u64)>,
    /// The whole trace.
    pub trace: Vec<String>,
}

#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub what: String,
    pub plan: String,
    /// The whole trace (`SIM_TRACE=FILE` writes it).
    pub trace: Vec<String>,
    /// The command that runs it again, if one does.
    pub replay: Option<String>,
}

/// Fault lines a failure prints, at most (the rest are in the whole trace).
const FAULTS_SHOWN: usize = 60;
/// The trace's last lines a failure prints.
const TAIL: usize = 40;

impl Failure {
    /// Every fault injected, in order, with its time.
    pub fn faults(&self) -> Vec<&String> {
        self.trace.iter().filter(|line| line.contains(" fault: ")).collect()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed: {}", self.seed, self.what)?;
        writeln!(f, "plan: {}", self.plan)?;
        let faults = self.faults();
        writeln!(f, "the faults injected ({}):", faults.len())?;
        for line in faults.iter().take(FAULTS_SHOWN) {
            writeln!(f, "  {line}")?;
        }
        if faults.len() > FAULTS_SHOWN {
            let more = faults.len() - FAULTS_SHOWN;
            writeln!(f, "  ... {more} more (SIM_TRACE=FILE writes the whole trace)")?;
        }
        writeln!(f, "the run's last events:")?;
        for line in &self.trace[self.trace.len().saturating_sub(TAIL)..] {
            writeln!(f, "  {line}")?;
        }
        match &self.replay {
            Some(command) => write!(f, "replay it: {command}"),
            None => write!(f, "a scenario: its test runs it again"),
        }
    }
}

/// Runs the seed's plan.
pub fn run(seed: u64) -> Result<Report, Failure> {
    run_with(seed, |plan| plan)
}

/// Runs the seed's plan as `change` makes it (a scenario: a script, no random faults).
pub fn run_with(seed: u64, change: impl FnOnce(Plan) -> Plan) -> Result<Report, Failure> {
    storage::runtime::simulate_on_this_thread(seed);
    let result = run_seeded(seed, change);
    storage::runtime::stop_simulating_on_this_thread();
    result
}

fn run_seeded(seed: u64, change: impl FnOnce(Plan) -> Plan) -> Result<Report, Failure> {
    let mut rng = StdRng::seed_from_u64(seed);
    let plan = change(Plan::draw(&mut rng));
    let dirs = tempfile::tempdir().expect("a temporary directory");
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .simulation_duration(RUN_BOUND)
        .min_message_latency(plan.min_latency)
        .max_message_latency(plan.max_latency)
        .fail_rate(plan.fail_rate)
        .repair_rate(plan.repair_rate)
        .tcp_capacity(65_536)
        .enable_random_order()
        .build();
    let world = Rc::new(RefCell::new(World::new()));
    for id in 1..=plan.nodes {
        let disk = SimDisk::default();
        world.borrow_mut().disks.insert(id, disk.clone());
        let spec = NodeSpec {
            disk,
            id,
            members: plan.nodes,
            dir: dirs.path().join(format!("n{id}")),
            skew_ms: plan.clock_skew_ms[id as usize - 1],
            snapshot_every: plan.snapshot_every,
        };
        add_node(&mut sim, world.clone(), spec);
    }
    let workload = Workload::new(world.clone(), StdRng::seed_from_u64(rng.gen()), plan.clone());
    sim.client("client", workload.run());

    let fail = |world: &World, what: String| Failure {
        seed,
        what,
        plan: format!("{plan:?}"),
        trace: world.trace.lines().to_vec(),
        replay: plan.replay(seed),
    };
    let mut faults = Faults::new(plan.clone());
    let mut leaders = Leaders::default();
    let mut digests = Digests::default();
    let mut healed = false;
    loop {
        let done = match sim.step() {
            Ok(done) => done,
            Err(e) => return Err(fail(&world.borrow(), e.to_string())),
        };
        let mut w = world.borrow_mut();
        let now = sim.elapsed();
        let checked = leaders.check(&mut w, now).and_then(|()| digests.check(&mut w));
        if let Err(what) = checked {
            return Err(fail(&w, what));
        }
        if done {
            break;
        }
        match (w.phase, healed) {
            (Phase::Safety, _) => faults.step(&mut sim, &mut w, &mut rng),
            (Phase::Liveness, false) => {
                faults.heal(&mut sim, &mut w, &mut rng);
                healed = true;
            }
            (Phase::Liveness, true) => {}
        }
    }
    // Every node applies the same index, then the digests (checked at every index) agree and
    // every journal replays.
    let until = sim.elapsed() + CONVERGE_BOUND;
    while !converged(&world.borrow()) {
        if sim.elapsed() >= until {
            let w = world.borrow();
            let applied: Vec<_> = w.live.iter().map(|(id, h)| (*id, h.state.applied().0)).collect();
            return Err(fail(
                &w,
                format!("liveness: the nodes did not converge: applied {applied:?}"),
            ));
        }
        if let Err(e) = sim.step() {
            return Err(fail(&world.borrow(), e.to_string()));
        }
        let mut w = world.borrow_mut();
        if let Err(what) = digests.check(&mut w) {
            return Err(fail(&w, what));
        }
    }
    let mut w = world.borrow_mut();
    if let Err(what) = journals_replay(&mut w).and_then(|()| journals_agree(&mut w)) {
        return Err(fail(&w, what));
    }
    // Where every node ended, in the trace: the same seed must end in the same state too.
    let now = sim.elapsed();
    let ends: Vec<String> = w
        .live
        .iter()
        .map(|(id, h)| {
            let (index, digest) = h.state.applied();
            format!("n{id} ends: applied {index}, digest {digest:016x}")
        })
        .collect();
    for end in ends {
        w.trace.note(now, end);
    }
    let report = Report {
        seed,
        nodes: plan.nodes,
        simulated: sim.elapsed(),
        trace_hash: w.trace.hash(),
        trace_lines: w.trace.len(),
        operations: w.operations,
        checks: w.checks,
        faults: faults.counts.clone(),
        terms: w.terms.clone(),
        trace: w.trace.lines().to_vec(),
    };
    // The nodes close before their directories go.
    w.live.clear();
    drop(w);
    drop(sim);
    Ok(report)
}
