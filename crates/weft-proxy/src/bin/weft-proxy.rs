//! `weft-proxy`: the service proxy alone, with `weft proxy`'s flags and
//! none of weft's other commands. Built with the `proxy` profile (`cargo
//! build --profile proxy -p weft-proxy --bin weft-proxy`) it maps about
//! 60 % of `weft`'s code, which is a third of a proxy's resident memory on
//! a small cluster.

fn main() -> std::process::ExitCode {
    weft_proxy::cli::main()
}
