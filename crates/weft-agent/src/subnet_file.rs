//! Reading the previous and writing the new subnet file, atomically.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::net::IpAddr;

use anyhow::Context;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_core::lease::LeaseKey;
use weft_core::subnet::first_host;
use weft_core::subnet_file::SubnetEnv;

use weft_core::subnet::Pools;

/// Writes `contents` to `path` via a temporary file and a rename, mode
/// 0644, creating the directory if needed. Readers never see a half file.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "subnet.env".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The subnets recorded in an existing subnet file, if readable.
pub fn previous_subnets(path: &Path) -> (Option<Ipv4Net>, Option<Ipv6Net>) {
    let env = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| SubnetEnv::parse(&t).ok())
        .unwrap_or_default();
    (
        env.subnet.map(|s| s.trunc()),
        env.ipv6_subnet.map(|s| s.trunc()),
    )
}

/// Writes this host's subnet file: the network and subnet per family
/// (the subnet's first address, as flanneld writes it), MTU and masquerading.
pub fn write(
    path: &Path,
    pools: &Pools,
    key: LeaseKey,
    mtu: u32,
    ipmasq: bool,
) -> anyhow::Result<()> {
    let mut env = SubnetEnv {
        mtu: Some(mtu),
        ipmasq: Some(ipmasq),
        ..Default::default()
    };
    if let (Some(pool), Some(subnet)) = (&pools.v4, key.v4) {
        if let (IpNet::V4(network), IpAddr::V4(host)) =
            (pool.network(), first_host(&IpNet::V4(subnet)))
        {
            env.network = Some(network);
            env.subnet = Some(Ipv4Net::new(host, subnet.prefix_len())?);
        }
    }
    if let (Some(pool), Some(subnet)) = (&pools.v6, key.v6) {
        if let (IpNet::V6(network), IpAddr::V6(host)) =
            (pool.network(), first_host(&IpNet::V6(subnet)))
        {
            env.ipv6_network = Some(network);
            env.ipv6_subnet = Some(Ipv6Net::new(host, subnet.prefix_len())?);
        }
    }
    write_atomic(path, &env.render()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_previous_subnet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/flannel/subnet.env");
        let env = SubnetEnv {
            network: Some("172.30.0.0/16".parse().expect("n")),
            subnet: Some("172.30.46.1/24".parse().expect("n")),
            mtu: Some(1450),
            ipmasq: Some(false),
            ..Default::default()
        };
        write_atomic(&path, &env.render()).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            previous_subnets(&path).0.map(|s| s.to_string()).as_deref(),
            Some("172.30.46.0/24")
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(previous_subnets(&dir.path().join("missing")), (None, None));
        std::fs::write(&path, "garbage line").expect("write");
        assert_eq!(previous_subnets(&path), (None, None));
    }
}
