//! The cross-platform WireGuard configuration protocol on
//! `<dir>/<device>.sock` (`/var/run/wireguard/flannel-wg.sock`), as
//! wireguard-go serves it: `wg show flannel-wg` (a `get`) and
//! `wg set flannel-wg peer …` (a `set`) work on weft's userspace devices.
//! The socket is root's alone (0600), as the kernel's netlink interface
//! asks for CAP_NET_ADMIN: `wg showconf` prints the private key.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use ipnet::IpNet;
use weft_core::{WgKey, WgSecret};

use super::device::{PeerUpdate, WgDevice};

pub const DEFAULT_DIR: &str = "/var/run/wireguard";

const EINVAL: i32 = 22;
const EPROTO: i32 = 71;

/// Serves the device's socket from a thread; returns the socket's path.
pub fn serve(dir: &Path, wg: Arc<WgDevice>) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the WireGuard socket folder {}", dir.display()))?;
    let path = dir.join(format!("{}.sock", wg.name));
    // a socket left by an agent that died is replaced
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    std::thread::Builder::new()
        .name(format!("{}-uapi", wg.name))
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                if let Err(e) = handle(conn, &wg) {
                    tracing::debug!(device = %wg.name, "configuration socket: {e}");
                }
            }
        })
        .context("starting the configuration socket's thread")?;
    Ok(path)
}

fn handle(conn: UnixStream, wg: &WgDevice) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn).lines();
    while let Some(op) = lines.next() {
        let op = op?;
        let body: Vec<String> = lines
            .by_ref()
            .map_while(|l| l.ok())
            .take_while(|l| !l.is_empty())
            .collect();
        let reply = match op.as_str() {
            "get=1" => format!("{}errno=0\n\n", get(wg)),
            "set=1" => format!("errno={}\n\n", set(wg, &body).err().unwrap_or(0)),
            "" => continue,
            _ => format!("errno={EPROTO}\n\n"),
        };
        out.write_all(reply.as_bytes())?;
    }
    Ok(())
}

/// The `get` answer (without the final errno line).
pub fn get(wg: &WgDevice) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "private_key={}", wg.secret().to_hex());
    let _ = writeln!(s, "listen_port={}", wg.udp.port());
    for peer in wg.peers() {
        let st = peer.status();
        let _ = writeln!(s, "public_key={}", st.key.to_hex());
        if let Some(psk) = peer.psk() {
            let _ = writeln!(s, "preshared_key={}", psk.to_hex());
        }
        let _ = writeln!(s, "protocol_version=1");
        if let Some(e) = st.endpoint {
            let _ = writeln!(s, "endpoint={e}");
        }
        let since = st
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(s, "last_handshake_time_sec={}", since.as_secs());
        let _ = writeln!(s, "last_handshake_time_nsec={}", since.subsec_nanos());
        let _ = writeln!(s, "tx_bytes={}", st.tx_bytes);
        let _ = writeln!(s, "rx_bytes={}", st.rx_bytes);
        let _ = writeln!(s, "persistent_keepalive_interval={}", st.keepalive);
        for ip in &st.allowed_ips {
            let _ = writeln!(s, "allowed_ip={ip}");
        }
    }
    s
}

