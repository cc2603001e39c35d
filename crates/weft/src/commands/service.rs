//! `weft service`: manage the services and endpoints `weft proxy` serves,
//! stored in etcd under weft's prefix (Kubernetes-shaped JSON).
//!
//! ```text
//! weft service expose example-service --port 80 --type NodePort --node-port 32663
//! weft service endpoints add example-service 172.30.14.2 --node host1
//! weft service apply -f services.yaml
//! weft service list
//! weft service delete example-service
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use weft_proxy::shell::store::Store;
use weft_proxy::spec::{
    parse_documents, Endpoint, EndpointPort, EndpointSet, Object, Service, ServiceName,
    ServicePort, TargetPort,
};

use weft_proxy::cli::etcd_args::EtcdArgs;

#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Range cluster IPs are allocated from (kube-apiserver's --service-cluster-ip-range)
    #[arg(
        long = "service-cluster-ip-range",
        default_value = "10.254.0.0/16",
        global = true
    )]
    ip_range: IpNet,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ServiceCommand {
    /// Create a service (kubectl expose)
    Expose(ExposeArgs),
    /// Create or update services and endpoint slices from YAML/JSON files
    Apply {
        /// Files ("-" for stdin); all objects are validated before any is written
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// List services with their endpoints
    List {
        /// table or json
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: String,
    },
    /// Delete services (and their endpoints)
    Delete { names: Vec<String> },
    /// Add or remove endpoints of a service
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
}

#[derive(clap::Args, Debug)]
struct ExposeArgs {
    /// [namespace/]name
    name: String,
    /// [NAME=]PORT[:TARGET][/PROTOCOL], repeatable (e.g. 80, http=80:8080/tcp)
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// ClusterIP, NodePort or LoadBalancer
    #[arg(long = "type", default_value = "ClusterIP")]
    kind: String,
    /// Node ports, in the order of --port (allocated when absent)
    #[arg(long = "node-port")]
    node_ports: Vec<u16>,
    /// The virtual IP (allocated from --service-cluster-ip-range when absent)
    #[arg(long = "cluster-ip")]
    cluster_ip: Option<IpAddr>,
    /// None or ClientIP
    #[arg(long = "session-affinity", default_value = "None")]
    affinity: String,
    /// ClientIP affinity timeout in seconds
    #[arg(long = "session-affinity-timeout")]
    affinity_timeout: Option<u32>,
    /// Cluster or Local
    #[arg(long = "external-traffic-policy")]
    external: Option<String>,
    /// Cluster or Local
    #[arg(long = "internal-traffic-policy")]
    internal: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum EndpointsCommand {
    /// Add ready endpoints (ports follow the service's target ports)
    Add {
        service: String,
        ips: Vec<IpAddr>,
        /// The node the endpoints run on (for traffic policy Local)
        #[arg(long)]
        node: Option<String>,
    },
    /// Remove endpoints
    Remove { service: String, ips: Vec<IpAddr> },
}

/// Parses `[NAME=]PORT[:TARGET][/PROTOCOL]`.
fn parse_port(spec: &str) -> Result<serde_json::Value> {
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) => (n, r),
        None => ("", spec),
    };
    let (rest, proto) = match rest.split_once('/') {
        Some((r, p)) => (r, p),
        None => (rest, "TCP"),
    };
    let (port, target) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (rest, None),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("--port {spec:?}: {port:?} is not a port number"))?;
    let mut v =
        serde_json::json!({"name": name, "port": port, "protocol": proto.to_ascii_uppercase()});
    if let Some(t) = target {
        v["targetPort"] = match t.parse::<u16>() {
            Ok(n) => serde_json::json!(n),
            Err(_) => serde_json::json!(t),
        };
    }
    Ok(v)
}

