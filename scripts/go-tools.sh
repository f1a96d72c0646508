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

build() { # name: builds one tool into a fresh directory, then moves it into place
  local name=$1 src="$repo/test/go/$1" out="$cache/tools/$1" stamp started tmp
  stamp=$( (go version; cd "$src" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)
  if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]]; then
    return 0
  fi
  started=$(date +%s)
  echo "go-tools: building $name" >&2
  tmp="$out.building"
  rm -rf "$tmp" && mkdir -p "$tmp/bin"
  cp -r "$src" "$tmp/src"
  while read -r bin pkg flags; do
    [[ -z $bin || $bin == \#* ]] && continue
    if [[ $pkg == test:* ]]; then
      # shellcheck disable=SC2086 # flags are word-split on purpose
      (cd "$tmp/src" && go test -c -trimpath $flags -o "$tmp/bin/$bin" "${pkg#test:}")
    else
      # shellcheck disable=SC2086
      (cd "$tmp/src" && go build -trimpath $flags -o "$tmp/bin/$bin" "$pkg")
    fi
  done <"$src/BUILD"
  echo "$stamp" >"$tmp/stamp"
  rm -rf "$out" && mv "$tmp" "$out"
  echo "go-tools: built $name in $(($(date +%s) - started)) s" >&2
}

mkdir -p "$cache/tools"
for name in "${names[@]}"; do
  [[ -f $repo/test/go/$name/BUILD ]] || { echo "go-tools: no test/go/$name/BUILD" >&2; exit 1; }
  # One build of a tool at a time (tests and CI may ask for the same tool at once).
  (
    flock 9
    build "$name"
  ) 9>"$cache/tools/$name.lock"
done
