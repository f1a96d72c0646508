#!/usr/bin/env bash
# One-command set-up on a fresh Debian 12 machine, as root: installs the packages berth needs,
# builds it, puts berthd, berth and containerd-shim-berth-v2 on PATH, and starts berthd with its
# embedded default configuration (no config file needed). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bash scripts/install-deps.sh
npm ci --no-audit --no-fund
npm run build

for b in berthd berth containerd-shim-berth-v2; do
  ln -sf "$repo/bin/$b" "/usr/local/bin/$b"
done

# runc v1.5 beside Debian 12's runc 1.1.5 (which stays the default handler): the `runc-1.5`
# runtime handler of berthd's default config runs it, for pods with user namespaces and
# idmapped mounts. Built from the Go module proxy (test/go/runc-1.5) and copied, so the cache
# can be cleared.
bash scripts/go-tools.sh runc-1.5
install -m 0755 "$(bash scripts/go-tools.sh --bin runc-1.5)/runc" /usr/local/sbin/runc-1.5

sock=/run/berth/berth.sock
if [[ -S $sock ]] && node -e 'require("net").connect(process.argv[1]).on("connect",()=>process.exit(0)).on("error",()=>process.exit(1))' "$sock"; then
  echo "setup: berthd is already running on /run/berth/berth.sock"
  exit 0
fi
mkdir -p /var/log
nohup berthd >>/var/log/berthd.log 2>&1 </dev/null &
for _ in $(seq 1 50); do
  [[ -S $sock ]] && break
  sleep 0.2
done
if [[ -S $sock ]]; then
  echo "setup: berthd is running (pid $!), CRI socket unix:///run/berth/berth.sock, log /var/log/berthd.log"
else
  echo "setup: berthd did not start; see /var/log/berthd.log" >&2
  tail -20 /var/log/berthd.log >&2
  exit 1
fi
