#!/usr/bin/env bash
# Kubernetes' own network conformance specs (e2e.test v1.36.3) against a
# lab cluster networked by weft, and against the same lab networked by
# upstream (flanneld v0.26.7 + flannel's CNI plugin + kube-proxy v1.36.3)
# as the control. For each network weft-cluster starts the control plane
# and NODES nodes (kubelet + containerd in namespaces), e2e.test runs from
# the control plane's namespace, and the cluster is torn down by PID.
# Then the two JUnit reports become one table, spec by spec, in
# $REPORT_DIR/$SUITE/table.md (and in docs/conformance.md with DOCS=1).
#
#   scripts/conformance.sh                  # [sig-network] ... [Conformance]
#   SUITE=network scripts/conformance.sh    # the other Services, Conntrack,
#                                           #   DNS, Networking specs (see below)
#   NETWORKS=weft FOCUS='Services' PROXY_MODE=nftables scripts/conformance.sh
#
# JUnit goes to $REPORT_DIR/<suite>/<network> (default target/conformance). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
WEFT_UPSTREAM_KUBERNETES=$(./scripts/upstream.sh kubernetes)
WEFT_UPSTREAM_CLUSTER=$(./scripts/upstream.sh cluster)
WEFT_UPSTREAM_FLANNEL=$(./scripts/upstream.sh flannel)
WEFT_UPSTREAM_FLANNEL_CNI=$(./scripts/upstream.sh flannel-cni)
export WEFT_UPSTREAM_KUBERNETES WEFT_UPSTREAM_CLUSTER WEFT_UPSTREAM_FLANNEL WEFT_UPSTREAM_FLANNEL_CNI
e2e=$(./scripts/upstream.sh e2e)
cargo build --release -q -p weft --bin weft
cargo build --release -q -p weft-lab --features peers --bin weft-cluster --bin conformance-table
# weft runs as dist/kubernetes's DaemonSets, from its image
image=$PWD/target/weft-image.tar
./scripts/image.sh "$image"
report=${REPORT_DIR:-$PWD/target/conformance}
# (the cluster's ready file sets NODES to the node list: keep the count apart)
node_count=${NODES:-2}
proxy_mode=${PROXY_MODE:-iptables}

# What applies to a kube-proxy + flannel replacement, and what does not:
#   LoadBalancer       needs a cloud load balancer
#   IPVS               kube-proxy's ipvs mode, which weft does not offer
#   [Feature:...]      a feature or a feature gate that is off by default
#   [FeatureGate:...]  the same, named by gate
#   [Disruptive]       restarts nodes or the API server
#   [Flaky]            upstream marks it unreliable
#   SCTP               the sctp module is not loaded on this kernel
#   DNS configMap      needs an upstream DNS server outside the cluster
#   Provider:GCE       runs only on GCE
#   kube-proxy urls    reads kube-proxy's own /proxyMode page on a node
#   [Conformance]      the conformance suite, run on its own (SUITE=conformance)
network_focus='\[sig-network\] (Services|Conntrack|Networking|DNS|HostPort|Proxy|EndpointSlice|Endpoints|EndpointSliceMirroring|API Server|IngressClass|Ingress API|ServiceCIDR)'
network_skip='LoadBalancer|IPVS|\[Feature:|\[FeatureGate:|\[Disruptive\]|\[Flaky\]|SCTP|DNS configMap|Provider:GCE|should check kube-proxy urls|\[Conformance\]'
suite=${SUITE:-conformance}
case "$suite" in
  conformance) focus='\[sig-network\].*\[Conformance\]' skip='^$' ;;
  network) focus=$network_focus skip=$network_skip ;;
  *) echo "conformance: SUITE is conformance or network" >&2; exit 2 ;;
esac
focus=${FOCUS:-$focus}
skip=${SKIP:-$skip}

run() {
  local network=$1 out="$report/$suite/$1"
  rm -rf "$out"
  mkdir -p "$out"
  local ready extra=()
  if [ "$network" = weft ]; then
    extra=(--weft-image "$image")
  fi
  ready=$(mktemp)
  rm -f "$ready"
  target/release/weft-cluster --weft target/release/weft --nodes "$node_count" \
    --network "$network" --proxy-mode "$proxy_mode" --ready-file "$ready" \
    "${extra[@]}" \
    2>"$out/cluster.log" &
  local cluster=$!
  # shellcheck disable=SC2064
  trap "kill -TERM $cluster 2>/dev/null; wait $cluster; rm -f '$ready'" EXIT
  while [ ! -s "$ready" ]; do
    if ! kill -0 $cluster 2>/dev/null; then
      echo "conformance: the $network cluster did not come up:" >&2
      tail -5 "$out/cluster.log" >&2
      exit 1
    fi
    sleep 1
  done
  # shellcheck disable=SC1090
  . "$ready"
  echo "conformance: $network cluster up (nodes $NODES), running e2e.test; log in $out/e2e.log" >&2
  local start=$SECONDS
  ip netns exec "$CONTROL_PLANE_NETNS" "$e2e/e2e.test" \
    --kubeconfig="$KUBECONFIG" --provider=local \
    --ginkgo.focus="$focus" --ginkgo.skip="$skip" \
    --ginkgo.no-color --ginkgo.timeout="${TIMEOUT:-120m}" \
    --report-dir="$out" >"$out/e2e.log" 2>&1 || true
  echo "$((SECONDS - start))" >"$out/seconds"
  kill -TERM $cluster
  wait $cluster || true
  rm -f "$ready"
  trap - EXIT
  grep -aE '^(Ran|FAIL|SUCCESS)' "$out/e2e.log" >&2 || true
}

for network in ${NETWORKS:-weft upstream}; do
  run "$network"
done
table=(target/release/conformance-table --date "$(date -u +%F)" --nodes "$node_count"
  --proxy-mode "$proxy_mode" --focus "$focus" --skip "$skip")
for network in ${NETWORKS:-weft upstream}; do
  table+=(--run "$network=$report/$suite/$network")
done
"${table[@]}" >"$report/$suite/table.md"
if [ -n "${DOCS:-}" ]; then
  "${table[@]}" --into docs/conformance.md --section "$suite"
fi
cat "$report/$suite/table.md"
