//! rmflash: refusals, incomplete targets, and finishing the copy first (`--cp`).
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn rmflash_rules_and_incomplete_targets() {
    let mut h = three_volumes();
    assert_eq!(h.refused(rmflash("a:b")).code(), "relationship-not-found");
    h.ok(mkflash("a:b", options("--seqnum 7")));
    assert_eq!(h.refused(rmflash("c:b")).code(), "relationship-not-found");
    let e = h.refused(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: false,
        seqnum: Some(8),
    });
    assert_eq!(e.code(), "seqnum-mismatch");
    let events = h.ok(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: false,
        seqnum: Some(7),
    });
    assert!(events.contains(&Event::Withdrawn {
        source: "a".into(),
        target: "b".into(),
        incomplete: true,
        automatic: false
    }));
    assert_eq!(h.vol("b").state, VolumeState::Incomplete);
    h.ok(mkflash("c:b", Default::default()));
    assert_eq!(
        h.vol("b").state,
        VolumeState::Normal,
        "incomplete clears with a new relationship"
    );
}

#[test]
fn rmflash_cp_finishes_the_copy_then_withdraws() {
    let mut h = three_volumes();
    h.fill("a", 2, 4);
    h.ok(mkflash("a:b", options("--nocp --persist")));
    h.ok(Command::RmFlash {
        pairs: pairs("a:b"),
        cp: true,
        seqnum: None,
    });
    let rel = h.rel("a", "b").unwrap();
    assert_eq!(rel.state, RelationshipState::Completing);
    assert!(rel.background_copy);
    assert_eq!(h.refused(resync("a:b")).code(), "not-recording");
    let events = h.copy_all("a", "b");
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Withdrawn {
            incomplete: false,
            automatic: true,
            ..
        }
    )));
    assert!(h.rel("a", "b").is_none());
    assert_eq!(h.byte_at("b", 2), 4);
    assert_eq!(h.vol("b").state, VolumeState::Normal);
}
