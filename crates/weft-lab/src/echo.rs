//! A tiny server inside a pod: answers every TCP connection (and every UDP
//! datagram) with the pod's name, so clients can tell which endpoint a
//! Service sent them to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::lab::Pod;

/// Stops the server threads when dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn enter(ns: &str) -> Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering {path}"))
}

/// Serves `pod.name` on TCP and UDP `port` in the pod's namespace.
pub fn serve_name(pod: &Pod, port: u16) -> Result<EchoServer> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let (ns, name, flag) = (pod.ns.clone(), pod.name.clone(), stop.clone());
    std::thread::spawn(move || {
        let setup = (|| -> Result<(TcpListener, UdpSocket)> {
            enter(&ns)?;
            let tcp = TcpListener::bind(("0.0.0.0", port)).context("binding tcp")?;
            tcp.set_nonblocking(true)?;
            let udp = UdpSocket::bind(("0.0.0.0", port)).context("binding udp")?;
            udp.set_read_timeout(Some(Duration::from_millis(20)))?;
            Ok((tcp, udp))
        })();
        let (tcp, udp) = match setup {
            Ok(x) => {
                let _ = ready_tx.send(Ok(()));
                x
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut buf = [0u8; 512];
        while !flag.load(Ordering::Relaxed) {
            match tcp.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(format!("{name}\n").as_bytes());
                }
                Err(_) => {
                    if let Ok((_, from)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(format!("{name}\n").as_bytes(), from);
                    }
                }
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("echo server did not start")??;
    Ok(EchoServer { stop })
}

/// Connects over TCP from namespace `ns` and returns what the server says.
pub fn tcp_ask(ns: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let ns = ns.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&ns).map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut c = TcpStream::connect_timeout(&to, timeout)?;
            c.set_read_timeout(Some(timeout))?;
            let mut out = String::new();
            c.read_to_string(&mut out)?;
            Ok(out.trim().to_string())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("client thread panicked")))
    })
}

/// Sends one UDP datagram from namespace `ns` and returns the answer.
pub fn udp_ask(ns: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let ns = ns.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&ns).map_err(|e| std::io::Error::other(e.to_string()))?;
            let sock = UdpSocket::bind(("0.0.0.0", 0))?;
            sock.set_read_timeout(Some(timeout))?;
            sock.send_to(b"?", to)?;
            let mut buf = [0u8; 512];
            let (n, _) = sock.recv_from(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("client thread panicked")))
    })
}

/// A UDP client that keeps its source port, as DNS resolvers do: one
/// datagram to `to` every `every` from `ns`, recording each answer (the
/// answering pod's name) with when it came. Stops when dropped.
pub struct SteadyUdpClient {
    stop: Arc<AtomicBool>,
    answers: Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl SteadyUdpClient {
    pub fn start(ns: &str, source_port: u16, to: SocketAddr, every: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let (ns, flag, out) = (ns.to_string(), stop.clone(), answers.clone());
        std::thread::spawn(move || {
            let sock = (|| -> Result<UdpSocket> {
                enter(&ns)?;
                let sock = UdpSocket::bind(("0.0.0.0", source_port)).context("binding udp")?;
                sock.set_read_timeout(Some(Duration::from_millis(10)))?;
                Ok(sock)
            })();
            let sock = match sock {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 512];
            let mut next = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if std::time::Instant::now() >= next {
                    let _ = sock.send_to(b"?", to);
                    next += every;
                }
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let name = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                    if let Ok(mut v) = out.lock() {
                        v.push((std::time::Instant::now(), name));
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("udp client did not start")??;
        Ok(SteadyUdpClient { stop, answers })
    }

    /// When `name` first answered after `since`.
    pub fn first_answer_from(
        &self,
        name: &str,
        since: std::time::Instant,
    ) -> Option<std::time::Instant> {
        let v = self.answers.lock().ok()?;
        v.iter()
            .find(|(t, n)| *t >= since && n == name)
            .map(|(t, _)| *t)
    }

    /// Every answer after `since`, in order.
    pub fn answers_since(&self, since: std::time::Instant) -> Vec<String> {
        self.answers
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| *t >= since)
                    .map(|(_, n)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for SteadyUdpClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
