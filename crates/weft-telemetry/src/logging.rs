//! Log set-up: human-readable by default, JSON on request; `RUST_LOG`
//! (`level` or `target=level,…`) overrides the verbosity given by `-v`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(verbosity: u8, json: bool) {
    let level = match verbosity {
        0 => "info",
        1..=4 => "debug",
        _ => "trace",
    };
    // The Kubernetes client's own logs are Debug dumps of its errors; the
    // proxy reports them itself, in words. They show at -v 5 and up.
    let quiet = if verbosity >= 5 { "trace" } else { "off" };
    let default = format!(
        "{level},h2=warn,tower=warn,hyper=warn,tonic=warn,hyper_util={quiet},rustls={quiet},kube={quiet},kube_client={quiet},kube_runtime={quiet}"
    );
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .or_else(|| default.parse().ok())
        .unwrap_or_default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        tracing_subscriber::registry()
            .with(fmt.json())
            .with(filter)
            .init();
    } else {
        tracing_subscriber::registry().with(fmt).with(filter).init();
    }
}
