//! The workload, a simulated client host: NBD writes and reads of any bytes (overlapping, across
//! block and track edges) on a FlashCopy source and target through any node, and FlashCopy commands with random options,
//! each outcome folded into the model and every read checked against it. Then, with faults
//! healed, the liveness phase: a leader, every block of every volume readable and as the model
//! says, and a write that succeeds.

use crate::cluster::{host, NBD_PORT};
use crate::model::{bytes_of, Image};
use crate::nbd_client::{NbdClient, Outcome};
use crate::plan::{Plan, Step};
use crate::world::{Phase, UnderWay, World};
use node::server::consensus::ProposeError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statemachine::{Command, EstablishOptions, Pair};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use storage::StateQuery;

/// `a` and `b`, a FlashCopy pair either way; `c`, made later, a second target of `a`.
pub static VOLUMES: [&str; 3] = ["a", "b", "c"];
/// The volumes the main stream picks among: a and b (see `Workload::second`).
const PICKED: usize = 2;
/// Index of `c` in `VOLUMES`.
const C: usize = 2;
const HOSTS: [&str; 2] = ["h1", "h2"];
const EPERM: u32 = 1;
/// How long the liveness phase may take to converge, in simulated time.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

/// An administrator's command's outcome as the client saw it.
#[derive(Debug)]
enum Admin {
    Applied(Result<(), statemachine::CommandError>),
    /// It may or may not have been (or may still be) applied.
    Unknown,
    /// No leader took it.
    NotRun,
}

pub struct Workload {
    world: Rc<RefCell<World>>,
    rng: StdRng,
    /// Draws the options added after the workload's first form (sequence numbers), from a
    /// stream of their own: the main stream, and so what earlier seeds ran, stays as it was.
    options: StdRng,
    plan: Plan,
    connections: [Option<NbdClient>; 3],
    next_value: u64,
    /// The relationship's direction as last established or reversed (source, target).
    direction: (&'static str, &'static str),
    /// A node taken out of the voters and not yet put back.
    removed: Option<u64>,
    /// Writes still running (held by a freeze, or waiting for a leader).
    pending: Vec<PendingWrite>,
    /// Hosts that may exist (created, or of unknown outcome, and not yet removed).
    hosts: std::collections::BTreeSet<&'static str>,
    /// Sources frozen by a `mkflash --freeze` that applied, and when.
    frozen: std::collections::BTreeMap<&'static str, tokio::time::Instant>,
    /// The target's image before the revertible increment that applied last, for a revert.
    increment: Option<Image>,
    /// Draws what concerns `c`, from a stream of its own: a run goes as it did before `c`
    /// existed up to `c`'s first use.
    second_draws: StdRng,
    /// `c` and its relationship a→c, which makes `a` a source of two targets: with both
    /// without change recording, a host write to `a` keeps the old track once for both (the
    /// kept tracks), which reads of either target, withdrawals and writes to `c` then use.
    second: Second,
}

/// What the workload knows of `c` and the relationship a→c.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Second {
    /// `c` was never made.
    Absent,
    /// `c` exists; no relationship a→c.
    Free,
    /// a→c was established.
    Related,
    /// a command on a→c had an unknown outcome.
    Unknown,
}

struct PendingWrite {
    volume: usize,
    offset: u64,
    length: u64,
    value: u64,
    /// A point in time was taken of its volume while it ran: it may have landed before (and
    /// been replaced by the point in time) or after, whenever it is acknowledged.
    across: bool,
    /// The writes the leader held for the volume when this one was issued.
    held_before: Option<usize>,
    task: tokio::task::JoinHandle<std::io::Result<Outcome<()>>>,
}

type Failed = Box<dyn std::error::Error>;

impl Workload {
    pub fn new(world: Rc<RefCell<World>>, rng: StdRng, plan: Plan) -> Workload {
        let options = StdRng::seed_from_u64(rng.clone().gen::<u64>() ^ 0x5e9_u32 as u64);
        let second_draws = StdRng::seed_from_u64(rng.clone().gen::<u64>() ^ 0xc0c0);
        Workload {
            world,
            rng,
            options,
            plan,
            connections: [None, None, None],
            next_value: 1,
            direction: ("a", "b"),
            removed: None,
            pending: Vec::new(),
            frozen: Default::default(),
            hosts: Default::default(),
            increment: None,
            second_draws,
            second: Second::Absent,
        }
    }

