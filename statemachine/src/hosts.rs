//! Hosts and the volumes mapped to them (DS CLI's host connections and volume groups): which
//! TLS identity may see, read and write which volumes over NBD. While no host is defined the
//! data path is open — every client sees every volume — as it was before hosts existed.

use crate::error::CommandError;
use crate::track::VolumeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How a host proves who it is on a TLS connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostIdentity {
    /// The PSK identity (user name) of a TLS-PSK connection, as in a psktool key file.
    Psk(String),
    /// The common name (CN) of a verified client certificate.
    CertCn(String),
}

impl fmt::Display for HostIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostIdentity::Psk(id) => write!(f, "psk-identity {id}"),
            HostIdentity::CertCn(cn) => write!(f, "cert-cn {cn}"),
        }
    }
}

/// What a host may do with a mapped volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub identity: HostIdentity,
    /// Bound to the volume, not its name: a volume deleted and created again is not mapped.
    pub volumes: BTreeMap<VolumeId, Access>,
}

/// One row of `lshost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub identity: HostIdentity,
    /// Mapped volumes by name, with their access.
    pub volumes: BTreeMap<String, Access>,
}

/// Longest PSK identity or certificate name a host may carry.
const MAX_IDENTITY: usize = 255;

pub(crate) fn validate_identity(identity: &HostIdentity) -> Result<(), CommandError> {
    let (value, option, psk) = match identity {
        HostIdentity::Psk(id) => (id, "--psk-identity", true),
        HostIdentity::CertCn(cn) => (cn, "--cert-cn", false),
    };
    // `lshost` and `audit` show identities: one must read as what it is, so nothing in it may
    // be invisible or reorder the text around it, and no space may hide at either end.
    let problem = if value.is_empty() {
        "it is empty".to_string()
    } else if value.len() > MAX_IDENTITY {
        format!("it has {} bytes", value.len())
    } else if let Some(c) = value.chars().find(|&c| invisible(c)) {
        format!("it contains the invisible character U+{:04X}", u32::from(c))
    } else if value.starts_with(' ') || value.ends_with(' ') {
        "it starts or ends with a space".to_string()
    } else if psk && value.contains(':') {
        // A colon ends the identity in a psktool key file line.
        "it contains ':'".to_string()
    } else {
        return Ok(());
    };
    Err(CommandError::InvalidOption {
        option: option.to_string(),
        reason: format!(
            "{} is not a valid identity ({problem}): use 1 to {MAX_IDENTITY} bytes of visible characters, spaces only between them{}",
            crate::error::shown(value),
            if psk { ", without ':'" } else { "" }
        ),
    })
}

/// Characters an identity may not carry: control characters, whitespace other than the plain
/// space, format characters (Unicode category Cf: zero-width, bidirectional embeddings,
/// overrides and isolates, tags, …), and characters that show as nothing (fillers, blank
/// patterns, variation selectors, the combining grapheme joiner).
fn invisible(c: char) -> bool {
    (c != ' ' && (c.is_control() || c.is_whitespace()))
        || matches!(
            c,
            // Format characters (Cf).
            '\u{AD}'
                | '\u{600}'..='\u{605}'
                | '\u{61C}'
                | '\u{6DD}'
                | '\u{70F}'
                | '\u{890}'..='\u{891}'
                | '\u{8E2}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
                // Blank or joining without a glyph of their own.
                | '\u{34F}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                // Mongolian variation selectors and vowel separator (U+180E, Cf).
                | '\u{180B}'..='\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// The host a volume is mapped to, if any (a mapped volume may not be deleted).
pub(crate) fn mapped_to(hosts: &BTreeMap<String, Host>, volume: VolumeId) -> Option<&str> {
    hosts
        .values()
        .find(|h| h.volumes.contains_key(&volume))
        .map(|h| h.name.as_str())
}