/// Applies a `set`; the errno to answer on failure. Every line is checked
/// before anything changes.
pub fn set(wg: &WgDevice, lines: &[String]) -> Result<(), i32> {
    enum Step {
        ReplacePeers,
        Peer(WgKey, PeerUpdate, bool),
    }
    let mut steps: Vec<Step> = Vec::new();
    for line in lines {
        let (k, v) = line.split_once('=').ok_or(EPROTO)?;
        let peer = match steps.last_mut() {
            Some(Step::Peer(_, u, remove)) => Some((u, remove)),
            _ => None,
        };
        match (k, peer) {
            ("private_key", None) => {
                let key = WgSecret::from_hex(v).map_err(|_| EINVAL)?;
                if key != *wg.secret() {
                    return Err(EINVAL); // the key comes from the key file
                }
            }
            ("listen_port", None) => {
                if v.parse::<u16>().map_err(|_| EINVAL)? != wg.udp.port() {
                    return Err(EINVAL);
                }
            }
            ("fwmark", None) => {
                if v != "0" {
                    return Err(EINVAL);
                }
            }
            ("replace_peers", None) => steps.push(Step::ReplacePeers),
            ("public_key", _) => {
                let key = WgKey::from_hex(v).map_err(|_| EINVAL)?;
                steps.push(Step::Peer(key, PeerUpdate::default(), false));
            }
            ("remove", Some((_, remove))) => *remove = v == "true",
            ("update_only", Some(_)) | ("protocol_version", Some(_)) => {}
            ("preshared_key", Some((u, _))) => {
                let k = WgSecret::from_hex(v).map_err(|_| EINVAL)?;
                u.psk = Some((k.0 != [0; 32]).then_some(k));
            }
            ("endpoint", Some((u, _))) => {
                u.endpoint = Some(v.parse::<SocketAddr>().map_err(|_| EINVAL)?);
            }
            ("persistent_keepalive_interval", Some((u, _))) => {
                u.keepalive = Some(v.parse().map_err(|_| EINVAL)?);
            }
            ("replace_allowed_ips", Some((u, _))) => u.replace_allowed_ips = v == "true",
            ("allowed_ip", Some((u, _))) => {
                u.allowed_ips.push(v.parse::<IpNet>().map_err(|_| EINVAL)?)
            }
            _ => return Err(EPROTO),
        }
    }
    for step in steps {
        match step {
            Step::ReplacePeers => wg.clear_peers(),
            Step::Peer(key, _, true) => {
                wg.remove_peer(&key);
            }
            Step::Peer(key, u, false) => wg.update_peer(key, u),
        }
    }
    Ok(())
}

/// A device as its socket describes it (no keys kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    pub listen_port: u16,
    pub peers: usize,
    /// Peers with a completed handshake.
    pub handshakes: usize,
}

/// Asks the socket at `path` for the device's state (`wg show`'s question).
pub fn query(path: &Path) -> Result<DeviceState> {
    let mut conn =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(b"get=1\n\n")?;
    let mut st = DeviceState::default();
    for line in BufReader::new(conn).lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        match line.split_once('=') {
            Some(("listen_port", v)) => st.listen_port = v.parse().unwrap_or(0),
            Some(("public_key", _)) => st.peers += 1,
            Some(("last_handshake_time_sec", v)) if v != "0" => st.handshakes += 1,
            Some(("errno", v)) if v != "0" => {
                anyhow::bail!("{} answered errno {v}", path.display())
            }
            _ => {}
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::socket::Udp;

    fn device() -> WgDevice {
        let secret = WgSecret::private_from_random([7; 32]);
        WgDevice::new("wg-test", secret, Udp::bind(0).expect("udp"))
    }

    #[test]
    fn set_then_get_speaks_wg_s_protocol() {
        let wg = device();
        let peer = WgKey([9; 32]);
        let lines: Vec<String> = [
            format!("public_key={}", peer.to_hex()),
            "endpoint=198.18.0.12:51820".into(),
            "persistent_keepalive_interval=25".into(),
            "replace_allowed_ips=true".into(),
            "allowed_ip=172.30.12.0/24".into(),
        ]
        .into_iter()
        .collect();
        assert_eq!(set(&wg, &lines), Ok(()));
        let got = get(&wg);
        assert!(
            got.contains(&format!("public_key={}\n", peer.to_hex())),
            "{got}"
        );
        assert!(got.contains("endpoint=198.18.0.12:51820\n"), "{got}");
        assert!(got.contains("allowed_ip=172.30.12.0/24\n"), "{got}");
        assert!(got.contains("persistent_keepalive_interval=25\n"), "{got}");
        assert!(got.contains("last_handshake_time_sec=0\n"), "{got}");
        // removal, and refusals that change nothing
        assert_eq!(set(&wg, &["allowed_ip=1.2.3.4/32".into()]), Err(EPROTO));
        assert_eq!(set(&wg, &["listen_port=1".into()]), Err(EINVAL));
        let remove = vec![
            format!("public_key={}", peer.to_hex()),
            "remove=true".into(),
        ];
        assert_eq!(set(&wg, &remove), Ok(()));
        assert_eq!(wg.peer_count(), 0);
    }

    #[test]
    fn the_socket_answers_wg_s_get() {
        let dir = tempfile::tempdir().expect("dir");
        let wg = Arc::new(device());
        wg.update_peer(
            WgKey([3; 32]),
            PeerUpdate {
                allowed_ips: vec!["172.30.3.0/24".parse().expect("net")],
                ..Default::default()
            },
        );
        let path = serve(dir.path(), wg.clone()).expect("serve");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let st = query(&path).expect("query");
        assert_eq!(
            st,
            DeviceState {
                listen_port: wg.udp.port(),
                peers: 1,
                handshakes: 0
            }
        );
    }
}
