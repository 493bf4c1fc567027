//! Entry point of the `cocoon-operator` binary: parse the command line, run it.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cocoon_operator::cli::Cli::parse();
    cocoon_operator::telemetry::init(cli.log_json);
    match cocoon_operator::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
