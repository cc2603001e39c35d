pub mod agent;
pub mod cleanup;
pub mod cni;
pub mod demo;
pub mod docker_opts;
pub mod doctor;
pub mod install;
pub mod kube_args;
pub mod qos;
pub mod service;
pub mod status;

use std::process::ExitCode;

/// Prints an error chain on one line and maps it to exit status 1.
pub fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {}", weft_kube::chain_words(&e));
            ExitCode::FAILURE
        }
    }
}

/// Left-aligned columns separated by three spaces (kubectl's look).
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
