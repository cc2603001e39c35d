//! kube-proxy's configuration file as `weft proxy --config` reads it
//! (`weft_proxy::config_file`). Input: the file's text.
//!
//! What must hold: no panic; errors are one line naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = std::path::Path::new("config.conf");
    if let Err(e) = weft_proxy::config_file::parse(text, file) {
        let msg = e.to_string();
        assert!(msg.starts_with("--config config.conf"), "{msg}");
    }
    for value in text.lines().take(4) {
        let _ = weft_proxy::config_file::bind_address(value, 10256, "--healthz-bind-address");
        let _ = weft_core::duration::parse(value);
    }
});
