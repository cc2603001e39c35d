#!/usr/bin/env bash
# Kubernetes' own network conformance specs (e2e.test v1.36.3) against a
# lab cluster whose only network is weft: weft-cluster starts the control
# plane and NODES nodes (kubelet + containerd in namespaces, weft agent in
# kube mode, weft proxy in PROXY_MODE), e2e.test runs from the control
# plane's namespace, and the cluster is torn down by PID at the end.
#
#   scripts/conformance.sh                      # [sig-network] ... [Conformance]
#   FOCUS='Services' PROXY_MODE=nftables scripts/conformance.sh
#
# JUnit goes to $REPORT_DIR (default target/conformance). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
WEFT_UPSTREAM_KUBERNETES=$(./scripts/upstream.sh kubernetes)
WEFT_UPSTREAM_CLUSTER=$(./scripts/upstream.sh cluster)
export WEFT_UPSTREAM_KUBERNETES WEFT_UPSTREAM_CLUSTER
e2e=$(./scripts/upstream.sh e2e)
cargo build --release -q -p weft --bin weft
cargo build --release -q -p weft-lab --features peers --bin weft-cluster
report=${REPORT_DIR:-$PWD/target/conformance}
mkdir -p "$report"
ready=$(mktemp)
rm -f "$ready"
target/release/weft-cluster --weft target/release/weft --nodes "${NODES:-2}" \
  --proxy-mode "${PROXY_MODE:-iptables}" --ready-file "$ready" &
cluster=$!
trap 'kill -TERM $cluster 2>/dev/null; wait $cluster; rm -f "$ready"' EXIT
while [ ! -s "$ready" ]; do
  if ! kill -0 $cluster 2>/dev/null; then
    echo "conformance: the cluster did not come up" >&2
    exit 1
  fi
  sleep 1
done
# shellcheck disable=SC1090
. "$ready"
echo "conformance: cluster up (nodes $NODES), running e2e.test" >&2
ip netns exec "$CONTROL_PLANE_NETNS" "$e2e/e2e.test" \
  --kubeconfig="$KUBECONFIG" --provider=local \
  --ginkgo.focus="${FOCUS:-\[sig-network\].*\[Conformance\]}" \
  --ginkgo.skip="${SKIP:-^$}" \
  --ginkgo.no-color --ginkgo.timeout="${TIMEOUT:-60m}" \
  --report-dir="$report"
