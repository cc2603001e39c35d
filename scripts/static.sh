#!/usr/bin/env bash
# The binaries that run on hosts whatever their C library (CentOS 7's glibc
# 2.17, or none), built statically for x86_64-unknown-linux-musl and
# stripped, into target/static/:
#   flannel    the CNI plugin (what the agent's DaemonSet copies to
#              /opt/cni/bin/flannel; `weft install` can take it too)
#   flanneld   the agent alone, lean (`--no-default-features`: etcd mode
#              only, no Kubernetes client)
# The libnftables fast path needs dlopen, which a static binary lacks:
# these use the `nft` program instead (said once at warn, counted in
# weft_*_fast_path_fallbacks_total).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
rustup target add "$target" >/dev/null 2>&1 || true
echo "static: building the CNI plugin and the lean agent for $target" >&2
cargo build --release -q --target "$target" -p weft-cni --bin flannel
cargo build --profile lean -q --target "$target" -p weft-agent --bin flanneld --no-default-features
mkdir -p target/static
strip -o target/static/flannel "target/$target/release/flannel"
strip -o target/static/flanneld "target/$target/lean/flanneld"
ls -la target/static/flannel target/static/flanneld >&2
