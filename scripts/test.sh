#!/usr/bin/env bash
# The whole test suite: unit tests, kernel tests in network namespaces and
# end-to-end clusters with real etcd and a real kube-apiserver. Needs root. One release build serves
# every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# nextest runs every test in its own process, all test binaries at once.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest (once per machine, a few minutes)"
  cargo install --locked cargo-nextest
fi
# Pinned upstream programs (kube-apiserver, kube-proxy, kubectl; flanneld;
# the rest of a real cluster: kubelet, controller-manager, scheduler,
# containerd, runc, CNI plugins, CoreDNS, pause, agnhost) the tests run
# beside weft, built once per machine from the Go module proxy.
WEFT_UPSTREAM_KUBERNETES=$(./scripts/upstream.sh kubernetes)
WEFT_UPSTREAM_FLANNEL=$(./scripts/upstream.sh flannel)
WEFT_UPSTREAM_FLANNEL_V026=$(./scripts/upstream.sh flannel-v0.26)
WEFT_UPSTREAM_CLUSTER=$(./scripts/upstream.sh cluster)
export WEFT_UPSTREAM_KUBERNETES WEFT_UPSTREAM_FLANNEL WEFT_UPSTREAM_FLANNEL_V026 WEFT_UPSTREAM_CLUSTER
# weft's image (the lab cluster runs dist/kubernetes's DaemonSets from it);
# it builds the static binaries too (scripts/static.sh)
WEFT_IMAGE=$PWD/target/weft-image.tar
./scripts/image.sh "$WEFT_IMAGE"
WEFT_STATIC_DIR=$PWD/target/static
export WEFT_IMAGE WEFT_STATIC_DIR
# weft demo --kubernetes is tested too (kube_cluster_e2e)
exec cargo nextest run --release --workspace --features weft/kubernetes-demo --no-fail-fast "$@"
