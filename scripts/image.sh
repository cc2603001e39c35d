#!/usr/bin/env bash
# Builds weft's container image as an archive, without a registry or
# docker: `ctr -n k8s.io images import` and `docker load` take it, tagged as
# dist/kubernetes/*.yml name it (weft:<version>).
#
#   scripts/image.sh [OUT]      # default target/weft-image.tar; prints the path and size
#
# Contents: a Debian 12 root with iptables, nftables, ping, ethtool and strongSwan's
# charon (what weft runs for rules and the ipsec backend; debootstrapped once per machine into $WEFT_IMAGE_CACHE, default
# /var/cache/weft-image), /usr/bin/weft (the release build), /usr/bin/weft-proxy
# (the proxy alone, which the proxy's DaemonSet runs, built small: the lean
# profile) and the static
# CNI plugin /usr/lib/weft/flannel (musl target: runs on any x86_64 Linux,
# CentOS 7's glibc or none), which the agent's DaemonSet copies to
# /opt/cni/bin/flannel on each host. Needs root (debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/target/weft-image.tar}
cache=${WEFT_IMAGE_CACHE:-/var/cache/weft-image}
# iputils-ping and ethtool: `weft status --ping` and `weft doctor`'s
# checksum-offload check, run in the agent's pod; strongSwan's charon (with
# swanctl, as in flannel's image): the ipsec backend
packages=iptables,nftables,iputils-ping,ethtool,strongswan-charon,strongswan-swanctl,libstrongswan-standard-plugins
base="$cache/debian-bookworm-${packages//,/-}.tar"
say() { echo "image: $*" >&2; }
. scripts/lib/debian-root.sh

if [ ! -f "$base" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -f "$base" ]; then
    say "building the image's root file system (debootstrap $packages, about a minute)"
    debian_root "$base" "$packages"
  fi
fi

say "building weft (release), weft-proxy (lean profile) and the static CNI plugin (scripts/static.sh)"
./scripts/static.sh
cargo build --release -q --bin weft
# the lean profile's smaller code is most of what the proxy saves in
# resident memory (Cargo.toml); CI's lean agent build reuses its crates
cargo build --profile lean -q -p weft-proxy --bin weft-proxy
cargo build --release -q -p weft-lab --bin weft-image
version=$(target/release/weft --version | awk '{print $2}')
mkdir -p target/image
strip -o target/image/weft target/release/weft   # the release profile keeps line tables
strip -o target/image/weft-proxy target/lean/weft-proxy
target/release/weft-image --name "weft:$version" --base "$base" --weft target/image/weft \
  --proxy target/image/weft-proxy --cni target/static/flannel --out "$out"
