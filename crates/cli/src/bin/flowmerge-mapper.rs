//! `flowmerge-mapper`: raw-queue S3 events → claimed batches → merge jobs. Configured only by
//! the environment (README, "Configuration"); exits 0 after SIGTERM/SIGINT once it has flushed
//! the batches it holds.

use anyhow::Context;
use flowmerge_aws::{clients, config, mapper::Mapper, shutdown::Shutdown};
use flowmerge_telemetry::{LogFormat, LogTarget};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = flowmerge_telemetry::init(
        "flowmerge-mapper",
        LogFormat::detect(),
        LogTarget::Stdout,
        "info",
    );
    let result = run().await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "mapper failed");
    }
    // Flushing may block on the exporter's HTTP client: off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn run() -> anyhow::Result<()> {
    let cfg = config::process_env().mapper()?;
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let sdk = clients::sdk_config().await;
    let work = flowmerge_core::store::s3_bucket(&cfg.common.work.bucket)?;
    let mapper = Mapper::new(cfg, clients::sqs(&sdk), clients::dynamodb(&sdk), work).await?;
    mapper.run(shutdown).await?;
    tracing::info!("mapper stopped");
    Ok(())
}
