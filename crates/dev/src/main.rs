//! Entry point of `cocoon-dev`: parse the command line, run it.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cocoon_dev::cli::Cli::parse();
    match cli.log_file() {
        // The demo prints its progress on the terminal; its logs go to a file it names.
        Some(path) => match cocoon_dev::cli::open_log(&path) {
            Ok(file) => cocoon_operator::telemetry::init_to(cli.log_json, file),
            Err(e) => {
                eprintln!("error: cannot write the log file {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        },
        None => cocoon_operator::telemetry::init(cli.log_json),
    }
    match cocoon_dev::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
