//! `flannel` (CNI plugin) / `weft cni`: the protocol edge. The result or a
//! CNI error JSON goes to stdout; nothing to stderr; exit 1 on error.

use std::io::{Read, Write};
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let env = weft_cni::CniEnv::from_process();
    let mut stdin = Vec::new();
    if env.command.as_deref() != Some("VERSION") {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let (out, code) = match weft_cni::run(&env, &stdin) {
        Ok(out) => (out, ExitCode::SUCCESS),
        Err(e) => (
            e.to_json(&weft_cni::conf::version_of(&stdin)),
            ExitCode::FAILURE,
        ),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    code
}
