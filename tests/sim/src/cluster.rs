//! The simulated nodes: each a turmoil host running the product's serving core
//! (`node::server::start_core`) on its own data directory, with the simulated network, a clock
//! of its own and its Raft log on a simulated disk (`disk.rs`). A crash drops the host's
//! runtime: every task, and RocksDB closed without a flush (what the state had not flushed is
//! gone, as in a kill); a power loss besides drops what the log had not synced. A restart runs
//! the same start again on the same directory and disk.

use crate::disk::SimDisk;
use crate::net::{listen, SimDialer};
use crate::world::{Handles, World};
use clap::Parser;
use node::server::clock::Clock;
use node::server::{start_core, Environment, ServeArgs};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use storage::NodeInfo;

pub const RAFT_PORT: u16 = 7000;
pub const NBD_PORT: u16 = 10809;

/// Simulated time starts here (2026-01-01), so wall-clock stamps are plausible.
const EPOCH_MS: u64 = 1_767_225_600_000;

pub fn host(id: u64) -> String {
    format!("n{id}")
}

pub fn member(id: u64) -> NodeInfo {
    NodeInfo {
        api: format!("http://{}:7700", host(id)),
        raft: format!("{}:{RAFT_PORT}", host(id)),
    }
}

/// A member's wall clock: simulated time, off by a fixed skew.
struct SimClock {
    skew_ms: i64,
}

impl Clock for SimClock {
    fn now_millis(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        (EPOCH_MS + elapsed).saturating_add_signed(self.skew_ms)
    }
}

#[derive(Parser)]
struct NodeArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

/// What one node needs to start, kept across its restarts.
#[derive(Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub members: u64,
    pub dir: PathBuf,
    pub skew_ms: i64,
    pub snapshot_every: u64,
    pub disk: SimDisk,
}

/// Adds node `spec.id` as a host of `sim`. Node 1 initialises the cluster with every member
/// on its first start.
pub fn add_node(sim: &mut turmoil::Sim<'_>, world: Rc<RefCell<World>>, spec: NodeSpec) {
    sim.host(host(spec.id), move || {
        let (world, spec) = (world.clone(), spec.clone());
        async move {
            let raft_listener = listen(RAFT_PORT).await?;
            let nbd_listener = listen(NBD_PORT).await?;
            let dir = spec.dir.display().to_string();
            let (id, every) = (spec.id.to_string(), spec.snapshot_every.to_string());
            let args = NodeArgs::try_parse_from([
                "serve",
                "--data-dir",
                &dir,
                "--node-id",
                &id,
                "--insecure",
                "--api",
                "0.0.0.0:7700",
                "--raft",
                "0.0.0.0:7000",
                "--nbd",
                "0.0.0.0:10809",
                "--snapshot-every",
                &every,
                "--max-log-size",
                "16",
                "--nbd-handshake-limit",
                "30",
            ])?;
            let config = args.serve.config()?;
            let env = Environment {
                clock: Arc::new(SimClock { skew_ms: spec.skew_ms }),
                dialer: Arc::new(SimDialer),
                raft_listener: Box::new(raft_listener),
                nbd_listener: Box::new(nbd_listener),
                log_disk: Some(Arc::new(spec.disk.clone())),
                filesystem: Some(Arc::new(spec.disk.clone())),
            };
            let core = start_core(&config, member(spec.id), env).await?;
            // Where it starts (the state re-applied from the log what a crash lost).
            let last = core.log.last_log_id().map(|l| l.index);
            let opened = format!(
                "n{} opened: applied {:?}, log to {last:?}",
                spec.id,
                core.state.applied().0
            );
            world.borrow_mut().note(opened);
            if spec.id == 1 && !core.raft.is_initialized().await? {
                let members: BTreeMap<u64, NodeInfo> = (1..=spec.members).map(|id| (id, member(id))).collect();
                core.raft.initialize(members).await?;
            }
            world.borrow_mut().live.insert(
                spec.id,
                Handles {
                    consensus: core.consensus.clone(),
                    state: core.state.clone(),
                    raft: core.raft.clone(),
                },
            );
            // The core's tasks serve until the host is crashed.
            let _core = core;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}
