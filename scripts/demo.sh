#!/usr/bin/env bash
# The main job: builds weft and runs a 3-host cluster in network namespaces
# with real etcd (the article's config and prefix), pods pinging across
# hosts over vxlan, the article's Service through `weft proxy`, `weft
# status`; then tears everything down (`--keep` leaves it for `weft demo
# down`). `--kubernetes` runs the article's Kubernetes part instead, on a
# real cluster (kubelet, containerd, control plane, CoreDNS) networked by
# weft. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: checking the Debian packages weft needs"
./scripts/deps.sh
features=()
for arg in "$@"; do
  if [ "$arg" = --kubernetes ]; then
    features=(--features kubernetes-demo)
    echo "demo: the pinned Kubernetes programs, containerd and CoreDNS (built once per machine from the Go module proxy, about 20 minutes)"
    WEFT_UPSTREAM_KUBERNETES=$(./scripts/upstream.sh kubernetes)
    WEFT_UPSTREAM_CLUSTER=$(./scripts/upstream.sh cluster)
    export WEFT_UPSTREAM_KUBERNETES WEFT_UPSTREAM_CLUSTER
  fi
done
echo "demo: building weft (cargo build --release: several minutes on a fresh machine)"
cargo build --release --bin weft "${features[@]}"
echo "demo: starting the cluster"
exec ./target/release/weft demo "$@"
