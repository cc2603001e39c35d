//! The agent's client of charon's VICI socket (via `rsvici`): it sends
//! the messages of [`weft_core::vici`] (the pre-shared key per public IP,
//! a connection per remote host).
//!
//! The requests run on one worker thread, in order: charon may be slow to
//! start, and a lease must never wait for it. The worker starts charon
//! itself (so charon lives exactly as long as that thread), waits for its
//! socket, then serves the queue; a failed request is retried a few times
//! over a fresh connection, then logged and counted.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use weft_core::config::IpsecConfig;
use weft_core::plan::ipsec::Peer;
use weft_core::vici::{connection, Reply, SharedKey, Unload};

use super::charon;

/// Attempts per request.
const TRIES: u32 = 3;

/// One request for charon.
#[derive(Debug, Clone)]
pub enum Job {
    /// The PSK, for a host's public IP.
    Key(Ipv4Addr),
    /// A connection to a remote host (replacing one of the same name).
    Load(Peer),
    /// Unload the connection of that name.
    Unload(String),
}

/// The queue of requests for charon.
pub struct Vici {
    jobs: mpsc::Sender<Job>,
}

impl Vici {
    /// Starts the worker: it starts charon (or finds one running) and
    /// serves requests for this host (`local_ip`) with `cfg`.
    pub fn start(cfg: IpsecConfig, local_ip: Ipv4Addr) -> Result<Vici> {
        let program = charon::find()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ipsec".into())
            .spawn(move || {
                if let Err(e) = serve(&program, &cfg, local_ip, queue) {
                    crate::metrics::get().ipsec_failures.inc();
                    tracing::error!("ipsec: {e:#}");
                }
            })
            .context("starting the ipsec thread")?;
        Ok(Vici { jobs })
    }

    pub fn send(&self, job: Job) {
        // the worker ends only with the process or when charon cannot run
        if self.jobs.send(job).is_err() {
            tracing::error!("ipsec: the charon worker has stopped; the request is lost");
        }
    }
}

fn serve(
    program: &Path,
    cfg: &IpsecConfig,
    local_ip: Ipv4Addr,
    queue: mpsc::Receiver<Job>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the ipsec thread's runtime")?;
    // kept until the thread ends; charon goes with it (see charon::start)
    let _charon = rt.block_on(start_charon(program))?;
    let mut client = rt.block_on(connect())?;
    for job in queue {
        let mut tries = 0;
        loop {
            tries += 1;
            match rt.block_on(run(&mut client, &job, cfg, local_ip)) {
                Ok(()) => break,
                Err(e) if tries < TRIES => {
                    tracing::warn!("ipsec: {e:#}; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    client = rt.block_on(connect())?;
                }
                Err(e) => {
                    crate::metrics::get().ipsec_failures.inc();
                    tracing::error!("ipsec: {e:#}");
                    break;
                }
            }
        }
    }
    Ok(())
}

/// charon as a child, unless one already answers on the socket.
async fn start_charon(program: &Path) -> Result<Option<std::process::Child>> {
    if rsvici::unix::connect(charon::VICI_SOCKET).await.is_ok() {
        tracing::warn!(
            socket = charon::VICI_SOCKET,
            "a charon is already running; weft uses it"
        );
        return Ok(None);
    }
    let child = charon::start(program)?;
    tracing::info!(program = %program.display(), pid = child.id(), "charon started");
    Ok(Some(child))
}

/// Connects to charon's socket, waiting for it to appear (as flanneld).
async fn connect() -> Result<rsvici::Client> {
    let mut waited = 0u32;
    loop {
        match rsvici::unix::connect(charon::VICI_SOCKET).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                waited += 1;
                if waited % 20 == 0 {
                    tracing::warn!(socket = charon::VICI_SOCKET, "waiting for charon: {e}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

async fn run(
    client: &mut rsvici::Client,
    job: &Job,
    cfg: &IpsecConfig,
    local_ip: Ipv4Addr,
) -> Result<()> {
    let reply: Reply = match job {
        Job::Key(owner) => {
            let key = SharedKey::new(cfg.psk.expose(), *owner);
            let r = client.request("load-shared", key).await;
            r.with_context(|| format!("loading the pre-shared key for {owner}"))?
        }
        Job::Load(peer) => {
            let conn = connection(local_ip, peer, cfg);
            let r = client.request("load-conn", conn).await;
            r.with_context(|| format!("loading connection {}", peer.connection))?
        }
        Job::Unload(name) => {
            let r = client.request("unload-conn", Unload { name }).await;
            r.with_context(|| format!("unloading connection {name}"))?
        }
    };
    reply.check().map_err(anyhow::Error::msg)?;
    match job {
        Job::Key(owner) => tracing::info!(%owner, "loaded the pre-shared key"),
        Job::Load(p) => tracing::info!(connection = %p.connection, "loaded connection"),
        Job::Unload(name) => tracing::info!(connection = %name, "unloaded connection"),
    }
    Ok(())
}
