# Sourced by scripts/image.sh and scripts/upstream.sh: one way to make a
# Debian 12 root file system archive from Debian's packages.
#
#   debian_root OUT.tar PACKAGES [SETUP]
#
# debootstraps bookworm (minbase) with PACKAGES (comma-separated), runs the
# shell text SETUP inside it with chroot if given, removes documentation,
# manuals, locales, apt's caches and logs, and writes the root as a tar with
# numeric owners to OUT.tar (through OUT.tar.partial, so a failed build
# leaves nothing). Needs root. About a minute.
debian_root() {
  local out=$1 packages=$2 setup=${3:-}
  local root
  root=$(mktemp -d)
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$root/r" \
    http://deb.debian.org/debian >"$root/log" 2>&1; then
    tail -5 "$root/log" >&2
    rm -rf "$root"
    return 1
  fi
  if [ -n "$setup" ] && ! chroot "$root/r" sh -e -c "$setup"; then
    rm -rf "$root"
    return 1
  fi
  rm -rf "$root"/r/usr/share/doc "$root"/r/usr/share/man "$root"/r/usr/share/locale \
    "$root"/r/var/cache/apt/* "$root"/r/var/lib/apt/lists/*
  find "$root"/r/var/log -type f -delete
  tar -C "$root/r" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$out.partial" .
  mv "$out.partial" "$out"
  rm -rf "$root"
}
