#!/usr/bin/env bash
# `make bench-upstream`: the bench with the upstream Go cocoon-operator as the second column,
# in the dialect each was written for: v0.1.1 (the seed's operator, cocoon.cis API) against the
# seed dialect, v0.3.3 (cocoonset.cocoonstack.io API, snapshots in OCI_REGISTRY) against the
# current dialect with a local registry. Each runs under the roles of its own manifests. Both are
# built from source by the providers kit (../shared/providers/build.sh, or COCOON_PROVIDERS_KIT).
#
#   UPSTREAM=v0.1.1|v0.3.3|both (default both); BENCH_SETS, BENCH_SCENARIOS, ... as for make bench.
#   Reports: target/bench/upstream-<version>/report.json and report.svg.
set -euo pipefail

kit=${COCOON_PROVIDERS_KIT:-$(cd "$(dirname "$0")/../.." && pwd)/shared/providers}
if [ ! -f "$kit/build.sh" ]; then
  echo "make bench-upstream: no $kit/build.sh (set COCOON_PROVIDERS_KIT): cannot build the upstream operator" >&2
  exit 1
fi
which=${UPSTREAM:-both}
bench=./target/tools/cocoon-dev
ours=target/release/cocoon-operator

run_v011() {
  local bin dir
  bin=$(bash "$kit/build.sh" cocoon-operator v0.1.1)
  dir=$(dirname "$bin")
  "$bench" bench --operator "$ours" --dialect seed --out target/bench/upstream-v0.1.1 \
    --external-operator "$bin" \
    --external-crds "$dir/deploy/crd.yaml,$dir/deploy/cocoonset-crd.yaml" \
    --external-rbac "$dir/deploy/deploy.yaml" --external-api cocoon.cis
}

run_v033() {
  local bin dir
  bin=$(bash "$kit/build.sh" cocoon-operator v0.3.3)
  dir=$(dirname "$bin")/config
  # Loopback only: its metrics and probe ports bind on all interfaces by default.
  "$bench" bench --operator "$ours" --dialect current --out target/bench/upstream-v0.3.3 \
    --external-operator "env OCI_REGISTRY=\$BENCH_REGISTRY $bin --leader-elect=false --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0" \
    --external-crds "$dir/crd/bases/cocoonset.cocoonstack.io_cocoonsets.yaml,$dir/crd/bases/cocoonset.cocoonstack.io_cocoonhibernations.yaml" \
    --external-rbac "$dir/rbac/role.yaml" --external-api cocoonstack.io
}

case "$which" in
  v0.1.1) run_v011 ;;
  v0.3.3) run_v033 ;;
  both) run_v011; run_v033 ;;
  *) echo "UPSTREAM=$which: v0.1.1, v0.3.3 or both" >&2; exit 1 ;;
esac
