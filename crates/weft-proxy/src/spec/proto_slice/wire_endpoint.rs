//! One endpoint of an EndpointSlice, decoded by hand instead of by
//! prost's derive. A listing of 250,000 endpoints decodes a quarter of a
//! million of these, and every endpoint change decodes a slice of them.
//! The derived decoder allocated three times for each endpoint (the
//! address list, the address, the node name), and the check freed all
//! three moments later. Here an address's text stays inline, since every
//! IP address fits, and the node name is looked up from the wire's bytes
//! in the process's table of shared names ([`node_name`]), without a copy
//! of its own. Measured against the derived decoder, lean builds in turn:
//! churn at 10,000 Services used 1.68 and 1.75 CPU s against 1.76 and
//! 1.81 s (docs/benchmarks.md). The rest of the slice is still derived.
//! The bytes are untrusted (the fuzz target `proto_slice` covers them).

use std::cell::RefCell;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use smallvec::SmallVec;

use super::Conditions;
use crate::spec::leaf::WireText;
use crate::spec::shared_text::{node_name, NodeName};

/// `discovery.k8s.io/v1` Endpoint: the fields the proxy reads (1
/// addresses, 2 conditions, 6 nodeName); the others are skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProtoEndpoint {
    pub addresses: SmallVec<[WireText; 1]>,
    pub conditions: Option<Conditions>,
    pub node_name: Option<NodeName>,
}

/// A string field's text handed to `take`, read into a buffer each
/// thread reuses (prost's own reader, so its checks and errors).
fn read_text<T>(
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
    take: impl FnOnce(&str) -> T,
) -> Result<T, DecodeError> {
    thread_local! {
        static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
    }
    TEXT.with_borrow_mut(|text| {
        encoding::string::merge(wire_type, text, buf, ctx)?;
        let out = take(text);
        if text.capacity() > 4096 {
            // a long (wrong) value's buffer is not kept
            *text = String::new();
        }
        Ok(out)
    })
}

fn put_text(tag: u32, text: &str, buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(text.len() as u64, buf);
    buf.put_slice(text.as_bytes());
}

fn text_len(tag: u32, text: &str) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(text.len() as u64) + text.len()
}

impl Message for ProtoEndpoint {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for a in &self.addresses {
            put_text(1, a.as_str(), buf);
        }
        if let Some(c) = &self.conditions {
            encoding::message::encode(2, c, buf);
        }
        if let Some(n) = &self.node_name {
            put_text(6, n, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let address = read_text(wire_type, buf, ctx.clone(), |a| WireText::from(a))?;
                self.addresses.push(address);
                Ok(())
            }
            2 => {
                let conditions = self.conditions.get_or_insert_with(Conditions::default);
                encoding::message::merge(wire_type, conditions, buf, ctx)
            }
            6 => {
                self.node_name = Some(read_text(wire_type, buf, ctx, node_name)?);
                Ok(())
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let addresses: usize = self.addresses.iter().map(|a| text_len(1, a.as_str())).sum();
        let conditions = self
            .conditions
            .as_ref()
            .map_or(0, |c| encoding::message::encoded_len(2, c));
        let node = self.node_name.as_ref().map_or(0, |n| text_len(6, n));
        addresses + conditions + node
    }

    fn clear(&mut self) {
        *self = ProtoEndpoint::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole `discovery.k8s.io/v1` Endpoint as prost derives it
    /// (k8s.io/api discovery/v1 generated.proto), fields the proxy skips
    /// included.
    #[derive(Clone, PartialEq, Message)]
    struct WholeEndpoint {
        #[prost(string, repeated, tag = "1")]
        addresses: Vec<String>,
        #[prost(message, optional, tag = "2")]
        conditions: Option<Conditions>,
        #[prost(string, optional, tag = "3")]
        hostname: Option<String>,
        #[prost(bytes = "vec", optional, tag = "4")]
        target_ref: Option<Vec<u8>>,
        #[prost(btree_map = "string, string", tag = "5")]
        deprecated_topology: std::collections::BTreeMap<String, String>,
        #[prost(string, optional, tag = "6")]
        node_name: Option<String>,
        #[prost(string, optional, tag = "7")]
        zone: Option<String>,
    }

    fn whole() -> WholeEndpoint {
        WholeEndpoint {
            addresses: vec!["172.30.1.2".into(), "x".repeat(200)],
            conditions: Some(Conditions {
                ready: Some(true),
                serving: Some(false),
                terminating: None,
            }),
            hostname: Some("web-0".into()),
            target_ref: Some(b"\x0a\x03Pod".to_vec()),
            deprecated_topology: [("zone".to_string(), "a".to_string())].into(),
            node_name: Some("n1".into()),
            zone: Some("a".into()),
        }
    }

    #[test]
    fn reads_what_the_derived_decoder_reads_and_skips_the_rest() {
        let bytes = whole().encode_to_vec();
        let e = ProtoEndpoint::decode(bytes.as_slice()).expect("decodes");
        let texts: Vec<&str> = e.addresses.iter().map(WireText::as_str).collect();
        assert_eq!(texts, ["172.30.1.2", "x".repeat(200).as_str()]);
        assert!(matches!(e.addresses[0], WireText::Short(_)));
        assert!(matches!(e.addresses[1], WireText::Long(_)));
        assert_eq!(e.conditions, whole().conditions);
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        assert!(e.node_name == Some(node_name("n1")), "the shared copy");

        // what it encodes is what it read, as the derived decoder reads it
        let again = WholeEndpoint::decode(e.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(again.addresses, whole().addresses);
        assert_eq!(again.conditions, whole().conditions);
        assert_eq!(again.node_name, whole().node_name);
        assert_eq!(e.encoded_len(), e.encode_to_vec().len());
    }

    #[test]
    fn bad_bytes_are_errors() {
        let mut bytes = WholeEndpoint {
            addresses: vec!["ab".into()],
            ..WholeEndpoint::default()
        }
        .encode_to_vec();
        bytes[2] = 0xff; // not UTF-8
        assert!(ProtoEndpoint::decode(bytes.as_slice()).is_err());
        let bytes = whole().encode_to_vec();
        for end in 0..bytes.len() {
            // cut anywhere: an error or a shorter endpoint, never a panic
            let _ = ProtoEndpoint::decode(&bytes[..end]);
        }
        // an address field of the wrong wire type
        assert!(ProtoEndpoint::decode(&[0x08, 0x01][..]).is_err());
    }
}
