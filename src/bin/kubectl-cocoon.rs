//! `kubectl-cocoon`: the kubectl plugin (`kubectl cocoon status|hibernate|wake|suspend|resume|scale`).
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = cocoon_operator::plugin::PluginCli::parse();
    match cocoon_operator::plugin::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
