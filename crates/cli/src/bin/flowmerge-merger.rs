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
    worker::main("flowmerge-merger", run()).await
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
