//! Connecting to etcd with flannel's endpoint, auth and TLS options.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::registry::EtcdError;

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

fn read(path: &str, what: &str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::Setup(format!("reading {what} {path}: {e}")))
}

/// Opens a client; fails fast when no endpoint answers within a few seconds.
pub async fn connect(opts: &EtcdOptions) -> Result<Client, EtcdError> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some(user) = &opts.username {
        o = o.with_user(user.clone(), opts.password.clone().unwrap_or_default());
    }
    let tls_wanted = opts.cafile.is_some() || opts.certfile.is_some() || opts.keyfile.is_some();
    if tls_wanted {
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
    let endpoints: Vec<String> = opts
        .endpoints
        .iter()
        .map(|e| {
            if tls_wanted {
                e.replacen("http://", "https://", 1)
            } else {
                e.clone()
            }
        })
        .collect();
    Client::connect(&endpoints, Some(o))
        .await
        .map_err(|e| EtcdError::Etcd {
            what: format!("connecting to {}", endpoints.join(",")),
            source: e,
        })
}
