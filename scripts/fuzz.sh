#!/usr/bin/env bash
# Fuzz every target in fuzz/ for SECONDS each (libFuzzer, coverage-guided).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: $FUZZ_SECONDS, else 60; every target)
#
# Builds fuzz/ exactly as `cargo fuzz build --sanitizer none --debug-assertions` does (same
# RUSTFLAGS, profile and target dir, so either command reuses the other's build), but with plain
# cargo: no nightly, no RUSTC_BOOTSTRAP and no `cargo install` needed, so it works on a fresh
# machine. No sanitizer: the fuzzed code is safe Rust (the only `unsafe` is the wasm-only
# host layer, which is not built natively), so AddressSanitizer would find nothing and halve the
# speed; debug assertions stay on, so arithmetic overflow is caught too.
#
# Corpora grow in fuzz/corpus/<target> (kept between runs, not committed), starting from seeds
# made from tests/fixtures and envoy/*.yaml. A crash is saved in fuzz/artifacts/<target>/ and
# fails the run after every target had its turn; copy it to fuzz/regressions/<target>/ (named
# for what it found), fix the bug, and `cargo test --test fuzz_regressions` replays it forever.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-${FUZZ_SECONDS:-60}}
shift || true
triple=$(rustc -vV | sed -n 's/^host: //p')
all_targets=$(ls fuzz/fuzz_targets | sed -n "s/\.rs$//p")
targets=${*:-$all_targets}

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions -Ccodegen-units=1"
started=$(date +%s)
cargo build --quiet --manifest-path fuzz/Cargo.toml --target "$triple" --release \
  --config 'profile.release.debug="line-tables-only"' --bins
built=$(date +%s)

rm -rf fuzz/seeds
python3 fuzz/seeds.py fuzz/seeds
failed=()
for target in $targets; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log="fuzz/artifacts/$target/last-run.log"
  # -timeout: one input running 10 s is a hang, reported like a crash.
  if "fuzz/target/$triple/release/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 \
      "fuzz/corpus/$target" "fuzz/seeds/$target" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    printf 'fuzz %-20s %9s runs in %ss, corpus %s\n' "$target" "$runs" "$seconds" "$corpus"
  else
    echo "fuzz $target: FAILED, see $log:" >&2
    grep -E "panicked|SUMMARY|Test unit written|timeout" "$log" >&2 || tail -20 "$log" >&2
    failed+=("$target")
  fi
done
echo "fuzz: built in $((built - started))s, fuzzed $(echo $targets | wc -w) targets in $(( $(date +%s) - built ))s"
if ((${#failed[@]})); then
  echo "fuzz: crashes in ${failed[*]}: save each input under fuzz/regressions/<target>/ and fix it" >&2
  exit 1
fi
echo "fuzz: ${#failed[@]} crashes"
