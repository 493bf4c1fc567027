//! Entry point of `cocoon-dev`: parse the command line, run it.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cocoon_dev::cli::Cli::parse();
    cocoon_operator::telemetry::init(cli.log_json);
    match cocoon_dev::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
