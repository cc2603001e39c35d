//! `weft-proxy`: the service proxy alone, with `weft proxy`'s flags and
//! none of weft's other commands. Built with the `proxy` profile (`cargo
//! build --profile proxy -p weft-proxy --bin weft-proxy`) it has 8.7 MB of
//! text against `weft`'s 15.5 MB; at 15,000 endpoints the mapped binary is
//! about half of a proxy's resident memory.

fn main() -> std::process::ExitCode {
    weft_proxy::cli::main()
}
