//! mkflash --freeze: held writes, thaws (by command, automatic, in bounded batches) and what a
//! frozen volume may not do.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn freeze_holds_writes_until_thaw_and_releases_them_in_order() {
    let mut h = established_a_b(options("--freeze --nocp"));
    assert!(h.rel("a", "b").unwrap().frozen);
    assert_eq!(h.vol("a").state, VolumeState::Frozen);
    let c = h.write_cmd("a", 0, &[1]);
    let Command::Write(first) = &c else { unreachable!() };
    let tag = first.tag;
    let events = h.ok(c);
    assert!(matches!(events[..], [Event::WriteHeld { .. }]));
    assert!(h.state.is_held("a", tag));
    h.write("a", 0, &[2]);
    assert_eq!(
        h.read("a", 0, 1),
        vec![0],
        "held writes are not visible, reads are not held"
    );
    assert_eq!(h.refused(mkflash("a:c", Default::default())).code(), "source-frozen");
    let events = h.ok(unfreeze("a"));
    assert!(events.contains(&Event::Thawed {
        volume: "a".into(),
        automatic: false,
        released_writes: 2
    }));
    assert_eq!(h.read("a", 0, 1), vec![2], "released in order");
    assert_eq!(h.byte_at("b", 0), 0, "the point in time is before the held writes");
    assert!(!h.state.is_held("a", tag));
    assert_eq!(
        h.refused(Command::UnfreezeFlash {
            sources: vec!["a".into()]
        })
        .code(),
        "not-frozen"
    );
}

#[test]
fn freeze_thaws_automatically_after_120_seconds() {
    let mut h = established_a_b(options("--freeze"));
    let until = h.state.next_thaw().unwrap();
    assert_eq!(until.0, h.now + FREEZE_TIMEOUT_MILLIS);
    h.write("a", 0, &[3]);
    h.ok(Command::Tick);
    assert_eq!(h.vol("a").state, VolumeState::Frozen);
    h.now = until.0 - 1000; // the next command is stamped exactly at the deadline
    let events = h.ok(Command::Tick);
    assert!(events.contains(&Event::Thawed {
        volume: "a".into(),
        automatic: true,
        released_writes: 1
    }));
    assert_eq!(h.read("a", 0, 1), vec![3]);
    assert_eq!(h.state.next_thaw(), None);
}

#[test]
fn a_long_freeze_queue_is_released_in_bounded_batches_and_nothing_overtakes_it() {
    let mut h = established_a_b(options("--freeze --nocp"));
    let held = THAW_BATCH * 2 + 10;
    let writes = (0..held)
        .map(|i| match h.write_cmd("a", 0, &[(i % 250) as u8 + 1]) {
            Command::Write(w) => w,
            _ => unreachable!(),
        })
        .collect();
    h.ok(Command::WriteBatch(writes));
    let events = h.ok(unfreeze("a"));
    let written = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Written { .. })).count();
    assert_eq!(written(&events), THAW_BATCH, "one bounded batch per entry");
    assert!(h.state.releasing_held_writes());
    // A write after the thaw queues behind the ones still held (its entry releases the next
    // batch first).
    let events = h.write("a", 0, &[255]);
    assert_eq!(written(&events), THAW_BATCH);
    assert!(matches!(events.last(), Some(Event::WriteHeld { .. })), "{events:?}");
    let mut ticks = 0;
    while h.state.releasing_held_writes() {
        let events = h.ok(Command::Tick);
        assert!(written(&events) <= THAW_BATCH);
        ticks += 1;
    }
    assert_eq!(ticks, 1);
    assert_eq!(
        h.read("a", 0, 1),
        vec![255],
        "released in arrival order, the late write last"
    );
    // Then writes go straight through again.
    assert!(matches!(h.write("a", 0, &[7])[..], [Event::Written { .. }]));
}

#[test]
fn a_frozen_volume_cannot_be_deleted() {
    let mut h = established_a_b(options("--freeze"));
    h.ok(rmflash("a:b"));
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "a".into() }).code(),
        "volume-frozen"
    );
}

#[test]
fn a_frozen_volume_cannot_become_a_target_nor_a_frozen_source_be_restored() {
    let mut h = established_a_b(options("--freeze --nocp --persist --record"));
    h.write("a", 0, &[1]);
    assert_eq!(h.refused(reverse("a:b", true)).code(), "source-frozen");
    h.ok(rmflash("a:b"));
    assert_eq!(h.refused(mkflash("c:a", Default::default())).code(), "target-frozen");
    h.ok(unfreeze("a"));
    h.ok(mkflash("c:a", Default::default()));
}

#[test]
fn a_long_zeroing_held_by_a_freeze_is_refused_at_the_thaw_if_the_volume_became_a_source() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["a", "b", "c"], 1024);
    h.fill("a", 20, 5);
    h.ok(mkflash("a:b", options("--freeze")));
    // More writes held than the thaw and the next entries release: a stays draining.
    // Each entry after the thaw releases one batch first: enough for four entries and a bit.
    let writes = (0..4 * THAW_BATCH as u64 + 10)
        .map(|i| host_write("a", (100 + i) * 512, WriteData::Bytes(vec![1; 512].into()), 1000 + i))
        .collect();
    h.ok(Command::WriteBatch(writes));
    h.ok(unfreeze("a"));
    // Withdrawn while draining: a is no longer a source, so a long zeroing is taken, and
    // queued behind the held writes.
    h.ok(rmflash("a:b"));
    let events = h.ok(zeroes("a", 0, 1024 * h.track_size()));
    assert!(
        matches!(events.last(), Some(Event::WriteHeld { .. })),
        "the zeroing is held"
    );
    // Still draining, a becomes a source of c: released now, the zeroing would copy every
    // stored track of the range to c in one entry. It is refused instead.
    h.ok(mkflash("a:c", options("--nocp")));
    let events = [h.ok(Command::Tick), h.ok(Command::Tick)].concat();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::HeldWriteRefused {
                error: CommandError::ZeroingTooLarge { .. },
                ..
            }
        )),
        "the zeroing is refused when released"
    );
    assert_eq!(h.byte_at("a", 20), 5, "the refused zeroing changed nothing");
    assert_eq!(h.byte_at("c", 20), 5);
}
