//! A tiny harness: a state, an in-memory track store, and a clock the test advances.
#![allow(dead_code)]

use statemachine::*;

/// The track size of the rule tests: 16-byte tracks keep the bytes easy to follow.
pub const TS: u32 = 16;

pub struct Harness {
    pub state: State,
    pub tracks: MemTracks,
    pub now: u64,
    /// The term of the leader stamping the next commands.
    pub term: u64,
    next_tag: u64,
}

impl Harness {
    pub fn new(track_size: u32) -> Self {
        Harness {
            state: State::with_track_size(track_size),
            tracks: MemTracks::new(track_size),
            now: 1_795_000_000_000,
            term: 1,
            next_tag: 1,
        }
    }

    /// A harness with the volumes `names`, created in order, each `tracks` tracks long.
    pub fn with_volumes(track_size: u32, names: &[&str], tracks: u64) -> Self {
        let mut h = Harness::new(track_size);
        h.mkvols(names, tracks);
        h
    }

    pub fn track_size(&self) -> u64 {
        u64::from(self.state.track_size())
    }

    /// Applies a command one second after the previous one and executes its track operations.
    pub fn run(&mut self, command: Command) -> Applied {
        self.now += 1000;
        let stamp = Stamp {
            time: Timestamp(self.now),
            term: self.term,
        };
        let applied = apply(&mut self.state, &self.tracks, &command, stamp).unwrap();
        self.tracks.execute(&applied.ops);
        applied
    }

    pub fn ok(&mut self, command: Command) -> Vec<Event> {
        let summary = command.summary();
        let applied = self.run(command);
        assert!(applied.result.is_ok(), "{summary}: {:?}", applied.result);
        applied.events
    }

    /// Runs a command that must be refused, and checks that it changed nothing.
    pub fn refused(&mut self, command: Command) -> CommandError {
        let digest = self.state.digest();
        let volumes = self.state.volumes();
        let relationships = self.state.relationships(&[]);
        let summary = command.summary();
        let applied = self.run(command);
        let error = applied.result.expect_err(&format!("{summary} should be refused"));
        assert!(applied.ops.is_empty(), "a refused command executes no track operation");
        assert_eq!(self.state.digest(), digest, "a refused command changes nothing");
        assert_eq!(self.state.volumes(), volumes);
        assert_eq!(self.state.relationships(&[]), relationships);
        assert_eq!(applied.events, vec![Event::Refused { error: error.clone() }]);
        error
    }

    pub fn mkvol(&mut self, name: &str, tracks: u64) {
        let size = tracks * self.track_size();
        self.ok(Command::CreateVolume {
            name: name.into(),
            size,
        });
    }

    /// Creates the volumes `names` in order, each `tracks` tracks long.
    pub fn mkvols(&mut self, names: &[&str], tracks: u64) {
        for name in names {
            self.mkvol(name, tracks);
        }
    }

    pub fn write_cmd(&mut self, volume: &str, offset: u64, bytes: &[u8]) -> Command {
        self.next_tag += 1;
        Command::Write(host_write(
            volume,
            offset,
            WriteData::Bytes(bytes.to_vec().into()),
            self.next_tag,
        ))
    }

    pub fn write(&mut self, volume: &str, offset: u64, bytes: &[u8]) -> Vec<Event> {
        let command = self.write_cmd(volume, offset, bytes);
        self.ok(command)
    }

    /// Fills whole tracks with one byte value.
    pub fn fill(&mut self, volume: &str, track: u64, byte: u8) {
        let data = vec![byte; self.track_size() as usize];
        self.write(volume, track * self.track_size(), &data);
    }

    /// Fills each of `tracks`, in order, with one byte value.
    pub fn fill_tracks(&mut self, volume: &str, tracks: impl IntoIterator<Item = u64>, byte: u8) {
        for track in tracks {
            self.fill(volume, track, byte);
        }
    }

    pub fn read(&self, volume: &str, offset: u64, length: u64) -> Vec<u8> {
        let id = self.state.check_range(volume, None, offset, length).unwrap();
        self.state.read(&self.tracks, id, offset, length).unwrap()
    }

