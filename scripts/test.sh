#!/usr/bin/env bash
# The whole test suite: unit tests, kernel tests in network namespaces and
# end-to-end clusters with real etcd. Needs root. One release build serves
# every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --release --workspace "$@"
else
  exec cargo test --release --workspace "$@"
fi
