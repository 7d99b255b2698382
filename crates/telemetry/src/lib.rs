//! How flowmerge processes report: `tracing` logs filtered by `FLOWMERGE_LOG` (default `info` for
//! the services), human-readable on a terminal and JSON lines otherwise (containers, log shippers).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// JSON unless stdout is a terminal.
    pub fn detect() -> Self {
        match std::io::stdout().is_terminal() {
            true => Self::Text,
            false => Self::Json,
        }
    }
}

/// Installs the global subscriber for a long-running service: logs to stdout in `format`,
/// filtered by `FLOWMERGE_LOG` (an `EnvFilter` directive) or `default_filter`.
pub fn init_service_logs(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("FLOWMERGE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
