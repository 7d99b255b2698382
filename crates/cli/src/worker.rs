//! The command line of the worker binaries: they are configured by the environment only, so
//! their flags just report — `--version`, and `--print-config-reference`, the table of every
//! variable with its default (the README's table and the compose and CDK checks come from it).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A flowmerge worker, configured by FLOWMERGE_* variables (see --print-config-reference)."
)]
struct WorkerArgs {
    /// Print every configuration variable with its worker, default and meaning (Markdown) and exit.
    #[arg(long)]
    print_config_reference: bool,
}

/// Handles the flags; returns when the worker should start. Exits for `--version`, `--help` and
/// `--print-config-reference` (0) and for an unknown flag (2).
fn start_or_exit(name: &'static str) {
    let args = WorkerArgs::command_for(name);
    if args.print_config_reference {
        print!("{}", flowmerge_aws::config::reference_markdown());
        std::process::exit(0);
    }
}

/// A worker's whole life: its flags, the log filter, then `service` under telemetry. One line per
/// problem: an error is logged once (by `run_service`) and never printed again by `main`, which
/// would add a backtrace when RUST_BACKTRACE is set.
pub async fn main(
    name: &'static str,
    service: impl Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    start_or_exit(name);
    if let Err(e) = flowmerge_telemetry::check_log_filter() {
        eprintln!("{name}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match flowmerge_telemetry::run_service(name, service).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

impl WorkerArgs {
    fn command_for(name: &'static str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().name(name).bin_name(name).get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}
