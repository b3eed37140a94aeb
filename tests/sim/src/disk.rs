//! A simulated node's disk, as far as the node's log and its disk guard see it: the log's files
//! in memory, outside the node's host, so they outlive a crash; and how full the disk is, which
//! a fault can make full. Through a power loss it keeps what a real disk keeps: a file's bytes
//! as of its last sync, the directory's names as of its last sync, and perhaps part of the
//! bytes written after the last sync at the file's end (a torn last record). Everything else
//! written is gone.

use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use storage::{LogDisk, LogFile};

/// The size the disk says it has, and what is free unless it is full.
const SIZE: u64 = 8 << 30;
const FREE: u64 = 4 << 30;

#[derive(Default)]
struct Bytes {
    now: Vec<u8>,
    /// As of the last sync.
    durable: Vec<u8>,
    /// Below this offset `now` and `durable` agree.
    same_below: usize,
}

/// The disk's power: on, or on for so many more bytes written, or off (every call fails until
/// the harness plays the power loss out).
#[derive(Default)]
struct Power {
    off: bool,
    bytes_left: Option<u64>,
}

type Shared<T> = Arc<Mutex<T>>;

fn off() -> io::Error {
    io::Error::other("sim: the disk lost power")
}

impl Power {
    fn check(power: &Shared<Power>) -> io::Result<()> {
        if power.lock().unwrap().off {
            return Err(off());
        }
        Ok(())
    }
}

#[derive(Clone)]
struct SimFile {
    bytes: Shared<Bytes>,
    power: Shared<Power>,
}

impl SimFile {
    fn new(bytes: Bytes, power: Shared<Power>) -> SimFile {
        SimFile {
            bytes: Arc::new(Mutex::new(bytes)),
            power,
        }
    }
}

#[derive(Default)]
struct Names {
    now: BTreeMap<String, SimFile>,
    durable: BTreeMap<String, SimFile>,
}

#[derive(Clone, Default)]
pub struct SimDisk {
    names: Shared<Names>,
    full: Arc<AtomicBool>,
    power: Shared<Power>,
}

/// What a power loss left: bytes lost, records torn.
#[derive(Debug, Default)]
pub struct Lost {
    pub bytes: u64,
    pub names: usize,
    pub torn: bool,
}

impl SimDisk {
    /// The disk fills up (nothing free), or has room again.
    pub fn fill(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// The power will go in the middle of a write, after `bytes` more bytes: from then on
    /// every call fails, until [`SimDisk::power_loss`] plays it out.
    pub fn cut_power_after(&self, bytes: u64) {
        self.power.lock().unwrap().bytes_left = Some(bytes);
    }

    /// The power stays on (a cut not yet played out is called off).
    pub fn keep_power(&self) {
        self.power.lock().unwrap().bytes_left = None;
    }

    pub fn power_is_off(&self) -> bool {
        self.power.lock().unwrap().off
    }

    /// The power goes: only what was synced stays, and a file written since its last sync may
    /// keep part of what followed, in order (a torn write). Then it is back on.
    pub fn power_loss(&self, rng: &mut StdRng) -> Lost {
        *self.power.lock().unwrap() = Power::default();
        let mut names = self.names.lock().unwrap();
        // Names made, removed or renamed since the directory's last sync.
        let changed = names.now.keys().chain(names.durable.keys());
        let changed: BTreeSet<&String> = changed
            .filter(|name| match (names.now.get(*name), names.durable.get(*name)) {
                (Some(now), Some(durable)) => !Arc::ptr_eq(&now.bytes, &durable.bytes),
                _ => true,
            })
            .collect();
        let mut lost = Lost {
            names: changed.len(),
            ..Lost::default()
        };
        let mut kept = BTreeMap::new();
        for (name, file) in &names.durable {
            let old = file.bytes.lock().unwrap();
            let mut bytes = old.durable.clone();
            // Writes since the sync reached the disk in order, up to some point: an append cut
            // short, or in a reused log file, new records up to some point and old bytes after.
            let written = old.now.len() > old.same_below;
            if written && rng.gen_bool(0.5) {
                let cut = rng.gen_range(old.same_below + 1..=old.now.len());
                let rest = bytes.get(cut..).unwrap_or_default().to_vec();
                bytes = old.now[..cut].to_vec();
                bytes.extend_from_slice(&rest);
                lost.torn = true;
            }
            lost.bytes += old.now.len().abs_diff(bytes.len()) as u64;
            let survived = Bytes {
                same_below: bytes.len(),
                durable: bytes.clone(),
                now: bytes,
            };
            kept.insert(name.clone(), SimFile::new(survived, self.power.clone()));
        }
        names.now = kept.clone();
        names.durable = kept;
        lost
    }
}

impl node::server::disk::Filesystem for SimDisk {
    fn measure(&self, _dir: &Path) -> io::Result<(u64, u64)> {
        let free = if self.full.load(Ordering::SeqCst) { 0 } else { FREE };
        Ok((SIZE, free))
    }
}

fn missing(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("sim://{name}: no such file"))
}

