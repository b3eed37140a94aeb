//! Log output for the server and the embedded demo: stderr, level from `RUST_LOG`.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; `RUST_LOG` picks what is logged (default: `default`).
pub fn init(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        // One JSON object per line, with the span it happened in and the spans around it.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).try_init(),
    };
}
