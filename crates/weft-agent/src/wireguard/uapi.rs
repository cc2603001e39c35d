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
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("listening on {}", path.display()))?;
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
            ("allowed_ip", Some((u, _))) => u.allowed_ips.push(v.parse::<IpNet>().map_err(|_| EINVAL)?),
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
