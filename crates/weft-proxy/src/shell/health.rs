//! kube-proxy's health endpoints.
//!
//! - `/healthz` and `/livez` on `--healthz-bind-address` (10256): 200 with
//!   `{"lastUpdated", "currentTime", "nodeEligible", "healthy"}` once the
//!   rules are synced, 503 before.
//! - One HTTP server per `healthCheckNodePort` (LoadBalancer Services with
//!   `externalTrafficPolicy: Local`): cloud load balancers probe it and
//!   send traffic only to nodes answering 200, those with ready local
//!   endpoints; the body counts them (`localEndpoints`), as kube-proxy's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use tokio::task::JoinHandle;
use weft_telemetry::Response;

use crate::plan::catalog::Catalog;
use crate::spec::ServiceName;

const JSON: &str = "application/json";

fn json_response(ok: bool, body: String, headers: Vec<(&'static str, String)>) -> Response {
    let mut headers = headers;
    headers.push(("X-Content-Type-Options", "nosniff".into()));
    Response {
        status: if ok {
            "200 OK"
        } else {
            "503 Service Unavailable"
        },
        content_type: JSON,
        headers,
        body,
    }
}

/// The proxy's own health: synced once, and when last.
#[derive(Clone, Default)]
pub struct ProxyHealth {
    pub synced: Arc<AtomicBool>,
    last: Arc<Mutex<Option<Timestamp>>>,
}

impl ProxyHealth {
    /// Records a successful sync.
    pub fn synced_now(&self) {
        self.synced.store(true, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            *l = Some(Timestamp::now());
        }
    }

    fn healthy(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    fn answer(&self, path: &str) -> Response {
        if path != "/healthz" && path != "/livez" {
            return Response::from(("404 Not Found", "text/plain", "not found\n".into()));
        }
        let now = Timestamp::now();
        let healthy = self.healthy();
        let last = match (healthy, self.last.lock().ok().and_then(|l| *l)) {
            // kube-proxy reports a healthy proxy as updated "now"
            (true, _) => now,
            (false, Some(t)) => t,
            (false, None) => Timestamp::UNIX_EPOCH,
        };
        let eligible = if path == "/healthz" {
            ",\"nodeEligible\":true"
        } else {
            ""
        };
        // per family, as kube-proxy's dual-stack proxiers report (weft syncs
        // both families together)
        let synced = self
            .last
            .lock()
            .ok()
            .and_then(|l| *l)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let family = format!("{{\"lastUpdated\":\"{synced}\",\"healthy\":{healthy}}}");
        json_response(
            healthy,
            format!(
                "{{\"lastUpdated\":\"{last}\",\"currentTime\":\"{now}\"{eligible},\"healthy\":{healthy},\"status\":{{\"IPv4\":{family},\"IPv6\":{family}}}}}"
            ),
            Vec::new(),
        )
    }

    /// Serves `/healthz` and `/livez` on `addr` until dropped.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::spawn(weft_telemetry::serve_with(listener, move |_, path| {
            self.answer(path)
        }));
        Ok(())
    }
}

/// Ready endpoints of `service` on `node`, by address.
fn local_ready(catalog: &Catalog, service: &ServiceName, node: &str) -> usize {
    let ips: BTreeSet<IpAddr> = catalog
        .slices(service)
        .iter()
        .flat_map(|slice| &slice.set.endpoints)
        .filter(|e| e.ready && e.node.as_deref() == Some(node))
        .map(|e| e.ip)
        .collect();
    ips.len()
}

/// The health-check node port servers.
pub struct ServiceHealth {
    proxy: ProxyHealth,
    /// `--nodeport-addresses` resolved (None: every address).
    addresses: Option<Vec<IpAddr>>,
    counts: Arc<Mutex<BTreeMap<ServiceName, usize>>>,
    /// The health-check node ports the catalog asks for.
    wanted: BTreeMap<u16, ServiceName>,
    servers: BTreeMap<u16, (ServiceName, Vec<JoinHandle<()>>)>,
}

/// Listeners for a health-check node port: on each of `addresses` (the
/// node port addresses, as kube-proxy binds them), or on every address of
/// both families when there is no such list.
pub fn bind_health_port(
    port: u16,
    addresses: Option<&[IpAddr]>,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    match addresses {
        Some(list) => list
            .iter()
            .map(|ip| std::net::TcpListener::bind(SocketAddr::new(*ip, port)))
            .collect(),
        None => {
            let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            let l = std::net::TcpListener::bind(any6)
                .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))?;
            Ok(vec![l])
        }
    }
}

