#!/usr/bin/env bash
# A throwaway single-node Ceph (one monitor, one memstore OSD, no manager, no cephx) with radosgw in
# front, listening on 127.0.0.1 only: the real S3 server the object-storage tests run against.
# Fake S3 servers cannot do versioning and hide real behaviour, hence this.
#
#   scripts/rgw.sh start DIR [PORT]   wipes DIR, starts the cluster there, prints one line
#                                     "RGW_READY port=PORT dir=DIR endpoint=http://127.0.0.1:PORT"
#                                     (PORT: a free one when not given; monitor ports are always free ones)
#                                     With RGW_SSL_CERT and RGW_SSL_KEY (PEM files) set, beast also
#                                     serves https on a free port, and the line ends " ssl_port=PORT".
#   scripts/rgw.sh stop DIR           stops the daemons by the PIDs recorded in DIR/run, bounded wait
#
# The S3 user is access key `minioadmin`, secret `minioadmin`. Settings that matter: msgr2 with
# "crc secure" modes (the defaults fail without cephx), pool size 1 and few placement groups (one OSD),
# memstore (no block file, fast start), and tcp_nodelay=1 on the beast frontend: without it, on a
# kept-alive connection every response's body waits for the client's delayed ACK (about 40 ms; 50 ms
# per small GET instead of 3 ms), which caps any client at its concurrency / 50 ms.
# STS is on (a fixed test key) with a role `airlock-test` the user may assume, so tests can take
# session credentials with AssumeRole.
# Every daemon reads DIR/ceph.conf and nothing else.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: rgw.sh start DIR [PORT] | rgw.sh stop DIR" >&2; exit 2; }


# Waits until "$@" succeeds, at most $1 tenths of a second.
wait_for() {
  local tenths=$1 i
  shift
  for i in $(seq "$tenths"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Only PIDs whose command line names our ceph.conf are ours: a recorded PID may have been reused.
ours() {
  local pid=$1 conf=$2
  [ -r "/proc/$pid/cmdline" ] && tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$conf"
}

stop() {
  local d conf pids=() f pid i
  d=$(realpath -m "$1")
  conf="$d/ceph.conf"
  [ -d "$d/run" ] || return 0
  for f in "$d"/run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid" "$conf"; then pids+=("$pid"); fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for i in $(seq 100); do
    local alive=0
    for pid in "${pids[@]}"; do ours "$pid" "$conf" && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do ours "$pid" "$conf" && kill -KILL "$pid" 2>/dev/null || true; done
  return 0
}

start() {
  local d port monport mon2port fsid conf osduuid osdid sslport='' ssl=''
  d=$(realpath -m "$1")
  port=${2:-$(free_port)}
  monport=$(free_port)
  mon2port=$(free_port)
  while [ "$mon2port" = "$monport" ] || [ "$mon2port" = "$port" ]; do mon2port=$(free_port); done
  while [ "$monport" = "$port" ]; do monport=$(free_port); done
  if [ -n "${RGW_SSL_CERT:-}" ] && [ -n "${RGW_SSL_KEY:-}" ]; then
    sslport=$(free_port)
    while [ "$sslport" = "$port" ] || [ "$sslport" = "$monport" ] || [ "$sslport" = "$mon2port" ]; do sslport=$(free_port); done
    ssl=" ssl_endpoint=127.0.0.1:$sslport ssl_certificate=$RGW_SSL_CERT ssl_private_key=$RGW_SSL_KEY"
  fi
  stop "$d"
  rm -rf "$d"
  mkdir -p "$d"/{run,log,mon.a,osd.0,rgw}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  conf="$d/ceph.conf"
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon2port,v1:127.0.0.1:$monport]
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr2 = true
ms mon client mode = crc secure
ms client mode = crc secure
ms mon cluster mode = crc secure
ms mon service mode = crc secure
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
osd crush chooseleaf type = 0
run dir = $d/run
admin socket = $d/run/\$name.asok
log file = $d/log/\$name.log
pid file = $d/run/\$name.pid
keyring = /dev/null
[mon]
mon data = $d/mon.\$id
[osd]
osd data = $d/osd.\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd memory target = 1073741824
[client]
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1$ssl
rgw data = $d/rgw
rgw enable usage log = false
rgw dns name = localhost
rgw s3 auth use sts = true
rgw sts key = airlocktestsstsk
EOF
  local c=(-c "$conf")
  # on any failure below, leave nothing running
  trap 'stop "$d"' ERR
  monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon2port,v1:127.0.0.1:$monport]" "$d/monmap" >/dev/null
  ceph-mon "${c[@]}" --mkfs -i a --monmap "$d/monmap" >/dev/null
  ceph-mon "${c[@]}" -i a 2>>"$d/log/start.log"
  wait_for 100 ceph "${c[@]}" --connect-timeout 2 mon stat || { echo "rgw.sh: the monitor did not come up (see $d/log)" >&2; stop "$d"; exit 1; }
  osduuid=$(cat /proc/sys/kernel/random/uuid)
  osdid=$(ceph "${c[@]}" osd new "$osduuid")
  ceph-osd "${c[@]}" -i "$osdid" --mkfs --osd-uuid "$osduuid" >/dev/null 2>&1
  ceph-osd "${c[@]}" -i "$osdid" 2>>"$d/log/start.log"
  osd_up() { ceph "${c[@]}" --connect-timeout 2 osd stat 2>/dev/null | grep -q '1 up'; }
  wait_for 300 osd_up || { echo "rgw.sh: the OSD did not come up (see $d/log)" >&2; stop "$d"; exit 1; }
  radosgw-admin "${c[@]}" user create --uid=test --display-name=test --access-key=minioadmin --secret-key=minioadmin >/dev/null
  # a role the test user may assume (AssumeRole gives session credentials) that may do anything in S3
  radosgw-admin "${c[@]}" role create --role-name=airlock-test --path=/ \
    --assume-role-policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/test"]},"Action":["sts:AssumeRole"]}]}' >/dev/null
  radosgw-admin "${c[@]}" role-policy put --role-name=airlock-test --policy-name=s3 \
    --policy-doc='{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::*"}}' >/dev/null
  timeout 120 radosgw "${c[@]}" -n client.rgw.a 2>>"$d/log/start.log"
  wait_for 600 curl -s -o /dev/null "http://127.0.0.1:$port/" || { echo "rgw.sh: radosgw did not answer on port $port (see $d/log)" >&2; stop "$d"; exit 1; }
  trap - ERR
  echo "RGW_READY port=$port dir=$d endpoint=http://127.0.0.1:$port${sslport:+ ssl_port=$sslport}"
}

[ $# -ge 2 ] || usage
case "$1" in
  start) [ $# -le 3 ] || usage; start "$2" "${3:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
