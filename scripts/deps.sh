#!/usr/bin/env bash
# Installs what weft builds and tests with, from Debian's packages.
# Idempotent: does nothing when everything is already there.
set -euo pipefail
PKGS=(etcd-server etcd-client iproute2 iptables nftables protobuf-compiler libprotobuf-dev
      containernetworking-plugins iperf3 iputils-ping procps tcpdump openssl
      docker.io busybox-static gcc libc6-dev libseccomp-dev pkg-config debootstrap musl-tools libnftables1 wireguard-go wireguard-tools
      cpio qemu-system-x86 ethtool strongswan-charon strongswan-swanctl libstrongswan-standard-plugins)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Packages must not start their services (a system dockerd would change
  # the root namespace's firewall; etcd would take port 2379): the tests
  # start their own, inside namespaces.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
fi
# etcd-server's package starts a system etcd; weft's tests run their own in netns.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
if ! command -v cargo >/dev/null; then
  echo "deps: a Rust toolchain (cargo, rustc >= 1.85) is required and was not found" >&2
  exit 1
fi
