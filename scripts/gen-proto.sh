#!/usr/bin/env bash
# Regenerates src/gen from proto/ with protoc + ts-proto.
# With --check, generates into a temporary directory and fails if src/gen differs (stale generated code).
set -euo pipefail
cd "$(dirname "$0")/.."
out=src/gen
if [[ "${1:-}" == "--check" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
command -v protoc >/dev/null || { echo "gen-proto: protoc not found (apt-get install protobuf-compiler libprotobuf-dev)" >&2; exit 1; }
inc=/usr/include
[[ -f $inc/google/protobuf/any.proto ]] || { echo "gen-proto: google/protobuf well-known types missing (apt-get install libprotobuf-dev)" >&2; exit 1; }
rm -rf "${out:?}"/*
mkdir -p "$out"
# The services spoken over ttrpc (shim v2 Task, shim events) get only the generic definitions
# the ttrpc code uses: a grpc-js client and server for them would be dead code, and importing
# grpc-js costs the serving shim about 7 MiB (issue 15). The gRPC services (CRI, berth's API)
# get both.
ttrpc_only=(containerd/runtime/v2/task/shim.proto containerd/services/ttrpc/events/v1/events.proto)
mapfile -t files < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort | grep -vxF -f <(printf '%s\n' "${ttrpc_only[@]}"))
opts=esModuleInterop=true,importSuffix=.js,forceLong=bigint,useDate=false,env=node,useExactTypes=false,oneof=unions-value,useOptionals=none,exportCommonSymbols=false
gen() {
  protoc \
    --plugin=protoc-gen-ts_proto=./node_modules/.bin/protoc-gen-ts_proto \
    --ts_proto_out="$out" \
    --ts_proto_opt="$1" \
    -I proto -I "$inc" \
    "${@:2}"
}
gen "$opts,outputServices=grpc-js,outputServices=generic-definitions" "${files[@]}"
gen "$opts,outputServices=generic-definitions" "${ttrpc_only[@]}"
# The generated files are committed; keep them out of lint and format.
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -q "$out" src/gen; then
    echo "gen-proto: src/gen is stale; run 'npm run gen' and commit the result" >&2
    exit 1
  fi
  echo "gen-proto: src/gen is up to date"
fi
