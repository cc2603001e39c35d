//! Applies `iptables-restore --noflush` text from stdin with weft's own
//! x_tables writer and prints how long it took, for timing it against
//! `iptables-legacy-restore` by hand: `cargo run --release -p weft-proxy
//! --example render -- iptables-legacy 10000 10 > rules; ip netns exec X
//! target/release/examples/xtables_restore [-6] < rules`.

use std::io::Read;
use std::time::Instant;

use weft_firewall::xtables::{self, Family};

fn main() {
    let v6 = std::env::args().any(|a| a == "-6");
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("reading stdin: {e}");
        std::process::exit(2);
    }
    let t = Instant::now();
    match xtables::restore(if v6 { Family::V6 } else { Family::V4 }, &text) {
        Ok(r) => println!(
            "{} tables, {} bytes of entries, {:.3} s ({:.3} s in the kernel's replace)",
            r.tables,
            r.bytes,
            t.elapsed().as_secs_f64(),
            r.kernel.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
