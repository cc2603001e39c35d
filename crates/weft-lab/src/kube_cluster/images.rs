//! The images a lab cluster runs, built here from the pinned upstream
//! programs (no registry is reachable): the sandbox image (`pause`, C,
//! from the Kubernetes module), agnhost (the e2e suite's Swiss-army
//! image, on a Debian root with the tools tests run in it: curl, nc,
//! ip, dig, bash) and busybox (Debian's static busybox), under the exact
//! names the kubelet and the e2e suite ask for.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::image::Image;

/// Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";
pub const BUSYBOX_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1";

/// The names and archive files of the lab's images.
pub struct LabImages {
    pub pause: String,
    pub agnhost: String,
    pub archives: Vec<(String, PathBuf)>,
}

/// Builds every image archive into `out` from the cluster set in `bin`.
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

    let mut p = Image::new(&pause);
    p.file("/pause", &bin.join("pause"), 0o755);
    p.entrypoint = vec!["/pause".into()];

    // agnhost's own image is Alpine with curl, nc, ip, dig and bash (its
    // Dockerfile); here Debian with the same tools (scripts/upstream.sh)
    let mut a = Image::new(&agnhost);
    a.base = Some(bin.join("agnhost-base.tar"));
    a.file("/agnhost", &bin.join("agnhost"), 0o755)
        .symlink("/agnhost-2", "agnhost")
        .dir("/uploads");
    a.entrypoint = vec!["/agnhost".into()];
    a.cmd = vec!["pause".into()];

    let mut b = with_busybox(Image::new(BUSYBOX_IMAGE), &applets);
    b.cmd = vec!["sh".into()];

    let mut archives = Vec::new();
    for (i, img) in [p, a, b].iter().enumerate() {
        let file = out.join(format!("image-{i}.tar"));
        img.write_archive(&file)?;
        archives.push((img.name.clone(), file));
    }
    Ok(LabImages {
        pause,
        agnhost,
        archives,
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
