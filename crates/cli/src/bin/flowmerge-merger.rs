//! `flowmerge-merger`: merge-queue jobs → Parquet → commit. Configured only by the environment
//! (README, "Configuration"); exits 0 after SIGTERM/SIGINT once the job in hand is finished or,
//! after `FLOWMERGE_DRAIN_TIMEOUT`, released.

use std::sync::Arc;

use anyhow::Context;
use flowmerge_aws::{clients, config, merger::Merger, shutdown::Shutdown};

#[path = "../worker.rs"]
mod worker;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    worker::start_or_exit("flowmerge-merger");
    // One line per problem: the error is logged once (by run_service), never printed again by
    // `main` (which would add a backtrace when RUST_BACKTRACE is set).
    if let Err(e) = flowmerge_telemetry::check_log_filter() {
        eprintln!("flowmerge-merger: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match flowmerge_telemetry::run_service("flowmerge-merger", run()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

async fn run() -> anyhow::Result<()> {
    let cfg = config::process_env().merger()?;
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let sdk = clients::sdk_config().await;
    let merger = Arc::new(Merger::new(cfg, clients::sqs(&sdk), clients::dynamodb(&sdk)).await?);
    merger.run(shutdown).await?;
    tracing::info!("merger stopped");
    Ok(())
}
