//! `weft_core::vici::decode_reply`: charon's answers on the VICI socket,
//! which the ipsec backend reads. Besides "no panic": a decoded reply is
//! accepted exactly when `success` is `yes`, and a refusal's text carries
//! charon's message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::vici::decode_reply;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = decode_reply(data) else {
        return;
    };
    let yes = reply.success == "yes";
    let msg = reply.errmsg.clone();
    match reply.check() {
        Ok(()) => assert!(yes),
        Err(e) => {
            assert!(!yes);
            if let Some(m) = msg {
                assert!(e.contains(&m));
            }
        }
    }
});
