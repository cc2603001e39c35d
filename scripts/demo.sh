#!/usr/bin/env bash
# The main job: builds weft and runs a 3-host cluster in network namespaces
# with real etcd (the article's config and prefix), pods pinging across
# hosts over vxlan, the article's Service through `weft proxy`, `weft
# status`; then tears everything down (`--keep` leaves it for `weft demo
# down`). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
exec cargo run --release -q --bin weft -- demo "$@"
