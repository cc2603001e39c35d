//! `weft-image`: writes weft's container image as an archive that
//! `ctr images import` and `docker load` take (no registry, no docker
//! needed). scripts/image.sh builds the inputs and runs it.
//!
//!   weft-image --name weft:0.1.0 --base ROOT.tar --weft BIN --proxy BIN --cni BIN --out FILE
//!
//! The image: a root file system with iptables and nftables (`--base`,
//! debootstrapped by the script), `weft` at /usr/bin/weft (agent, proxy and
//! every command; also answering as `flanneld`), the proxy alone at
//! /usr/bin/weft-proxy (what the proxy's DaemonSet runs), and the static CNI plugin
//! at /usr/lib/weft/flannel, which the agent's DaemonSet copies onto each
//! host as /opt/cni/bin/flannel.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use weft_lab::Image;

struct Args {
    name: String,
    base: PathBuf,
    weft: PathBuf,
    proxy: PathBuf,
    cni: PathBuf,
    out: PathBuf,
}

fn parse() -> Result<Args> {
    let (mut name, mut base, mut weft, mut proxy, mut cni, mut out) =
        (None, None, None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => name = Some(value),
            "--base" => base = Some(PathBuf::from(value)),
            "--weft" => weft = Some(PathBuf::from(value)),
            "--proxy" => proxy = Some(PathBuf::from(value)),
            "--cni" => cni = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            other => bail!("unknown flag {other} (see the top of weft-image.rs)"),
        }
    }
    Ok(Args {
        name: name.context("--name: the image's name, e.g. weft:0.1.0")?,
        base: base.context("--base: the root file system tar")?,
        weft: weft.context("--weft: the weft binary")?,
        proxy: proxy.context("--proxy: the weft-proxy binary")?,
        cni: cni.context("--cni: the static CNI plugin")?,
        out: out.context("--out: the archive to write")?,
    })
}

fn run() -> Result<()> {
    let a = parse()?;
    for (flag, path) in [
        ("--base", &a.base),
        ("--weft", &a.weft),
        ("--proxy", &a.proxy),
        ("--cni", &a.cni),
    ] {
        if !path.is_file() {
            bail!("{flag}: {} is not a file", path.display());
        }
    }
    let mut img = Image::new(&a.name);
    img.base = Some(a.base.clone());
    img.file("/usr/bin/weft", &a.weft, 0o755)
        .symlink("/usr/bin/flanneld", "weft")
        .file("/usr/bin/weft-proxy", &a.proxy, 0o755)
        .file("/usr/lib/weft/flannel", &a.cni, 0o755)
        .dir("/run/flannel")
        .dir("/etc/kube-flannel");
    img.entrypoint = vec!["/usr/bin/weft".into()];
    let size = img.write_archive(&a.out)?;
    println!(
        "{}: {} ({:.1} MB)",
        a.name,
        a.out.display(),
        size as f64 / 1e6
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-image: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
