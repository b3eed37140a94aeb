//! A seeded, deterministic simulation of a flashcopy cluster (issue: fault injection that finds
//! what nobody thought of). Each run is a whole cluster — the product's serving core with its
//! real state machine, openraft wiring, peer transport, RocksDB storage and NBD server (its log
//! on a simulated disk that can lose power) — on
//! turmoil's simulated network and clock, under faults drawn from one seed, with a workload
//! checked against a reference model and invariants checked between steps. The same seed gives
//! the same run (`trace_hash`).

pub mod cluster;
pub mod disk;
pub mod faults;
pub mod invariants;
pub mod model;
pub mod nbd_client;
pub mod net;
pub mod plan;
pub mod run;
pub mod trace;
pub mod workload;
pub mod world;

pub use run::{run, run_with, Failure, Report};
