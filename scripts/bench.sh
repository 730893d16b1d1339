#!/usr/bin/env bash
# Benchmark, not part of the tests. It compares Envoy with no filter, with its Lua filter, with
# edgefn running a Go plugin, with edgefn running a proxy-wasm plugin, and with the same .wasm on
# Envoy's own wasm filter (V8). Every filter does the same job: read one request header and add
# one response header. wrk loads each Envoy on 127.0.0.1 in interleaved rounds. The script
# prints requests per second, p50/p99 latency, Envoy's CPU time per request, its RSS, and the
# ratios to no filter.
#
# Usage: scripts/bench.sh [--rounds N] [--duration SECONDS] [--connections N]
#        (defaults: 3 rounds of 5 s per configuration, 16 connections)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export CARGO_TARGET_DIR="$repo/target"
export EDGEFN_ENVOY="$repo/.work/bin/envoy"
export EDGEFN_PLUGINS_DIR="$repo/.work/plugins"
export EDGEFN_MODULE_DIR="$CARGO_TARGET_DIR/release"
export EDGEFN_WASM_DIR="$repo/.work/wasm"

bash scripts/setup.sh
cargo build --release -p edgefn-filter -p edgefn-integration --bin bench
exec "$CARGO_TARGET_DIR/release/bench" "$@"
