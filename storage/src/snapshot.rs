//! The snapshot file: a header with the snapshot meta, then every key/value of the state-machine
//! column families as frames. Written from a RocksDB checkpoint (a consistent, hard-linked copy)
//! and read back as a stream, so no snapshot is ever held in memory.
//!
//! Layout: `FCSNAP1` | u32 meta length | meta | frames... | 0xFF.
//! Frame: u8 column-family index (into `SNAPSHOT_CFS`) | u32 key length | key | u32 value length | value.

use crate::codec;
use crate::db::SNAPSHOT_CFS;
use crate::types::NodeInfo;
use openraft::SnapshotMeta;
use rocksdb::{IteratorMode, DB};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 7] = b"FCSNAP1";
const END: u8 = 0xFF;

pub(crate) type Meta = SnapshotMeta<u64, NodeInfo>;
/// One key/value of a column family.
pub(crate) type Frame = (&'static str, Vec<u8>, Vec<u8>);

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Writes the snapshot of a checkpoint DB (opened read-only) to `path`, synced.
pub(crate) fn write(db: &DB, meta: &Meta, path: &Path) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC)?;
    let meta_bytes = codec::encode(meta).map_err(|e| invalid(e.to_string()))?;
    out.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
    out.write_all(&meta_bytes)?;
    for (i, name) in SNAPSHOT_CFS.iter().enumerate() {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| invalid(format!("checkpoint lacks {name}")))?;
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|e| io::Error::other(e.to_string()))?;
            out.write_all(&[i as u8])?;
            out.write_all(&(key.len() as u32).to_le_bytes())?;
            out.write_all(&key)?;
            out.write_all(&(value.len() as u32).to_le_bytes())?;
            out.write_all(&value)?;
        }
    }
    out.write_all(&[END])?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// A snapshot file being read: its meta, then its key/values one at a time.
pub(crate) struct Reader {
    input: BufReader<std::fs::File>,
    pub(crate) meta: Meta,
}

impl Reader {
    pub(crate) fn open(path: &Path) -> io::Result<Reader> {
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut magic = [0; 7];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid("not a flashcopy snapshot"));
        }
        let meta_bytes = read_chunk(&mut input)?;
        let meta = codec::decode(&meta_bytes).map_err(|e| invalid(e.to_string()))?;
        Ok(Reader { input, meta })
    }

    /// The next (column family, key, value), or `None` at the end.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut tag = [0; 1];
        self.input.read_exact(&mut tag)?;
        if tag[0] == END {
            return Ok(None);
        }
        let cf = SNAPSHOT_CFS
            .get(tag[0] as usize)
            .ok_or_else(|| invalid("unknown column family in snapshot"))?;
        let key = read_chunk(&mut self.input)?;
        let value = read_chunk(&mut self.input)?;
        Ok(Some((cf, key, value)))
    }
}

/// Reads a whole snapshot file to its end marker: a truncated or corrupt file is refused
/// before it replaces anything.
pub(crate) fn verify(path: &Path) -> io::Result<Meta> {
    let mut reader = Reader::open(path)?;
    while reader.next_frame()?.is_some() {}
    Ok(reader.meta)
}

fn read_chunk(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 << 20 {
        return Err(invalid("snapshot frame too large"));
    }
    let mut buf = vec![0; len];
    input.read_exact(&mut buf)?;
    Ok(buf)
}
