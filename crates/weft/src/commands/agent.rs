//! `weft agent` / `flanneld`.

use std::process::ExitCode;

use weft_agent::flags::parse_flanneld;

pub fn main(argv: Vec<String>) -> ExitCode {
    let args = match parse_flanneld(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.version {
        println!(
            "weft {} (flanneld v0.21.5 compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    crate::logging::init(args.v, args.log_format == "json");
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(weft_agent::run(args)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
