//! `CommandLine::parse` and `expand`: the extension backend's command
//! lines from the network config, with variables from the environment
//! and from other hosts' leases. Input: the line's text; the text after
//! the first NUL (if any) is the value every variable expands to. Besides
//! "no panic": expansion never adds or removes a field (values with
//! spaces or shell syntax stay one argument), and a field without `$` is
//! left as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::command::CommandLine;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, value) = text.split_once('\0').unwrap_or((text, "v a;l $(x)"));
    let Some(cmd) = CommandLine::parse(line) else {
        assert!(line.trim().is_empty(), "{line:?} has fields");
        return;
    };
    let expanded = cmd.expand(|_| Some(value.to_string()));
    assert_eq!(expanded.len(), cmd.fields().len(), "fields of {line:?}");
    for (field, out) in cmd.fields().iter().zip(&expanded) {
        assert!(!field.is_empty() && !field.contains(char::is_whitespace));
        if !field.contains('$') {
            assert_eq!(field, out);
        }
    }
});
