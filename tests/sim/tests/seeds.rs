//! The simulation in the test suite: a few dozen seeds and determinism, each seed in a process
//! of its own as `sim --seeds` runs them (see `src/main.rs`). `sim --seeds N` runs thousands;
//! `sim --seed N` replays one.

use std::process::Command;

const SIM: &str = env!("CARGO_BIN_EXE_sim");

fn sim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(SIM).args(args).output().expect("the simulation runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn seeds_keep_every_invariant_under_faults() {
    // Each a whole cluster under faults: a few seconds of real time each.
    let (ok, stdout, stderr) = sim(&["--seeds", "24"]);
    assert!(ok, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("24 seeds ran") && stdout.contains(", 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("crash") && stdout.contains("power-loss") && stdout.contains("partition"),
        "no faults injected: {stdout}"
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let hash = |seed: &str| {
        let (ok, stdout, stderr) = sim(&["--seed", seed]);
        assert!(ok, "{stderr}");
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with("trace_hash"))
            .map(str::to_string)
            .expect("a trace hash")
    };
    let first = hash("7");
    assert_eq!(first, hash("7"));
    assert_ne!(first, hash("8"));
}

/// Seeds that once failed, kept as regression cases: 113 (a write acknowledged across a point
/// in time taken of its volume was taken as landed after it), 202 (two leaders in one term,
/// which openraft 0.9's leader ids allow: the check was wrong, not the product), 70880 (a
/// failed write covering part of a run, after a revertible increment was reverted: the model
/// checked only failed writes covering a whole run), 80418 (a write still in flight when a
/// revertible increment was reverted landed after the revert: the model dropped it), 54 (the
/// space keeper asked for a snapshot while a purge it had asked for was still scheduled: the
/// purge openraft schedules after the snapshot went back below it, which openraft's debug
/// builds assert against; it needs the second target `c`; since session 21 openraft purges
/// nothing of its own, so the case cannot arise). They run as they were kept, without
/// the second target `c` (added later: a run that makes `c` is another run), and as the seeds
/// run now. Checked by undoing each fix (session 20): 80418 without `c` fails again (with `c`
/// it passes: the switch is what keeps it); 113 and 70880 pass either way: the workload changed
/// since they were kept, and they no longer reach their case (they stay as two more seeds).
#[test]
fn kept_seeds_pass() {
    for seed in ["54", "113", "202", "70880", "80418"] {
        for args in [&["--seed", seed, "--no-second-target"][..], &["--seed", seed]] {
            let (ok, stdout, stderr) = sim(args);
            assert!(ok, "{args:?}:\n{stderr}\n{stdout}");
        }
    }
}

/// `--no-second-target` runs a seed without `c`: seed 2 makes it, and with the switch does not.
#[test]
fn the_second_target_can_be_left_out() {
    let trace = |args: &[&str]| {
        let path = std::env::temp_dir().join(format!("sim-trace-{}-{}", std::process::id(), args.len()));
        let out = Command::new(SIM)
            .args(args)
            .env("SIM_TRACE", &path)
            .output()
            .expect("the simulation runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&path).expect("the trace was written");
        let _ = std::fs::remove_file(&path);
        text
    };
    assert!(trace(&["--seed", "2"]).contains("mkvol c "));
    assert!(!trace(&["--seed", "2", "--no-second-target"]).contains("mkvol c "));
}
