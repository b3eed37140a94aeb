//! `sim --seed N` replays one run; `sim --seeds N [--from S]` runs N seeds and sums them up.

use std::collections::BTreeMap;
use std::time::Instant;

fn usage() -> ! {
    eprintln!("usage: sim --seed N | sim --seeds COUNT [--from FIRST]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == flag)?;
        Some(args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()))
    };
    let seeds: Vec<u64> = match (value("--seed"), value("--seeds")) {
        (Some(seed), None) => vec![seed],
        (None, Some(count)) => {
            let from = value("--from").unwrap_or(1);
            (from..from + count).collect()
        }
        _ => usage(),
    };
    // Built with `--features sabotage`: `--sabotage VARIANT` runs a broken product.
    #[cfg(feature = "sabotage")]
    if let Some(i) = args.iter().position(|a| a == "--sabotage") {
        let name = args.get(i + 1).map(String::as_str).unwrap_or_default();
        let variant = statemachine::sabotage::Sabotage::ALL
            .into_iter()
            .find(|v| format!("{v:?}") == name)
            .unwrap_or_else(|| usage());
        statemachine::sabotage::set(Some(variant));
    }
    let started = Instant::now();
    let (mut ran, mut checks, mut failed) = (0u64, 0u64, Vec::new());
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in &seeds {
        match sim::run(*seed) {
            Ok(report) => {
                ran += 1;
                checks += report.checks;
                for (kind, n) in &report.faults {
                    *faults.entry(kind).or_default() += n;
                }
                if seeds.len() == 1 {
                    if let Ok(path) = std::env::var("SIM_TRACE") {
                        std::fs::write(&path, report.trace.join("\n") + "\n").expect("the trace file is writable");
                    }
                    let sim::Report { trace, .. } = &report;
                    println!(
                        "{:#?}",
                        sim::Report {
                            trace: vec![format!("{} lines (SIM_TRACE=FILE writes them)", trace.len())],
                            ..report.clone()
                        }
                    );
                }
            }
            Err(failure) => {
                ran += 1;
                eprintln!("{failure}\n");
                failed.push(*seed);
            }
        }
        // A long run says where it is now and then (it may be stopped before the end).
        if seeds.len() > 1 && ran % 50 == 0 && ran < seeds.len() as u64 {
            eprintln!("so far: {}", summary(ran, checks, &failed, &faults, started));
        }
    }
    println!("{}", summary(ran, checks, &failed, &faults, started));
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn summary(ran: u64, checks: u64, failed: &[u64], faults: &BTreeMap<&str, u64>, started: Instant) -> String {
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
