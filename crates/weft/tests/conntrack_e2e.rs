//! UDP flows follow their Service when the endpoint pod is replaced, as
//! with kube-proxy: a host-network client that keeps its source port (as
//! DNS resolvers do) sends a datagram every 100 ms to a ClusterIP, and
//! another host's client to a NodePort; the endpoint pod is replaced
//! through the EndpointSlice and the old one deleted. With
//! `--conntrack-cleanup=false` the stale conntrack entries keep both
//! flows on the dead pod; a proxy that cleans (its first full sync) moves
//! them to the new pod; a later replacement is followed within a second.
//! Against a real kube-apiserver, in nftables and iptables modes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use weft_lab::{
    eventually, metric_sum, metrics, serve_name, sh, udp_ask, EchoServer, Host, Lab, Pod,
    SteadyUdpClient,
};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
const VIP: &str = "10.254.0.53";
const NODE_PORT: u16 = 30053;

fn service(name: &str, vip: &str, node_port: Option<u16>) -> String {
    let (kind, np) = match node_port {
        Some(p) => ("NodePort", format!("\n    nodePort: {p}")),
        None => ("ClusterIP", String::new()),
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  type: {kind}\n  clusterIP: {vip}\n  ports:\n  - name: dns\n    port: 53\n    \
         targetPort: 53\n    protocol: UDP{np}\n"
    )
}

/// The Service's one EndpointSlice, holding `pod` alone.
fn slice(service: &str, pod: &Pod) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\n\
         addressType: IPv4\nports:\n- name: dns\n  port: 53\n  protocol: UDP\nendpoints:\n\
         - addresses: [\"{}\"]\n  nodeName: {}\n  conditions:\n    ready: true\n",
        pod.ip, pod.host
    )
}

/// Deletes a pod as far as the network sees it: its server stops and its
/// interface goes (so its address answers nothing).
fn delete_pod(pod: &Pod, server: EchoServer) {
    drop(server);
    sh("ip", &["-n", &pod.ns, "link", "del", "eth0"]).expect("deleting the pod's interface");
}

struct Cluster {
    lab: Lab,
    api: weft_lab::ApiServer,
    kubeconfig: std::path::PathBuf,
    /// h1 runs the proxy, the pods and the ClusterIP client; h2 the
    /// NodePort client.
    h1: Host,
    h2: Host,
}

