//! Connecting to etcd with flannel's endpoint, auth and TLS options.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::error::{describe, EtcdError};
use crate::failover::Etcd;

/// How to reach etcd (flannel's `-etcd-*` flags).
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cafile: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
}

impl EtcdOptions {
    fn tls_wanted(&self) -> bool {
        self.cafile.is_some() || self.certfile.is_some() || self.keyfile.is_some()
    }
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::Setup(format!("reading {what} {path}: {e}")))
}

/// The client options for every member; credentials only when `with_user`.
fn client_options(opts: &EtcdOptions, with_user: bool) -> Result<ConnectOptions, EtcdError> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let (true, Some(user)) = (with_user, &opts.username) {
        o = o.with_user(user.clone(), opts.password.clone().unwrap_or_default());
    }
    if opts.tls_wanted() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &opts.cafile {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "-etcd-cafile")?));
        }
        match (&opts.certfile, &opts.keyfile) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(
                    read(c, "-etcd-certfile")?,
                    read(k, "-etcd-keyfile")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(EtcdError::Setup(
                    "-etcd-certfile and -etcd-keyfile must be given together".into(),
                ))
            }
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

/// A handle on the cluster at `opts.endpoints`. Nothing is sent yet: this
/// fails only on bad options (no endpoint, an endpoint that is not a URL,
/// unreadable or half-given TLS files), naming the flag.
pub async fn connect(opts: &EtcdOptions) -> Result<Etcd, EtcdError> {
    if opts.endpoints.is_empty() {
        return Err(EtcdError::Setup("-etcd-endpoints is empty".into()));
    }
    let endpoints: Vec<String> = opts
        .endpoints
        .iter()
        .map(|e| {
            if opts.tls_wanted() {
                e.replacen("http://", "https://", 1)
            } else {
                e.clone()
            }
        })
        .collect();
    // Each endpoint checked by the client library itself: a client made
    // without credentials sends nothing.
    let check = client_options(opts, false)?;
    for e in &endpoints {
        Client::connect([e.as_str()], Some(check.clone()))
            .await
            .map_err(|err| {
                EtcdError::Setup(format!("-etcd-endpoints {e:?}: {}", describe(&err)))
            })?;
    }
    Ok(Etcd::new(endpoints, client_options(opts, true)?))
}
