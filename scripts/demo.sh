#!/usr/bin/env bash
# The main job: builds weft and runs a 3-host cluster in network namespaces
# with real etcd (the article's config and prefix), pods pinging across
# hosts over vxlan, the article's Service through `weft proxy`, `weft
# status`; then tears everything down (`--keep` leaves it for `weft demo
# down`). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: checking the Debian packages weft needs"
./scripts/deps.sh
echo "demo: building weft (cargo build --release: several minutes on a fresh machine)"
cargo build --release --bin weft
echo "demo: starting the cluster"
exec ./target/release/weft demo "$@"
