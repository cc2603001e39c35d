//! `weft install`: puts the binary, its flannel-compatible names, the
//! systemd units, the CNI plugin and an example CNI config where they
//! belong. `--root` installs into another tree (a package build, a test).
//! Existing configuration files are never overwritten.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const AGENT_UNIT: &str = include_str!("../../../../dist/systemd/weft-agent.service");
const DOCKER_DROPIN: &str = include_str!("../../../../dist/systemd/docker.service.d/10-weft.conf");
const SYSCONFIG: &str = include_str!("../../../../dist/sysconfig/flanneld");
const CONFLIST: &str = include_str!("../../../../dist/cni/10-flannel.conflist");

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Install into this root instead of /
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Prefix of bin/ and libexec/ on the target system
    #[arg(long, default_value = "/usr")]
    prefix: PathBuf,
    /// Where CNI plugins live
    #[arg(long, default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Where CNI network configs live
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where to put the systemd units
    #[arg(long, default_value = "/etc/systemd/system")]
    systemd_dir: PathBuf,
    /// Install this agent-only binary as flanneld (the lean build,
    /// target/lean/flanneld: a third less memory per host); without it
    /// flanneld is a link to weft
    #[arg(long)]
    agent_binary: Option<PathBuf>,
}

/// `path` (absolute on the target system) inside `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<bool> {
    if !overwrite && path.exists() {
        println!("kept      {} (already exists)", path.display());
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("weft-tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))?;
    println!("installed {}", path.display());
    Ok(true)
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {}", link.display()))?;
    println!("linked    {} -> {}", link.display(), target.display());
    Ok(())
}

/// The bytes of `--agent-binary`, once it has answered `-version` as a weft
/// agent does (a stray file would replace a working flanneld otherwise).
fn read_agent_binary(path: &Path) -> Result<Vec<u8>> {
    weft_agent::cli::check_agent_binary("--agent-binary", path)?;
    std::fs::read(path).with_context(|| format!("--agent-binary: reading {}", path.display()))
}

pub fn run(a: InstallArgs) -> Result<()> {
    if !a.prefix.is_absolute()
        || !a.cni_bin_dir.is_absolute()
        || !a.cni_conf_dir.is_absolute()
        || !a.systemd_dir.is_absolute()
    {
        bail!("--prefix, --cni-bin-dir, --cni-conf-dir and --systemd-dir must be absolute paths");
    }
    let exe = std::env::current_exe().context("locating the running binary")?;
    let binary = std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    // checked and read before anything is written: a bad path changes nothing
    let agent = match &a.agent_binary {
        Some(path) => Some(read_agent_binary(path)?),
        None => None,
    };
    let bindir = a.prefix.join("bin");
    let weft = bindir.join("weft");
    write_file(&under(&a.root, &weft), &binary, 0o755, true)?;
    let flanneld = under(&a.root, &bindir.join("flanneld"));
    match &agent {
        // (written beside and renamed over: an earlier link is replaced)
        Some(bytes) => write_file(&flanneld, bytes, 0o755, true).map(|_| ())?,
        None => {
            if flanneld.symlink_metadata().is_ok_and(|m| m.is_file()) {
                println!(
                    "note: {} was an agent-only binary; it becomes a link to weft (--agent-binary keeps it)",
                    flanneld.display()
                );
            }
            symlink(Path::new("weft"), &flanneld)?
        }
    }
    symlink(
        &weft,
        &under(&a.root, &a.prefix.join("libexec/flannel/mk-docker-opts.sh")),
    )?;
    symlink(&weft, &under(&a.root, &a.cni_bin_dir.join("flannel")))?;
    let unit = AGENT_UNIT.replace("@BINDIR@", &bindir.to_string_lossy());
    write_file(
        &under(&a.root, &a.systemd_dir.join("weft-agent.service")),
        unit.as_bytes(),
        0o644,
        true,
    )?;
    write_file(
        &under(
            &a.root,
            &a.systemd_dir.join("docker.service.d/10-weft.conf"),
        ),
        DOCKER_DROPIN.as_bytes(),
        0o644,
        true,
    )?;
    write_file(
        &under(&a.root, Path::new("/etc/sysconfig/flanneld")),
        SYSCONFIG.as_bytes(),
        0o644,
        false,
    )?;
    write_file(
        &under(&a.root, &a.cni_conf_dir.join("10-flannel.conflist")),
        CONFLIST.as_bytes(),
        0o644,
        false,
    )?;
    if a.root == Path::new("/") {
        println!("next: edit /etc/sysconfig/flanneld, then `systemctl daemon-reload && systemctl enable --now weft-agent`");
    }
    Ok(())
}