fn cluster(tag: &str) -> Cluster {
    let mut lab = Lab::new(tag, Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    let h2 = lab.host("h2", 12).expect("host");
    for h in [&h1, &h2] {
        lab.start_agent(h, &[]).expect("agent");
        lab.wait_subnet_env(h, Duration::from_secs(30))
            .expect("subnet");
    }
    // the host's own packets to Service IPs need a route to leave by
    sh(
        "ip",
        &["-n", &h1.ns, "route", "add", "10.254.0.0/16", "dev", "eth0"],
    )
    .expect("service route");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    let kubeconfig = api.admin_kubeconfig().expect("kubeconfig");
    Cluster {
        lab,
        api,
        kubeconfig,
        h1,
        h2,
    }
}

impl Cluster {
    fn start_proxy(&mut self, mode: &str, cleanup: bool) {
        let args = vec![
            "proxy".to_string(),
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--proxy-mode={mode}"),
            "--hostname-override=h1".into(),
            "--cluster-cidr=172.30.0.0/16".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
            format!("--conntrack-cleanup={cleanup}"),
        ];
        self.lab.start_proxy_args(&self.h1, &args).expect("proxy");
    }

    fn deleted(&self) -> f64 {
        let text = metrics(&self.h1, 10249).unwrap_or_default();
        metric_sum(&text, "weft_proxy_conntrack_entries_deleted_total")
    }

    fn fallbacks(&self) -> f64 {
        let text = metrics(&self.h1, 10249).unwrap_or_default();
        metric_sum(&text, "weft_proxy_fast_path_fallbacks_total")
    }
}

/// Waits until a one-off datagram from `ns` to `to` is answered by `pod`
/// (the rules are in place), so that steady clients started after it
/// never have a flow the rules did not see.
fn rules_serve(ns: &str, to: SocketAddr, pod: &Pod) {
    eventually(
        Duration::from_secs(30),
        &format!("{to} served by {}", pod.name),
        || {
            (udp_ask(ns, to, Duration::from_millis(300)).ok().as_deref() == Some(pod.name.as_str()))
                .then_some(())
        },
    );
}

/// Waits until `client` is answered by `pod`; how long that took.
fn answered_by(client: &SteadyUdpClient, pod: &Pod, since: Instant, within: Duration) -> Duration {
    eventually(within, &format!("an answer from {}", pod.name), || {
        client.first_answer_from(&pod.name, since)
    })
    .saturating_duration_since(since)
}

fn udp_flows_follow_the_service(mode: &str, tag: &str) {
    let mut c = cluster(tag);
    let mut pods: Vec<Pod> = (0..3)
        .map(|i| c.lab.pod(&c.h1, &format!("dns{i}")).expect("pod"))
        .collect();
    let mut servers: Vec<Option<EchoServer>> = pods
        .iter()
        .map(|p| Some(serve_name(p, 53).expect("server")))
        .collect();

    // Without cleanup: the flows stay on the deleted pod.
    c.start_proxy(mode, false);
    c.api
        .apply(&service("dns", VIP, Some(NODE_PORT)))
        .expect("service");
    c.api.apply(&slice("dns", &pods[0])).expect("slice");
    let vip: SocketAddr = format!("{VIP}:53").parse().expect("vip");
    let node_port = SocketAddr::new(c.h1.ip.into(), NODE_PORT);
    rules_serve(&c.h1.ns, vip, &pods[0]);
    rules_serve(&c.h2.ns, node_port, &pods[0]);
    let every = Duration::from_millis(100);
    let to_vip = SteadyUdpClient::start(&c.h1.ns, 40053, vip, every).expect("client");
    let to_node_port = SteadyUdpClient::start(&c.h2.ns, 40054, node_port, every).expect("client");
    let t = Instant::now();
    answered_by(&to_vip, &pods[0], t, Duration::from_secs(30));
    answered_by(&to_node_port, &pods[0], t, Duration::from_secs(30));

    c.api.apply(&slice("dns", &pods[1])).expect("replaced");
    let replaced = Instant::now();
    delete_pod(&pods[0], servers[0].take().expect("server"));
    std::thread::sleep(Duration::from_secs(4));
    // (an answer from the old pod may still arrive between the slice's
    // change and the pod's deletion; none may come from the new one)
    for (what, client) in [("cluster IP", &to_vip), ("node port", &to_node_port)] {
        let answers = client.answers_since(replaced);
        assert!(
            answers.iter().all(|name| *name == pods[0].name),
            "{mode}: without cleanup the {what} flow should stay on the deleted pod, got {answers:?}"
        );
    }

    // A proxy that cleans: its first full sync moves both flows.
    c.start_proxy(mode, true);
    let restarted = Instant::now();
    answered_by(&to_vip, &pods[1], restarted, Duration::from_secs(30));
    answered_by(&to_node_port, &pods[1], restarted, Duration::from_secs(30));
    eventually(Duration::from_secs(10), "deletions counted", || {
        (c.deleted() >= 2.0).then_some(())
    });

    // A replacement while it runs: followed within a second.
    c.api
        .apply(&slice("dns", &pods[2]))
        .expect("replaced again");
    let replaced = Instant::now();
    delete_pod(&pods[1], servers[1].take().expect("server"));
    let took = answered_by(&to_vip, &pods[2], replaced, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(1),
        "{mode}: the cluster IP flow reached the new pod after {took:?}"
    );
    let took = answered_by(&to_node_port, &pods[2], replaced, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(1),
        "{mode}: the node port flow reached the new pod after {took:?}"
    );
    assert_eq!(c.fallbacks(), 0.0, "{}", c.lab.proxy_log(&c.h1));
    pods.clear();
}

#[test]
fn udp_flows_follow_their_service_in_nftables_mode() {
    udp_flows_follow_the_service("nftables", "wcn");
}

#[test]
fn udp_flows_follow_their_service_in_iptables_mode() {
    udp_flows_follow_the_service("iptables", "wci");
}

#[test]
fn a_flow_to_a_live_endpoint_keeps_its_entry_when_another_service_changes() {
    let mut c = cluster("wcl");
    let pods: Vec<Pod> = (0..3)
        .map(|i| c.lab.pod(&c.h1, &format!("p{i}")).expect("pod"))
        .collect();
    let _servers: Vec<EchoServer> = pods
        .iter()
        .map(|p| serve_name(p, 53).expect("server"))
        .collect();
    c.start_proxy("nftables", true);
    c.api
        .apply(&service("stays", "10.254.0.60", None))
        .expect("service");
    c.api.apply(&slice("stays", &pods[0])).expect("slice");
    c.api
        .apply(&service("moves", "10.254.0.61", None))
        .expect("service");
    c.api.apply(&slice("moves", &pods[1])).expect("slice");
    rules_serve(&c.h1.ns, "10.254.0.60:53".parse().expect("vip"), &pods[0]);
    rules_serve(&c.h1.ns, "10.254.0.61:53".parse().expect("vip"), &pods[1]);
    let every = Duration::from_millis(100);
    let stays = SteadyUdpClient::start(
        &c.h1.ns,
        40060,
        "10.254.0.60:53".parse().expect("vip"),
        every,
    )
    .expect("client");
    let moves = SteadyUdpClient::start(
        &c.h1.ns,
        40061,
        "10.254.0.61:53".parse().expect("vip"),
        every,
    )
    .expect("client");
    let t = Instant::now();
    answered_by(&stays, &pods[0], t, Duration::from_secs(30));
    answered_by(&moves, &pods[1], t, Duration::from_secs(30));
    let before = c.deleted();
    // the entries of flows to the Service that moves (the steady client's
    // and the one-off probe's)
    let mut ct =
        weft_kernel::Conntrack::open_in_netns(Path::new(&format!("/run/netns/{}", c.h1.ns)))
            .expect("ctnetlink");
    let to_moving = weft_kernel::DumpFilter {
        ipv6: false,
        protocol: weft_kernel::IPPROTO_UDP,
        dst_ip: Some("10.254.0.61".parse().expect("ip")),
        dst_port: Some(53),
    };
    let moving = ct.dump(&to_moving).expect("dump").len();
    assert!(moving >= 1);

    // the other Service's endpoint moves (its old pod still answers, so
    // only the cleanup can move that flow)
    c.api.apply(&slice("moves", &pods[2])).expect("moved");
    let moved = Instant::now();
    answered_by(&moves, &pods[2], moved, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    // exactly the moved Service's entries went; the live one was not touched
    assert_eq!(
        c.deleted() - before,
        moving as f64,
        "{}",
        c.lab.proxy_log(&c.h1)
    );
    let answers = stays.answers_since(moved);
    assert!(
        answers.len() >= 8,
        "the live flow kept answering: {answers:?}"
    );
    assert!(answers.iter().all(|n| n == &pods[0].name), "{answers:?}");
}
