#!/usr/bin/env bash
# Builds a third-party tool the tests need from its published Go module into a cache directory
# outside the repository, reuses it when already built, and prints the path of the binary.
#
#   bash tests/tools/build.sh helm       helm (renders charts/cocoon-operator in the tests)
#   bash tests/tools/build.sh registry   the distribution project's OCI registry (the snapshot
#                                        registry of cocoonstack providers in tests, demo, bench)
#
#   COCOON_TOOLS_CACHE  root of the cache (default: ~/.cache/cocoon-operator/tools)
set -euo pipefail

tool=${1:?usage: build.sh helm|registry}
case "$tool" in
  helm) pkg=helm.sh/helm/v3/cmd/helm version=v3.22.0
        ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version" ;;
  registry) pkg=github.com/distribution/distribution/v3/cmd/registry version=v3.1.2
        ldflags="-s -w -X github.com/distribution/distribution/v3/version.version=$version" ;;
  *) echo "unknown tool: $tool" >&2; exit 2 ;;
esac

root=${COCOON_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cocoon-operator/tools}
dir="$root/$tool-$version"
if [ -x "$dir/$tool" ]; then
  echo "$dir/$tool"
  exit 0
fi
mkdir -p "$dir.partial"
start=$(date +%s)
echo "building $tool $version from ${pkg%%/cmd/*} ..." >&2
# `go install pkg@version` builds the module as published (its own go.mod and go.sum).
CGO_ENABLED=0 GOBIN="$dir.partial" GOFLAGS=-trimpath go install -ldflags "$ldflags" "$pkg@$version" >&2
echo "built $tool $version in $(( $(date +%s) - start ))s" >&2
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "$dir/$tool"
