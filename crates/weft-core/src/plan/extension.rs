//! What the extension backend's per-lease commands are run for: a remote
//! lease added or changed runs SubnetAddCommand, one removed runs
//! SubnetRemoveCommand, each with the lease's SUBNET, PUBLIC_IP and
//! BackendData. flanneld runs the add command again on every event of a
//! lease, renewals included; weft runs it when something the command
//! receives changed, so a renewal or a re-list runs nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::relisting::Relisting;
use crate::lease::{Lease, LeaseError, LeaseKey};

/// Which of the two per-lease commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Add,
    Remove,
}

/// One run of a per-lease command: its variables and its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub kind: CallKind,
    /// SUBNET, as flanneld prints the lease's IPv4 subnet (`0.0.0.0/0`
    /// for a lease without one).
    pub subnet: String,
    /// PUBLIC_IP.
    pub public_ip: Ipv4Addr,
    /// The lease's BackendData string (the owner's PreStartupCommand output).
    pub stdin: String,
}

impl Call {
    /// The environment variables flanneld sets for the command.
    pub fn vars(&self) -> [(&'static str, String); 2] {
        [
            ("SUBNET", self.subnet.clone()),
            ("PUBLIC_IP", self.public_ip.to_string()),
        ]
    }
}

/// The remote leases the add command has run for, by key.
#[derive(Debug, Default)]
pub struct ExtensionPeers {
    /// What the add command last received for each lease.
    known: HashMap<LeaseKey, Call>,
    /// Leases named since [`ExtensionPeers::begin_reset`].
    relisting: Relisting,
}

impl ExtensionPeers {
    /// A remote lease appeared or changed: the add call to run, if what it
    /// receives differs from the last run. Leases of another backend and
    /// BackendData that is not a JSON string are refused (flanneld skips
    /// them too).
    pub fn upsert(&mut self, lease: &Lease) -> Result<Option<Call>, LeaseError> {
        self.relisting.note(lease.key);
        let key = lease.key.to_string();
        let backend = lease.attrs.backend_type.as_deref().unwrap_or("");
        if backend != "extension" {
            return Err(LeaseError::Value {
                key,
                field: "BackendType",
                msg: format!("{backend:?} is not extension; lease ignored"),
            });
        }
        let call = Call {
            kind: CallKind::Add,
            subnet: subnet_var(&lease.key),
            public_ip: lease.attrs.public_ip,
            stdin: lease.attrs.extension_data(&key)?,
        };
        if self.known.get(&lease.key) == Some(&call) {
            return Ok(None);
        }
        self.known.insert(lease.key, call.clone());
        Ok(Some(call))
    }

    /// A remote lease went away: the remove call, with what the add
    /// command last received, if it ran for this lease.
    pub fn remove(&mut self, key: &LeaseKey) -> Option<Call> {
        self.known.remove(key).map(|mut call| {
            call.kind = CallKind::Remove;
            call
        })
    }

    /// A full listing follows; leases it does not hold are removed at
    /// [`ExtensionPeers::end_reset`].
    pub fn begin_reset(&mut self) {
        self.relisting.begin();
    }

    /// The remove calls for leases the listing did not hold.
    pub fn end_reset(&mut self) -> Vec<Call> {
        let gone = self.relisting.end(self.known.keys());
        gone.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Leases the add command has run for.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// Go's `ip.IP4Net` printed: the zero value is `0.0.0.0/0`.
fn subnet_var(key: &LeaseKey) -> String {
    key.v4
        .map_or_else(|| "0.0.0.0/0".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseAttrs;

    fn lease(key: &str, ip: &str, data: Option<&str>) -> Lease {
        Lease {
            key: key.parse().expect("key"),
            attrs: LeaseAttrs::extension(ip.parse().expect("ip"), None, data),
        }
    }

    #[test]
    fn add_runs_once_per_change_and_remove_gets_what_add_got() {
        let mut p = ExtensionPeers::default();
        let a = lease("172.30.5.0-24", "198.18.0.12", Some("mac 1"));
        let call = p.upsert(&a).expect("usable").expect("new lease runs add");
        assert_eq!(call.kind, CallKind::Add);
        assert_eq!(
            call.vars(),
            [
                ("SUBNET", "172.30.5.0/24".to_string()),
                ("PUBLIC_IP", "198.18.0.12".to_string())
            ]
        );
        assert_eq!(call.stdin, "mac 1");
        assert_eq!(p.upsert(&a).expect("usable"), None, "renewal runs nothing");
        let moved = lease("172.30.5.0-24", "198.18.0.13", Some("mac 1"));
        let again = p.upsert(&moved).expect("usable").expect("changed");
        assert_eq!(again.public_ip.to_string(), "198.18.0.13");
        let gone = p.remove(&moved.key).expect("remove runs");
        assert_eq!(gone.kind, CallKind::Remove);
        assert_eq!(gone.public_ip.to_string(), "198.18.0.13");
        assert_eq!(p.remove(&moved.key), None, "removed once");
    }

    #[test]
    fn other_backends_and_odd_data_are_refused() {
        let mut p = ExtensionPeers::default();
        let mut vx = lease("172.30.6.0-24", "198.18.0.12", None);
        vx.attrs.backend_type = Some("vxlan".into());
        let e = p.upsert(&vx).expect_err("vxlan lease");
        assert!(e.to_string().contains("\"vxlan\" is not extension"), "{e}");
        let mut odd = lease("172.30.7.0-24", "198.18.0.12", None);
        odd.attrs.backend_data = serde_json::value::to_raw_value(&[1, 2]).ok();
        assert!(p.upsert(&odd).is_err());
        assert!(p.is_empty());
    }

    #[test]
    fn a_listing_removes_what_it_does_not_hold() {
        let mut p = ExtensionPeers::default();
        let a = lease("172.30.5.0-24", "198.18.0.12", None);
        let b = lease("172.30.6.0-24", "198.18.0.13", None);
        p.upsert(&a).expect("a");
        p.upsert(&b).expect("b");
        p.begin_reset();
        assert_eq!(p.upsert(&a).expect("a"), None);
        let removed = p.end_reset();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].subnet, "172.30.6.0/24");
        assert_eq!(p.len(), 1);
    }
}
