//! The fault schedule: between simulation steps, with the seed's rates, a node crashes or loses
//! power (and restarts after a downtime), is cut off from the others both ways or one way, has
//! its links held (messages delayed, then delivered at once), or has its disk fill up; the
//! leader crashes right after a command started work a new leader must carry on (a copy, a
//! refresh, a reverse, a freeze); each fault is repaired after a while. Every fault is noted in the trace and counted by kind.

use crate::cluster::host;
use crate::plan::{Plan, Scripted};
use crate::world::World;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

enum Repair {
    Restart(u64),
    Reconnect(u64),
    ReconnectOneway(u64, u64),
    Release(u64),
    Free(u64),
}

pub struct Faults {
    plan: Plan,
    /// Repairs due, by simulated time.
    due: Vec<(Duration, Repair)>,
    down: Vec<u64>,
    /// Faults injected, by kind.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Faults {
    pub fn new(plan: Plan) -> Faults {
        Faults {
            plan,
            due: Vec::new(),
            down: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    fn others(&self, node: u64) -> impl Iterator<Item = u64> {
        (1..=self.plan.nodes).filter(move |n| *n != node)
    }

    fn strike(&mut self, kind: &'static str, world: &mut World, now: Duration, what: String) {
        *self.counts.entry(kind).or_default() += 1;
        world.trace.note(now, format!("fault: {what}"));
    }

    /// One step's worth of faults (and the repairs that are due).
    pub fn step(&mut self, sim: &mut turmoil::Sim<'_>, world: &mut World, rng: &mut StdRng) {
        let now = sim.elapsed();
        self.repair_due(sim, world, now, false);
        self.scripted(sim, world, now);
        // A disk whose power went in the middle of a write takes its node down with it.
        for node in 1..=self.plan.nodes {
            if world.disks[&node].power_is_off() && !self.down.contains(&node) {
                let downtime = self.crash(sim, world, rng, node);
                let lost = world.disks[&node].power_loss(rng);
                let what = format!("power lost mid-write on n{node}, down for {downtime:?}: the log lost {lost:?}");
                self.strike("power-loss", world, now, what);
            }
        }
        // A leader change in the middle of work the new leader must carry on.
        if let Some(under_way) = world.under_way.take() {
            let leader = world.leader().map(|c| c.id());
            if let Some(leader) = leader.filter(|_| rng.gen_bool(self.plan.mid_crash)) {
                let downtime = self.crash(sim, world, rng, leader);
                let what = format!("crash leader n{leader} ({}) for {downtime:?}", under_way.kind());
                self.strike(under_way.kind(), world, now, what);
            }
        }
        let nodes = self.plan.nodes;
        let node = rng.gen_range(1..=nodes);
        if rng.gen_bool(self.plan.crash_rate) && !self.down.contains(&node) {
            // (A power loss between steps would lose nothing a crash does not: every log call
            // syncs before it returns, and blocking work runs inline here. So the power goes
            // in the middle of a write.)
            match rng.gen_range(0..2) {
                0 => {
                    let downtime = self.crash(sim, world, rng, node);
                    self.strike("crash", world, now, format!("crash n{node} for {downtime:?}"));
                }
                _ => {
                    let after = rng.gen_range(0..40_000);
                    world.disks[&node].cut_power_after(after);
                    let what = format!("n{node}'s disk will lose power after {after} more bytes");
                    world.trace.note(now, what);
                }
            }
        } else if rng.gen_bool(self.plan.partition_rate) {
            for other in self.others(node).collect::<Vec<_>>() {
                sim.partition(host(node), host(other));
            }
            let length = Duration::from_millis(rng.gen_range(100..10_000));
            self.due.push((now + length, Repair::Reconnect(node)));
            self.strike("partition", world, now, format!("cut n{node} off for {length:?}"));
        } else if rng.gen_bool(self.plan.oneway_rate) {
            let pick = rng.gen_range(0..nodes as usize - 1);
            let other = self.others(node).nth(pick).expect("a peer");
            sim.partition_oneway(host(node), host(other));
            let length = Duration::from_millis(rng.gen_range(100..10_000));
            self.due.push((now + length, Repair::ReconnectOneway(node, other)));
            self.strike("oneway", world, now, format!("drop n{node} -> n{other} for {length:?}"));
        } else if rng.gen_bool(self.plan.hold_rate) {
            for other in self.others(node).collect::<Vec<_>>() {
                sim.hold(host(node), host(other));
            }
            let length = Duration::from_millis(rng.gen_range(50..3_000));
            self.due.push((now + length, Repair::Release(node)));
            self.strike("hold", world, now, format!("hold n{node}'s messages for {length:?}"));
        } else if rng.gen_bool(self.plan.full_rate) {
            world.disks[&node].fill(true);
            let length = Duration::from_millis(rng.gen_range(500..15_000));
            self.due.push((now + length, Repair::Free(node)));
            self.strike("disk-full", world, now, format!("fill n{node}'s disk for {length:?}"));
        }
    }

    /// Crashes `node` (its handles go first: its RocksDB closes with its runtime) and schedules
    /// its restart; returns how long it stays down.
    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, world: &mut World, rng: &mut StdRng, node: u64) -> Duration {
        world.live.remove(&node);
        sim.crash(host(node));
        self.down.push(node);
        let downtime = Duration::from_millis(rng.gen_range(100..20_000));
        self.due.push((sim.elapsed() + downtime, Repair::Restart(node)));
        downtime
    }

    /// Injects the script's faults that are due.
    fn scripted(&mut self, sim: &mut turmoil::Sim<'_>, world: &mut World, now: Duration) {
        while self.plan.script.first().is_some_and(|(at, _)| *at <= now) {
            let (_, fault) = self.plan.script.remove(0);
            match fault {
                Scripted::CutFollower(length) => {
                    let leader = world.leader().map(|c| c.id());
                    let Some(node) = (1..=self.plan.nodes).rev().find(|n| Some(*n) != leader) else {
                        continue;
                    };
                    for other in self.others(node) {
                        sim.partition(host(node), host(other));
                    }
                    self.due.push((now + length, Repair::Reconnect(node)));
                    *self.counts.entry("partition").or_default() += 1;
                    world
                        .trace
                        .note(now, format!("fault: cut follower n{node} off for {length:?}"));
                }
            }
        }
    }

    /// Heals everything for the liveness phase: due or not, every fault is repaired, random
    /// link failures stop and every link is up.
    pub fn heal(&mut self, sim: &mut turmoil::Sim<'_>, world: &mut World, rng: &mut StdRng) {
        let now = sim.elapsed();
        // A disk that lost power takes its node down now; one set to lose it keeps it.
        for node in 1..=self.plan.nodes {
            let disk = world.disks[&node].clone();
            if disk.power_is_off() && !self.down.contains(&node) {
                self.crash(sim, world, rng, node);
                let lost = disk.power_loss(rng);
                world
                    .trace
                    .note(now, format!("power lost mid-write on n{node}: the log lost {lost:?}"));
            }
            disk.keep_power();
        }
        self.repair_due(sim, world, now, true);
        sim.set_fail_rate(0.0);
        let hosts: Vec<String> = (1..=self.plan.nodes).map(host).chain(["client".to_string()]).collect();
        for (i, a) in hosts.iter().enumerate() {
            for b in &hosts[i + 1..] {
                sim.repair(a.as_str(), b.as_str());
            }
        }
        world.trace.note(now, "healed: every fault repaired, every link up");
    }

    /// Repairs what is due (or everything, when healing for the liveness phase).
    pub fn repair_due(&mut self, sim: &mut turmoil::Sim<'_>, world: &mut World, now: Duration, all: bool) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.due)
            .into_iter()
            .partition(|(at, _)| all || *at <= now);
        self.due = later;
        for (_, repair) in due {
            match repair {
                Repair::Restart(node) => {
                    sim.bounce(host(node));
                    self.down.retain(|n| *n != node);
                    world.trace.note(now, format!("repair: restart n{node}"));
                }
                Repair::Reconnect(node) => {
                    for other in self.others(node) {
                        sim.repair(host(node), host(other));
                    }
                    world.trace.note(now, format!("repair: reconnect n{node}"));
                }
                Repair::ReconnectOneway(from, to) => {
                    sim.repair_oneway(host(from), host(to));
                    world.trace.note(now, format!("repair: n{from} -> n{to}"));
                }
                Repair::Release(node) => {
                    for other in self.others(node) {
                        sim.release(host(node), host(other));
                    }
                    world.trace.note(now, format!("repair: release n{node}"));
                }
                Repair::Free(node) => {
                    world.disks[&node].fill(false);
                    world.trace.note(now, format!("repair: n{node}'s disk has room"));
                }
            }
        }
    }
}
