//! Volumes (SPEC §2): names and sizes, deletion, identity across a re-creation, error codes.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn volume_names_and_sizes_are_validated() {
    let mut h = Harness::new(TRACK_SIZE);
    for bad in ["", "has space", "slash/", &"x".repeat(65), ".", "..", "-rf", "-"] {
        let e = h.refused(Command::CreateVolume {
            name: bad.into(),
            size: 65536,
        });
        assert_eq!(e.code(), "invalid-volume-name", "{bad:?}");
    }
    for size in [0, 1000, 65536 + 1, MAX_VOLUME_SIZE + 65536] {
        let e = h.refused(Command::CreateVolume { name: "v".into(), size });
        assert_eq!(e.code(), "invalid-size", "{size}");
    }
    h.ok(Command::CreateVolume {
        name: "Ok.name_-1".into(),
        size: MAX_VOLUME_SIZE,
    });
    let e = h.refused(Command::CreateVolume {
        name: "Ok.name_-1".into(),
        size: 65536,
    });
    assert_eq!(e.code(), "volume-exists");
    assert!(e.to_string().contains("rmvol"));
}

#[test]
fn a_volume_in_a_relationship_cannot_be_deleted() {
    let mut h = established_a_b(EstablishOptions::default());
    for name in ["a", "b"] {
        let e = h.refused(Command::DeleteVolume { name: name.into() });
        assert_eq!(e.code(), "volume-in-use");
        assert!(e.to_string().contains("a:b"), "{e}");
    }
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "zz".into() }).code(),
        "volume-not-found"
    );
    h.fill("c", 0, 9);
    h.ok(Command::DeleteVolume { name: "c".into() });
    assert_eq!(h.tracks.stored_tracks(), 0, "the deleted volume's tracks are dropped");
    h.mkvol("c", 4);
    assert_eq!(h.byte_at("c", 0), 0, "a new volume with an old name starts empty");
}

#[test]
fn every_error_code_is_distinct_kebab_case() {
    let mut h = three_volumes();
    let mut codes = std::collections::BTreeSet::new();
    for c in [
        h.refused(Command::CreateVolume {
            name: "".into(),
            size: 1,
        }),
        h.refused(Command::DeleteVolume { name: "x".into() }),
        h.refused(rmflash("a:b")),
    ] {
        assert!(c.code().chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'));
        codes.insert(c.code());
    }
    assert_eq!(codes.len(), 3);
}

#[test]
fn a_write_to_a_volume_deleted_and_created_again_is_refused() {
    let mut h = Harness::with_volumes(TRACK_SIZE, &["x"], 4);
    let old = h.state.volume_id("x").unwrap();
    h.ok(Command::DeleteVolume { name: "x".into() });
    h.mkvol("x", 4);
    let write = Command::Write(HostWrite {
        volume: "x".into(),
        opened: Some(old),
        offset: 0,
        data: WriteData::Bytes(vec![1; 512].into()),
        tag: 9,
    });
    assert_eq!(h.refused(write).code(), "volume-replaced");
    assert_eq!(
        h.state.check_range("x", Some(old), 0, 512).unwrap_err().code(),
        "volume-replaced"
    );
    let new = h.state.volume_id("x").unwrap();
    assert_eq!(h.state.check_range("x", Some(new), 0, 512), Ok(new));
}