impl ServiceHealth {
    pub fn new(proxy: ProxyHealth, addresses: Option<Vec<IpAddr>>) -> ServiceHealth {
        ServiceHealth {
            proxy,
            addresses,
            counts: Arc::default(),
            wanted: BTreeMap::new(),
            servers: BTreeMap::new(),
        }
    }

    /// After a full sync: a server for every health-check node port of
    /// `catalog`, the others closed, every local endpoint count updated.
    pub fn sync(&mut self, catalog: &Catalog, node: &str) {
        self.wanted = catalog
            .services
            .values()
            .filter_map(|s| s.health_check_node_port.map(|p| (p, s.id.clone())))
            .collect();
        if let Ok(mut counts) = self.counts.lock() {
            *counts = self
                .wanted
                .values()
                .map(|id| (id.clone(), local_ready(catalog, id, node)))
                .collect();
        }
        self.follow_wanted();
    }

    /// After a partial sync of `changed`: the same for those Services only
    /// (a change costs its Services, not a scan of the cluster's).
    pub fn sync_changed(&mut self, catalog: &Catalog, node: &str, changed: &BTreeSet<ServiceName>) {
        self.wanted.retain(|_, id| !changed.contains(id));
        for id in changed {
            let port = catalog
                .services
                .get(id)
                .and_then(|s| s.health_check_node_port);
            if let Some(port) = port {
                self.wanted.entry(port).or_insert_with(|| id.clone());
            }
        }
        if let Ok(mut counts) = self.counts.lock() {
            for id in changed {
                counts.remove(id);
            }
            for id in self.wanted.values().filter(|id| changed.contains(*id)) {
                counts.insert(id.clone(), local_ready(catalog, id, node));
            }
        }
        self.follow_wanted();
    }

    /// Opens and closes servers until they are those of `wanted`.
    fn follow_wanted(&mut self) {
        let wanted = &self.wanted;
        self.servers.retain(|port, (id, tasks)| {
            let keep = wanted.get(port) == Some(&*id);
            if !keep {
                tasks.iter().for_each(JoinHandle::abort);
            }
            keep
        });
        for (port, id) in &self.wanted {
            if self.servers.contains_key(port) {
                continue;
            }
            match self.open(*port, id.clone()) {
                Ok(tasks) => {
                    self.servers.insert(*port, (id.clone(), tasks));
                }
                Err(e) => tracing::error!(
                    "health check node port {port} of {id}: {e} (load balancers will see this node as unhealthy)"
                ),
            }
        }
    }

    fn open(&self, port: u16, id: ServiceName) -> std::io::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for l in bind_health_port(port, self.addresses.as_deref())? {
            l.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(l)?;
            let (counts, proxy, id) = (self.counts.clone(), self.proxy.clone(), id.clone());
            tasks.push(tokio::spawn(weft_telemetry::serve_with(
                listener,
                move |_, _| {
                    let count = counts
                        .lock()
                        .ok()
                        .and_then(|c| c.get(&id).copied())
                        .unwrap_or(0);
                    let healthy = proxy.healthy();
                    json_response(
                        count > 0 && healthy,
                        format!(
                            "{{\n\t\"service\": {{\n\t\t\"namespace\": \"{}\",\n\t\t\"name\": \"{}\"\n\t}},\n\t\"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": {healthy}\n}}",
                            id.namespace, id.name
                        ),
                        vec![("X-Load-Balancing-Endpoint-Weight", count.to_string())],
                    )
                },
            )));
        }
        Ok(tasks)
    }
}

impl Drop for ServiceHealth {
    fn drop(&mut self) {
        for (_, tasks) in self.servers.values() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_port_with_node_port_addresses_listens_on_those_only() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let only: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip")];
        let ls = bind_health_port(port, Some(&only)).expect("bind");
        assert_eq!(ls.len(), 1);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        // another local address (all of 127/8 is this host's) is not served
        assert!(
            std::net::TcpStream::connect(("127.0.0.2", port)).is_err(),
            "the health port answers on an address outside --nodeport-addresses"
        );
        drop(ls);
        // no list: every address
        let ls = bind_health_port(port, None).expect("bind all");
        assert!(std::net::TcpStream::connect(("127.0.0.2", port)).is_ok());
        drop(ls);
        // a list matching no address of this node: no listener at all
        assert!(bind_health_port(port, Some(&[])).expect("none").is_empty());
    }
}
