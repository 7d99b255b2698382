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
    worker::start_or_exit("flowmerge-mapper");
    // One line per problem: the error is logged once (by run_service), never printed again by
    // `main` (which would add a backtrace when RUST_BACKTRACE is set).
    if let Err(e) = flowmerge_telemetry::check_log_filter() {
        eprintln!("flowmerge-mapper: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match flowmerge_telemetry::run_service("flowmerge-mapper", run()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
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
