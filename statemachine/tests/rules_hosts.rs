//! Hosts and volume mappings: who sees which volume.
//!
//! One test per rule of SPEC §2–§4 and per refusal, each checking the stable error code; the
//! set-ups are the fixtures of `common`.

mod common;
use common::*;
use statemachine::*;

#[test]
fn hosts_see_only_their_mapped_volumes_and_a_mapped_volume_cannot_be_deleted() {
    let mut h = three_volumes();
    let (a, b) = (h.state.volume_id("a").unwrap(), h.state.volume_id("b").unwrap());
    let alice = HostIdentity::Psk("alice".into());
    let bob = HostIdentity::CertCn("bob.example".into());
    // No hosts: the data path is open to everyone.
    assert_eq!(h.state.access(None, a), Some(Access::ReadWrite));
    h.ok(Command::CreateHost {
        name: "h1".into(),
        identity: alice.clone(),
    });
    h.ok(Command::CreateHost {
        name: "h2".into(),
        identity: bob.clone(),
    });
    let same_identity = Command::CreateHost {
        name: "h3".into(),
        identity: alice.clone(),
    };
    assert_eq!(h.refused(same_identity).code(), "identity-in-use");
    let bad = Command::CreateHost {
        name: "h4".into(),
        identity: HostIdentity::Psk("a:b".into()),
    };
    assert_eq!(h.refused(bad).code(), "invalid-option");
    // Hosts exist: nobody sees anything unmapped, and an unknown identity sees nothing.
    assert_eq!(h.state.access(None, a), None);
    assert_eq!(h.state.access(Some(&alice), a), None);
    h.ok(Command::MapVolume {
        volume: "a".into(),
        host: "h1".into(),
        read_only: false,
    });
    h.ok(Command::MapVolume {
        volume: "b".into(),
        host: "h1".into(),
        read_only: true,
    });
    assert_eq!(h.state.access(Some(&alice), a), Some(Access::ReadWrite));
    assert_eq!(h.state.access(Some(&alice), b), Some(Access::ReadOnly));
    assert_eq!(h.state.access(Some(&bob), a), None);
    assert_eq!(h.state.access(Some(&HostIdentity::Psk("mallory".into())), a), None);
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "a".into() }).code(),
        "volume-mapped"
    );
    assert_eq!(
        h.refused(Command::DeleteHost { name: "h1".into() }).code(),
        "host-has-volumes"
    );
    let infos = h.state.host_infos();
    assert_eq!(infos[0].volumes.get("b"), Some(&Access::ReadOnly));
    let unmap_missing = Command::UnmapVolume {
        volume: "c".into(),
        host: "h1".into(),
    };
    assert_eq!(h.refused(unmap_missing).code(), "not-mapped");
    // The digest covers hosts: a replica that missed a mapping differs.
    let before = h.state.digest();
    h.ok(Command::UnmapVolume {
        volume: "a".into(),
        host: "h1".into(),
    });
    assert_ne!(h.state.digest(), before);
    assert_eq!(h.state.recompute_digest(&h.tracks).unwrap(), h.state.digest());
    assert_eq!(h.state.access(Some(&alice), a), None);
    h.ok(Command::UnmapVolume {
        volume: "b".into(),
        host: "h1".into(),
    });
    h.ok(Command::DeleteHost { name: "h1".into() });
    h.ok(Command::DeleteVolume { name: "a".into() });
    // The journal keeps host commands; a replay rebuilds them (metadata digest compares them).
    let summary = Command::MapVolume {
        volume: "b".into(),
        host: "h2".into(),
        read_only: true,
    }
    .summary();
    assert_eq!(summary, "mapvol b h2 --read-only");
}
