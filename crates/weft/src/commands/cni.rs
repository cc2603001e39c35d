//! `flannel` (CNI plugin) / `weft cni`: the protocol edge, in weft-cni.

pub fn main() -> std::process::ExitCode {
    weft_cni::main()
}
