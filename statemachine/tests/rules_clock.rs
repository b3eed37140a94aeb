//! The state's clock: moved by the leaders' stamps, never back, not drifting with leader
//! changes.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn the_state_clock_never_goes_back_and_does_not_drift_with_alternating_leaders() {
    let mut h = three_volumes();
    let start = h.state.globals().last_time.0;
    // Two leaders whose clocks are 10 s apart take turns; the state's clock follows the later
    // one but does not gain 10 s per turn.
    for round in 0..10 {
        h.term += 1;
        h.now += 10_000 * u64::from(round % 2 == 0);
        h.ok(Command::Tick);
        h.now -= 10_000 * u64::from(round % 2 == 0);
    }
    let elapsed = h.state.globals().last_time.0 - start;
    assert!(elapsed <= 10 * 1000 + 10_000, "the clock gained {elapsed} ms in 10 s");
    // Within one term, stamps that reach the log out of order move nothing.
    let (before, latest) = (h.state.globals().last_time, h.now);
    h.now = latest - 5000;
    h.ok(Command::Tick);
    assert_eq!(h.state.globals().last_time, before, "a late stamp moved the clock");
    h.now = latest - 1000;
    h.ok(Command::Tick);
    assert_eq!(
        h.state.globals().last_time,
        before,
        "reaching the latest stamp again moved it"
    );
    h.ok(Command::Tick);
    assert_eq!(h.state.globals().last_time.0, before.0 + 1000);
}

#[test]
fn a_leader_clock_that_ran_ahead_does_not_delay_a_later_automatic_thaw() {
    let mut h = three_volumes();
    // One leader stamps an entry an hour ahead; the next leader's clock is right again.
    let right = h.now;
    h.term += 1;
    h.now = right + 3_600_000;
    h.ok(Command::Tick);
    h.term += 1;
    h.now = right;
    h.ok(mkflash("a:b", options("--freeze")));
    // The state's clock never went back, and it moves on with the right clocks.
    assert!(h.state.globals().last_time.0 > right + 3_600_000);
    let frozen_at = h.now;
    h.write("a", 0, &[3]);
    assert_eq!(h.vol("a").state, VolumeState::Frozen);
    // 120 s of right clocks later the thaw is due on the state's clock, and a tick fires it.
    assert!(h.state.next_thaw().unwrap() <= h.state.clock_at(Timestamp(frozen_at + FREEZE_TIMEOUT_MILLIS)));
    h.now = frozen_at + FREEZE_TIMEOUT_MILLIS - 1000;
    let events = h.ok(Command::Tick);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Thawed { automatic: true, .. })),
        "{events:?}"
    );
    assert_eq!(h.read("a", 0, 1), vec![3]);
}

#[test]
fn time_never_runs_backwards() {
    let mut h = established_a_b(options("--persist"));
    let first = h.rel("a", "b").unwrap().created_at;
    h.now -= 3_600_000; // a new leader whose clock is an hour behind
    h.ok(mkflash("a:c", options("--persist")));
    assert!(h.rel("a", "c").unwrap().created_at >= first);
}
