//! A throw-away virtual machine for kernel features this machine's kernel
//! lacks (WireGuard, ipip): Debian 12's cloud kernel from
//! `scripts/vm-kernel.sh` under qemu, booting an initramfs that holds
//! busybox, the kernel's modules (loaded in order by the init script's
//! caller), and the programs a test installs with their shared libraries.
//! The init script prints lines tagged `WEFT-VM…` on the console; the
//! test reads those back.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// What every init script does first.
const INIT_PRELUDE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc none /proc; mount -t sysfs none /sys; mount -t devtmpfs none /dev
mount -t tmpfs none /run; mount -t tmpfs none /tmp
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "WEFT-VM insmod $m failed"; done
ip link set lo up
"#;

/// What every init script does last.
const INIT_END: &str = "echo WEFT-VM-DONE\npoweroff -f\n";

/// The initramfs being put together, and the kernel it boots.
pub struct VmImage {
    dir: tempfile::TempDir,
    kernel: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl VmImage {
    /// The kernel (fetched once per machine) and an image with busybox and
    /// the kernel's modules in `/modules` (`/modules/order` lists them).
    pub fn new() -> Result<VmImage> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/vm-kernel.sh");
        let kernel = PathBuf::from(run(&mut Command::new(script))?.trim());
        let dir = tempfile::tempdir().context("tempdir")?;
        let image = VmImage { dir, kernel };
        let root = image.root();
        for d in ["bin", "proc", "sys", "dev", "run", "tmp", "modules", "var"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // /var/run is /run, as on Debian
        std::os::unix::fs::symlink("/run", root.join("var/run")).context("/var/run")?;
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .context("busybox (Debian's busybox-static)")?;
        let modules = image.kernel.join("modules");
        for e in std::fs::read_dir(&modules).with_context(|| format!("{}", modules.display()))? {
            let e = e?;
            std::fs::copy(e.path(), root.join("modules").join(e.file_name()))?;
        }
        Ok(image)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Copies `program` into `/bin/<name>` (without debug information) and
    /// the shared libraries it loads to their paths.
    pub fn install(&self, program: &Path, name: &str) -> Result<()> {
        self.install_at(program, &Path::new("/bin").join(name))
    }

    /// Copies `program` to `at` in the VM (without debug information) and
    /// the shared libraries it loads to their paths.
    pub fn install_at(&self, program: &Path, at: &Path) -> Result<()> {
        let to = self.root().join(at.strip_prefix("/")?);
        std::fs::create_dir_all(to.parent().context("a folder")?)?;
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(program)
            .arg(&to))
        .with_context(|| format!("copying {}", program.display()))?;
        self.install_libraries(program)
    }

    /// Copies the shared libraries `elf` loads to their paths.
    fn install_libraries(&self, elf: &Path) -> Result<()> {
        let root = self.root();
        let ldd = Command::new("ldd").arg(elf).output().context("ldd")?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(lib) = lib {
                let to = root.join(lib.strip_prefix("/")?);
                if to.exists() {
                    continue;
                }
                std::fs::create_dir_all(to.parent().context("library folder")?)?;
                std::fs::copy(&lib, &to).with_context(|| format!("copying {}", lib.display()))?;
            }
        }
        Ok(())
    }

    /// Copies the folder (or file) `dir` to the same path in the VM, with
    /// the shared libraries its shared objects load (plugins, configuration).
    pub fn install_tree(&self, dir: &Path) -> Result<()> {
        let root = self.root();
        let to = root.join(dir.strip_prefix("/")?);
        if dir.is_dir() {
            // into what installed libraries may have started already
            std::fs::create_dir_all(&to)?;
            run(Command::new("cp").arg("-a").arg(dir.join(".")).arg(&to))?;
        } else {
            std::fs::create_dir_all(to.parent().context("a folder")?)?;
            run(Command::new("cp").arg("-a").arg(dir).arg(&to))?;
        }
        let found = run(Command::new("find")
            .arg(dir)
            .args(["-name", "*.so*", "-type", "f"]))?;
        for so in found.lines() {
            self.install_libraries(Path::new(so))?;
        }
        Ok(())
    }

    /// [`VmImage::install`] of the program `name` found on PATH.
    pub fn install_found(&self, name: &str, as_name: &str) -> Result<()> {
        let found = run(Command::new("sh").args(["-c", &format!("command -v {name}")]))?;
        self.install(Path::new(found.trim()), as_name)
    }

    /// Boots the VM with `memory_mib` and `script` as the body of its init:
    /// after busybox's programs, the mounts, the modules (in order; a
    /// failure prints `WEFT-VM insmod …`) and `lo` up; before
    /// `WEFT-VM-DONE` and the power-off. Returns the console's `WEFT-VM…`
    /// lines (from the tag on), or an error with the whole console when the
    /// script did not run to its end.
    pub fn boot(&self, script: &str, memory_mib: u32) -> Result<Vec<String>> {
        let root = self.root();
        let init_path = root.join("init");
        std::fs::write(&init_path, format!("{INIT_PRELUDE}{script}{INIT_END}"))?;
        run(Command::new("chmod").arg("755").arg(&init_path))?;
        let initrd = self.dir.path().join("initrd.cpio");
        run(Command::new("sh").arg("-c").arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > {}",
            root.display(),
            initrd.display()
        )))?;
        let console = run(Command::new("timeout")
            .args(["300", "qemu-system-x86_64"])
            .args(["-m", &memory_mib.to_string(), "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(self.kernel.join("vmlinuz"))
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet"]))?;
        // (the firmware's escape sequences may precede the first line)
        let lines: Vec<String> = console
            .lines()
            .filter_map(|l| l.find("WEFT-VM").map(|at| l[at..].trim_end().to_string()))
            .collect();
        if !lines.iter().any(|l| l == "WEFT-VM-DONE") {
            bail!("the VM did not run to the end:\n{console}");
        }
        Ok(lines)
    }
}

/// The lines tagged `tag`, with the tag and surrounding blanks removed.
pub fn tagged<'a>(lines: &'a [String], tag: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(tag))
        .map(str::trim)
        .collect()
}
