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
mapfile -t files < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
protoc \
  --plugin=protoc-gen-ts_proto=./node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=esModuleInterop=true,importSuffix=.js,forceLong=bigint,useDate=false,env=node,outputServices=grpc-js,outputServices=generic-definitions,useExactTypes=false,oneof=unions-value,useOptionals=none,exportCommonSymbols=false \
  -I proto -I "$inc" \
  "${files[@]}"
# The generated files are committed; keep them out of lint and format.
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -q "$out" src/gen; then
    echo "gen-proto: src/gen is stale; run 'npm run gen' and commit the result" >&2
    exit 1
  fi
  echo "gen-proto: src/gen is up to date"
fi
