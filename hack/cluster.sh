#!/usr/bin/env bash
# Starts or stops a local control plane (etcd, kube-apiserver, kube-controller-manager) in the
# background for manual use with kubectl.
#
#   hack/cluster.sh up     start it; the admin kubeconfig is target/dev/kubeconfig
#   hack/cluster.sh down   stop it and wait until every component is gone
#
#   COCOON_DEV_BIN        the binary to run (default: target/debug/cocoon-dev)
#   CLUSTER_UP_TIMEOUT    seconds to wait for the API server (default: 120)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dev="$root/target/dev"
pidfile="$dev/cluster.pid"
kubeconfig="$dev/kubeconfig"
log="$dev/cluster.log"
bin=${COCOON_DEV_BIN:-$root/target/debug/cocoon-dev}
timeout=${CLUSTER_UP_TIMEOUT:-120}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

up() {
  if running; then
    echo "control plane already running (pid $(cat "$pidfile")); kubeconfig: $kubeconfig"
    return 0
  fi
  if [ ! -x "$bin" ]; then
    echo "error: $bin not found; run 'cargo build -p cocoon-dev' first" >&2
    return 1
  fi
  # Build (or find in the cache) the control-plane binaries in the foreground, so that a cold
  # build shows its progress here instead of looking like a hang.
  COCOON_CONTROL_PLANE_BIN=$(bash "$root/tests/control-plane/build.sh")
  export COCOON_CONTROL_PLANE_BIN
  # The kubectl built with the control plane matches the API server's version.
  local kubectl=kubectl
  [ -x "$COCOON_CONTROL_PLANE_BIN/kubectl" ] && kubectl="$COCOON_CONTROL_PLANE_BIN/kubectl"

  mkdir -p "$dev"
  rm -f "$kubeconfig"
  nohup "$bin" cluster --kubeconfig "$kubeconfig" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"

  local start=$SECONDS
  until [ -f "$kubeconfig" ] && "$kubectl" --kubeconfig "$kubeconfig" get ns >/dev/null 2>&1; do
    if ! running; then
      echo "error: the control plane exited; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      rm -f "$pidfile"
      return 1
    fi
    if (( SECONDS - start > timeout )); then
      echo "error: the API server was not ready within ${timeout}s; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      down
      return 1
    fi
    sleep 0.5
  done
  echo "control plane up in $(( SECONDS - start ))s (pid $(cat "$pidfile"))"
  echo "  kubeconfig: $kubeconfig"
  echo "  log:        $log"
  echo "  try:        kubectl --kubeconfig $kubeconfig get ns"
  echo "  stop:       $0 down"
}

down() {
  if ! running; then
    echo "control plane not running"
    rm -f "$pidfile"
    return 0
  fi
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  # The process stops its components before it exits, so its exit means they are gone.
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "pid $pid did not stop within 30s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "control plane stopped (pid $pid)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
