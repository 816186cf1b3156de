#!/usr/bin/env bash
# Installs what airlock needs on a Debian 12 machine, then its npm dependencies.
# Usage: bash scripts/setup.sh          (as root, or with sudo available)
# Installs only what is missing: age, zstd, jq (RESTORE.txt's files step), gcc and libssl-dev (to build the archive_command
# helper, agent/native/wal-push.c), openssh-client (ssh-keygen), GNU tar, coreutils (dd for
# the read-back of written media), par2 (recovery data), time (benchmarks), PostgreSQL 15 (its server
# binaries back the tests and the demo), mmdebstrap (a Debian 13 root with PostgreSQL 17, the tests'
# second major version, see below), Chromium (headless, for the test that renders the auditor
# report and prints it to PDF), and for the
# object-storage tests a single-node Ceph with radosgw (scripts/rgw.sh), curl, iproute2 (ss) and
# rclone and pgbackrest (the benchmarks' peers).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(age zstd jq strace gcc libc6-dev libssl-dev openssh-client tar coreutils par2 time postgresql-15 mmdebstrap chromium ceph-mon ceph-osd radosgw ceph-base ceph-common curl iproute2 rclone pgbackrest)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL 17 for the tests: Debian 13's packages in a root folder of their own, run through
# scripts/pg-chroot.sh (about 520 MB, built once). It is built under a temporary name and renamed
# when complete, so an interrupted build is never taken for a finished root; the next run removes it.
pg17_root=${AIRLOCK_PG17_ROOT:-/var/cache/airlock-test/trixie-pg17}
if [ ! -d "$pg17_root" ]; then
  echo "setup: building $pg17_root (Debian 13 with postgresql-17)"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" rm -rf "$pg17_root.partial"
  "${sudo[@]}" mkdir -p "$(dirname "$pg17_root")"
  "${sudo[@]}" mmdebstrap --quiet --variant=apt --include=postgresql-17 trixie "$pg17_root.partial"
  "${sudo[@]}" mv "$pg17_root.partial" "$pg17_root"
fi

# promtool checks the metrics file in the tests; it comes only in Debian's prometheus package, whose
# server and exporter the tests must not install and start, so only the one program is taken out of it
PROMTOOL=/var/cache/airlock-test/bin/promtool
if ! command -v promtool >/dev/null && [ ! -x "$PROMTOOL" ]; then
  echo "setup: promtool"
  scratch=$(mktemp -d)
  apt-get update -qq
  (cd "$scratch" && apt-get download -qq prometheus >/dev/null && dpkg-deb -x prometheus_*.deb root)
  install -D -m 0755 "$scratch/root/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$scratch"
fi

# The offline install kit (`npm run package`) and its test: mmdebstrap and dpkg-dev on this machine,
# and once, the minimal Debian 12 root (scripts/bookworm.sh) that stands for a site's appliance.
setup_bookworm_root() {
  local p need=() sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo --preserve-env=AIRLOCK_BOOKWORM_ROOT)
  for p in mmdebstrap dpkg-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  "${sudo[@]}" bash -c '. scripts/bookworm.sh && build_bookworm_root'
}
setup_bookworm_root

node -e 'const [maj] = process.versions.node.split(".").map(Number); if (maj < 20) { console.error(`setup: node ${process.version} is too old; airlock needs node 20 or newer`); process.exit(1); }'
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
echo "setup: done"
