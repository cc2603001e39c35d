//! Reading a whole key prefix in pages, all at one revision: a single
//! range response is capped by gRPC's 4 MiB message limit (about 25,000
//! leases or 5,000 services with their endpoints).

use etcd_client::{Client, GetOptions, KeyValue};

/// Keys per page: well under the message limit for any value weft writes.
pub const PAGE: i64 = 2000;

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // the whole keyspace
}

/// Every key under `prefix` (sorted by key) and the revision they were read at.
pub async fn get_prefix(
    client: &mut Client,
    prefix: &str,
) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
    let end = prefix_end(prefix.as_bytes());
    let mut out = Vec::new();
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let mut resp = client.get(from.clone(), Some(opts)).await?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        let more = resp.more();
        let kvs = resp.take_kvs();
        let Some(last) = kvs.last() else { break };
        // Continue just after the last key of this page.
        from = last.key().to_vec();
        from.push(0);
        out.extend(kvs);
        if !more {
            break;
        }
    }
    Ok((out, revision))
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
