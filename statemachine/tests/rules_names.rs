//! Names and identities read as what they are: nothing invisible, nothing that reorders the
//! text around it, no space hiding at either end; and an error repeats a rejected input only
//! cut and escaped.

mod common;
use common::*;
use statemachine::*;

/// Identities `lshost` and `audit` would show misleadingly.
const SNEAKY: &[&str] = &[
    "\u{202e}\u{200b}evil",
    "evil ",
    " evil",
    "ev\u{a0}il",
    "ev\u{3000}il",
    "ev\til",
    "ev\u{ad}il",
    "a\u{2066}b\u{2069}",
    "\u{feff}alice",
    "alice\u{200d}",
    "alice\u{e0041}",
    "alice\u{fe0f}",
    "\u{3164}",
    "\u{2800}",
    " ",
];

fn mkhost(name: &str, identity: HostIdentity) -> Command {
    Command::CreateHost {
        name: name.into(),
        identity,
    }
}

#[test]
fn identities_with_invisible_or_reordering_characters_are_refused() {
    let mut h = Harness::new(TS);
    for value in SNEAKY {
        for identity in [
            HostIdentity::Psk(value.to_string()),
            HostIdentity::CertCn(value.to_string()),
        ] {
            let e = h.refused(mkhost("h1", identity.clone()));
            assert_eq!(e.code(), "invalid-option", "{identity:?}");
            let message = e.to_string();
            // The message shows the identity escaped: nothing in it hides or reorders text.
            assert!(
                !message
                    .chars()
                    .any(|c| c != ' ' && (c.is_control() || c.is_whitespace()))
                    && !message.contains(['\u{202e}', '\u{200b}', '\u{ad}', '\u{2066}', '\u{feff}', '\u{200d}']),
                "{message:?}"
            );
            assert!(message.contains("is not a valid identity"), "{message}");
        }
    }
    let e = h.refused(mkhost("h1", HostIdentity::Psk("\u{202e}\u{200b}evil".into())));
    assert!(e.to_string().contains(r#""\u{202e}\u{200b}evil""#), "{e}");
    assert!(h.state.host_infos().is_empty());
}

#[test]
fn plain_identities_with_inner_spaces_and_letters_of_any_script_are_taken() {
    let mut h = Harness::new(TS);
    for (i, value) in ["alice", "bob smith", "ünïcødé.example", "日本 サーバ", "a  b"]
        .into_iter()
        .enumerate()
    {
        h.ok(mkhost(&format!("p{i}"), HostIdentity::Psk(value.into())));
        h.ok(mkhost(&format!("c{i}"), HostIdentity::CertCn(value.into())));
    }
    assert_eq!(h.state.host_infos().len(), 10);
    // The longest identity is 255 bytes, and a PSK identity has no colon (a certificate name may).
    h.ok(mkhost("long", HostIdentity::Psk("x".repeat(255))));
    let e = h.refused(mkhost("longer", HostIdentity::Psk("x".repeat(256))));
    assert_eq!(e.code(), "invalid-option");
    assert!(e.to_string().len() < 400, "{e}");
    assert_eq!(
        h.refused(mkhost("colon", HostIdentity::Psk("a:b".into()))).code(),
        "invalid-option"
    );
    h.ok(mkhost("colon", HostIdentity::CertCn("a:b".into())));
    assert_eq!(
        h.refused(mkhost("empty", HostIdentity::CertCn(String::new()))).code(),
        "invalid-option"
    );
}

#[test]
fn host_and_volume_names_with_spaces_or_non_ascii_characters_are_refused() {
    let mut h = Harness::new(TS);
    for name in ["evil ", " evil", "\u{202e}evil", "h\u{200b}", "ünï", "a b", ""] {
        let e = h.refused(mkhost(name, HostIdentity::Psk(format!("id-{}", name.len()))));
        assert_eq!(e.code(), "invalid-host-name", "{name:?}");
        let e = h.refused(Command::CreateVolume {
            name: name.into(),
            size: 4 * u64::from(TS),
        });
        assert_eq!(e.code(), "invalid-volume-name", "{name:?}");
        assert!(!e.to_string().contains(['\u{202e}', '\u{200b}']), "{e}");
    }
}

#[test]
fn errors_repeat_a_rejected_input_cut_and_escaped() {
    let mut h = Harness::new(TS);
    let long = format!("{}\n{}", "x".repeat(2500), "y".repeat(2499));
    let e = h.refused(Command::CreateVolume {
        name: long.clone(),
        size: 4 * u64::from(TS),
    });
    assert_eq!(e.code(), "invalid-volume-name");
    let message = e.to_string();
    assert!(message.len() < 300, "{} characters: {message}", message.len());
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("(5000 characters)"), "{message}");
    let e = h.refused(Command::DeleteVolume { name: long.clone() });
    assert_eq!(e.code(), "volume-not-found");
    assert!(e.to_string().len() < 300 && !e.to_string().contains('\n'), "{e}");
    let e = h.refused(Command::DeleteHost {
        name: "\u{202e}h\r\n".into(),
    });
    assert_eq!(e.code(), "host-not-found");
    assert!(
        e.to_string().starts_with(r#"host "\u{202e}h\r\n" does not exist"#),
        "{e}"
    );
    let e = format!("b\u{1b}[2J{}", "a".repeat(3000)).parse::<Pair>().unwrap_err();
    assert_eq!(e.code(), "invalid-pair");
    assert!(e.to_string().len() < 300 && !e.to_string().contains('\u{1b}'), "{e}");

    // Ordinary names show as they always did.
    let e = h.refused(Command::CreateVolume {
        name: "bad/name".into(),
        size: 4 * u64::from(TS),
    });
    assert!(
        e.to_string().starts_with(r#""bad/name" is not a valid volume name"#),
        "{e}"
    );
    assert_eq!(
        h.refused(Command::DeleteVolume { name: "zz".into() }).to_string(),
        r#"volume "zz" does not exist; 'flashcopy lsvol' lists the volumes"#
    );
}
