//! wireguard-go (Debian's `wireguard-go` package) as a lab host's
//! `flannel-wg`, configured with `wg` (wireguard-tools) the way flanneld
//! configures its WireGuard device: the key, the listen port, one peer
//! per remote lease (its public key, `PublicIP:Port` endpoint, subnet as
//! allowed IPs), the subnet's first address as /32 and the network
//! routed into the device. It runs as the host's "agent" process (killed
//! by PID with the lab), in a private mount namespace whose /run holds
//! its configuration socket.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;

use crate::lab::{Host, Lab};
use crate::netns::sh;

/// One peer as flanneld derives it from a lease.
pub struct WgPeerSpec {
    pub public_key: String,
    pub endpoint: String,
    pub allowed_ips: String,
}

/// Makes a key pair with `wg genkey`/`wg pubkey`: (private key file, public key).
pub fn wg_keypair(dir: &Path, name: &str) -> Result<(std::path::PathBuf, String)> {
    let file = dir.join(format!("{name}.key"));
    let script = format!(
        "umask 077; wg genkey > {f} && wg pubkey < {f}",
        f = file.display()
    );
    let out = sh("sh", &["-c", &script]).context("wg genkey (Debian's wireguard-tools)")?;
    Ok((
        file,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

impl Lab {
    /// Starts wireguard-go as `host`'s `flannel-wg` with `private_key`
    /// listening on `port`, addressed and routed as flanneld would for
    /// `subnet` of `network`, with `mtu`.
    pub fn start_wireguard_go(
        &mut self,
        host: &Host,
        private_key: &Path,
        port: u16,
        subnet: Ipv4Net,
        network: &str,
        mtu: u32,
    ) -> Result<()> {
        let script = "mount -t tmpfs weft-wg /run && mkdir /run/wireguard && exec wireguard-go -f flannel-wg";
        let args: Vec<String> = ["-m", "sh", "-c", script]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = vec![(
            "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD".to_string(),
            "1".to_string(),
        )];
        self.start_agent_with(host, "unshare", &args, &env)?;
        let start = std::time::Instant::now();
        while self.wg_go(host, &["show", "flannel-wg"]).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "wireguard-go on {} did not come up: {}",
                    host.name,
                    self.agent_log(host)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let key = private_key.display().to_string();
        self.wg_go(
            host,
            &[
                "set",
                "flannel-wg",
                "private-key",
                &key,
                "listen-port",
                &port.to_string(),
            ],
        )?;
        let ns = host.ns.as_str();
        let addr = format!("{}/32", subnet.network());
        sh("ip", &["-n", ns, "addr", "add", &addr, "dev", "flannel-wg"])?;
        sh(
            "ip",
            &[
                "-n",
                ns,
                "link",
                "set",
                "flannel-wg",
                "mtu",
                &mtu.to_string(),
                "up",
            ],
        )?;
        sh(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "replace",
                network,
                "dev",
                "flannel-wg",
                "scope",
                "link",
            ],
        )?;
        Ok(())
    }

    /// Adds a peer to `host`'s wireguard-go as flanneld's addPeer does.
    pub fn wireguard_go_peer(&mut self, host: &Host, peer: &WgPeerSpec) -> Result<()> {
        self.wg_go(
            host,
            &[
                "set",
                "flannel-wg",
                "peer",
                &peer.public_key,
                "endpoint",
                &peer.endpoint,
                "allowed-ips",
                &peer.allowed_ips,
            ],
        )
        .map(|_| ())
    }

    /// Runs `wg args…` in the mount namespace of `host`'s wireguard-go.
    pub fn wg_go(&mut self, host: &Host, args: &[&str]) -> Result<String> {
        let pid = self
            .agent(host)?
            .pid()
            .context("wireguard-go has exited")?
            .to_string();
        let mut full = vec!["-t", pid.as_str(), "-m", "wg"];
        full.extend_from_slice(args);
        let out = sh("nsenter", &full)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
