#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd from the Go module proxy into a cache
# directory outside the repository (keyed by the versions pinned in go.mod and the go.sum hash),
# reuses them when already built, and prints the directory holding the binaries.
#
#   COCOON_CONTROL_PLANE_CACHE  root of the cache (default: ~/.cache/cocoon-operator/control-plane)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' go.mod)
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' go.mod)
sum=$(cat go.mod go.sum | sha256sum | cut -c1-12)
root=${COCOON_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cocoon-operator/control-plane}
dir="$root/k8s-$k8s_version-etcd-$etcd_version-$sum"

minor=${k8s_version#v1.}; minor=${minor%%.*}
stamp="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp="$stamp -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp="$stamp -X $pkg.gitTreeState=clean -X $pkg.gitCommit=module-$k8s_version"
done

if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kube-controller-manager" ] && [ -x "$dir/etcd" ] && [ -x "$dir/kubectl" ]; then
  # kube-scheduler joined the set later: a cache from before gets it added, not rebuilt whole.
  if [ ! -x "$dir/kube-scheduler" ]; then
    echo "building kube-scheduler from k8s.io/kubernetes/cmd/kube-scheduler ..." >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "$stamp" -o "$dir/kube-scheduler.partial" k8s.io/kubernetes/cmd/kube-scheduler >&2
    mv "$dir/kube-scheduler.partial" "$dir/kube-scheduler"
  fi
  echo "$dir"
  exit 0
fi

mkdir -p "$dir.partial"

start=$(date +%s)
build() {
  local out=$1 pkg=$2 flags=$3
  if [ ! -x "$dir.partial/$out" ]; then
    echo "building $out from $pkg ..." >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$dir.partial/$out" "$pkg" >&2
  fi
}
build etcd go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$stamp"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$stamp"
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$stamp"
build kubectl k8s.io/kubernetes/cmd/kubectl "$stamp"
echo "built control plane $k8s_version (etcd $etcd_version) in $(( $(date +%s) - start ))s" >&2

rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "$dir"