fn expose_spec(a: &ExposeArgs) -> Result<Service> {
    let id = ServiceName::parse(&a.name)?;
    let mut ports = Vec::new();
    for (i, p) in a.ports.iter().enumerate() {
        let mut v = parse_port(p)?;
        if let Some(np) = a.node_ports.get(i) {
            v["nodePort"] = serde_json::json!(np);
        }
        ports.push(v);
    }
    let mut spec = serde_json::json!({
        "type": a.kind,
        "ports": ports,
        "sessionAffinity": a.affinity,
    });
    if let Some(ip) = a.cluster_ip {
        spec["clusterIP"] = serde_json::json!(ip.to_string());
    }
    if let Some(t) = a.affinity_timeout {
        spec["sessionAffinityConfig"] = serde_json::json!({"clientIP": {"timeoutSeconds": t}});
    }
    if let Some(p) = &a.external {
        spec["externalTrafficPolicy"] = serde_json::json!(p);
    }
    if let Some(p) = &a.internal {
        spec["internalTrafficPolicy"] = serde_json::json!(p);
    }
    let v = serde_json::json!({
        "kind": "Service",
        "metadata": {"name": &*id.name, "namespace": &*id.namespace},
        "spec": spec,
    });
    Ok(Service::from_value(&v, "command line")?)
}

/// The slice ports for a service: one per service port, at its numeric
/// target port.
fn slice_ports(svc: &Service) -> Result<Vec<EndpointPort>> {
    svc.ports
        .iter()
        .map(|p: &ServicePort| match &p.target_port {
            TargetPort::Number(n) => Ok(EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol,
                port: *n,
            }),
            TargetPort::Name(n) => Err(anyhow!(
                "service {} port {:?} targets the named port {n:?}: write its EndpointSlice with `weft service apply`",
                svc.id,
                p.name
            )),
        })
        .collect()
}

fn cluster_ip_text(svc: &Service) -> String {
    svc.cluster_ip.map_or("None".into(), |i| i.to_string())
}

/// `cluster IP 10.254.0.5, ports 80:30080/TCP`.
fn summary(svc: &Service) -> String {
    format!(
        "cluster IP {}, ports {}",
        cluster_ip_text(svc),
        ports_text(svc)
    )
}

fn ports_text(svc: &Service) -> String {
    svc.ports
        .iter()
        .map(|p| match p.node_port {
            Some(np) => format!("{}:{np}/{}", p.port, p.protocol),
            None => format!("{}/{}", p.port, p.protocol),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn run(a: ServiceArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let client = weft_etcd::connect(&a.etcd.options())
            .await
            .context("connecting to etcd")?;
        let mut store = Store::new(client, &a.etcd.service_prefix);
        match a.command {
            ServiceCommand::Expose(e) => {
                let svc = expose_spec(&e)?;
                let stored = store.put_service(svc, a.ip_range, true).await?;
                println!("service/{} exposed: {}", stored.id, summary(&stored));
                Ok(())
            }
            ServiceCommand::Apply { files } => apply(&mut store, &files, a.ip_range).await,
            ServiceCommand::List { output } => list(&mut store, &output).await,
            ServiceCommand::Delete { names } => {
                for n in names {
                    let id = ServiceName::parse(&n)?;
                    if !store.delete_service(&id).await? {
                        bail!("service {id} not found");
                    }
                    println!("service/{id} deleted");
                }
                Ok(())
            }
            ServiceCommand::Endpoints(cmd) => endpoints(&mut store, cmd).await,
        }
    })
}

/// `weft service apply`: Services first, so endpoints find their service.
async fn apply(store: &mut Store, files: &[String], ip_range: IpNet) -> Result<()> {
    let mut objects = Vec::new();
    for f in files {
        let text = if f == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading stdin")?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?
        };
        objects.extend(parse_documents(&text, f)?);
    }
    // Services first, so endpoints find their service.
    objects.sort_by_key(|o| matches!(o, Object::Endpoints(_)));
    for o in objects {
        match o {
            Object::Service(s) => {
                let stored = store.put_service(s, ip_range, false).await?;
                println!("service/{} configured: {}", stored.id, summary(&stored));
            }
            Object::Endpoints(mut e) => {
                // A slice without ports gets its service's numeric
                // target ports (the proxy, as kube-proxy, uses no
                // endpoint of a slice that lists no port).
                if e.ports.is_empty() {
                    if let Some((svc, _)) = store.get_service(&e.service).await? {
                        e.ports = slice_ports(&svc)?;
                    }
                }
                store.put_endpoints(&e, None).await?;
                println!(
                    "endpointslice/{} configured: {} endpoints",
                    e.service,
                    e.endpoints.len()
                );
            }
        }
    }
    Ok(())
}

