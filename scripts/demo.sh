#!/usr/bin/env bash
# Demo: Envoy 1.40 runs the Go plugin add-header through edgefn. The script starts an echo
# upstream, a file server for .work/plugins/addheader.so (edgefn fetches the plugin from it) and
# Envoy with envoy-configs/demo.yaml. It then sends a few requests with curl. Each response
# shows the header the plugin added to the request (the upstream echoes it back) and the header
# it added to the response. A second listener runs a wasm backend function, wasm-guests/echo,
# which edgefn fetches from a second file server for .work/wasm; the function replies itself.
# Everything the script started is stopped on exit.
#
# Usage: scripts/demo.sh
# Ports (fixed by demo.yaml, all on 127.0.0.1): 28080 listener, 29901 admin, 28081 upstream,
# 28082 plugin file server, 28083 wasm listener, 28084 wasm file server.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

readonly LISTEN_PORT=28080
readonly ADMIN_PORT=29901
readonly UPSTREAM_PORT=28081
readonly FILES_PORT=28082
readonly WASM_LISTEN_PORT=28083
readonly WASM_FILES_PORT=28084
readonly LISTEN=127.0.0.1:$LISTEN_PORT
readonly ADMIN=127.0.0.1:$ADMIN_PORT
export CARGO_TARGET_DIR="$repo/target"

say() { printf '\n=== %s\n' "$*"; }

# Polls URL until it returns 200, for at most 60 s. Fails early when process PID has exited.
wait_for() {
  local url="$1" pid="$2" name="$3"
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: $name exited before it became ready; its log:" >&2
      cat "$run_dir/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "demo: $name did not respond at $url within 60 s; its log:" >&2
  tail -n 40 "$run_dir/$name.log" >&2
  return 1
}

# Stops only the processes this script started, by their PIDs.
pids=()
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/edgefn-demo.XXXXXX")
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$run_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Preparing"
if [[ ! -x .work/bin/envoy || ! -f .work/plugins/addheader.so || ! -f .work/wasm/echo.wasm ]]; then
  bash scripts/setup.sh
fi
# A port held by another program would make curl talk to that program instead of the demo's.
for port in "$LISTEN_PORT" "$ADMIN_PORT" "$UPSTREAM_PORT" "$FILES_PORT" "$WASM_LISTEN_PORT" \
  "$WASM_FILES_PORT"; do
  if ! .venv/bin/python -c 'import socket, sys
socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
    echo "demo: port 127.0.0.1:$port is in use; stop the program holding it (ss -ltnp)" \
      "and run the demo again" >&2
    exit 1
  fi
done
echo "building libedgefn.so and the echo upstream (cargo skips what is up to date)"
cargo build --quiet --release -p edgefn-filter
cargo build --quiet -p edgefn-integration --bin echo-upstream

say "Starting the echo upstream and the plugin file server"
target/debug/echo-upstream --port "$UPSTREAM_PORT" >"$run_dir/upstream.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$UPSTREAM_PORT/" "${pids[-1]}" upstream
target/debug/echo-upstream --port "$FILES_PORT" --serve-dir .work/plugins \
  >"$run_dir/files.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$FILES_PORT/addheader.so" "${pids[-1]}" files
target/debug/echo-upstream --port "$WASM_FILES_PORT" --serve-dir .work/wasm \
  >"$run_dir/wasm-files.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$WASM_FILES_PORT/echo.wasm" "${pids[-1]}" wasm-files
cat "$run_dir/upstream.log" "$run_dir/files.log" "$run_dir/wasm-files.log"

say "Starting Envoy with envoy-configs/demo.yaml (edgefn fetches addheader.so now)"
mkdir -p "$run_dir/cache"
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$CARGO_TARGET_DIR/release" \
  EDGEFN_CACHE_DIR="$run_dir/cache" \
  .work/bin/envoy -c envoy-configs/demo.yaml --concurrency 2 --log-level info \
  --component-log-level dynamic_modules:debug --disable-hot-restart \
  </dev/null >"$run_dir/envoy.log" 2>&1 &
pids+=($!)
wait_for "http://$ADMIN/ready" "${pids[-1]}" envoy
echo "Envoy is ready on http://$LISTEN; its edgefn log lines:"
grep -F '[dynamic_modules]' "$run_dir/envoy.log" | cut -c1-200 | tail -n 10 || true

# Shows one request and its response, then the two headers add-header set.
show() {
  local response
  printf '\n$ curl -sS -i'
  printf ' %q' "$@"
  printf '\n'
  response=$(curl -sS -i --max-time 10 "$@")
  printf '%s\n' "$response"
  local body="${response##*$'\r\n\r\n'}"
  local upstream_saw added_by
  upstream_saw=$(printf '%s' "$body" | .venv/bin/python -c '
import json, sys
try:
    headers = json.load(sys.stdin)["headers"]
    values = [value for name, value in headers if name == "x-hello"]
    print(", ".join(values) or "(missing)")
except (ValueError, KeyError, TypeError):
    print("(the reply is not the echo upstream JSON)")')
  added_by=$(printf '%s\n' "$response" | tr -d '\r' | sed -n 's/^x-added-by: //Ip')
  echo "--> the upstream received x-hello: $upstream_saw"
  echo "--> the client received x-added-by: ${added_by:-(missing)}"
}

say "Requests through Envoy"
show "http://$LISTEN/hello"
show --http2-prior-knowledge "http://$LISTEN/over-http2"
show -X POST --data 'a request body' -H 'content-type: text/plain' "http://$LISTEN/post"

say "Requests to the wasm backend function (it replies itself; nothing goes upstream)"
for args in "http://127.0.0.1:$WASM_LISTEN_PORT/hello/wasm?name=demo" \
  "-H x-echo:from-curl --data posted-body http://127.0.0.1:$WASM_LISTEN_PORT/submit"; do
  # shellcheck disable=SC2086 # each entry is a list of curl arguments
  printf '\n$ curl -sS -i %s\n' "$args"
  curl -sS -i --max-time 10 $args
done

say "Done; stopping Envoy and the servers"
