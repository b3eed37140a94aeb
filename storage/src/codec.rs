//! Everything written to disk is bincode 2 with a leading format-version byte, so a later
//! version can recognise (and migrate or refuse) what an older one wrote.

use serde::{de::DeserializeOwned, Serialize};

/// 2: `TracksCopied` events carry `data_tracks`.
/// 3: audit records keep the command in its journal form, its result and the applied time.
/// 4: the state keeps its own clock (stamps with terms).
/// 5: tracks stored in blocks with per-block hashes (`sums` and `blocks` column families).
/// 6: hosts and their mappings; writes name the volume they opened.
/// 7: volume records count their stored tracks; a snapshot is a kept RocksDB checkpoint.
/// 8: Metro Mirror paths and pairs.
/// 9: a relationship's copy rate (`mkflash --copy-rate`, `chflash`).
/// 10: the vote and the purge point beside the Raft log instead of in RocksDB (a version-9
///     directory opened as 10 would start with no vote, and could vote twice in a term); a
///     mirror copy step is refused while an earlier one is unconfirmed (a replay of an older
///     log could decide differently).
/// 11: revertible increments (`setflashrevertible`): relationships keep the previous point in
///     time's sequence number, time and change bitmaps.
/// 12: kept tracks: copy-on-write to several targets stores the old track once under the
///     source (`VolumeId::kept`), relationships name the ones they read (an older build would
///     read those tracks from the source).
/// 13: kept tracks nobody reads after a large withdrawal are swept by bounded steps: a volume
///     record carries where its sweep stands (`kept_sweep`), and `Command::SweepKept`.
/// 14: log segments named with the seed of their records' checksums and reused after a purge
///     (`storage/src/log_files.rs`): a version-13 build would not see them, and would start
///     with a short log.
pub(crate) const FORMAT_VERSION: u8 = 14;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("stored value has format version {0}, this build reads version {FORMAT_VERSION}")]
    Version(u8),
    #[error("stored value is empty")]
    Empty,
    #[error("stored value is corrupt: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot encode value: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(1 + encoded_len(value)?);
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())?;
    Ok(out)
}

/// The length of `value` encoded. Large values (a log entry holds up to 8 MiB of host data) are
/// sized first and written once into a buffer of that size: grown by doubling, and then copied
/// behind the version byte, a payload was copied about three times.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, bincode::config::standard())?;
    Ok(size.bytes_written)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_VERSION, rest)) => Ok(bincode::serde::decode_from_slice(rest, bincode::config::standard())?.0),
        Some((&other, _)) => Err(CodecError::Version(other)),
    }
}
