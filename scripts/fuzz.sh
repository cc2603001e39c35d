#!/usr/bin/env bash
# Fuzzes weft's input parsers with cargo-fuzz (libFuzzer) for a bounded time.
#
#   ./scripts/fuzz.sh [seconds-per-target] [target...]
#
# Default: 60 s for each target in fuzz/fuzz_targets/. Prints one summary
# line per target (runs, crashes, slowest input) and exits non-zero when a
# target crashed (panic, timeout, out-of-memory) or did not build. Crashing
# inputs are kept in fuzz/artifacts/<target>/: fix the bug and add the input
# as a unit test next to the code it hits.
#
# The committed corpus fuzz/corpus/<target>/ is read, not written: inputs a
# run finds go to fuzz/target/new-corpus/<target>/ (git-ignored, reused by
# the next run). With FUZZ_UPDATE_CORPUS=1 the script then merges them into
# fuzz/corpus/<target>/ and minimises it (edge coverage only; named
# hand-written seeds are kept as they are) — commit the result.
#
# Adding a target: write fuzz/fuzz_targets/<name>.rs (a `fuzz_target!`),
# add a [[bin]] entry named <name> to fuzz/Cargo.toml, put a few realistic
# inputs (any file names) in fuzz/corpus/<name>/ and, optionally, libFuzzer
# tokens in fuzz/dicts/<name>.dict. The script finds it by its file.
#
# Needs rustup; installs the nightly toolchain, cargo-fuzz and (apt) g++ if
# missing.
# Environment: FUZZ_TIMEOUT (seconds one input may take before it counts as
# a crash, default 10), FUZZ_RSS_MB (memory limit, default 2048).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

usage() { echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2; }
secs=${1:-60}
case $secs in '' | *[!0-9]* | 0) usage ;; esac
[ $# -gt 0 ] && shift

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# libfuzzer-sys compiles libFuzzer's C++ sources.
if ! command -v c++ >/dev/null && command -v apt-get >/dev/null; then
  echo "fuzz: installing g++ (libFuzzer is C++)"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# Keeps the named seeds of corpus/$1 and adds a minimal set of other inputs
# (from corpus/$1 and new-corpus/$1) that together reach every edge.
update_corpus() {
  local t=$1 out new=target/new-corpus/$1
  out=$(mktemp -d)
  find "corpus/$t" -maxdepth 1 -type f -regextype posix-extended \
    ! -regex '.*/[0-9a-f]{40}' -exec cp {} "$out/" \;
  # With -merge=1 the first directory is the output; inputs whose coverage
  # its files already have are not copied.
  nice -n 19 cargo +nightly fuzz run "$t" "$out" "corpus/$t" "$new" -- \
    -merge=1 -use_counters=0 -timeout="${FUZZ_TIMEOUT:-10}" >"$log" 2>&1 || return 1
  find "corpus/$t" -maxdepth 1 -type f -delete
  find "$out" -type f -exec cp {} "corpus/$t/" \;
  rm -rf "$out" "$new"
}

failed=0
summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  if [ ! -f "fuzz_targets/$t.rs" ]; then
    summary+=("$t: no such target (fuzz/fuzz_targets/$t.rs)")
    failed=1
    continue
  fi
  mkdir -p "corpus/$t" "artifacts/$t" "target/new-corpus/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  args=(-max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}"
    -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -print_final_stats=1)
  if [ -f "dicts/$t.dict" ]; then args+=(-dict="dicts/$t.dict"); fi
  echo "== fuzzing $t for ${secs}s"
  rc=0
  nice -n 19 cargo +nightly fuzz run "$t" "target/new-corpus/$t" "corpus/$t" -- "${args[@]}" \
    >"$log" 2>&1 || rc=$?
  crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  slowest=$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$log" | tail -n 1)
  line="$t: ${secs}s, runs ${runs:-?}, crashes: $crashes/${runs:-?}, slowest input ${slowest:-?}s"
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    echo "---- $t failed (exit $rc); end of its log:"
    tail -n 40 "$log"
    summary+=("$line — FAILED (exit $rc), inputs in fuzz/artifacts/$t/")
    continue
  fi
  if [ "${FUZZ_UPDATE_CORPUS:-0}" = 1 ]; then
    if update_corpus "$t"; then
      line+=", corpus/$t now $(find "corpus/$t" -type f | wc -l) files"
    else
      tail -n 20 "$log"
      line+=", corpus update FAILED"
      failed=1
    fi
  fi
  summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
