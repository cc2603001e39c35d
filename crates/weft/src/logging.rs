//! Log set-up: human-readable by default, JSON on request; `RUST_LOG`
//! overrides the verbosity given by klog's `-v`.

use tracing_subscriber::EnvFilter;

pub fn init(verbosity: u8, json: bool) {
    let level = match verbosity {
        0 => "info",
        1..=4 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},h2=warn,tower=warn,hyper=warn,tonic=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
