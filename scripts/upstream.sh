#!/usr/bin/env bash
# Builds the pinned upstream programs the tests run beside weft (test peers,
# never part of the product). Only go.mod/go.sum are in the repository (one
# tool module per folder of tools/upstream); the sources come from the Go
# module proxy. Each set is built once per machine into a cache folder
# outside the repository, keyed by the pinned version, and this script
# prints that folder.
#
#   kubernetes  kube-apiserver, kube-proxy, kubectl
#               -> e.g. /var/cache/weft-upstream/kubernetes-v1.36.3
#   flannel     flanneld (Go names the binary `flannel`), the main peer
#               -> e.g. /var/cache/weft-upstream/flannel-v0.28.10
#   flannel-v0.26  the older flanneld kept where an older lease shape
#               matters -> e.g. /var/cache/weft-upstream/flannel-v0.26.7
#   flannel-cni flannel's CNI plugin (the control cluster of the conformance
#               run) -> e.g. /var/cache/weft-upstream/flannel-cni-v0.9.1
#   cluster     the rest of a real cluster (tools/upstream/kubernetes,
#               tools/upstream/runtime, tools/upstream/coredns):
#               kubelet, kube-controller-manager, kube-scheduler,
#               containerd 2.x with its runc shim and ctr, runc, crictl,
#               the reference CNI plugins (loopback, portmap, bridge,
#               host-local), CoreDNS, and the test images' programs
#               (agnhost, regression-issue-74839)
#               -> e.g. /var/cache/weft-upstream/cluster-v1.36.3
#   e2e         Kubernetes' e2e suite (`go test -c k8s.io/kubernetes/test/e2e`)
#               -> e.g. /var/cache/weft-upstream/e2e-v1.36.3
#
# WEFT_UPSTREAM_CACHE moves the cache (default /var/cache/weft-upstream).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/debian-root.sh
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
# $cache/SET-VERSION (with cgo when CGO=1, build tags from TAGS). With
# GO_TEST=1 the one PACKAGE's test binary is built instead (`go test -c`,
# named PACKAGE.test).
build() {
  local set=$1 dir=$2 version=$3 ldflags=$4
  shift 4
  local out="$cache/$set-$version"
  local suffix=${GO_TEST:+.test}
  local missing=0
  for pkg in "$@"; do
    [ -x "$out/$(basename "$pkg")$suffix" ] || missing=1
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
  if [ -x "$out/$(basename "${@: -1}")$suffix" ]; then
    exec 9>&-
    echo "$out"
    return
  fi
  say "building $set $version ($*) into $out (once per machine; up to 10 minutes on 2 cores)"
  mkdir -p "$out.partial"
  if [ -n "${GO_TEST:-}" ]; then
    (cd "$dir" && GOFLAGS=-buildvcs=false CGO_ENABLED=${CGO:-0} go test -c -trimpath -tags "${TAGS:-}" \
      -ldflags "$ldflags" -o "$out.partial/$(basename "$1").test" "$1")
  else
    (cd "$dir" && GOFLAGS=-buildvcs=false CGO_ENABLED=${CGO:-0} go build -trimpath -tags "${TAGS:-}" -ldflags "$ldflags" -o "$out.partial/" "$@")
  fi
  mkdir -p "$out"
  for pkg in "$@"; do
    mv "$out.partial/$(basename "$pkg")$suffix" "$out/"
  done
  rmdir "$out.partial" 2>/dev/null || true
  # unlock: a later build in this shell, or in a $(...) subshell of it,
  # opens the lock file anew and would otherwise wait on this shell forever
  exec 9>&-
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
  local dir="$repo/tools/upstream/${1:-flannel}"
  local version
  version=$(pinned "$dir" github.com/flannel-io/flannel)
  local out
  out=$(CGO=1 build flannel "$dir" "$version" \
    "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$version" \
    github.com/flannel-io/flannel)
  # upstream's DaemonSet manifest of that release beside it, for the test
  # that checks weft's manifest is a drop-in for it
  if [ ! -f "$out/kube-flannel.yml" ]; then
    need_go
    local src
    src=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/flannel-io/flannel)
    cp "$src/Documentation/kube-flannel.yml" "$out/kube-flannel.yml"
  fi
  echo "$out"
}

# Go names it `flannel` (package plugins/meta/flannel).
flannel_cni() {
  local dir="$repo/tools/upstream/flannel-cni"
  local version
  version=$(pinned "$dir" github.com/containernetworking/plugins)
  build flannel-cni "$dir" "$version" "-s -w" \
    github.com/containernetworking/plugins/plugins/meta/flannel
}

