//! tracing to stderr, text or JSON.

use tracing_subscriber::EnvFilter;

use imgclass::cli::LogFormat;

pub fn init(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "info,ort=warn,tract=warn",
        1 => "debug,ort=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
