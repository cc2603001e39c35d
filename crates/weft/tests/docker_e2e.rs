//! The article's Docker path with real daemons: the agent writes the subnet
//! file, `weft docker-opts` turns it into `DOCKER_NETWORK_OPTIONS`, one
//! dockerd per host starts with those options (`--bip`, `--mtu`,
//! `--ip-masq=false`), and containers on different hosts reach each other
//! through docker's own FORWARD DROP policy because of the agent's forward
//! rules, with exactly one masquerade on the way out of the cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_lab::{eventually, sh, Container, Dockerd, Host, Lab, Proc};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn in_ns(ns: &str, program: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns, program];
    a.extend_from_slice(args);
    let out = sh("ip", &a).unwrap_or_else(|e| panic!("{program} in {ns}: {e:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weft docker-opts` the way weft-agent.service's ExecStartPost runs it.
fn docker_opts(lab: &Lab, host: &Host) -> PathBuf {
    let out = lab.dir().join(&host.name).join("docker.env");
    let subnet = lab.subnet_file(host);
    sh(
        WEFT,
        &[
            "docker-opts",
            "-f",
            &subnet.display().to_string(),
            "-k",
            "DOCKER_NETWORK_OPTIONS",
            "-d",
            &out.display().to_string(),
        ],
    )
    .expect("weft docker-opts");
    out
}

/// `<hostname> saw <address>` from the `who` CGI, fetched inside `from`.
fn who(d: &Dockerd, from: &Container, url: &str) -> Result<(String, String), String> {
    d.who(from, url).map_err(|e| format!("{e:#}"))
}

fn doctor(lab: &Lab, host: &Host) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &host.ns, WEFT, "doctor"])
        .arg(format!("--subnet-file={}", lab.subnet_file(host).display()))
        .arg(format!("--etcd-endpoints={}", lab.etcd_url().expect("url")))
        .output()
        .expect("weft doctor");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn containers_on_two_docker_hosts_talk_through_the_overlay() {
    let mut lab = Lab::new("wdk", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    let h2 = lab.host("h2", 12).expect("host");
    // a host outside the cluster: no agent, no docker
    let ext = lab.host("ext", 13).expect("host");
    let www = lab.dir().join("ext-www");
    std::fs::create_dir_all(www.join("cgi-bin")).expect("www");
    std::fs::write(
        www.join("cgi-bin/who"),
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"ext saw $REMOTE_ADDR\"\n",
    )
    .expect("cgi");
    sh(
        "chmod",
        &["755", &www.join("cgi-bin/who").display().to_string()],
    )
    .expect("chmod");
    let _ext_httpd = Proc::spawn(
        &ext.ns,
        "httpd@ext",
        lab.dir().join("ext-httpd.log"),
        "/usr/bin/busybox",
        &[
            "httpd",
            "-f",
            "-p",
            "8000",
            "-h",
            &www.display().to_string(),
        ]
        .map(String::from),
        &[],
    )
    .expect("httpd on ext");

    // The agents: -ip-masq as in the article's FLANNEL_OPTIONS; a long
    // resync so that rules removed by the test stay removed until the
    // agent restarts.
    let agent_flags = ["-ip-masq", "-iptables-resync=3600"];
    let mut daemons = Vec::new();
    for h in [&h1, &h2] {
        lab.start_agent(h, &agent_flags).expect("agent");
        let env = lab
            .wait_subnet_env(h, Duration::from_secs(30))
            .expect("subnet file");
        let opts_file = docker_opts(&lab, h);
        let opts = std::fs::read_to_string(&opts_file).expect("docker opts");
        let subnet = env.subnet.expect("FLANNEL_SUBNET");
        let bip = format!("--bip={subnet}");
        assert!(
            opts.contains(&bip) && opts.contains("--ip-masq=false") && opts.contains("--mtu=1450"),
            "{opts}"
        );
        assert!(
            opts.contains("\nDOCKER_NETWORK_OPTIONS=\" --bip="),
            "{opts}"
        );
        // as on a freshly booted CentOS 7 host, forwarding is off until
        // docker turns it on, and then docker (>= 1.13) sets FORWARD DROP
        in_ns(&h.ns, "sysctl", &["-qw", "net.ipv4.ip_forward=0"]);
        let d = Dockerd::start(&lab, h, &opts_file, "DOCKER_NETWORK_OPTIONS")
            .unwrap_or_else(|e| panic!("dockerd on {}: {e:#}", h.name));
        // docker0 sits on the leased subnet
        let docker0 = in_ns(&h.ns, "ip", &["-o", "addr", "show", "docker0"]);
        assert!(docker0.contains(&format!("inet {subnet}")), "{docker0}");
        // docker's FORWARD policy, and no masquerade of docker's own
        let filter = in_ns(&h.ns, "iptables-save", &["-t", "filter"]);
        assert!(filter.contains(":FORWARD DROP"), "{filter}");
        let nat = in_ns(&h.ns, "iptables-save", &["-t", "nat"]);
        assert!(
            !nat.lines()
                .any(|l| l.contains("MASQUERADE") && l.contains("docker0")),
            "docker masquerades although FLANNEL_IPMASQ=true:\n{nat}"
        );
        daemons.push(d);
    }
    let (d1, d2) = (&daemons[0], &daemons[1]);
    let c1 = d1.run("c1", &[]).expect("c1");
    let c2 = d2.run("c2", &[]).expect("c2");
    // (a published port is accepted by docker's own rules: not c2's)
    d2.run("web", &["-p", "8080:80"]).expect("web");

    // containers get the agent's MTU, so full-size packets fit the vxlan
    for (d, c) in [(d1, &c1), (d2, &c2)] {
        let link = d.exec(c, &["ip", "link", "show", "eth0"]).expect("ip link");
        assert!(link.contains("mtu 1450"), "{link}");
    }

    // ping both ways, then TCP: each side sees the other's own address
    for (d, from, to) in [(d1, &c1, &c2), (d2, &c2, &c1)] {
        let ip = to.ip.to_string();
        eventually(
            Duration::from_secs(15),
            "container ping across hosts",
            || d.exec(from, &["ping", "-c", "1", "-W", "1", &ip]).ok(),
        );
        let url = format!("http://{ip}/cgi-bin/who");
        let (name, addr) = who(d, from, &url).expect("tcp across hosts");
        assert_eq!(name, to.name);
        assert_eq!(
            addr,
            from.ip.to_string(),
            "pod-to-pod traffic must not be masqueraded"
        );
    }

    // docker run -p: web's published port reached from a container on h1;
    // leaving the overlay, the traffic is masqueraded once, by the agent
    let url = format!("http://{}:8080/cgi-bin/who", h2.ip);
    let (name, addr) = who(d1, &c1, &url).expect("published port");
    assert_eq!(
        (name.as_str(), addr.as_str()),
        ("web", h1.ip.to_string().as_str())
    );
    let url = format!("http://{}:8000/cgi-bin/who", ext.ip);
    let (name, addr) = who(d1, &c1, &url).expect("external host");
    assert_eq!(
        (name.as_str(), addr.as_str()),
        ("ext", h1.ip.to_string().as_str())
    );
    let nat = in_ns(&h1.ns, "iptables-save", &["-t", "nat", "-c"]);
    let masquerades: Vec<&str> = nat
        .lines()
        .filter(|l| l.contains("-j MASQUERADE"))
        .collect();
    assert!(
        masquerades.iter().all(|l| l.contains("FLANNEL-POSTRTG")),
        "only the agent masquerades:\n{nat}"
    );
    assert!(
        masquerades.iter().any(|l| !l.starts_with("[0:")),
        "the agent's masquerade rule counted the traffic:\n{nat}"
    );

    // Without the agent's forward rules, docker's DROP policy stops the
    // overlay; doctor names the cause; the agent puts them back.
    let report = doctor(&lab, &h2);
    assert!(
        report.contains(
            "[ok] forward-policy: FORWARD policy is DROP, but traffic of 172.30.0.0/16 is accepted"
        ),
        "{report}"
    );
    in_ns(
        &h2.ns,
        "iptables",
        &[
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "flanneld forward",
            "-j",
            "FLANNEL-FWD",
        ],
    );
    let url = format!("http://{}/cgi-bin/who", c2.ip);
    assert!(
        who(d1, &c1, &url).is_err(),
        "traffic into h2's containers passed docker's DROP policy without the agent's rules"
    );
    let report = doctor(&lab, &h2);
    assert!(
        report.contains(
            "[FAIL] forward-policy: FORWARD policy is DROP and nothing accepts 172.30.0.0/16"
        ),
        "{report}"
    );
    assert!(report.contains("[ok] docker-bridge"), "{report}");
    lab.stop_agent(&h2, false);
    lab.start_agent(&h2, &agent_flags).expect("agent restarted");
    eventually(
        Duration::from_secs(20),
        "traffic after the agent restored its rules",
        || who(d1, &c1, &url).ok(),
    );
    drop(daemons);
}
