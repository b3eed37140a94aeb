//! The invariants checked while the simulation runs, one per file. Reads against the model are
//! checked by the workload as they come back (`model.rs`); these look at the nodes themselves,
//! between steps and at the end.

mod audit;
mod digests;
mod history;
mod leaders;

pub use audit::journals_replay;
pub use digests::{converged, Digests};
pub use history::journals_agree;
pub use leaders::Leaders;
