//! The images a lab cluster runs, built here from the pinned upstream
//! programs (no registry is reachable), under the exact names the
//! kubelet and the e2e suite ask for:
//! - the sandbox image (`pause`, C, from the Kubernetes module);
//! - CoreDNS, the cluster's DNS;
//! - the e2e suite's images: agnhost (its Swiss-army program),
//!   glibc-dns-testing (dig and getent), nginx, regression-issue-74839
//!   (the conntrack spec's server) and busybox (Debian's static busybox).
//!
//! Upstream's agnhost is Alpine with curl, nc, ip, dig, bash and CoreDNS;
//! here agnhost, glibc-dns-testing and nginx share one Debian root with
//! those tools, nginx and agnhost's image-defined user and group
//! (`scripts/upstream.sh cluster` debootstraps it). All images go into
//! one archive, so that root is stored and imported once per node.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::image::{write_archive, Image};

/// Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";
pub const BUSYBOX_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1";
/// Older specs still name the previous busybox tag.
const BUSYBOX_OLD_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.36.1-1";
const GLIBC_DNS_IMAGE: &str = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0";
const NGINX_IMAGE: &str = "registry.k8s.io/e2e-test-images/nginx:1.15-4";
const REGRESSION_74839_IMAGE: &str = "registry.k8s.io/e2e-test-images/regression-issue-74839:1.4";
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.15.0";

/// The names and archive file of the lab's images.
pub struct LabImages {
    pub pause: String,
    pub agnhost: String,
    /// Every image, in one archive for `ctr images import`.
    pub archive: PathBuf,
    pub names: Vec<String>,
}

/// Builds the image archive into `out` from the cluster set in `bin`.
pub fn build(bin: &Path, out: &Path) -> Result<LabImages> {
    std::fs::create_dir_all(out)?;
    let version = |f: &str| -> Result<String> {
        let p = bin.join(f);
        Ok(std::fs::read_to_string(&p)
            .with_context(|| {
                format!(
                    "reading {} (scripts/upstream.sh cluster writes it)",
                    p.display()
                )
            })?
            .trim()
            .to_string())
    };
    let applets = busybox_applets()?;
    let pause = format!("registry.k8s.io/pause:{}", version("pause.version")?);
    let agnhost = format!(
        "registry.k8s.io/e2e-test-images/agnhost:{}",
        version("agnhost.version")?
    );
    let base = bin.join("debian-base.tar");
    let coredns = bin.join("coredns");

    let mut p = Image::new(&pause);
    p.file("/pause", &bin.join("pause"), 0o755);
    p.entrypoint = vec!["/pause".into()];

    let mut a = Image::new(&agnhost);
    a.base = Some(base.clone());
    a.file("/agnhost", &bin.join("agnhost"), 0o755)
        .symlink("/agnhost-2", "agnhost")
        .file("/coredns", &coredns, 0o755)
        .file("/localhost.crt", &bin.join("agnhost-localhost.crt"), 0o644)
        .file("/localhost.key", &bin.join("agnhost-localhost.key"), 0o644)
        .dir("/uploads");
    a.entrypoint = vec!["/agnhost".into()];
    a.cmd = vec!["pause".into()];

    let mut g = Image::new(GLIBC_DNS_IMAGE);
    g.base = Some(base.clone());
    g.file("/coredns", &coredns, 0o755);
    g.cmd = vec!["/bin/bash".into()];

    let mut n = Image::new(NGINX_IMAGE);
    n.base = Some(base);
    n.entrypoint = vec!["nginx".into(), "-g".into(), "daemon off;".into()];

    let mut r = Image::new(REGRESSION_74839_IMAGE);
    r.file(
        "/regression-issue-74839",
        &bin.join("regression-issue-74839"),
        0o755,
    );
    r.entrypoint = vec!["/regression-issue-74839".into()];

    let mut d = Image::new(COREDNS_IMAGE);
    d.file("/coredns", &coredns, 0o755);
    d.entrypoint = vec!["/coredns".into()];

    let mut b = with_busybox(Image::new(BUSYBOX_IMAGE), &applets);
    b.cmd = vec!["sh".into()];
    let mut b_old = b.clone();
    b_old.name = BUSYBOX_OLD_IMAGE.into();

    let images = [p, a, g, n, r, d, b, b_old];
    let archive = out.join("images.tar");
    write_archive(&images, &archive)?;
    Ok(LabImages {
        pause,
        agnhost,
        archive,
        names: images.iter().map(|i| i.name.clone()).collect(),
    })
}

/// busybox at /bin/busybox with a link per applet, and the files a shell
/// and name lookups expect.
fn with_busybox(mut img: Image, applets: &[String]) -> Image {
    img.file("/bin/busybox", Path::new(BUSYBOX), 0o755);
    for a in applets {
        if a != "/bin/busybox" {
            img.symlink(a, "/bin/busybox");
        }
    }
    img.bytes(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    )
    .bytes("/etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644)
    .bytes("/etc/nsswitch.conf", b"hosts: files dns\n", 0o644)
    .dir("/tmp")
    .dir("/root");
    img
}

/// Where busybox puts its applets (`/bin/sh`, `/usr/bin/wget`, …).
fn busybox_applets() -> Result<Vec<String>> {
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {BUSYBOX} (Debian's busybox-static)"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("/{l}"))
        .collect())
}