# The cluster set's folder is keyed by the Kubernetes version and the
# runtime's and CoreDNS's (their pins are in their own go.mod files).
cluster() {
  local k8s="$repo/tools/upstream/kubernetes" rt="$repo/tools/upstream/runtime" dns="$repo/tools/upstream/coredns"
  local version containerd runc plugins coredns
  version=$(pinned "$k8s" k8s.io/kubernetes)
  containerd=$(pinned "$rt" github.com/containerd/containerd/v2)
  runc=$(pinned "$rt" github.com/opencontainers/runc)
  plugins=$(pinned "$rt" github.com/containernetworking/plugins)
  coredns=$(pinned "$dns" github.com/coredns/coredns)
  local pins="$version-containerd-$containerd-coredns-$coredns"
  local minor=${version#v1.}
  minor=${minor%%.*}
  local v=k8s.io/component-base/version
  build cluster "$k8s" "$pins" "-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
    k8s.io/kubernetes/test/images/agnhost \
    k8s.io/kubernetes/test/images/regression-issue-74839 \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet >/dev/null
  local c=github.com/containerd/containerd/v2
  build cluster "$rt" "$pins" "-s -w -X $c/version.Version=$containerd -X $c/version.Package=$c" \
    $c/cmd/ctr $c/cmd/containerd-shim-runc-v2 $c/cmd/containerd >/dev/null
  build cluster "$rt" "$pins" "-s -w" sigs.k8s.io/cri-tools/cmd/crictl >/dev/null
  local p=github.com/containernetworking/plugins/plugins
  build cluster "$rt" "$pins" "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$plugins" \
    $p/main/bridge $p/ipam/host-local $p/meta/portmap $p/main/loopback >/dev/null
  # runc's namespace setup (nsenter) is C; seccomp needs libseccomp
  CGO=1 TAGS=seccomp build cluster "$rt" "$pins" "-s -w -X main.version=${runc#v}" \
    github.com/opencontainers/runc >/dev/null
  local out
  out=$(build cluster "$dns" "$pins" "-s -w" github.com/coredns/coredns)
  # the pause image's program is C, in the same Kubernetes module
  if [ ! -x "$out/pause" ]; then
    local src tag
    src=$(cd "$k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause
    tag=$(awk '$1 == "TAG" && $2 == "?=" { print $3; exit }' "$src/Makefile")
    gcc -Os -Wall -static -DVERSION="v$tag-weft" -o "$out/pause.partial" "$src/linux/pause.c"
    echo "$tag" >"$out/pause.version"
    mv "$out/pause.partial" "$out/pause"
  fi
  # The test images' shared root: agnhost's image is Alpine with curl,
  # nc, ip, dig, iperf and bash and an image-defined user and group (uid 1000,
  # gid 50000); glibc-dns-testing is Debian with dig; nginx is nginx.
  # Here one Debian root (debootstrap from Debian's packages) holds them all.
  # (Alpine's busybox also gives agnhost wget and ping, which specs run)
  local packages=curl,wget,netcat-openbsd,iproute2,iputils-ping,dnsutils,bash,procps,iperf,nginx-light
  if [ ! -f "$out/debian-base.tar" ] || [ "$(cat "$out/debian-base.packages" 2>/dev/null)" != "$packages" ]; then
    say "building the test images' root file system (debootstrap, about a minute)"
    debian_root "$out/debian-base.tar" "$packages" 'groupadd -g 50000 group-defined-in-image
      groupadd -g 1000 user-defined-in-image
      useradd -u 1000 -g 1000 -M -G group-defined-in-image user-defined-in-image'
    echo "$packages" >"$out/debian-base.packages"
  fi
  # the test images' tags, as the e2e suite names them
  local agnhost_src
  agnhost_src="$(cd "$k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost"
  cat "$agnhost_src/VERSION" >"$out/agnhost.version"
  # porter's test certificate, at / in agnhost's image
  cp "$agnhost_src/porter/localhost.crt" "$out/agnhost-localhost.crt"
  cp "$agnhost_src/porter/localhost.key" "$out/agnhost-localhost.key"
  echo "$out"
}

# e2e.test is a test binary: `go test -c`, not `go build`.
e2e() {
  local dir="$repo/tools/upstream/kubernetes"
  local version
  version=$(pinned "$dir" k8s.io/kubernetes)
  local minor=${version#v1.}
  minor=${minor%%.*}
  local v=k8s.io/component-base/version
  GO_TEST=1 build e2e "$dir" "$version" \
    "-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor" \
    k8s.io/kubernetes/test/e2e
}

case "${1:-}" in
  kubernetes) kubernetes ;;
  flannel) flannel ;;
  flannel-v0.26) flannel flannel-v0.26 ;;
  flannel-cni) flannel_cni ;;
  cluster) cluster ;;
  e2e) e2e ;;
  all) kubernetes >/dev/null && flannel >/dev/null && flannel flannel-v0.26 >/dev/null && flannel_cni >/dev/null && cluster >/dev/null && e2e >/dev/null ;;
  *)
    echo "usage: scripts/upstream.sh kubernetes|flannel|flannel-v0.26|flannel-cni|cluster|e2e|all" >&2
    exit 2
    ;;
esac
