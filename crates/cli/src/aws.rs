//! `flowmerge aws ...`: helpers for running the AWS workers on an emulator or a trial account.

use anyhow::Result;
use clap::{Args, Subcommand};
use flowmerge_aws::bootstrap::{BootstrapRequest, bootstrap};
use flowmerge_aws::clients;

#[derive(Args, Debug)]
pub struct AwsArgs {
    #[command(subcommand)]
    pub command: AwsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AwsCommand {
    /// Create (idempotently) the buckets, queues with DLQs, S3 notification and DynamoDB table the
    /// workers need, on any AWS-compatible endpoint; print the workers' environment.
    Bootstrap(BootstrapArgs),
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// Bucket the raw flow logs land in (created if missing; its ObjectCreated events go to the raw queue).
    #[arg(long)]
    pub raw_bucket: String,
    /// Where merged Parquet goes: s3://BUCKET/PREFIX (bucket created if missing).
    #[arg(long)]
    pub output: String,
    /// Prefix of the queue and table names.
    #[arg(long, default_value = "flowmerge")]
    pub name: String,
}

pub async fn run(args: AwsArgs) -> Result<()> {
    match args.command {
        AwsCommand::Bootstrap(b) => {
            let sdk = clients::sdk_config().await;
            let done = bootstrap(
                &sdk,
                &BootstrapRequest {
                    raw_bucket: b.raw_bucket,
                    output: b.output,
                    name: b.name,
                },
            )
            .await?;
            print!("{}", done.exports());
            Ok(())
        }
    }
}