    /// The volumes that exist (as far as the workload made them).
    fn volumes(&self) -> &'static [&'static str] {
        match self.second {
            Second::Absent => &VOLUMES[..PICKED],
            _ => &VOLUMES,
        }
    }

    /// A volume to read or write: `a` or `b` as the main stream picks, or now and then `c` once
    /// it exists (drawn from its own stream).
    fn pick_volume(&mut self) -> usize {
        let picked = self.rng.gen_range(0..PICKED);
        if self.second != Second::Absent && self.second_draws.gen_bool(0.25) {
            C
        } else {
            picked
        }
    }

    fn note(&self, what: impl std::fmt::Display) {
        self.world.borrow_mut().note(what);
    }

    pub async fn run(mut self) -> Result<(), Failed> {
        for volume in &VOLUMES[..PICKED] {
            while !self.create(volume).await {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        for step in self.plan.steps.clone() {
            self.step(step).await?;
        }
        let started = tokio::time::Instant::now();
        let mut done = 0;
        while done < self.plan.operations || started.elapsed() < self.plan.safety_time {
            done += 1;
            self.world.borrow_mut().operations += 1;
            // A host's think time: operations spread over simulated time, faults among them.
            tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..50))).await;
            match self.rng.gen_range(0..100) {
                0..=43 => self.write().await?,
                44..=77 => self.read().await?,
                78..=79 => self.host_command().await,
                80..=84 => self.mkflash().await,
                85..=87 => self.increment().await,
                88..=90 => self.resyncflash().await,
                91..=92 => self.reverseflash().await,
                93..=94 => self.compact().await,
                95 => self.membership().await,
                96..=97 => self.unfreezeflash().await,
                98 => self.chflash().await,
                _ => self.rmflash().await,
            }
        }
        self.world.borrow_mut().phase = Phase::Liveness;
        self.note("liveness phase: faults healed");
        self.liveness().await
    }

    /// `mkvol volume`; whether it exists now.
    async fn create(&mut self, volume: &str) -> bool {
        let size = self.plan.volume_size;
        let command = Command::CreateVolume {
            name: volume.into(),
            size,
        };
        match self.admin(command).await {
            // A create that did land: refused the second time as existing.
            Admin::Applied(Ok(())) => {}
            Admin::Applied(Err(e)) if e.code() == "volume-exists" => {}
            other => {
                self.note(format!("mkvol {volume}: {other:?}; again"));
                return false;
            }
        }
        self.world.borrow_mut().model.create(volume, size);
        true
    }

    /// Proposes through whichever live node leads, until one takes it or 30 s pass.
    async fn admin(&mut self, command: Command) -> Admin {
        let summary = command.summary();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let outcome = loop {
            if tokio::time::Instant::now() >= deadline {
                break Admin::NotRun;
            }
            let leader = self.world.borrow().leader();
            let Some(leader) = leader else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match leader.propose(command.clone()).await {
                Ok(committed) => break Admin::Applied(committed.result),
                Err(ProposeError::NotLeader { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => break Admin::Unknown,
            }
        };
        self.note(format!("{summary}: {outcome:?}"));
        outcome
    }

    /// A `--seqnum` or none: commands that set one set it, commands that check one are refused
    /// when it is not the relationship's (a refused command changes nothing).
    fn seqnum(&mut self) -> Option<u32> {
        self.options.gen_bool(0.4).then(|| self.options.gen_range(1..=3))
    }

    fn pair(&self) -> Vec<Pair> {
        let (source, target) = self.direction;
        vec![Pair {
            source: source.into(),
            target: target.into(),
        }]
    }

    /// Folds a command's outcome into the model: `applied` on success; on an unknown outcome
    /// the volumes it may still change are tainted.
    fn settle(&mut self, outcome: Admin, applied: impl FnOnce(&mut Self), may_change: &[&str]) {
        match outcome {
            Admin::Applied(Ok(())) => applied(self),
            Admin::Applied(Err(_)) | Admin::NotRun => {}
            Admin::Unknown => {
                for volume in may_change {
                    self.world.borrow_mut().model.taint(volume);
                }
            }
        }
    }

    /// A snapshot and a purge of the log up to it, forced on a random node (mid-copy, perhaps):
    /// a follower further behind then catches up by installing a snapshot.
    async fn compact(&mut self) {
        let node = self.rng.gen_range(1..=self.plan.nodes);
        let raft = self.world.borrow().live.get(&node).map(|h| h.raft.clone());
        let Some(raft) = raft else { return };
        let snapshot = raft.trigger().snapshot().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Up to the snapshot: openraft purges nothing of its own (the space keeper asks for
        // every purge), so no purge of its can go back below this one.
        let upto = raft.metrics().borrow().snapshot.map(|s| s.index);
        let purged = match (snapshot, upto) {
            (Ok(()), Some(upto)) => raft.trigger().purge_log(upto).await.map(|()| upto),
            _ => Ok(0),
        };
        self.note(format!("compact n{node}: {purged:?}"));
    }

    /// Takes a voter that does not lead out of the cluster, or puts the one taken out back (as
    /// a learner that catches up, then a voter).
    async fn membership(&mut self) {
        let leader = self.world.borrow().leader();
        let Some(leader) = leader else { return };
        match self.removed {
            None => {
                let node = (1..=self.plan.nodes)
                    .rev()
                    .find(|n| *n != leader.id())
                    .expect("a follower");
                let outcome = leader.remove_voter(node).await;
                self.note(format!("remove voter n{node}: {outcome:?}"));
                // Whatever the outcome, it is put back before the run ends.
                self.removed = Some(node);
            }
            Some(node) => self.restore_voter(leader, node).await,
        }
    }

    async fn restore_voter(&mut self, leader: std::sync::Arc<node::server::consensus::Consensus>, node: u64) {
        let adding = leader.add_voter(node, crate::cluster::member(node));
        let outcome = tokio::time::timeout(Duration::from_secs(30), adding).await;
        self.note(format!("add voter n{node}: {outcome:?}"));
        if matches!(outcome, Ok(Ok(()))) {
            self.removed = None;
        }
    }

    /// A command started work a new leader must carry on: the leader may crash now.
    fn under_way(&self, what: UnderWay) {
        self.world.borrow_mut().under_way = Some(what);
    }

    /// `target` reads as its `image` again (a revertible increment thrown away); its writes
    /// still in flight may land after it (seed 80418).
    fn restored(&mut self, target: &str, image: Image) {
        self.world.borrow_mut().model.restore(target, image);
        self.pending_land_after(target);
    }

    /// A new point in time on `target`; its writes still in flight may land after it.
    fn established(&mut self, source: &str, target: &str) {
        self.world.borrow_mut().model.established(source, target);
        self.pending_land_after(target);
    }

    /// `target`'s writes still in flight may land after what just replaced its image.
    fn pending_land_after(&mut self, target: &str) {
        let mut world = self.world.borrow_mut();
        for p in self.pending.iter_mut().filter(|p| VOLUMES[p.volume] == target) {
            world.model.written(target, p.offset, p.length, p.value, false);
            p.across = true;
        }
    }

    /// A scenario's step.
    async fn step(&mut self, step: Step) -> Result<(), Failed> {
        self.note(format!("step: {step:?}"));
        match step {
            Step::MkFlash { freeze } => {
                self.settle_writes().await;
                let options = EstablishOptions {
                    nocp: true,
                    freeze,
                    ..Default::default()
                };
                self.mkflash_with(options).await;
            }
            Step::Write { offset, length } => {
                // As a random write would: only once the volume's last write ended or is held.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    self.settle_writes().await;
                    if self.may_write(0) {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err("a scripted write waited 30 s for the one before it".into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let leader = self.world.borrow().leader().map(|c| c.id());
                let node = leader.unwrap_or(1);
                // Not read back: a read may go through a node that is cut off.
                self.issue_write(0, offset, length, node, false).await?;
            }
            Step::Thaw => self.unfreezeflash().await,
            Step::Wait(length) => tokio::time::sleep(length).await,
        }
        Ok(())
    }

    async fn mkflash(&mut self) {
        // Writes that ended before the command are settled first: only those still running
        // meanwhile are across its point in time.
        self.settle_writes().await;
        let persist = self.rng.gen_bool(0.6);
        let options = EstablishOptions {
            nocp: self.rng.gen_bool(0.5),
            persist,
            record: persist && self.rng.gen_bool(0.8),
            tgtinhibit: self.rng.gen_bool(0.2),
            freeze: self.rng.gen_bool(0.4),
            copy_rate: self.copy_rate(),
            ..Default::default()
        };
        let options = EstablishOptions {
            seqnum: self.seqnum().unwrap_or(0),
            ..options
        };
        self.mkflash_with(options).await;
    }

    async fn mkflash_with(&mut self, options: EstablishOptions) {
        let freeze = options.freeze;
        let copying = !options.nocp && options.copy_rate != Some(0);
        // A new relationship goes a to b (a refused one changes nothing); now and then a to c
        // as well, in the same command (one point in time for both).
        let mut pairs = vec![Pair {
            source: "a".into(),
            target: "b".into(),
        }];
        let with_c = self.plan.second_target && self.second_draws.gen_bool(0.5) && self.second_free().await;
        if with_c {
            pairs.push(second_pair());
        }
        let outcome = self.admin(Command::MkFlash { pairs, options }).await;
        if with_c {
            self.second = match outcome {
                Admin::Applied(Ok(())) => Second::Related,
                Admin::Unknown => Second::Unknown,
                Admin::Applied(Err(_)) | Admin::NotRun => Second::Free,
            };
        }
        let established = move |w: &mut Self| {
            w.direction = ("a", "b");
            w.established("a", "b");
            if with_c {
                w.established("a", "c");
            }
            if freeze {
                w.frozen.insert("a", tokio::time::Instant::now());
                w.under_way(UnderWay::Freeze);
            } else if copying {
                w.under_way(UnderWay::Copy);
            }
        };
        let may_change: &[&str] = if with_c { &["b", "c"] } else { &["b"] };
        self.settle(outcome, established, may_change);
    }

    /// Whether `c` exists with no relationship a→c: made if it was not.
    async fn second_free(&mut self) -> bool {
        if self.second == Second::Absent && self.create("c").await {
            self.second = Second::Free;
        }
        self.second == Second::Free
    }

    async fn resyncflash(&mut self) {
        self.settle_writes().await;
        let command = Command::ResyncFlash {
            pairs: self.pair(),
            nocp: self.rng.gen_bool(0.5),
            tgtinhibit: self.rng.gen_bool(0.2),
            seqnum: self.seqnum(),
        };
        let outcome = self.admin(command).await;
        let (source, target) = self.direction;
        let refreshed = move |w: &mut Self| {
            w.established(source, target);
            w.under_way(UnderWay::Refresh);
        };
        self.settle(outcome, refreshed, &[target]);
    }

    /// A revertible increment taken, committed or reverted (refused unless the relationship
    /// records changes, or has one). While one is revertible, writes to both volumes are
    /// refused (EPERM), which the model allows for as it does any refused write.
    async fn increment(&mut self) {
        self.settle_writes().await;
        let pairs = self.pair();
        let (source, target) = self.direction;
        // Taken, then (mostly) ended; an end with none taken is refused.
        let what = match self.increment {
            None if self.rng.gen_bool(0.8) => 0,
            _ => self.rng.gen_range(1..3),
        };
        match what {
            0 => {
                let before = self.world.borrow().model.image(target);
                let seqnum = self.seqnum();
                let outcome = self.admin(Command::SetFlashRevertible { pairs, seqnum }).await;
                let taken = move |w: &mut Self| {
                    w.increment = Some(before);
                    w.established(source, target);
                };
                self.settle(outcome, taken, &[target]);
            }
            1 => {
                // Kept or not, the target reads as it does now; a revert later needs the image.
                let seqnum = self.seqnum();
                if let Admin::Applied(Ok(())) = self.admin(Command::CommitFlash { pairs, seqnum }).await {
                    self.increment = None;
                }
            }
            _ => {
                let seqnum = self.seqnum();
                let outcome = self.admin(Command::RevertFlash { pairs, seqnum }).await;
                let reverted = move |w: &mut Self| match w.increment.take() {
                    Some(before) => w.restored(target, before),
                    // Taken by a command of unknown outcome: the target is tainted already.
                    None => w.world.borrow_mut().model.taint(target),
                };
                self.settle(outcome, reverted, &[target]);
            }
        }
    }

    /// The restore: the source becomes a point-in-time copy of the target, and the relationship
    /// runs the other way.
    async fn reverseflash(&mut self) {
        self.settle_writes().await;
        // Fast reverse restore: the source gets the point in time back, the old target is
        // `incomplete` (SPEC §4.5).
        let fast = self.rng.gen_bool(0.3);
        let command = Command::ReverseFlash {
            pairs: self.pair(),
            fast,
            seqnum: self.seqnum(),
        };
        let outcome = self.admin(command).await;
        let (source, target) = self.direction;
        let reversed = move |w: &mut Self| {
            w.direction = (target, source);
            w.established(target, source);
            w.under_way(UnderWay::Reverse);
            if fast {
                w.world.borrow_mut().model.unknown(target);
            }
        };
        self.settle(outcome, reversed, &[source, target]);
    }

    /// A host's life with random options: `mkhost` (a PSK identity or a certificate CN),
    /// `mapvol` (read-only or not, perhaps mapped again the other way), `unmapvol`, `rmhost`.
    /// While a host exists the workload's connections (no TLS, no identity) are refused, so it
    /// goes at once; one whose removal did not apply goes at the next host command, or in the
    /// liveness phase.
    async fn host_command(&mut self) {
        if !self.hosts.is_empty() {
            self.remove_hosts().await;
            return;
        }
        let host = HOSTS[self.rng.gen_range(0..HOSTS.len())];
        let volume = VOLUMES[self.rng.gen_range(0..PICKED)];
        let identity = if self.rng.gen_bool(0.5) {
            statemachine::HostIdentity::Psk(format!("{host}-key"))
        } else {
            statemachine::HostIdentity::CertCn(format!("{host}.example"))
        };
        self.hosts.insert(host);
        let created = self
            .admin(Command::CreateHost {
                name: host.into(),
                identity,
            })
            .await;
        if let Admin::Applied(Err(_)) | Admin::NotRun = created {
            self.hosts.remove(host);
            return;
        }
        for _ in 0..self.rng.gen_range(1..=2) {
            let map = Command::MapVolume {
                volume: volume.into(),
                host: host.into(),
                read_only: self.rng.gen_bool(0.5),
            };
            self.admin(map).await;
        }
        self.remove_hosts().await;
    }

    /// Unmaps and removes every host that may exist; `true` once none does.
    async fn remove_hosts(&mut self) -> bool {
        for host in self.hosts.clone() {
            for volume in self.volumes().iter().copied() {
                let unmap = Command::UnmapVolume {
                    volume: volume.into(),
                    host: host.into(),
                };
                self.admin(unmap).await;
            }
            match self.admin(Command::DeleteHost { name: host.into() }).await {
                Admin::Applied(Ok(())) => {
                    self.hosts.remove(host);
                }
                Admin::Applied(Err(e)) if e.code() == "host-not-found" => {
                    self.hosts.remove(host);
                }
                _ => {}
            }
        }
        self.hosts.is_empty()
    }

    /// A background copy rate, or none (as fast as the node allows); 0 turns the copy off.
    fn copy_rate(&mut self) -> Option<u32> {
        self.rng.gen_bool(0.3).then(|| self.rng.gen_range(0..=8))
    }

    /// `chflash --copy-rate`: pacing only, the data stays as the model says.
    async fn chflash(&mut self) {
        let command = Command::ChFlash {
            pairs: self.pair(),
            copy_rate: self.copy_rate(),
        };
        self.admin(command).await;
    }

    async fn rmflash(&mut self) {
        // With `--cp` the copy finishes first and the target ends a complete copy.
        let cp = self.rng.gen_bool(0.3);
        let seqnum = self.seqnum();
        // Now and then a→c instead: it lets go of the old tracks it shares with a→b.
        let second = matches!(self.second, Second::Related | Second::Unknown) && self.second_draws.gen_bool(0.4);
        let (pairs, target) = if second {
            (vec![second_pair()], "c")
        } else {
            (self.pair(), self.direction.1)
        };
        let command = Command::RmFlash { pairs, cp, seqnum };
        let outcome = self.admin(command).await;
        if second {
            match &outcome {
                Admin::Applied(Ok(())) => self.second = Second::Free,
                Admin::Applied(Err(e)) if e.code() == "relationship-not-found" => self.second = Second::Free,
                Admin::Unknown => self.second = Second::Unknown,
                Admin::Applied(Err(_)) | Admin::NotRun => {}
            }
        }
        // Withdrawn, perhaps before its copy finished: the target is `incomplete`.
        let withdrawn = move |w: &mut Self| {
            if !cp {
                w.world.borrow_mut().model.unknown(target);
            }
        };
        self.settle(outcome, withdrawn, &[target]);
    }

    /// The connection to `volume`'s export, through a random node, opened if need be.
    async fn connection(&mut self, v: usize) -> Option<&mut NbdClient> {
        if self.connections[v].is_none() {
            let node = self.rng.gen_range(1..=self.plan.nodes);
            let addr = format!("{}:{NBD_PORT}", host(node));
            match NbdClient::open(&addr, VOLUMES[v]).await {
                Ok(client) => self.connections[v] = Some(client),
                Err(e) => {
                    self.note(format!("nbd open {} via {addr}: {e}", VOLUMES[v]));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return None;
                }
            }
        }
        self.connections[v].as_mut()
    }

    /// A write on a connection of its own (a held write must not stop the others), through a
    /// random node. It is waited for a while; one still running then (held by a freeze, or
    /// waiting out a failover) is left pending and settled when it ends. A volume gets a new
    /// write only once its last one ended, unless it is frozen: held writes keep their order.
    async fn write(&mut self) -> Result<(), Failed> {
        self.settle_writes().await;
        let v = self.pick_volume();
        if !self.may_write(v) {
            return Ok(());
        }
        let frozen = self.believed_frozen(VOLUMES[v]);
        let size = self.world.borrow().model.size(VOLUMES[v]);
        // Any bytes: within a block, across blocks and tracks, up to a few blocks long.
        let length = match self.rng.gen_range(0..3) {
            0 => self.rng.gen_range(1..=512u64),
            1 => 4096,
            _ => self.rng.gen_range(1..=20_000u64),
        };
        // Writes held together overlap, so their order shows; otherwise mostly near the start,
        // so writes overlap one another.
        let span = if frozen || self.rng.gen_bool(0.5) { 24_576 } else { size };
        let offset = self.rng.gen_range(0..=span - length);
        let node = self.rng.gen_range(1..=self.plan.nodes);
        self.issue_write(v, offset, length, node, true).await
    }

    /// Whether volume `v` may get a new write now: its last one ended, or it is frozen and its
    /// one write running is seen held. (Arrival order at the leader is then issue order; still
    /// in flight, the first could arrive after the second.)
    fn may_write(&self, v: usize) -> bool {
        let frozen = self.believed_frozen(VOLUMES[v]);
        let held_now = self.held(VOLUMES[v]);
        let waiting: Vec<&PendingWrite> = self.pending.iter().filter(|p| p.volume == v).collect();
        match waiting.as_slice() {
            [] => true,
            [only] => frozen && matches!((only.held_before, held_now), (Some(before), Some(now)) if now > before),
            _ => false,
        }
    }

    /// Writes the next value to volume `v`'s bytes through `node`, waits for it a while and,
    /// if `read_back`, perhaps reads it back.
    async fn issue_write(
        &mut self,
        v: usize,
        offset: u64,
        length: u64,
        node: u64,
        read_back: bool,
    ) -> Result<(), Failed> {
        let held_now = self.held(VOLUMES[v]);
        let value = self.next_value;
        self.next_value += 1;
        let data = bytes_of(value, offset, length);
        let addr = format!("{}:{NBD_PORT}", host(node));
        let volume = VOLUMES[v];
        // From now on it may land at any moment (a point in time taken meanwhile may hold it).
        self.world
            .borrow_mut()
            .model
            .written(volume, offset, length, value, false);
        let task = tokio::task::spawn_local(async move {
            let mut nbd = NbdClient::open(&addr, volume).await?;
            nbd.write(offset, &data).await
        });
        self.pending.push(PendingWrite {
            volume: v,
            offset,
            length,
            value,
            across: false,
            held_before: held_now,
            task,
        });
        // Most writes end at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.pending.last().is_some_and(|p| !p.task.is_finished()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let landed = self
            .pending
            .last()
            .filter(|p| p.task.is_finished())
            .map(|p| (p.volume, p.offset, p.length));
        let acknowledged = self.settle_writes().await;
        // A host reading back what it just wrote: an acknowledged write is visible at once.
        if let Some((v, offset, length)) = landed.filter(|_| read_back) {
            if acknowledged.contains(&(v, offset)) && self.rng.gen_bool(0.3) {
                self.read_and_check(v, offset, length).await?;
            }
        }
        Ok(())
    }

    /// Folds the writes that ended into the model; returns the acknowledged ones (volume, offset).
    async fn settle_writes(&mut self) -> Vec<(usize, u64)> {
        let mut acknowledged = Vec::new();
        let (ended, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.task.is_finished());
        self.pending = running;
        for p in ended {
            // Finished: the join does not wait.
            let result = p.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let ok = matches!(result, Ok(Outcome::Done(())));
            self.note(format!(
                "write {} bytes {}+{} = {}: {}",
                VOLUMES[p.volume],
                p.offset,
                p.length,
                p.value,
                describe(&result)
            ));
            // Its values are among the possible ones since it was issued (a refused one stays
            // there: the model then allows more, never less).
            let volume = VOLUMES[p.volume];
            // The connection failed: the node may still land it, at any time.
            if result.is_err() {
                self.world
                    .borrow_mut()
                    .model
                    .failed(volume, p.offset, p.length, p.value);
            }
            // Acknowledged across a point in time: it stays one possibility of two.
            if ok && !p.across {
                self.world
                    .borrow_mut()
                    .model
                    .written(VOLUMES[p.volume], p.offset, p.length, p.value, true);
                acknowledged.push((p.volume, p.offset));
            }
        }
        acknowledged
    }

    /// How many writes the leader holds for `volume` (as it has applied so far).
    fn held(&self, volume: &str) -> Option<usize> {
        let world = self.world.borrow();
        let leader = world.leader()?;
        let handles = world.live.get(&leader.id())?;
        handles.state.query(|s| {
            let id = s.volume_id(volume)?;
            s.record(id).map(|r| r.held_writes.len())
        })
    }

    /// Whether writes to `volume` are surely held now (a freeze applied, not thawed since).
    fn believed_frozen(&self, volume: &str) -> bool {
        // The automatic thaw comes 120 s after the freeze on the state's clock, which a leader
        // whose clock runs up to 60 s ahead of the last one's can bring forward: well before.
        self.frozen
            .get(volume)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(40))
    }

    async fn unfreezeflash(&mut self) {
        let source = self.direction.0;
        let outcome = self
            .admin(Command::UnfreezeFlash {
                sources: vec![source.into()],
            })
            .await;
        // Thawed, perhaps thawed, or found not frozen: its writes are no longer surely held.
        if !matches!(outcome, Admin::NotRun) {
            self.frozen.remove(source);
        }
    }

    async fn read(&mut self) -> Result<(), Failed> {
        let v = self.pick_volume();
        let size = self.world.borrow().model.size(VOLUMES[v]);
        let length = self.rng.gen_range(1..=32_768u64);
        let span = if self.rng.gen_bool(0.5) { 32_768 } else { size };
        let offset = self.rng.gen_range(0..=span - length);
        self.read_and_check(v, offset, length).await.map(|_| ())
    }

    /// Reads and checks bytes; `Ok(false)` if the read did not complete.
    async fn read_and_check(&mut self, v: usize, offset: u64, length: u64) -> Result<bool, Failed> {
        let Some(nbd) = self.connection(v).await else {
            return Ok(false);
        };
        let result = nbd.read(offset, length as u32).await;
        if result.is_err() {
            self.connections[v] = None;
        }
        let Ok(Outcome::Done(data)) = result else {
            self.note(format!(
                "read {} bytes {offset}+{length}: {}",
                VOLUMES[v],
                describe(&result)
            ));
            return Ok(false);
        };
        self.note(format!("read {} bytes {offset}+{length}: done", VOLUMES[v]));
        let mut world = self.world.borrow_mut();
        world.model.read(VOLUMES[v], offset, &data)?;
        world.checks += 1;
        Ok(true)
    }

    /// With faults healed: within the bound, every volume reads whole as the model says and a
    /// write is acknowledged.
    async fn liveness(&mut self) -> Result<(), Failed> {
        let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
        let unmet =
            |what: String| -> Failed { format!("liveness: {what} within {LIVENESS_BOUND:?} of healing").into() };
        while self.world.borrow().leader().is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err(unmet("no leader".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every held write is released (a thaw for each source that may be frozen) and ends.
        for source in self.volumes().iter().copied() {
            while matches!(
                self.admin(Command::UnfreezeFlash {
                    sources: vec![source.into()]
                })
                .await,
                Admin::NotRun
            ) {
                if tokio::time::Instant::now() >= deadline {
                    return Err(unmet(format!("unfreezeflash {source} not run")));
                }
            }
        }
        self.frozen.clear();
        // Every revertible increment ends, committed (the target reads as it does now): its
        // background copy waits until then.
        for (source, target) in [("a", "b"), ("b", "a")] {
            loop {
                let commit = Command::CommitFlash {
                    pairs: vec![Pair {
                        source: source.into(),
                        target: target.into(),
                    }],
                    seqnum: None,
                };
                // Refused (none, or no relationship) or applied: either way none is left.
                if let Admin::Applied(_) = self.admin(commit).await {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(unmet(format!("commitflash {source}:{target} not run")));
                }
            }
        }
        self.increment = None;
        while !self.pending.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Err(unmet(format!(
                    "{} held or waiting writes not ended",
                    self.pending.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.settle_writes().await;
        }
        // Every host goes, so the workload's connections (no identity) are served again.
        while !self.remove_hosts().await {
            if tokio::time::Instant::now() >= deadline {
                return Err(unmet(format!("hosts {:?} not removed", self.hosts)));
            }
        }
        // A node taken out of the voters comes back.
        while let Some(node) = self.removed {
            if tokio::time::Instant::now() >= deadline {
                return Err(unmet(format!("n{node} not a voter again")));
            }
            let leader = self.world.borrow().leader();
            match leader {
                Some(leader) => self.restore_voter(leader, node).await,
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        // Every background copy finishes (on the leader's state, as of a linearizable read).
        loop {
            let leader = self.world.borrow().leader();
            if let Some(leader) = leader {
                if leader.linearizable().await.is_ok() {
                    let id = leader.id();
                    let copying = self.world.borrow().live.get(&id).map(|h| {
                        h.state.query(|s| {
                            s.relationships(&[])
                                .into_iter()
                                .filter(|r| r.background_copy && r.out_of_sync_tracks > 0)
                                .count()
                        })
                    });
                    if copying == Some(0) {
                        break;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unmet("a background copy not finished".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (v, volume) in self.volumes().iter().enumerate() {
            let size = self.world.borrow().model.size(volume);
            let mut offset = 0;
            while offset < size {
                let length = 262_144.min(size - offset);
                if self.read_and_check(v, offset, length).await? {
                    offset += length;
                } else if tokio::time::Instant::now() >= deadline {
                    return Err(unmet(format!("{} not readable", VOLUMES[v])));
                }
            }
            loop {
                let value = self.next_value;
                self.next_value += 1;
                if let Some(nbd) = self.connection(v).await {
                    match nbd.write(0, &bytes_of(value, 0, 4096)).await {
                        Ok(Outcome::Done(())) => {
                            self.world.borrow_mut().model.written(VOLUMES[v], 0, 4096, value, true);
                            break;
                        }
                        // A write-inhibited target: the cluster answered, refusing as it must.
                        Ok(Outcome::Refused(EPERM)) => break,
                        _ => {}
                    }
                    let mut world = self.world.borrow_mut();
                    world.model.written(VOLUMES[v], 0, 4096, value, false);
                    world.model.failed(VOLUMES[v], 0, 4096, value);
                    drop(world);
                    self.connections[v] = None;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(unmet(format!("no write to {} acknowledged", VOLUMES[v])));
                }
            }
        }
        self.note("liveness: every volume read whole and written");
        Ok(())
    }
}

/// The relationship a→c.
fn second_pair() -> Pair {
    Pair {
        source: "a".into(),
        target: "c".into(),
    }
}

fn describe<T>(result: &std::io::Result<Outcome<T>>) -> String {
    match result {
        Ok(Outcome::Done(_)) => "ok".into(),
        Ok(Outcome::Refused(errno)) => format!("refused (errno {errno})"),
        Err(e) => format!("failed: {e}"),
    }
}
