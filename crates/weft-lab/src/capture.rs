//! A packet capture on a host's interface (tcpdump, started in the host's
//! namespace, stopped by PID), read back with tcpdump filters: what tests
//! use to show that traffic crosses the underlay encrypted.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::lab::{Host, Lab, Pod};
use crate::netns::sh;

/// A running capture.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

/// A finished capture's file.
pub struct Captured {
    file: PathBuf,
}

impl Capture {
    /// Captures `iface` of `host` into `<lab dir>/<name>.pcap`; returns once
    /// tcpdump has had time to open the interface.
    pub fn start(lab: &Lab, host: &Host, iface: &str, name: &str) -> Result<Capture> {
        let file = lab.dir().join(format!("{name}.pcap"));
        let child = Command::new("ip")
            .args([
                "netns", "exec", &host.ns, "tcpdump", "-i", iface, "-U", "-n", "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tcpdump")?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Capture { child, file })
    }

    /// Stops tcpdump (SIGINT, so it flushes) and waits for it.
    pub fn stop(mut self) -> Captured {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        Captured {
            file: self.file.clone(),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Captured {
    /// tcpdump's lines for the packets `filter` matches.
    pub fn lines(&self, filter: &str) -> Result<Vec<String>> {
        let f = self.file.display().to_string();
        let out = sh("tcpdump", &["-r", &f, "-n", filter])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Whether `bytes` appear anywhere in the captured packets.
    pub fn holds(&self, bytes: &[u8]) -> Result<bool> {
        let data = std::fs::read(&self.file).context("reading the capture")?;
        Ok(data.windows(bytes.len()).any(|w| w == bytes))
    }
}

/// The payload [`marked_ping`] sends; [`Captured::assert_wireguard_only`]
/// looks for it.
pub const MARK: &[u8] = b"weftclear";

/// Five pings from `from` to `to` carrying [`MARK`] as their payload.
pub fn marked_ping(from: &Pod, to: &Pod) -> Result<()> {
    let pattern: String = MARK.iter().map(|b| format!("{b:02x}")).collect();
    let to = to.ip.to_string();
    let args = [
        "netns", "exec", &from.ns, "ping", "-c", "5", "-i", "0.2", "-p", &pattern, &to,
    ];
    let out = sh("ip", &args)?;
    anyhow::ensure!(
        out.status.success(),
        "marked ping {} -> {to} failed",
        from.ns
    );
    Ok(())
}

impl Captured {
    /// Asserts the capture holds at least `min` WireGuard datagrams (port
    /// 51820), no pod packet (172.30.0.0/16) outside them and never
    /// [`MARK`]. (The underlay also carries etcd, ARP and the IGMP reports
    /// a link sends when it comes up: none of them pods'.)
    pub fn assert_wireguard_only(&self, min: usize) {
        let wg = self.lines("udp port 51820").expect("tcpdump -r").len();
        assert!(wg >= min, "WireGuard datagrams on the underlay: {wg}");
        let clear = self
            .lines("net 172.30.0.0/16 and not udp port 51820")
            .expect("tcpdump -r");
        assert!(
            clear.is_empty(),
            "pod packets on the underlay outside WireGuard:\n{}",
            clear.join("\n")
        );
        assert!(
            !self.holds(MARK).expect("capture"),
            "the marked ping's payload crossed the underlay in clear"
        );
    }
}
