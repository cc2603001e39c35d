//! Paged prefix reads against a real etcd in a network namespace: more
//! keys than one page, and more bytes than one gRPC message may carry.

use std::path::Path;

use etcd_client::{Client, Txn, TxnOp};
use weft_lab::{in_netns, Lab};

#[test]
fn listing_spans_pages_and_the_message_limit_at_one_revision() {
    let mut lab = Lab::new("wpg", Path::new("/bin/false")).expect("lab (needs root)");
    lab.start_etcd().expect("etcd");
    let ns = lab.etcd_ns().expect("ns");
    let (count, revision, sorted, late) = in_netns(&ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let mut c = Client::connect(["http://127.0.0.1:2379"], None)
                    .await
                    .expect("connect");
                // 5,000 values of 1 KiB: 5 MiB, over gRPC's 4 MiB limit.
                let value = "x".repeat(1024);
                let ops: Vec<TxnOp> = (0..5000)
                    .map(|i| TxnOp::put(format!("/p/k{i:05}"), value.clone(), None))
                    .collect();
                for chunk in ops.chunks(100) {
                    c.txn(Txn::new().and_then(chunk.to_vec()))
                        .await
                        .expect("txn");
                }
                c.put("/q", "outside", None).await.expect("put");
                let (kvs, rev) = weft_etcd::paged::get_prefix(&mut c, "/p/")
                    .await
                    .expect("list");
                let sorted = kvs.windows(2).all(|w| w[0].key() < w[1].key());
                let late = c
                    .put("/p/zz", "later", None)
                    .await
                    .expect("put")
                    .header()
                    .map(|h| h.revision());
                (kvs.len(), rev, sorted, late)
            })
    })
    .expect("in netns");
    assert_eq!(count, 5000);
    assert!(sorted);
    assert!(late > Some(revision));
}
