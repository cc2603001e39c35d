//! The check against file trees as hosts hold them.
use super::files::{below_root, last_flag_in, words};
use super::*;

struct Tree(tempfile::TempDir);

impl Tree {
    fn new() -> Tree {
        match tempfile::tempdir() {
            Ok(dir) => Tree(dir),
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn write(&self, rel: &str, text: &str) -> &Tree {
        let path = self.0.path().join(rel);
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                panic!("mkdir {}: {e}", parent.display());
            }
        }
        if let Err(e) = std::fs::write(&path, text) {
            panic!("write {}: {e}", path.display());
        }
        self
    }

    fn check(&self, info: Option<&str>, v2: bool) -> DriverReport {
        match check(self.0.path(), info, v2) {
            Ok(report) => report,
            Err(e) => panic!("check failed: {e}"),
        }
    }

    fn error(&self) -> String {
        match check(self.0.path(), None, false) {
            Ok(report) => panic!("expected an error, got {report:?}"),
            Err(e) => e.to_string(),
        }
    }
}

fn driver(side: &Option<Detected>) -> Option<CgroupDriver> {
    side.as_ref().map(|d| d.driver)
}

fn source(side: &Option<Detected>) -> String {
    side.as_ref()
        .map(|d| d.source.to_string())
        .unwrap_or_default()
}

#[test]
fn mismatch_daemon_json_vs_kubelet_flag() {
    let tree = Tree::new();
    tree.write(
        "etc/docker/daemon.json",
        r#"{"exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "json-file"}"#,
    )
    .write(
        "etc/kubernetes/kubelet",
        "# kubelet options\nKUBELET_ARGS=\"--hostname-override=node1 \\\n  --cgroup-driver=cgroupfs --fail-swap-on=false\"\n",
    );
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert_eq!(driver(&report.docker), Some(CgroupDriver::Systemd));
    assert_eq!(driver(&report.kubelet), Some(CgroupDriver::Cgroupfs));
    assert_eq!(
        source(&report.docker),
        "exec-opts native.cgroupdriver=systemd in /etc/docker/daemon.json"
    );
    assert_eq!(
        source(&report.kubelet),
        "--cgroup-driver=cgroupfs flag in /etc/kubernetes/kubelet"
    );
    assert_eq!(
        report.fix.as_deref(),
        Some(
            "set kubelet --cgroup-driver=systemd (in /etc/kubernetes/kubelet) or docker \
             exec-opts native.cgroupdriver=cgroupfs (in /etc/docker/daemon.json), then \
             restart both"
        )
    );
    assert!(
        report.summary.contains(
            r#"kubelet cgroup driver: \"cgroupfs\" is different from docker cgroup driver: \"systemd\""#
        ),
        "{}",
        report.summary
    );
    let text = report.render();
    assert!(text.contains("verdict: MISMATCH"), "{text}");
    assert!(text.contains("fix:     set kubelet"), "{text}");
}

#[test]
fn match_via_config_yaml() {
    let tree = Tree::new();
    tree.write(
        "var/lib/kubelet/config.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
    )
    .write("etc/docker/daemon.json", r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#);
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::Match, "{report:?}");
    assert_eq!(
        source(&report.kubelet),
        "cgroupDriver: systemd in /var/lib/kubelet/config.yaml"
    );
    assert_eq!(report.fix, None);
    assert_eq!(
        report.summary,
        "kubelet and docker both use the systemd cgroup driver"
    );
}

#[test]
fn config_without_field_defaults_to_cgroupfs_and_flag_wins() {
    let tree = Tree::new();
    tree.write(
        "var/lib/kubelet/config.yaml",
        "kind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\n",
    )
    .write("etc/docker/daemon.json", "{}");
    let report = tree.check(None, true);
    assert_eq!(driver(&report.kubelet), Some(CgroupDriver::Cgroupfs));
    assert_eq!(driver(&report.docker), Some(CgroupDriver::Systemd));
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert_eq!(
        report.fix.as_deref(),
        Some(
            "set kubelet cgroupDriver: systemd (in /var/lib/kubelet/config.yaml) or docker \
             exec-opts native.cgroupdriver=cgroupfs (in /etc/docker/daemon.json), then \
             restart both"
        )
    );

    tree.write(
        "var/lib/kubelet/kubeadm-flags.env",
        "KUBELET_KUBEADM_ARGS=\"--cgroup-driver=systemd --network-plugin=cni\"\n",
    );
    let report = tree.check(None, true);
    assert_eq!(report.verdict, Verdict::Match);
    assert_eq!(
        source(&report.kubelet),
        "--cgroup-driver=systemd flag in /var/lib/kubelet/kubeadm-flags.env"
    );
}