    /// The byte at the start of a track, for tests that fill whole tracks.
    pub fn byte_at(&self, volume: &str, track: u64) -> u8 {
        self.read(volume, track * self.track_size(), 1)[0]
    }

    pub fn rel(&self, source: &str, target: &str) -> Option<RelationshipInfo> {
        self.state
            .relationships(&[])
            .into_iter()
            .find(|r| r.source == source && r.target == target)
    }

    pub fn vol(&self, name: &str) -> VolumeInfo {
        self.state.volumes().into_iter().find(|v| v.name == name).unwrap()
    }

    pub fn copy_all(&mut self, source: &str, target: &str) -> Vec<Event> {
        self.ok(copy_step(source, target, u32::MAX))
    }
}

/// Volumes a, b and c of four 16-byte tracks each.
pub fn three_volumes() -> Harness {
    Harness::with_volumes(TS, &["a", "b", "c"], 4)
}

/// [`three_volumes`] with a:b established with `options`.
pub fn established_a_b(options: EstablishOptions) -> Harness {
    let mut h = three_volumes();
    h.ok(mkflash("a:b", options));
    h
}

/// A host write of `data` at `offset`, not bound to a volume id.
pub fn host_write(volume: &str, offset: u64, data: WriteData, tag: u64) -> HostWrite {
    HostWrite {
        volume: volume.into(),
        opened: None,
        offset,
        data,
        tag,
    }
}

/// Zeroes `length` bytes at `offset` (NBD WRITE_ZEROES and TRIM).
pub fn zeroes_tagged(volume: &str, offset: u64, length: u64, tag: u64) -> Command {
    Command::Write(host_write(volume, offset, WriteData::Zeroes(length), tag))
}

/// [`zeroes_tagged`] with tag 77.
pub fn zeroes(volume: &str, offset: u64, length: u64) -> Command {
    zeroes_tagged(volume, offset, length, 77)
}

pub fn copy_step(source: &str, target: &str, max_tracks: u32) -> Command {
    Command::CopyStep {
        source: source.into(),
        target: target.into(),
        max_tracks,
    }
}

pub fn unfreeze(source: &str) -> Command {
    Command::UnfreezeFlash {
        sources: vec![source.into()],
    }
}

pub fn pairs(spec: &str) -> Vec<Pair> {
    spec.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

pub fn mkflash(spec: &str, options: EstablishOptions) -> Command {
    Command::MkFlash {
        pairs: pairs(spec),
        options,
    }
}

/// Establish options from mkflash's flags: `options("--nocp --persist")`, `options("--seqnum 7")`.
pub fn options(flags: &str) -> EstablishOptions {
    let mut options = EstablishOptions::default();
    let mut words = flags.split_whitespace();
    while let Some(flag) = words.next() {
        match flag {
            "--nocp" => options.nocp = true,
            "--persist" => options.persist = true,
            "--record" => options.record = true,
            "--tgtinhibit" => options.tgtinhibit = true,
            "--freeze" => options.freeze = true,
            "--seqnum" => options.seqnum = words.next().and_then(|n| n.parse().ok()).expect("--seqnum N"),
            "--copy-rate" => options.copy_rate = words.next().and_then(|n| n.parse().ok()),
            _ => panic!("no mkflash flag {flag}"),
        }
    }
    options
}

pub fn persist_record() -> EstablishOptions {
    EstablishOptions {
        persist: true,
        record: true,
        ..Default::default()
    }
}

pub fn rmflash(spec: &str) -> Command {
    Command::RmFlash {
        pairs: pairs(spec),
        cp: false,
        seqnum: None,
    }
}

pub fn resync(spec: &str) -> Command {
    Command::ResyncFlash {
        pairs: pairs(spec),
        nocp: false,
        tgtinhibit: false,
        seqnum: None,
    }
}

pub fn reverse(spec: &str, fast: bool) -> Command {
    Command::ReverseFlash {
        pairs: pairs(spec),
        fast,
        seqnum: None,
    }
}

/// `chflash SPEC --copy-rate` (`None`: unlimited).
pub fn chflash(spec: &str, copy_rate: Option<u32>) -> Command {
    Command::ChFlash {
        pairs: pairs(spec),
        copy_rate,
    }
}
