#!/usr/bin/env bash
# Builds the pinned upstream programs the tests run beside weft (test peers,
# never part of the product): kube-apiserver, kube-proxy and kubectl from
# the tool module in tools/upstream/kubernetes, flanneld (Go names the
# binary `flannel`) from tools/upstream/flannel. Only go.mod/go.sum are in
# the repository; the sources come from the Go module proxy. Each set is
# built once per machine into a cache folder outside the repository, keyed
# by the pinned version, and this script prints that folder.
#
#   scripts/upstream.sh kubernetes    -> prints e.g. /var/cache/weft-upstream/kubernetes-v1.36.3
#   scripts/upstream.sh flannel       -> prints e.g. /var/cache/weft-upstream/flannel-v0.26.7
#
# WEFT_UPSTREAM_CACHE moves the cache (default /var/cache/weft-upstream).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH="$PATH:/usr/local/go/bin"
cache=${WEFT_UPSTREAM_CACHE:-/var/cache/weft-upstream}

say() { echo "upstream: $*" >&2; }

need_go() {
  if ! command -v go >/dev/null; then
    say "no Go toolchain (looked in PATH and /usr/local/go/bin)"
    exit 1
  fi
}

# pinned MODULE_DIR MODULE_PATH: the version tools/upstream/DIR/go.mod pins.
pinned() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

# build SET MODULE_DIR VERSION LDFLAGS PACKAGE...: builds into
# $cache/SET-VERSION (with cgo when CGO=1).
build() {
  local set=$1 dir=$2 version=$3 ldflags=$4
  shift 4
  local out="$cache/$set-$version"
  local missing=0
  for pkg in "$@"; do
    [ -x "$out/$(basename "$pkg")" ] || missing=1
  done
  if [ "$missing" = 0 ]; then
    echo "$out"
    return
  fi
  need_go
  # one build at a time per machine (parallel test processes may ask)
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ -x "$out/$(basename "${@: -1}")" ]; then
    echo "$out"
    return
  fi
  say "building $set $version ($*) into $out (once per machine; up to 10 minutes on 2 cores)"
  mkdir -p "$out.partial"
  (cd "$dir" && GOFLAGS=-buildvcs=false CGO_ENABLED=${CGO:-0} go build -trimpath -ldflags "$ldflags" -o "$out.partial/" "$@")
  mkdir -p "$out"
  for pkg in "$@"; do
    mv "$out.partial/$(basename "$pkg")" "$out/"
  done
  rmdir "$out.partial" 2>/dev/null || true
  echo "$out"
}

kubernetes() {
  local dir="$repo/tools/upstream/kubernetes"
  local version
  version=$(pinned "$dir" k8s.io/kubernetes)
  local minor=${version#v1.}
  minor=${minor%%.*}
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  build kubernetes "$dir" "$version" "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl
}

# flanneld's udp backend is C (cgo), as in flannel's own release builds.
flannel() {
  local dir="$repo/tools/upstream/flannel"
  local version
  version=$(pinned "$dir" github.com/flannel-io/flannel)
  CGO=1 build flannel "$dir" "$version" \
    "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$version" \
    github.com/flannel-io/flannel
}

case "${1:-}" in
  kubernetes) kubernetes ;;
  flannel) flannel ;;
  all) kubernetes >/dev/null && flannel >/dev/null ;;
  *)
    echo "usage: scripts/upstream.sh kubernetes|flannel|all" >&2
    exit 2
    ;;
esac
