//! The cross-platform WireGuard configuration protocol on
//! `<dir>/<device>.sock` (`/var/run/wireguard/flannel-wg.sock`), as
//! wireguard-go serves it: `wg show flannel-wg` (a `get`) and
//! `wg set flannel-wg peer …` (a `set`) work on weft's userspace devices.
//! The socket is root's alone, as the kernel's netlink interface asks for
//! CAP_NET_ADMIN (`wg showconf` prints the private key):
//! - it is made 0600 in a private folder and renamed into place, so it
//!   never exists at its path with looser permissions, whatever the umask;
//! - a client whose credentials (SO_PEERCRED) are not root's or the
//!   agent's own user is closed without an answer;
//! - requests are read with bounded lines, line counts and bytes
//!   ([`weft_core::wg_uapi`]);
//! - each client is served on its own thread (at most [`MAX_CLIENTS`] at
//!   once), so an idle client cannot keep `wg` waiting.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use weft_core::wg_uapi::{self, Limits, Request, SetStep, EINVAL};

use super::device::{PeerUpdate, WgDevice};

/// Clients served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to send a request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the device's socket from a thread; returns the socket's path.
pub fn serve(dir: &Path, wg: Arc<WgDevice>) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the WireGuard socket folder {}", dir.display()))?;
    let path = dir.join(format!("{}.sock", wg.name));
    let listener = bind_private(dir, &path)?;
    let clients = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("{}-uapi", wg.name))
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                accept(conn, &wg, &clients);
            }
        })
        .context("starting the configuration socket's thread")?;
    Ok(path)
}

/// Binds a listener at `path` that is 0600 from the moment it is there:
/// bound in a fresh 0700 folder beside it, restricted, then renamed over
/// whatever was at `path` (a socket left by an agent that died).
fn bind_private(dir: &Path, path: &Path) -> Result<UnixListener> {
    // mkdtemp(3) makes the folder 0700: no one else can reach into it
    let private = nix::unistd::mkdtemp(&dir.join(".weft-uapi-XXXXXX"))
        .with_context(|| format!("creating a private folder in {}", dir.display()))?;
    let staged = private.join("sock");
    let bound = UnixListener::bind(&staged)
        .with_context(|| format!("listening on {}", path.display()))
        .and_then(|l| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
            std::fs::rename(&staged, path)
                .with_context(|| format!("moving the socket to {}", path.display()))?;
            Ok(l)
        });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Whether the client on `conn` may configure the device: root, or the
