//! `flowmerge-mapper`: raw-queue S3 events → claimed batches → merge jobs. Configured only by
//! the environment (README, "Configuration"); exits 0 after SIGTERM/SIGINT once it has flushed
//! the batches it holds.

use anyhow::Context;
use flowmerge_aws::{clients, config, mapper::Mapper, shutdown::Shutdown};

#[path = "../worker.rs"]
mod worker;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    worker::main("flowmerge-mapper", run()).await
}

async fn run() -> anyhow::Result<()> {
    let cfg = config::process_env().mapper()?;
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let sdk = clients::sdk_config().await;
    let work = flowmerge_aws::store::s3_bucket(&cfg.common.work.bucket)?;
    let mapper = Mapper::new(cfg, clients::sqs(&sdk), clients::dynamodb(&sdk), work).await?;
    mapper.run(shutdown).await?;
    tracing::info!("mapper stopped");
    Ok(())
}
