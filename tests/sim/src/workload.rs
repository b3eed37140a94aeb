//! The workload, a simulated client host: NBD writes and reads of whole 4 KiB blocks on a
//! FlashCopy source and target through any node, and FlashCopy commands with random options,
//! each outcome folded into the model and every read checked against it. Then, with faults
//! healed, the liveness phase: a leader, every block of every volume readable and as the model
//! says, and a write that succeeds.

use crate::cluster::{host, NBD_PORT};
use crate::model::{block_bytes, block_value, BLOCK};
use crate::nbd_client::{NbdClient, Outcome};
use crate::plan::Plan;
use crate::world::{Phase, World};
use node::server::consensus::ProposeError;
use rand::rngs::StdRng;
use rand::Rng;
use statemachine::{Command, EstablishOptions, Pair};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

pub const VOLUMES: [&str; 2] = ["a", "b"];
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
    plan: Plan,
    connections: [Option<NbdClient>; 2],
    next_value: u64,
}

type Failed = Box<dyn std::error::Error>;

impl Workload {
    pub fn new(world: Rc<RefCell<World>>, rng: StdRng, plan: Plan) -> Workload {
        Workload {
            world,
            rng,
            plan,
            connections: [None, None],
            next_value: 1,
        }
    }

    fn note(&self, what: impl std::fmt::Display) {
        self.world.borrow_mut().note(what);
    }

    pub async fn run(mut self) -> Result<(), Failed> {
        for volume in VOLUMES {
            let size = self.plan.volume_size;
            loop {
                match self
                    .admin(Command::CreateVolume {
                        name: volume.into(),
                        size,
                    })
                    .await
                {
                    Admin::Applied(Ok(())) => break,
                    // A create that did land: refused the second time as existing.
                    Admin::Applied(Err(e)) if e.code() == "volume-exists" => break,
                    other => self.note(format!("mkvol {volume}: {other:?}; again")),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            self.world.borrow_mut().model.create(volume, size);
        }
        let started = tokio::time::Instant::now();
        let mut done = 0;
        while done < self.plan.operations || started.elapsed() < self.plan.safety_time {
            done += 1;
            self.world.borrow_mut().operations += 1;
            // A host's think time: operations spread over simulated time, faults among them.
            tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..50))).await;
            match self.rng.gen_range(0..100) {
                0..=44 => self.write().await?,
                45..=84 => self.read().await?,
                85..=93 => self.mkflash().await,
                _ => self.rmflash().await,
            }
        }
        self.world.borrow_mut().phase = Phase::Liveness;
        self.note("liveness phase: faults healed");
        self.liveness().await
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

    async fn mkflash(&mut self) {
        let options = EstablishOptions {
            nocp: self.rng.gen_bool(0.5),
            persist: self.rng.gen_bool(0.5),
            ..Default::default()
        };
        let pairs = vec![Pair {
            source: "a".into(),
            target: "b".into(),
        }];
        match self.admin(Command::MkFlash { pairs, options }).await {
            Admin::Applied(Ok(())) => self.world.borrow_mut().model.established("a", "b"),
            Admin::Applied(Err(_)) | Admin::NotRun => {}
            Admin::Unknown => self.world.borrow_mut().model.taint("b"),
        }
    }

    async fn rmflash(&mut self) {
        let pairs = vec![Pair {
            source: "a".into(),
            target: "b".into(),
        }];
        match self
            .admin(Command::RmFlash {
                pairs,
                cp: false,
                seqnum: None,
            })
            .await
        {
            // Withdrawn, perhaps before its copy finished: the target is `incomplete`.
            Admin::Applied(Ok(())) => self.world.borrow_mut().model.unknown("b"),
            Admin::Applied(Err(_)) | Admin::NotRun => {}
            Admin::Unknown => self.world.borrow_mut().model.taint("b"),
        }
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

    async fn write(&mut self) -> Result<(), Failed> {
        let v = self.rng.gen_range(0..VOLUMES.len());
        let blocks = self.world.borrow().model.blocks(VOLUMES[v]);
        let count = self.rng.gen_range(1..=4u64).min(blocks);
        let first = self.rng.gen_range(0..=blocks - count);
        let values: Vec<u64> = (0..count).map(|i| self.next_value + i).collect();
        self.next_value += count;
        let data: Vec<u8> = values.iter().flat_map(|v| block_bytes(*v)).collect();
        let Some(nbd) = self.connection(v).await else {
            return Ok(());
        };
        let result = nbd.write(first * BLOCK, &data).await;
        let acknowledged = matches!(result, Ok(Outcome::Done(())));
        if result.is_err() {
            self.connections[v] = None;
        }
        self.note(format!(
            "write {} blocks {first}+{count} = {values:?}: {}",
            VOLUMES[v],
            describe(&result)
        ));
        self.world
            .borrow_mut()
            .model
            .written(VOLUMES[v], first, &values, acknowledged);
        Ok(())
    }

    async fn read(&mut self) -> Result<(), Failed> {
        let v = self.rng.gen_range(0..VOLUMES.len());
        let blocks = self.world.borrow().model.blocks(VOLUMES[v]);
        let count = self.rng.gen_range(1..=8u64).min(blocks);
        let first = self.rng.gen_range(0..=blocks - count);
        self.read_and_check(v, first, count).await.map(|_| ())
    }

    /// Reads and checks blocks; `Ok(false)` if the read did not complete.
    async fn read_and_check(&mut self, v: usize, first: u64, count: u64) -> Result<bool, Failed> {
        let Some(nbd) = self.connection(v).await else {
            return Ok(false);
        };
        let result = nbd.read(first * BLOCK, (count * BLOCK) as u32).await;
        if result.is_err() {
            self.connections[v] = None;
        }
        let Ok(Outcome::Done(data)) = result else {
            self.note(format!(
                "read {} blocks {first}+{count}: {}",
                VOLUMES[v],
                describe(&result)
            ));
            return Ok(false);
        };
        let values: Vec<Option<u64>> = data.chunks(BLOCK as usize).map(block_value).collect();
        self.note(format!("read {} blocks {first}+{count}: {values:?}", VOLUMES[v]));
        let mut world = self.world.borrow_mut();
        world.model.check_read(VOLUMES[v], first, &values)?;
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
        for (v, volume) in VOLUMES.iter().enumerate() {
            let blocks = self.world.borrow().model.blocks(volume);
            let mut first = 0;
            while first < blocks {
                let count = 64.min(blocks - first);
                if self.read_and_check(v, first, count).await? {
                    first += count;
                } else if tokio::time::Instant::now() >= deadline {
                    return Err(unmet(format!("{} not readable", VOLUMES[v])));
                }
            }
            loop {
                let value = self.next_value;
                self.next_value += 1;
                if let Some(nbd) = self.connection(v).await {
                    if let Ok(Outcome::Done(())) = nbd.write(0, &block_bytes(value)).await {
                        self.world.borrow_mut().model.written(VOLUMES[v], 0, &[value], true);
                        break;
                    }
                    self.world.borrow_mut().model.written(VOLUMES[v], 0, &[value], false);
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

fn describe<T>(result: &std::io::Result<Outcome<T>>) -> String {
    match result {
        Ok(Outcome::Done(_)) => "ok".into(),
        Ok(Outcome::Refused(errno)) => format!("refused (errno {errno})"),
        Err(e) => format!("failed: {e}"),
    }
}