/// user the agent runs as.
fn trusted(conn: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(conn, PeerCredentials) {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

fn accept(conn: UnixStream, wg: &Arc<WgDevice>, clients: &Arc<AtomicUsize>) {
    if !trusted(&conn) {
        tracing::warn!(device = %wg.name, "configuration socket: a client that is neither root nor the agent's user was refused");
        return;
    }
    if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
        clients.fetch_sub(1, Ordering::AcqRel);
        tracing::debug!(device = %wg.name, "configuration socket: {MAX_CLIENTS} clients already; one closed");
        return;
    }
    let (wg, clients) = (wg.clone(), clients.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("{}-uapi-client", wg.name))
        .spawn(move || {
            let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
            if let Err(e) = handle(conn, &wg) {
                tracing::debug!(device = %wg.name, "configuration socket: {e}");
            }
            clients.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        tracing::warn!("configuration socket: no thread for a client");
    }
}

fn handle(conn: UnixStream, wg: &WgDevice) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    let limits = Limits::default();
    loop {
        let reply = match wg_uapi::read_request(&mut input, &limits) {
            Ok(None) => return Ok(()),
            Ok(Some(Request::Get)) => format!("{}errno=0\n\n", get(wg)),
            Ok(Some(Request::Set(body))) => {
                format!("errno={}\n\n", set(wg, &body).err().unwrap_or(0))
            }
            Ok(Some(Request::Unknown)) => format!("errno={}\n\n", wg_uapi::EPROTO),
            Err(e) => {
                if let Some(errno) = e.errno() {
                    out.write_all(format!("errno={errno}\n\n").as_bytes())?;
                }
                return Err(std::io::Error::other(e.to_string()));
            }
        };
        out.write_all(reply.as_bytes())?;
    }
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
    let steps = wg_uapi::parse_set(lines)?;
    for step in &steps {
        match step {
            // the key comes from the key file; the port from the config
            SetStep::PrivateKey(key) if key != wg.secret() => return Err(EINVAL),
            SetStep::ListenPort(port) if *port != wg.udp.port() => return Err(EINVAL),
            SetStep::Fwmark(mark) if *mark != 0 => return Err(EINVAL),
            _ => {}
        }
    }
    for step in steps {
        match step {
            SetStep::ReplacePeers => wg.clear_peers(),
            SetStep::Peer(key, c) if c.remove => {
                wg.remove_peer(&key);
            }
            SetStep::Peer(key, c) => wg.update_peer(
                key,
                PeerUpdate {
                    endpoint: c.endpoint,
                    replace_allowed_ips: c.replace_allowed_ips,
                    allowed_ips: c.allowed_ips,
                    psk: c.psk,
                    keepalive: c.keepalive,
                },
            ),
            SetStep::PrivateKey(_) | SetStep::ListenPort(_) | SetStep::Fwmark(_) => {}
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
    use weft_core::wg_uapi::EPROTO;
    use weft_core::WgKey;
    use weft_core::WgSecret;

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

    fn serving(wg: Arc<WgDevice>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let path = serve(dir.path(), wg).expect("serve");
        (dir, path)
    }

    #[test]
    fn an_idle_client_does_not_keep_wg_waiting() {
        let (_dir, path) = serving(Arc::new(device()));
        let _idle = UnixStream::connect(&path).expect("idle client");
        let t = std::time::Instant::now();
        let st = query(&path).expect("query");
        assert_eq!(st.peers, 0);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "wg waited {:?} behind an idle client",
            t.elapsed()
        );
    }

    #[test]
    fn an_over_long_line_is_answered_and_the_client_closed() {
        let (_dir, path) = serving(Arc::new(device()));
        let mut c = UnixStream::connect(&path).expect("client");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let long = format!("set=1\n{}\n\n", "a".repeat(5000));
        c.write_all(long.as_bytes()).expect("write");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut c, &mut answer).expect("read to the end");
        assert_eq!(answer, "errno=90\n\n");
    }

    #[test]
    fn the_socket_is_never_looser_than_0600_even_with_umask_0() {
        use nix::sys::stat::{umask, Mode};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("wg-test.sock");
        let old = umask(Mode::empty());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(m) = std::fs::symlink_metadata(&path) {
                        seen.insert(m.permissions().mode() & 0o777);
                    }
                }
                seen
            })
        };
        for _ in 0..200 {
            let l = bind_private(dir.path(), &path).expect("bind");
            drop(l);
        }
        stop.store(true, Ordering::Relaxed);
        umask(old);
        let seen = watcher.join().expect("watcher");
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0o600]);
        // nothing left beside it
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("wg-test.sock")]);
    }

    /// The client side of the next test, run as another user (this test
    /// binary started again with WEFT_UAPI_CLIENT set).
    #[test]
    fn uapi_client_helper() {
        let Some(path) = std::env::var_os("WEFT_UAPI_CLIENT") else {
            return;
        };
        let mut c = UnixStream::connect(path).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // a refused client may find the socket closed before it writes
        let _ = c.write_all(b"get=1\n\n");
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut c, &mut answer);
        print!("ANSWER[{answer}]");
    }

    #[test]
    fn a_client_of_another_user_is_refused_even_if_the_socket_lets_it_in() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("dir");
        let (_, path) = (0, serve(dir.path(), Arc::new(device())).expect("serve"));
        // a careless chmod lets everyone in; the credentials check still holds
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .expect("chmod socket");
        let run = |uid: u32| {
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "wireguard::uapi::tests::uapi_client_helper",
                    "--nocapture",
                ])
                .env("WEFT_UAPI_CLIENT", &path)
                .uid(uid)
                .gid(uid)
                .output()
                .expect("the test binary runs as another user");
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        };
        let root = run(0);
        assert!(
            root.contains("ANSWER[private_key="),
            "root is served: {root}"
        );
        let nobody = run(65534);
        assert!(nobody.contains("ANSWER[]"), "nobody is refused: {nobody}");
    }
}
