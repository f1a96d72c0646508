#!/usr/bin/env bash
# Installs the Debian packages berth and its tests use. Idempotent; needs root.
set -euo pipefail
pkgs=(
  # OCI runtimes
  runc runsc crun criu
  # building runc v1.5 (scripts/setup.sh, test/go/runc-1.5): cgo with libseccomp
  libseccomp-dev pkg-config
  # containerd 1.6: ctr and containerd-shim-runc-v2, for shim compatibility tests
  containerd
  # registry and image tooling for tests (a local registry on 127.0.0.1, skopeo to push)
  docker-registry skopeo busybox-static apache2-utils
  # pod networking
  containernetworking-plugins iproute2 iptables
  # protobuf code generation check, native addon build
  protobuf-compiler libprotobuf-dev make g++ python3
  jq procps util-linux
  # OCI image building for the critest image stand-ins (test/images)
  umoci curl
  # a message broker for the transport comparison (bench/transports.bench.ts)
  redis-server
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
