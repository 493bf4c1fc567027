//! Structured logs through tracing: `RUST_LOG` filters, `--log-json` switches to JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once, logging to stderr; later calls are ignored (tests call
/// it repeatedly).
pub fn init(json: bool) {
    init_to(json, std::io::stderr);
}

/// Installs the global subscriber once, logging to `writer` (a tool that prints its own
/// progress on the terminal sends its logs to a file).
pub fn init_to<W>(json: bool, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
