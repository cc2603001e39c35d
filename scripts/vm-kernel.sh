#!/usr/bin/env bash
# A Linux kernel with the WireGuard, ipip and IPsec (ESP, xfrm_user, AES-GCM)
# modules (and br_netfilter, which flanneld checks for), for the tests that
# run weft's kernel WireGuard path and its ipip and ipsec backends in a
# virtual machine (this machine's own kernel has none of them). Debian 12's cloud kernel package, fetched once per machine
# into a cache outside the repository; qemu from Debian's packages.
# Prints the folder holding vmlinuz and modules/ (with modules/order).
set -euo pipefail
CACHE=${WEFT_VM_CACHE:-/var/cache/weft-vm}
PKG=linux-image-6.1.0-47-cloud-amd64
MODULES=(udp_tunnel ip6_udp_tunnel libchacha chacha-x86_64 libpoly1305 poly1305-x86_64
         libchacha20poly1305 libcurve25519-generic curve25519-x86_64 libcurve25519
         wireguard dummy veth tunnel4 ip_tunnel ipip llc stp bridge br_netfilter
         xfrm_algo xfrm_user esp4 authenc gf128mul ghash-generic gcm ctr seqiv echainiv
         jitterentropy_rng drbg)
export DEBIAN_FRONTEND=noninteractive
if ! command -v qemu-system-x86_64 >/dev/null; then
  apt-get install -y -q --no-install-recommends qemu-system-x86 >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends qemu-system-x86 >&2; }
fi
dir="$CACHE/$PKG"
ready() { [[ "$(cat "$dir/modules/order" 2>/dev/null)" == "$(printf '%s\n' "${MODULES[@]}")" ]]; }
if ! ready; then
  # one preparation at a time per machine: tests that need the VM run in
  # parallel, and one must not unpack the package another is downloading
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
fi
if ! ready; then
  mkdir -p "$CACHE/dl" && cd "$CACHE/dl"
  # a download cut short (an earlier run killed) is fetched again
  dpkg-deb --info ${PKG}_*.deb >/dev/null 2>&1 || { rm -f ${PKG}_*.deb; apt-get download "$PKG" >&2 \
    || { apt-get update -q >&2 && apt-get download "$PKG" >&2; }; }
  rm -rf x && mkdir x && dpkg-deb -x ${PKG}_*.deb x
  tmp="$dir.tmp" && rm -rf "$tmp" && mkdir -p "$tmp/modules"
  cp x/boot/vmlinuz-* "$tmp/vmlinuz"
  for m in "${MODULES[@]}"; do
    f=$(find x/lib/modules -name "$m.ko*" | head -1)
    [[ -n "$f" ]] || { echo "vm-kernel: $m.ko not in $PKG" >&2; exit 1; }
    case "$f" in
      *.xz) xz -dc "$f" > "$tmp/modules/$m.ko" ;;
      *) cp "$f" "$tmp/modules/$m.ko" ;;
    esac
    echo "$m" >> "$tmp/modules/order"
  done
  rm -rf x "$dir" && mv "$tmp" "$dir"
fi
echo "$dir"
