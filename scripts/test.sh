#!/usr/bin/env bash
# The one test command: installs what is missing (scripts/setup.sh), checks formatting and
# lints, builds libedgefn.so, then runs every test in the workspace, the integration tests
# against the real Envoy included. The first failing step fails the script.
#
# Usage: scripts/test.sh [extra `cargo test` arguments, for example a test name filter]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Cargo's build cache stays in the clone, even when the caller set CARGO_TARGET_DIR elsewhere.
export CARGO_TARGET_DIR="$repo/target"
# The integration tests find Envoy, the Go test plugins, libedgefn.so and Python through these.
export EDGEFN_ENVOY="$repo/.work/bin/envoy"
export EDGEFN_PLUGINS_DIR="$repo/.work/plugins"
export EDGEFN_MODULE_DIR="$CARGO_TARGET_DIR/release"
export EDGEFN_PYTHON="$repo/.venv/bin/python"
# The loader's own tests open one Go filter plugin directly, without Envoy.
export EDGEFN_TEST_PLUGIN="$EDGEFN_PLUGINS_DIR/testplugins.so"
# The OCI end-to-end test pushes with the CLI that the release test build produces.
export EDGEFN_CLI="$CARGO_TARGET_DIR/release/edgefn"
# The wasm tests load the modules scripts/build-wasm-guests.sh built, and fail without them.
export EDGEFN_WASM_DIR="$repo/.work/wasm"
export EDGEFN_REQUIRE_WASM=1
# Bounds the test run (not the build), so a hung test fails the script before CI's time limit.
readonly TEST_TIMEOUT=30m

run_step() {
  local name="$1"
  shift
  local started=$SECONDS
  printf '==> %s: %s\n' "$name" "$*"
  "$@"
  printf '==> %s: done in %ss\n' "$name" "$((SECONDS - started))"
}

run_step setup bash scripts/setup.sh
run_step fmt cargo fmt --all --check
run_step fmt-guests cargo fmt --check --manifest-path guest/Cargo.toml
run_step fmt-wasm-guests cargo fmt --all --check --manifest-path wasm-guests/Cargo.toml
run_step clippy cargo clippy --workspace --all-targets -- -D warnings
# The guest crate and the test functions build for wasm32-wasip1, in their own target dir.
run_step clippy-guests env CARGO_TARGET_DIR="$repo/target/wasm-guests" cargo clippy \
  --manifest-path wasm-guests/Cargo.toml --workspace --target wasm32-wasip1 -- -D warnings
run_step clippy-guest-crate env CARGO_TARGET_DIR="$repo/target/wasm-guests" cargo clippy \
  --manifest-path guest/Cargo.toml --all-targets --target wasm32-wasip1 -- -D warnings
run_step test-guest-crate cargo test --manifest-path guest/Cargo.toml
# libedgefn.so is built with every target of the workspace, so that cargo resolves the same
# dependency features as the test build below and compiles wasmtime once, not twice.
run_step build cargo build --release --workspace --all-targets
run_step build-tests cargo test --release --workspace --no-run
run_step test timeout --signal=KILL "$TEST_TIMEOUT" cargo test --release --workspace "$@"
