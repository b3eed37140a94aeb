//! A relationship's background copy rate (`mkflash --copy-rate`, `chflash`): Raft state the
//! leader's copy scheduler paces each relationship by; 0 turns the background copy off.

mod common;
use common::*;
use statemachine::*;

fn work(h: &Harness, target: &str) -> Option<CopyWork> {
    h.state.copy_work().into_iter().find(|w| w.target == target)
}

#[test]
fn mkflash_sets_the_rate_and_zero_means_no_background_copy() {
    let mut h = three_volumes();
    h.fill("a", 1, 7);
    h.ok(mkflash("a:b", options("--persist --copy-rate 5")));
    let rel = h.rel("a", "b").unwrap();
    assert_eq!((rel.copy_rate, rel.background_copy), (Some(5), true));
    assert_eq!(work(&h, "b").unwrap().copy_rate, Some(5), "the scheduler sees it");

    h.ok(mkflash("a:c", options("--copy-rate 0")));
    let rel = h.rel("a", "c").unwrap();
    assert_eq!((rel.copy_rate, rel.state), (None, RelationshipState::Nocopy));
    assert!(work(&h, "c").is_none());
    assert_eq!(h.refused(copy_step("a", "c", 4)).code(), "background-copy-off");
}

#[test]
fn mkflash_refuses_a_rate_with_nocp_or_beyond_any_disk() {
    let mut h = three_volumes();
    let e = h.refused(mkflash("a:b", options("--nocp --copy-rate 5")));
    assert_eq!(e.code(), "invalid-option");
    let e = h.refused(mkflash("a:b", options(&format!("--copy-rate {}", MAX_COPY_RATE + 1))));
    assert_eq!(e.code(), "invalid-option");
    assert!(e.to_string().contains("MiB/s"), "{e}");
    assert!(h.rel("a", "b").is_none(), "a refused command changes nothing");
    h.ok(mkflash("a:b", options("--nocp --copy-rate 0")));
}

#[test]
fn chflash_changes_the_rate_turns_the_copy_off_and_on_and_is_all_or_nothing() {
    let mut h = three_volumes();
    h.fill("a", 1, 7);
    h.ok(mkflash("a:b", options("--persist")));
    h.ok(mkflash("a:c", Default::default()));
    assert_eq!(h.rel("a", "b").unwrap().copy_rate, None);

    let events = h.ok(chflash("a:b", Some(3)));
    assert!(events.contains(&Event::CopyRateChanged {
        source: "a".into(),
        target: "b".into(),
        copy_rate: Some(3),
    }));
    assert_eq!(h.rel("a", "b").unwrap().copy_rate, Some(3));

    h.ok(chflash("a:b", Some(0)));
    let rel = h.rel("a", "b").unwrap();
    assert_eq!((rel.copy_rate, rel.state), (None, RelationshipState::Nocopy));
    assert!(work(&h, "b").is_none(), "no background copy at rate 0");

    h.ok(chflash("a:b", None));
    let rel = h.rel("a", "b").unwrap();
    assert_eq!((rel.copy_rate, rel.state), (None, RelationshipState::Copying));

    // One unknown pair refuses the whole command.
    assert_eq!(h.refused(chflash("a:b b:c", Some(9))).code(), "relationship-not-found");
    assert_eq!(h.rel("a", "b").unwrap().copy_rate, None);
    let e = h.refused(chflash("a:b", Some(MAX_COPY_RATE + 1)));
    assert_eq!(e.code(), "invalid-option");
    h.ok(chflash("a:b a:c", Some(9)));
    assert_eq!(h.rel("a", "c").unwrap().copy_rate, Some(9));
}

#[test]
fn a_withdrawal_that_waits_for_its_copy_keeps_it_and_the_rate_survives_a_reverse() {
    let mut h = three_volumes();
    h.fill("a", 1, 7);
    h.ok(mkflash("a:b", options("--persist --record --copy-rate 4")));
    h.copy_all("a", "b");
    h.ok(reverse("a:b", false));
    assert_eq!(
        h.rel("b", "a").unwrap().copy_rate,
        Some(4),
        "the reversed relationship keeps it"
    );

    h.ok(mkflash("b:c", options("--nocp")));
    h.ok(Command::RmFlash {
        pairs: pairs("b:c"),
        cp: true,
        seqnum: None,
    });
    let e = h.refused(chflash("b:c", Some(0)));
    assert_eq!(e.code(), "invalid-option");
    assert!(e.to_string().contains("rmflash --cp"), "{e}");
    h.ok(chflash("b:c", Some(2)));
}
