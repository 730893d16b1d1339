#!/usr/bin/env bash
# Builds edgefn's wasm test functions, the wasm-guests workspace, in release for wasm32-wasip1
# and copies each module (<name>.wasm) into OUT_DIR, printing one line per module.
#
# Usage: scripts/build-wasm-guests.sh OUT_DIR
#
# Adds the Rust target wasm32-wasip1 with rustup when it is missing. Cargo's build directory
# is <repo>/target/wasm-guests, so a repeated run rebuilds only what changed. python3 reads
# cargo's JSON messages to find the modules.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly TARGET=wasm32-wasip1

if ! command -v rustup >/dev/null; then
  echo "warning: rustup not found, so the build assumes the toolchain has $TARGET" >&2
elif ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "installing the Rust target $TARGET with rustup"
  rustup target add "$TARGET"
fi

out_dir="$1"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

# cargo prints one JSON message per line on stdout and its human-readable diagnostics on
# stderr. The "compiler-artifact" messages name every file a build produced.
export CARGO_TARGET_DIR="$repo/target/wasm-guests"
messages=$(cargo build --release --target "$TARGET" \
  --manifest-path "$repo/wasm-guests/Cargo.toml" --message-format json-render-diagnostics)
modules=$(python3 -c '
import json, sys

for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") != "compiler-artifact":
        continue
    for filename in message.get("filenames", []):
        if filename.endswith(".wasm"):
            print(filename)
' <<<"$messages")

if [[ -z "$modules" ]]; then
  echo "error: cargo built no .wasm file from $repo/wasm-guests" >&2
  exit 1
fi
while IFS= read -r module; do
  cp "$module" "$out_dir/"
  echo "copied: $out_dir/$(basename "$module")"
done <<<"$modules"
