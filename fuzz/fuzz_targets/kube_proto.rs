//! The decoder of the API server's protobuf lists and watches
//! (`weft_core::kube_proto`, shared by every kind), through the agent's
//! Node kind (`weft_core::kube_node::proto`): a list streamed in chunks,
//! watch frames, one enveloped object or error Status. Input: the first
//! byte picks what the rest is and how it is cut into the chunks a socket
//! would deliver.
//!
//! What must hold: no panic; the same bytes give the same items whatever
//! the chunking; a list never gives more than `MAX_LIST_ITEMS` Nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::kube_node::annotations::{pod_cidrs, AnnotationNames};
use weft_core::kube_node::proto::{
    decode_object, ListDecoder, ListItem, Node, WatchDecoder, MAX_LIST_ITEMS,
};

fn list(bytes: &[u8], chunk: usize) -> Result<Vec<ListItem<Node>>, String> {
    let mut d = ListDecoder::default();
    let mut out = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        d.push(c);
        while let Some(item) = d.next_item()? {
            out.push(item);
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(how >> 2) + 1;
    match how & 3 {
        0 => {
            let whole = list(bytes, bytes.len());
            let cut = list(bytes, chunk);
            if let (Ok(a), Ok(b)) = (&whole, &cut) {
                assert_eq!(a, b, "chunking changed the items");
                let nodes = a.iter().filter(|i| matches!(i, ListItem::Item(_))).count();
                assert!(nodes <= MAX_LIST_ITEMS);
            }
            // what the agent does with each Node read
            let names = AnnotationNames::new("flannel.alpha.coreos.com").expect("default prefix");
            for item in whole.into_iter().flatten() {
                if let ListItem::Item(n) = item {
                    let v = n.view();
                    let _ = pod_cidrs(&v);
                    let _ = names.lease_of(&v, true, true);
                }
            }
        }
        1 => {
            let mut d = WatchDecoder::default();
            for c in bytes.chunks(chunk) {
                d.push(c);
                while let Ok(Some(_)) = d.next_event() {}
            }
        }
        _ => {
            let _ = decode_object(bytes);
            let _ = weft_core::kube_proto::decode_status(bytes);
        }
    }
});
