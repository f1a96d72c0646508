#!/usr/bin/env bash
# Builds the Go programs the tests and benchmarks run against berth (crictl, critest, kubelet,
# containerd 2.x, grpc-go clients, ...) with the machine's Go, from the Go module proxy at the
# versions pinned in each tool's go.mod, into a cache outside the checkout. A second run with
# the same sources and Go version rebuilds nothing.
#
#   scripts/go-tools.sh              build every tool the tests use (all under test/go/ but those
#                                    marked with a file named bench-only, which only benchmarks run)
#   scripts/go-tools.sh --all        build every tool, benchmark clients included
#   scripts/go-tools.sh NAME...      build only these tools (directory names under test/go/)
#   scripts/go-tools.sh --bin NAME   print the cache's bin directory of one tool (no build)
#
# Each tool is a directory test/go/NAME holding a go.mod (and go.sum) and a BUILD file with one
# line per binary: "BINARY PACKAGE [go build flags]" (PACKAGE is an import path or ./relative;
# "test:PACKAGE" builds the package's test binary with `go test -c`, as cri-tools builds critest). Nothing built
# is committed; the cache is ${BERTH_GO_CACHE:-/var/cache/berth-go}.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${BERTH_GO_CACHE:-/var/cache/berth-go}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod GOCACHE="$cache/go-build" GOMODCACHE="$cache/gomod"
export PATH="/usr/local/go/bin:$PATH" # the machine's Go, never Debian's golang-go

if [[ ${1:-} == --bin ]]; then
  echo "$cache/tools/$2/bin"
  exit 0
fi
all=false
if [[ ${1:-} == --all ]]; then
  all=true
  shift
fi
names=("$@")
if ((${#names[@]} == 0)); then
  for d in "$repo"/test/go/*/; do
    [[ -f $d/BUILD ]] || continue
    [[ $all == true || ! -f $d/bench-only ]] && names+=("$(basename "$d")")
  done
fi

for name in "${names[@]}"; do
  src="$repo/test/go/$name"
  [[ -f $src/BUILD ]] || { echo "go-tools: no $src/BUILD" >&2; exit 1; }
  out="$cache/tools/$name"
  stamp=$( (go version; cd "$src" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)
  if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]]; then
    continue
  fi
  started=$(date +%s)
  echo "go-tools: building $name" >&2
  rm -rf "$out" && mkdir -p "$out/bin"
  cp -r "$src" "$out/src"
  while read -r bin pkg flags; do
    [[ -z $bin || $bin == \#* ]] && continue
    # shellcheck disable=SC2086 # flags are word-split on purpose
    if [[ $pkg == test:* ]]; then
      (cd "$out/src" && go test -c -trimpath $flags -o "$out/bin/$bin" "${pkg#test:}")
    else
      (cd "$out/src" && go build -trimpath $flags -o "$out/bin/$bin" "$pkg")
    fi
  done <"$src/BUILD"
  echo "$stamp" >"$out/stamp"
  echo "go-tools: built $name in $(($(date +%s) - started)) s" >&2
done
