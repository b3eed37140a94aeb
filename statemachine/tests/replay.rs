//! Replay: the same commands from empty give the same state and digest; any byte changed
//! changes the digest.

mod common;
use common::*;
use proptest::prelude::*;
use statemachine::*;

fn scenario(h: &mut Harness, seed: u8) {
    for name in ["a", "b", "c"] {
        h.mkvol(name, 6);
    }
    for t in 0..6 {
        h.fill("a", t, seed.wrapping_add(t as u8) | 1);
    }
    h.ok(mkflash("a:b", persist_record()));
    h.write("a", 17, &[seed, 2, 3]);
    h.ok(Command::CopyStep {
        source: "a".into(),
        target: "b".into(),
        max_tracks: 2,
    });
    h.ok(mkflash(
        "a:c",
        EstablishOptions {
            nocp: true,
            ..Default::default()
        },
    ));
    h.write("b", 40, &[9; 30]);
    h.copy_all("a", "b");
    h.ok(resync("a:b"));
    h.ok(rmflash("a:c"));
}

proptest! {
    #[test]
    fn replay_gives_the_same_digest(seed in any::<u8>(), volume in 0..3usize, offset in 0..96u64, flip in 1..=255u8) {
        let mut first = Harness::new(16);
        let mut second = Harness::new(16);
        scenario(&mut first, seed);
        scenario(&mut second, seed);
        prop_assert_eq!(first.state.digest(), second.state.digest());
        prop_assert_eq!(&first.state, &second.state);

        // Change one byte anywhere: the digest must change.
        let name = ["a", "b", "c"][volume];
        let old = first.read(name, offset, 1)[0];
        first.write(name, offset, &[old ^ flip]);
        prop_assert_ne!(first.state.digest(), second.state.digest());
        prop_assert_eq!(first.state.digest(), first.state.recompute_digest(&first.tracks).unwrap());
    }
}

#[test]
fn state_round_trips_through_bincode() {
    let mut h = Harness::new(16);
    scenario(&mut h, 7);
    let bytes = bincode::serde::encode_to_vec(&h.state, bincode::config::standard()).unwrap();
    let (back, _): (State, usize) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!(back, h.state);
    assert_eq!(back.digest(), h.state.digest());
    let cmd = mkflash("a:b", persist_record());
    let bytes = bincode::serde::encode_to_vec(&cmd, bincode::config::standard()).unwrap();
    let (back, _): (Command, usize) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!(back, cmd);
}
