//! `flowmerge`: merge small VPC flow log objects into few large, partitioned Parquet files.

mod aws;
mod compact;
mod ddl;
mod generate;
mod rollup;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// polars allocates and frees many small buffers from several thread pools; mimalloc is markedly
// faster than glibc malloc for that and returns memory instead of fragmenting per-thread arenas.
// It is built without asking for transparent huge pages (the workspace's `no_thp`: see
// docs/architecture.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code when every batch committed but some objects were quarantined.
const EXIT_QUARANTINED: u8 = 3;
/// Exit code on failure (a batch or the run itself failed): running again may succeed.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a bad command line or configuration: running again will fail the same way.
const EXIT_USAGE: u8 = 2;

/// A mistake in the command line or the configuration (a typo in a flag, a missing bucket, an
/// unsupported URL). It exits 2, not 1, so that a wrapper that retries failures does not retry it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A [`UsageError`] as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Whether `e` (or any error in its chain) is a usage error.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<UsageError>())
}

#[derive(Parser, Debug)]
#[command(name = "flowmerge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Merge raw flow logs from INPUT into partitioned Parquet under OUTPUT (incremental).
    Compact(compact::CompactArgs),
    /// Compact closed partitions of OUTPUT's tables into one file each (or parts).
    Rollup(rollup::RollupArgs),
    /// Generate realistic raw flow log objects in AWS's layout.
    Gen(generate::GenArgs),
    /// Print the CREATE TABLE for compact's output (Athena, or Spark/Hive with --dialect hive).
    Ddl(ddl::DdlArgs),
    /// AWS helpers: `aws bootstrap` creates what the mapper and merger need.
    Aws(aws::AwsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = flowmerge_telemetry::check_log_filter() {
        eprintln!("flowmerge: error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cli.command.blocking_threads())
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowmerge: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Logs to stderr (stdout is the summary); spans exported when OTEL_* configures it.
    let telemetry = {
        let _rt = runtime.enter();
        flowmerge_telemetry::init(
            "flowmerge",
            flowmerge_telemetry::LogFormat::Text,
            flowmerge_telemetry::LogTarget::Stderr,
            "warn",
        )
    };
    let code = match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowmerge: error: {e:#}");
            ExitCode::from(match is_usage(&e) {
                true => EXIT_USAGE,
                false => EXIT_FAILURE,
            })
        }
    };
    {
        let _rt = runtime.enter();
        telemetry.shutdown();
    }
    code
}

impl Command {
    /// The most threads tokio starts for blocking work. A local file is read on one (object_store
    /// reads it with `spawn_blocking`), and each thread keeps an allocator heap of its own: with
    /// tokio's default of 512, compacting the benchmark's 720 local files started some 80 threads
    /// and held about 100 MiB more. A batch being merged holds one such thread while it waits for
    /// its objects, and its write another, so two per batch merged at once are kept free of the
    /// reads, which get 8 more.
    fn blocking_threads(&self) -> usize {
        const READS: usize = 8;
        match self {
            Command::Compact(compact::CompactArgs { concurrency, .. })
            | Command::Rollup(rollup::RollupArgs { concurrency, .. }) => {
                concurrency.saturating_mul(2).saturating_add(READS)
            }
            // tokio's default.
            Command::Gen(_) | Command::Ddl(_) | Command::Aws(_) => 512,
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Compact(args) => {
            let json = args.json;
            let summary = compact::run(args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", compact::render(&summary));
            }
            Ok(if summary.batches_failed > 0 {
                ExitCode::from(EXIT_FAILURE)
            } else if summary.objects_quarantined > 0 {
                ExitCode::from(EXIT_QUARANTINED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Rollup(args) => {
            let json = args.json;
            let summary = rollup::run(args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", rollup::render(&summary));
            }
            Ok(match summary.failures.is_empty() {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(EXIT_FAILURE),
            })
        }
        Command::Gen(args) => {
            let s = generate::run(args).await?;
            println!(
                "generated {} objects, {} records, {} bytes (gzip)",
                s.objects, s.records, s.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ddl(args) => {
            print!("{}", ddl::render(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Aws(args) => {
            aws::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
