//! The CNI plugin alone, as `/opt/cni/bin/flannel`: what the agent's
//! DaemonSet copies onto each host. Built statically (musl, see
//! scripts/image.sh) so that it runs on any x86_64 Linux, whatever its
//! C library; `weft` itself answers to the name `flannel` too.

fn main() -> std::process::ExitCode {
    weft_cni::main()
}
