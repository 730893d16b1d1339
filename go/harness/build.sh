#!/usr/bin/env bash
# Builds the C harness that plays a minimal golang-filter host, and runs it against a plugin
# library when one is given. HARNESS_OUT sets the output path.
#   go/harness/build.sh [PATH/testplugins.so]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# The default output is under the repository's target/ directory, which git ignores.
out="${HARNESS_OUT:-$here/../../target/go-harness/harness}"
mkdir -p "$(dirname "$out")"

# -rdynamic exports the host callbacks from the executable, where the plugin's unresolved
# envoyGo* references bind when it is dlopened.
cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Wno-unused-parameter -O1 -rdynamic \
  -o "$out" "$here/harness.c" -ldl -lpthread
echo "built $out"

if [[ $# -ge 1 ]]; then
  "$out" "$1"
fi
