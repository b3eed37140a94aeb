//! `sim --seed N` runs (replays) one seed; `sim --seeds N [--from S]` runs N seeds, each in a
//! process of its own, and sums them up. One process per seed because runs in one process are
//! not independent: tokio numbers tasks process-wide, and a crashed host's tasks are dropped in
//! that order, so a seed run after others could differ from the same seed run alone.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

fn usage() -> ! {
    eprintln!(
        "usage: sim --seed N | sim --seeds COUNT [--from FIRST]   [--quiet: no random faults]   [--no-second-target: no volume c]   (built with --features sabotage: [--sabotage VARIANT])"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == flag)?;
        Some(args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()))
    };
    let sabotage = args
        .iter()
        .position(|a| a == "--sabotage")
        .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()));
    let switches = Switches {
        quiet: args.iter().any(|a| a == "--quiet"),
        no_second_target: args.iter().any(|a| a == "--no-second-target"),
    };
    match (value("--seed"), value("--seeds")) {
        (Some(seed), None) => one(seed, sabotage.as_deref(), switches),
        (None, Some(count)) => many(value("--from").unwrap_or(1), count, sabotage.as_deref(), switches),
        _ => usage(),
    }
}

/// What the command line changes in every seed's plan.
#[derive(Clone, Copy)]
struct Switches {
    quiet: bool,
    no_second_target: bool,
}

impl Switches {
    fn apply(self, mut plan: sim::plan::Plan) -> sim::plan::Plan {
        if self.quiet {
            plan = plan.quiet();
        }
        if self.no_second_target {
            plan = plan.without_second_target();
        }
        plan
    }

    fn args(self) -> Vec<&'static str> {
        let mut args = Vec::new();
        if self.quiet {
            args.push("--quiet");
        }
        if self.no_second_target {
            args.push("--no-second-target");
        }
        args
    }
}

/// Runs one seed here; the last line of its output says what it checked, for `many`.
fn one(seed: u64, sabotage: Option<&str>, switches: Switches) {
    #[cfg(feature = "sabotage")]
    if let Some(name) = sabotage {
        let variant = statemachine::sabotage::Sabotage::ALL
            .into_iter()
            .find(|v| format!("{v:?}") == name)
            .unwrap_or_else(|| usage());
        statemachine::sabotage::set(Some(variant));
    }
    #[cfg(not(feature = "sabotage"))]
    if sabotage.is_some() {
        usage();
    }
    let write_trace = |trace: &[String]| {
        if let Ok(path) = std::env::var("SIM_TRACE") {
            std::fs::write(&path, trace.join("\n") + "\n").expect("the trace file is writable");
        }
    };
    let result = sim::run_with(seed, |plan| switches.apply(plan));
    match result {
        Ok(report) => {
            write_trace(&report.trace);
            let faults: Vec<String> = report.faults.iter().map(|(k, n)| format!("{k}={n}")).collect();
            println!(
                "{:#?}",
                sim::Report {
                    trace: vec![format!("{} lines (SIM_TRACE=FILE writes them)", report.trace.len())],
                    ..report.clone()
                }
            );
            println!("checked {} {}", report.checks, faults.join(" "));
        }
        Err(failure) => {
            write_trace(&failure.trace);
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}

/// Runs seeds one process each and prints where it is now and then, and a summary.
fn many(from: u64, count: u64, sabotage: Option<&str>, switches: Switches) {
    let me = std::env::current_exe().expect("the running program's path");
    let started = Instant::now();
    let (mut ran, mut checks, mut failed) = (0u64, 0u64, Vec::new());
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for seed in from..from + count {
        let mut command = Command::new(&me);
        command.args(["--seed", &seed.to_string()]);
        if let Some(variant) = sabotage {
            command.args(["--sabotage", variant]);
        }
        command.args(switches.args());
        let out = command.output().expect("the simulation runs");
        ran += 1;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("checked ")) {
            Some(line) if out.status.success() => {
                let mut words = line.split(' ');
                checks += words.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                for (kind, n) in words.filter_map(|w| w.split_once('=')) {
                    *faults.entry(kind.to_string()).or_default() += n.parse::<u64>().unwrap_or(0);
                }
            }
            _ => {
                eprintln!("{}\n", String::from_utf8_lossy(&out.stderr).trim_end());
                failed.push(seed);
            }
        }
        if ran % 50 == 0 && ran < count {
            eprintln!("so far: {}", summary(ran, checks, &failed, &faults, started));
        }
    }
    println!("{}", summary(ran, checks, &failed, &faults, started));
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn summary(ran: u64, checks: u64, failed: &[u64], faults: &BTreeMap<String, u64>, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    format!(
        "{ran} seeds ran ({:.2} seeds/s), {} failed{}; {checks} invariant checks passed; faults injected: {faults:?}",
        ran as f64 / secs,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    )
}
