//! `weft-proxy`: the service proxy alone, with `weft proxy`'s flags and
//! none of weft's other commands. Built with the `lean` profile (`cargo
//! build --profile lean -p weft-proxy --bin weft-proxy`, as weft's image
//! carries it) it has 4.8 MB of text against `weft`'s 15.5 MB; the mapped
//! binary is a large part of a proxy's resident memory.

fn main() -> std::process::ExitCode {
    weft_proxy::cli::main()
}