impl LogDisk for SimDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Power::check(&self.power)?;
        Ok(self.names.lock().unwrap().now.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        Power::check(&self.power)?;
        let mut names = self.names.lock().unwrap();
        let file = names
            .now
            .entry(name.to_string())
            .or_insert_with(|| SimFile::new(Bytes::default(), self.power.clone()))
            .clone();
        file.set_len(0)?;
        Ok(Arc::new(file))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        Power::check(&self.power)?;
        let names = self.names.lock().unwrap();
        let file = names.now.get(name).ok_or_else(|| missing(name))?;
        Ok(Arc::new(file.clone()))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        Power::check(&self.power)?;
        let mut names = self.names.lock().unwrap();
        names.now.remove(name).map(|_| ()).ok_or_else(|| missing(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Power::check(&self.power)?;
        let mut names = self.names.lock().unwrap();
        let file = names.now.remove(from).ok_or_else(|| missing(from))?;
        names.now.insert(to.to_string(), file);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Power::check(&self.power)?;
        let mut names = self.names.lock().unwrap();
        names.durable = names.now.clone();
        Ok(())
    }

    fn show(&self, name: &str) -> String {
        format!("sim://raft-log/{name}")
    }

    /// Small segments, so a run starts, purges and reuses many (and loses power among them).
    fn segment_bytes(&self) -> u64 {
        16 << 10
    }
}

impl LogFile for SimFile {
    fn size(&self) -> io::Result<u64> {
        Power::check(&self.power)?;
        Ok(self.bytes.lock().unwrap().now.len() as u64)
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        // The power may go in the middle of this write: only its first bytes reach the file.
        let (bytes, result) = {
            let mut power = self.power.lock().unwrap();
            if power.off {
                return Err(off());
            }
            match power.bytes_left {
                Some(left) if left < bytes.len() as u64 => {
                    power.off = true;
                    (&bytes[..left as usize], Err(off()))
                }
                Some(left) => {
                    power.bytes_left = Some(left - bytes.len() as u64);
                    (bytes, Ok(()))
                }
                None => (bytes, Ok(())),
            }
        };
        let mut file = self.bytes.lock().unwrap();
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        if file.now.len() < end {
            file.now.resize(end, 0);
        }
        file.now[start..end].copy_from_slice(bytes);
        file.same_below = file.same_below.min(start);
        result
    }

    fn read_exact_at(&self, bytes: &mut [u8], offset: u64) -> io::Result<()> {
        Power::check(&self.power)?;
        let file = self.bytes.lock().unwrap();
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        let Some(read) = file.now.get(start..end) else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        };
        bytes.copy_from_slice(read);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        Power::check(&self.power)?;
        let mut file = self.bytes.lock().unwrap();
        file.now.resize(len as usize, 0);
        file.same_below = file.same_below.min(len as usize);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Power::check(&self.power)?;
        let mut file = self.bytes.lock().unwrap();
        let keep = file.same_below.min(file.durable.len());
        file.durable.truncate(keep);
        let Bytes { now, durable, .. } = &mut *file;
        durable.extend_from_slice(&now[keep..]);
        file.same_below = file.now.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn read_all(disk: &SimDisk, name: &str) -> Vec<u8> {
        let file = disk.open(name).unwrap();
        let mut bytes = vec![0; file.size().unwrap() as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    }

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_nothing_else() {
        let disk = SimDisk::default();
        let mut rng = StdRng::seed_from_u64(1);
        let a = disk.create("a").unwrap();
        a.write_all_at(b"synced", 0).unwrap();
        a.sync().unwrap();
        disk.power_loss(&mut rng);
        assert!(disk.list().unwrap().is_empty(), "a name not synced is gone");

        let a = disk.create("a").unwrap();
        disk.sync().unwrap();
        a.write_all_at(b"synced", 0).unwrap();
        a.sync().unwrap();
        a.write_all_at(b"XX", 0).unwrap();
        disk.remove("a").unwrap();
        let b = disk.create("b").unwrap();
        b.write_all_at(b"b", 0).unwrap();
        b.sync().unwrap();
        disk.power_loss(&mut rng);
        assert_eq!(
            disk.list().unwrap(),
            vec!["a".to_string()],
            "the removal was not synced"
        );
        let a = read_all(&disk, "a");
        assert!(
            [&b"synced"[..], b"Xynced", b"XXnced"].contains(&a.as_slice()),
            "an overwrite not synced is gone, or kept in part from its start: {a:?}"
        );
        disk.open("a").unwrap().write_all_at(b"synced", 0).unwrap();
        disk.open("a").unwrap().sync().unwrap();

        // Appends past the last sync: gone, or a prefix of them left (torn).
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let a = disk.open("a").unwrap();
            a.write_all_at(b"-more", 6).unwrap();
            disk.power_loss(&mut StdRng::seed_from_u64(seed));
            let bytes = read_all(&disk, "a");
            assert!(b"synced-more".starts_with(&bytes) && bytes.starts_with(b"synced"));
            seen.insert(bytes.len());
            disk.open("a").unwrap().set_len(6).unwrap();
            disk.open("a").unwrap().sync().unwrap();
        }
        assert!(seen.contains(&6) && seen.len() > 2, "both outcomes happen: {seen:?}");

        // The power goes in the middle of a write: it fails, and so does everything after it.
        disk.cut_power_after(3);
        let a = disk.open("a").unwrap();
        assert!(a.write_all_at(b"-more", 6).is_err() && disk.power_is_off());
        assert!(a.sync().is_err() && disk.list().is_err());
        disk.power_loss(&mut StdRng::seed_from_u64(3));
        let bytes = read_all(&disk, "a");
        assert!(b"synced-mo".starts_with(&bytes) && bytes.starts_with(b"synced"));
        disk.open("a").unwrap().set_len(6).unwrap();
        disk.open("a").unwrap().sync().unwrap();

        // Overwrites past the last sync (a reused log file): the new bytes up to some point,
        // the old ones after, never a later write without an earlier one.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let a = disk.open("a").unwrap();
            a.write_all_at(b"NEW", 1).unwrap();
            disk.power_loss(&mut StdRng::seed_from_u64(seed));
            let bytes = read_all(&disk, "a");
            assert!(
                [&b"synced"[..], b"sNnced", b"sNEced", b"sNEWed"].contains(&bytes.as_slice()),
                "{bytes:?}"
            );
            seen.insert(bytes);
            disk.open("a").unwrap().write_all_at(b"synced", 0).unwrap();
            disk.open("a").unwrap().sync().unwrap();
        }
        assert!(seen.len() > 2, "kept whole, in part and not at all: {seen:?}");

        // A cut that was synced stays cut.
        let a = disk.open("a").unwrap();
        a.set_len(3).unwrap();
        a.sync().unwrap();
        disk.power_loss(&mut rng);
        assert_eq!(read_all(&disk, "a"), b"syn");
    }
}