#[test]
fn docker_default_depends_on_cgroup_version() {
    let tree = Tree::new();
    tree.write(
        "usr/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd\n",
    )
    .write(
        "etc/default/kubelet",
        "KUBELET_EXTRA_ARGS=--cgroup-driver systemd\n",
    );
    let v1 = tree.check(None, false);
    assert_eq!(driver(&v1.docker), Some(CgroupDriver::Cgroupfs));
    assert_eq!(v1.verdict, Verdict::Mismatch);
    assert_eq!(
        source(&v1.docker),
        "docker's default on cgroup v1 (no native.cgroupdriver set)"
    );
    let v2 = tree.check(None, true);
    assert_eq!(driver(&v2.docker), Some(CgroupDriver::Systemd));
    assert_eq!(v2.verdict, Verdict::Match);
    assert_eq!(driver(&v2.kubelet), Some(CgroupDriver::Systemd));
}

#[test]
fn kubelet_default_when_installed_without_settings() {
    let tree = Tree::new();
    tree.write("usr/bin/kubelet", "").write(
        "etc/docker/daemon.json",
        r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#,
    );
    let report = tree.check(None, false);
    assert_eq!(driver(&report.kubelet), Some(CgroupDriver::Cgroupfs));
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert!(
        report
            .fix
            .as_deref()
            .unwrap_or_default()
            .starts_with("set kubelet --cgroup-driver=systemd or docker"),
        "{:?}",
        report.fix
    );
}

#[test]
fn dropin_exec_start_and_sysconfig() {
    let tree = Tree::new();
    tree.write(
        "etc/systemd/system/docker.service.d/10-base.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --exec-opt native.cgroupdriver=cgroupfs\n",
    )
    .write(
        "etc/systemd/system/docker.service.d/20-override.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H fd:// \\\n  --exec-opt=native.cgroupdriver=systemd\n",
    )
    .write("etc/sysconfig/docker", "OPTIONS='--selinux-enabled --exec-opt native.cgroupdriver=cgroupfs'\n")
    .write("etc/sysconfig/kubelet", "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n");
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::Match, "{report:?}");
    assert_eq!(
        source(&report.docker),
        "--exec-opt native.cgroupdriver=systemd on ExecStart in \
         /etc/systemd/system/docker.service.d/20-override.conf"
    );

    // Without the drop-ins the sysconfig OPTIONS decide, and the fix names the flag file.
    let tree = Tree::new();
    tree.write(
        "etc/sysconfig/docker",
        "# docker\nOPTIONS='--selinux-enabled --exec-opt native.cgroupdriver=cgroupfs'\n",
    )
    .write(
        "etc/sysconfig/kubelet",
        "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
    );
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert_eq!(
        report.fix.as_deref(),
        Some(
            "set kubelet --cgroup-driver=cgroupfs (in /etc/sysconfig/kubelet) or docker \
             --exec-opt native.cgroupdriver=systemd (in /etc/sysconfig/docker), then restart both"
        )
    );
}

#[test]
fn config_indirection() {
    let tree = Tree::new();
    tree.write(
        "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "[Service]\nEnvironment=\"KUBELET_CONFIG_ARGS=--config=/etc/kubernetes/kubelet-config.yaml\"\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_CONFIG_ARGS\n",
    )
    .write("etc/kubernetes/kubelet-config.yaml", "kind: KubeletConfiguration\ncgroupDriver: systemd\n")
    // not the one kubelet reads
    .write("var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n")
    .write("etc/docker/daemon.json", r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#);
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::Match, "{report:?}");
    assert_eq!(
        source(&report.kubelet),
        "cgroupDriver: systemd in /etc/kubernetes/kubelet-config.yaml"
    );

    // --config given with a separate value and `..` stays below the root
    let tree = Tree::new();
    tree.write(
        "etc/kubernetes/kubelet",
        "KUBELET_ARGS=\"--config ../../../cfg/k.yaml\"\n",
    )
    .write("cfg/k.yaml", "cgroupDriver: cgroupfs\n")
    .write("etc/docker/daemon.json", "{}");
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::Match, "{report:?}");
    assert_eq!(
        source(&report.kubelet),
        "cgroupDriver: cgroupfs in /cfg/k.yaml"
    );
}

