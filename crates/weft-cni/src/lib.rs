//! flannel's CNI plugin: reads the node's subnet file and delegates to the
//! `bridge` plugin with `host-local` IPAM over the node subnet and a route
//! to the cluster network. The delegated config is saved per container so
//! DEL works after the subnet file is gone.
//!
//! [`conf`] is pure (netconf in, delegate conf out); [`plugin`] does the
//! I/O (environment, files, executing the delegate).

pub mod conf;
pub mod error;
pub mod plugin;

pub use error::CniError;
pub use plugin::{run, CniEnv};

/// CNI spec versions this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// The plugin as a program: CNI's environment and stdin in, the result or
/// a CNI error JSON on stdout, nothing on stderr, exit 1 on error. Both
/// `weft` (invoked as `flannel`) and the static `flannel` binary run this.
pub fn main() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let env = CniEnv::from_process();
    let mut stdin = Vec::new();
    if env.command.as_deref() != Some("VERSION") {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let (out, code) = match run(&env, &stdin) {
        Ok(out) => (out, std::process::ExitCode::SUCCESS),
        Err(e) => (
            e.to_json(&conf::version_of(&stdin)),
            std::process::ExitCode::FAILURE,
        ),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    code
}
