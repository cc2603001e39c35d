#!/usr/bin/env bash
# Builds weft's container image as an archive, without a registry or
# docker: `ctr -n k8s.io images import` and `docker load` take it, tagged as
# dist/kubernetes/*.yml name it (weft:<version>).
#
#   scripts/image.sh [OUT]      # default target/weft-image.tar; prints the path and size
#
# Contents: a Debian 12 root with iptables and nftables (what weft runs for
# rules; debootstrapped once per machine into $WEFT_IMAGE_CACHE, default
# /var/cache/weft-image), /usr/bin/weft (the release build) and the static
# CNI plugin /usr/lib/weft/flannel (musl target: runs on any x86_64 Linux,
# CentOS 7's glibc or none), which the agent's DaemonSet copies to
# /opt/cni/bin/flannel on each host. Needs root (debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/target/weft-image.tar}
cache=${WEFT_IMAGE_CACHE:-/var/cache/weft-image}
packages=iptables,nftables
base="$cache/debian-bookworm-${packages//,/-}.tar"
say() { echo "image: $*" >&2; }

if [ ! -f "$base" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -f "$base" ]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    say "building the image's root file system (debootstrap $packages, about a minute)"
    debootstrap --variant=minbase --include="$packages" bookworm "$root/r" \
      http://deb.debian.org/debian >"$root/log" 2>&1 || { tail -5 "$root/log" >&2; exit 1; }
    rm -rf "$root"/r/usr/share/doc "$root"/r/usr/share/man "$root"/r/usr/share/locale \
      "$root"/r/var/cache/apt/* "$root"/r/var/lib/apt/lists/*
    find "$root"/r/var/log -type f -delete
    tar -C "$root/r" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
      -cf "$base.partial" .
    mv "$base.partial" "$base"
  fi
fi

say "building weft (release) and the static CNI plugin (scripts/static.sh)"
./scripts/static.sh
cargo build --release -q --bin weft
cargo build --release -q -p weft-lab --bin weft-image
version=$(target/release/weft --version | awk '{print $2}')
mkdir -p target/image
strip -o target/image/weft target/release/weft   # the release profile keeps line tables
target/release/weft-image --name "weft:$version" --base "$base" --weft target/image/weft \
  --cni target/static/flannel --out "$out"