#[test]
fn docker_info_wins_and_notes_stale_config() {
    let tree = Tree::new();
    tree.write(
        "etc/docker/daemon.json",
        r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#,
    )
    .write(
        "etc/kubernetes/kubelet",
        "KUBELET_ARGS=--cgroup-driver=systemd\n",
    );
    let report = tree.check(Some("cgroupfs\n"), false);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert_eq!(source(&report.docker), "docker info");
    assert_eq!(
        report.notes,
        ["docker is running with cgroupfs but /etc/docker/daemon.json sets systemd: restart docker to apply it"]
    );

    // Running cgroupfs like kubelet, but a restart would switch docker to systemd.
    tree.write(
        "etc/kubernetes/kubelet",
        "KUBELET_ARGS=--cgroup-driver=cgroupfs\n",
    );
    let report = tree.check(Some("cgroupfs"), false);
    assert_eq!(report.verdict, Verdict::Match);
    assert_eq!(
        report.notes.last().map(String::as_str),
        Some("after a restart docker would use systemd, which differs from kubelet's cgroupfs")
    );
}

#[test]
fn absent_sides_are_not_applicable() {
    let tree = Tree::new();
    let report = tree.check(None, true);
    assert_eq!(report.verdict, Verdict::NotApplicable);
    assert_eq!(report.summary, "neither kubelet nor docker is installed");
    assert!(report.kubelet.is_none() && report.docker.is_none());

    tree.write(
        "etc/default/kubelet",
        "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
    );
    let report = tree.check(None, true);
    assert_eq!(report.verdict, Verdict::NotApplicable);
    assert_eq!(report.summary, "docker is not installed");

    let tree = Tree::new();
    let report = tree.check(Some("systemd"), false);
    assert_eq!(report.summary, "kubelet is not installed");
    assert_eq!(driver(&report.docker), Some(CgroupDriver::Systemd));
}

#[test]
fn kubelet_on_containerd_is_not_applicable() {
    let tree = Tree::new();
    tree.write(
        "var/lib/kubelet/kubeadm-flags.env",
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock\"\n",
    )
    .write("var/lib/kubelet/config.yaml", "cgroupDriver: systemd\n")
    .write("etc/docker/daemon.json", "{}");
    let report = tree.check(None, false);
    assert_eq!(report.verdict, Verdict::NotApplicable);
    assert!(
        report.summary.contains("containerd.sock"),
        "{}",
        report.summary
    );
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let tree = Tree::new();
    tree.write(
        "etc/docker/daemon.json",
        "{\"exec-opts\": [\"native.cgroupdriver=systemd\",}",
    );
    let err = tree.error();
    let path = tree.0.path().join("etc/docker/daemon.json");
    assert!(
        err.starts_with(&format!("{}: invalid JSON: ", path.display())),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");

    tree.write(
        "etc/docker/daemon.json",
        r#"{"exec-opts": "native.cgroupdriver=systemd"}"#,
    );
    assert_eq!(
        tree.error(),
        format!("{}: exec-opts: expected a list of strings", path.display())
    );

    tree.write(
        "etc/docker/daemon.json",
        r#"{"exec-opts": ["native.cgroupdriver=system"]}"#,
    );
    assert_eq!(
        tree.error(),
        format!(
            "{}: exec-opts native.cgroupdriver: unknown cgroup driver \"system\" (expected systemd or cgroupfs)",
            path.display()
        )
    );

    let tree = Tree::new();
    tree.write("var/lib/kubelet/config.yaml", "cgroupDriver: [systemd\n");
    let err = tree.error();
    let path = tree.0.path().join("var/lib/kubelet/config.yaml");
    assert!(
        err.starts_with(&format!("{}: invalid YAML: ", path.display())),
        "{err}"
    );

    tree.write("var/lib/kubelet/config.yaml", "cgroupDriver: 3\n");
    assert_eq!(
        tree.error(),
        format!("{}: cgroupDriver: expected a string", path.display())
    );

    let err = match check(Tree::new().0.path(), Some("none"), false) {
        Ok(r) => panic!("{r:?}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        "docker info: CgroupDriver: unknown cgroup driver \"none\" (expected systemd or cgroupfs)"
    );
}

#[test]
fn word_splitting() {
    assert_eq!(
        words(r#"KUBELET_ARGS="--a=b  --c 'd'" ExecStart=/usr/bin/x"#),
        ["--a=b", "--c", "d", "/usr/bin/x"]
    );
    assert_eq!(
        words("Environment=\"KUBELET_CONFIG_ARGS=--config=/x.yaml\""),
        ["--config=/x.yaml"]
    );
    assert_eq!(below_root("/a/../../b/./c"), "b/c");
    assert_eq!(
        last_flag_in(
            "# --cgroup-driver=systemd\nX=--cgroup-driver=cgroupfs\n",
            "cgroup-driver"
        )
        .as_deref(),
        Some("cgroupfs")
    );
}