/// `weft service list`: a table as `kubectl get services` prints, or JSON.
async fn list(store: &mut Store, output: &str) -> Result<()> {
    let listing = store.list().await?;
    let mut services = Vec::new();
    let mut slices = std::collections::BTreeMap::new();
    for (key, obj) in listing.objects {
        match obj {
            Ok(Object::Service(s)) => services.push(s),
            Ok(Object::Endpoints(e)) => {
                slices.insert(e.service.clone(), e);
            }
            Err(e) => eprintln!("weft: ignoring {key}: {e}"),
        }
    }
    if output == "json" {
        let items: Vec<serde_json::Value> = services
            .iter()
            .map(|s| s.to_value())
            .chain(slices.values().map(|e| e.to_value()))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"kind": "List", "items": items}))?
        );
        return Ok(());
    }
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "NAME".into(),
        "TYPE".into(),
        "CLUSTER-IP".into(),
        "PORT(S)".into(),
        "ENDPOINTS".into(),
    ]];
    for s in &services {
        let eps = slices
            .get(&s.id)
            .map(|e| {
                let ready: Vec<String> = e
                    .endpoints
                    .iter()
                    .filter(|x| x.ready)
                    .map(|x| x.ip.to_string())
                    .collect();
                if ready.is_empty() {
                    "<none>".into()
                } else {
                    ready.join(",")
                }
            })
            .unwrap_or_else(|| "<none>".into());
        rows.push([
            s.id.namespace.to_string(),
            s.id.name.to_string(),
            s.kind.name().to_string(),
            cluster_ip_text(s),
            ports_text(s),
            eps,
        ]);
    }
    print!("{}", super::table(&rows));
    Ok(())
}

/// `weft service endpoints add|remove`, retried while others change them.
async fn endpoints(store: &mut Store, cmd: EndpointsCommand) -> Result<()> {
    let (name, add, ips, node) = match cmd {
        EndpointsCommand::Add { service, ips, node } => (service, true, ips, node),
        EndpointsCommand::Remove { service, ips } => (service, false, ips, None),
    };
    let id = ServiceName::parse(&name)?;
    for _ in 0..10 {
        let (svc, _) = store
            .get_service(&id)
            .await?
            .ok_or_else(|| anyhow!("service {id} not found"))?;
        let current = store.get_endpoints(&id).await?;
        let rev = current.as_ref().map_or(0, |(_, r)| *r);
        let mut set = current.map(|(s, _)| s).unwrap_or(EndpointSet {
            service: id.clone(),
            endpoints: Vec::new(),
            ports: Vec::new(),
        });
        if set.ports.is_empty() {
            set.ports = slice_ports(&svc)?;
        }
        let wanted: BTreeSet<IpAddr> = ips.iter().copied().collect();
        set.endpoints.retain(|e| !wanted.contains(&e.ip));
        if add {
            for ip in &ips {
                set.endpoints.push(Endpoint::ready(*ip, node.as_deref()));
            }
        }
        if store.put_endpoints(&set, Some(rev)).await? {
            println!("endpointslice/{id}: {} endpoints", set.endpoints.len());
            return Ok(());
        }
    }
    bail!("endpoints of {id} kept changing; try again");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse() {
        let v = parse_port("http=80:8080/udp").expect("valid");
        assert_eq!(v["name"], "http");
        assert_eq!(v["port"], 80);
        assert_eq!(v["targetPort"], 8080);
        assert_eq!(v["protocol"], "UDP");
        assert!(parse_port("x").is_err());
    }
}
