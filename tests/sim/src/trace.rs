//! The run's history: every operation, outcome and fault, in order, with the simulated time.
//! Its hash is the run's fingerprint (the same seed must give the same one); a failure prints
//! its faults and its last lines.

use std::fmt::Write;
use std::time::Duration;

#[derive(Default)]
pub struct Trace {
    lines: Vec<String>,
    hash: u64,
}

impl Trace {
    pub fn note(&mut self, at: Duration, what: impl std::fmt::Display) {
        let mut line = String::new();
        let _ = write!(line, "{:>9.3}s {what}", at.as_secs_f64());
        self.hash = xxhash_rust::xxh3::xxh3_64_with_seed(line.as_bytes(), self.hash);
        self.lines.push(line);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}
