//! Counters and latency histograms a node keeps in memory for `GET /metrics` (Prometheus text).
//! Lock-free: recorded from request paths with relaxed atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// A Prometheus histogram of durations.
#[derive(Default)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last slot is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(BOUNDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the `_bucket`, `_sum` and `_count` series; `labels` is `key="value",...` or empty.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BOUNDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[BOUNDS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// The NBD commands metrics are kept for.
pub const NBD_COMMANDS: [&str; 7] = [
    "read",
    "write",
    "write_zeroes",
    "trim",
    "flush",
    "block_status",
    "other",
];

#[derive(Default)]
pub struct NbdCommandMetrics {
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    pub latency: Histogram,
}

/// Everything this node counts.
#[derive(Default)]
pub struct Metrics {
    /// The commit index, kept current by the log store.
    commit_index: Arc<AtomicU64>,
    /// Apply batches of the state machine and the entries they held.
    apply_latency: Histogram,
    applied_entries: AtomicU64,
    pub nbd_connections: AtomicU64,
    pub nbd_connections_proxied: AtomicU64,
    /// Connections closed at accept because the connection limit was reached.
    pub nbd_connections_refused: AtomicU64,
    nbd: [NbdCommandMetrics; NBD_COMMANDS.len()],
    /// From proposing a command to its reply (committed and applied here).
    pub commit_latency: Histogram,
    /// Group commit: host writes proposed, and the entries that carried them.
    pub host_writes: AtomicU64,
    pub write_batches: AtomicU64,
    /// How long host writes to full-duplex mirror primaries waited for their secondary, after
    /// their local commit: the latency the mirror adds.
    pub mirror_wait: Histogram,
    /// Bytes in the Raft log's files, as the log keeper last saw them.
    pub log_bytes: AtomicU64,
    /// Background copy while this node led: tracks brought in sync per (source, target).
    copied: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    pub fn new(commit_index: Arc<AtomicU64>) -> Self {
        Metrics {
            commit_index,
            ..Metrics::default()
        }
    }

    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Relaxed)
    }

    pub fn record_apply(&self, entries: usize, elapsed: Duration) {
        self.apply_latency.observe(elapsed);
        self.applied_entries.fetch_add(entries as u64, Ordering::Relaxed);
    }
    /// The counters for one NBD command (by its `CommandKind::name`).
    pub fn nbd(&self, command: &str) -> &NbdCommandMetrics {
        let slot = NBD_COMMANDS
            .iter()
            .position(|c| *c == command)
            .unwrap_or(NBD_COMMANDS.len() - 1);
        &self.nbd[slot]
    }

    /// Counts tracks a copy step brought in sync for one relationship.
    pub fn record_copy(&self, source: &str, target: &str, tracks: u64) {
        let mut copied = self.copied.lock().expect("metrics lock is not poisoned");
        *copied.entry((source.to_string(), target.to_string())).or_default() += tracks;
    }

    /// Renders this node's own series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        let per_command = |out: &mut String, name: &str, help: &str, value: fn(&NbdCommandMetrics) -> u64| {
            header(out, name, "counter", help);
            for (command, m) in NBD_COMMANDS.iter().zip(&self.nbd) {
                let _ = writeln!(out, "{name}{{command=\"{command}\"}} {}", value(m));
            }
        };
        counter(
            out,
            "flashcopy_nbd_connections_total",
            "NBD connections accepted.",
            &self.nbd_connections,
        );
        counter(
            out,
            "flashcopy_nbd_connections_proxied_total",
            "NBD connections this node forwarded to the leader.",
            &self.nbd_connections_proxied,
        );
        counter(
            out,
            "flashcopy_nbd_connections_refused_total",
            "NBD connections closed at once: the connection limit was reached.",
            &self.nbd_connections_refused,
        );
        per_command(
            out,
            "flashcopy_nbd_requests_total",
            "NBD requests served, by command.",
            |m| m.latency.count(),
        );
        per_command(
            out,
            "flashcopy_nbd_errors_total",
            "NBD requests answered with an error, by command.",
            |m| m.errors.load(Ordering::Relaxed),
        );
        per_command(
            out,
            "flashcopy_nbd_bytes_total",
            "Bytes read or written over NBD, by command.",
            |m| m.bytes.load(Ordering::Relaxed),
        );
        let name = "flashcopy_nbd_request_seconds";
        header(out, name, "histogram", "NBD request latency, by command.");
        for (command, m) in NBD_COMMANDS.iter().zip(&self.nbd) {
            m.latency.render(out, name, &format!("command=\"{command}\""));
        }
        counter(
            out,
            "flashcopy_host_writes_total",
            "Host writes this node proposed (NBD and HTTP).",
            &self.host_writes,
        );
        counter(
            out,
            "flashcopy_write_batches_total",
            "Log entries that carried those writes (group commit: fewer than the writes).",
            &self.write_batches,
        );
        let name = "flashcopy_commit_seconds";
        header(out, name, "histogram", "From proposing a command to its applied reply.");
        self.commit_latency.render(out, name, "");
        let name = "flashcopy_mirror_wait_seconds";
        header(
            out,
            name,
            "histogram",
            "What the Metro Mirror added to host writes: from the local commit to the secondary's confirmation.",
        );
        self.mirror_wait.render(out, name, "");
        let name = "flashcopy_apply_seconds";
        header(
            out,
            name,
            "histogram",
            "Time the state machine took per batch of applied entries.",
        );
        self.apply_latency.render(out, name, "");
        counter(
            out,
            "flashcopy_applied_entries_total",
            "Log entries this node applied since it started.",
            &self.applied_entries,
        );
        let name = "flashcopy_copied_tracks_total";
        header(
            out,
            name,
            "counter",
            "Tracks the background copy brought in sync while this node led.",
        );
        for ((source, target), tracks) in self.copied.lock().expect("metrics lock is not poisoned").iter() {
            let _ = writeln!(out, "{name}{{source=\"{source}\",target=\"{target}\"}} {tracks}");
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
