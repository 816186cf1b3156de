#!/usr/bin/env bash
# The airlock demo: a site's agent (airlock run, on an injected clock) exports its configuration and
# secrets, a versioned S3 bucket (on a throwaway single-node Ceph radosgw) and a PostgreSQL database
# (a throwaway cluster archiving its WAL through airlock) to a labelled "medium" (a folder): a base
# backup first, then an hour later the WAL since. An auditor verifies the media without the key (with
# airlock-verify and with stock tools), and the recovery site verifies again, restores the files, the
# bucket and the database to a point in time, and runs a timed restore drill of the whole set.
# Everything happens in a temporary folder removed at the end.
# Usage: npm run demo        (after bash scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
airlock() { node "$ROOT/dist/agent/cli/main.js" "$@"; }
airlock_verify() { node "$ROOT/dist/verifier/cli.js" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -n "${NO_COLOR:-}" ] && step() { printf '\n== %s\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/airlock-demo.XXXXXX")
cleanup() {
  [ -f "$WORK/rgw/ceph.conf" ] && bash "$ROOT/scripts/rgw.sh" stop "$WORK/rgw" >/dev/null 2>&1
  [ -d "$WORK/pg-restored/data" ] && bash "$ROOT/scripts/pg.sh" stop "$WORK/pg-restored" >/dev/null 2>&1
  [ -d "$WORK/pg/data" ] && bash "$ROOT/scripts/pg.sh" stop "$WORK/pg" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
# the database's OS user runs archive_command and restore_command inside this folder: it may pass
# through, not list it; the keys stay in 0700 folders
chmod 711 "$WORK"
mkdir -p -m 700 appliance recovery
mkdir -p auditor medium

step "recovery site: make two age identities (recovery + escrow); only their public recipients leave"
R1=$(airlock keygen --age recovery/identity.txt 2>/dev/null)
R2=$(airlock keygen --age recovery/escrow.txt 2>/dev/null)
echo "recipients: $R1 $R2"

step "appliance: make the signing key; the auditor gets its allowed_signers line"
airlock keygen --signing-key appliance/signing_key --site demo-site > auditor/allowed_signers
cat auditor/allowed_signers

step "appliance: some configuration and secrets to carry"
mkdir -p site/etc/platform/conf.d site/etc/platform/secrets
echo "listen = 127.0.0.1:8080" > site/etc/platform/app.conf
echo "db_password = s3cr3t" > site/etc/platform/secrets/db.env
chmod 600 site/etc/platform/secrets/db.env
ln -s ../app.conf site/etc/platform/conf.d/active.conf
find site -printf '%M %p\n' | sort -k2

step "site: a throwaway S3 server (single-node Ceph radosgw on 127.0.0.1) with a versioned bucket"
EP=$(bash "$ROOT/scripts/rgw.sh" start "$WORK/rgw" | sed -n 's/.*endpoint=\([^ ]*\).*/\1/p')
echo "S3 endpoint $EP"
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
s3() { # s3 METHOD PATH [BODY-FILE]: one signed request with curl; the response body on stdout
  local body=${3:-/dev/null}
  curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X "$1" \
    -H "x-amz-content-sha256: $(sha256sum < "$body" | cut -d' ' -f1)" --data-binary "@$body" "$EP/$2"
}
s3 PUT records >/dev/null
printf '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>' > versioning.xml
s3 PUT 'records?versioning=' versioning.xml >/dev/null
echo "run 1: ok" > r1; echo "run 1: ok, run 2: failed" > r2; echo "draft" > d
for a in 'PUT records/runs/log.txt r1' 'PUT records/runs/log.txt r2' 'PUT records/draft.txt d' 'DELETE records/draft.txt'; do
  s3 $a >/dev/null
done
echo "bucket records: runs/log.txt in 2 versions, draft.txt written then deleted (a delete marker)"

step "site: a throwaway PostgreSQL 15 that archives its WAL through airlock-wal-push"
PGLINE=$(bash "$ROOT/scripts/pg.sh" start "$WORK/pg")
echo "$PGLINE"
PGPORT=$(sed -n 's/.* port=\([0-9]*\).*/\1/p' <<<"$PGLINE")
PGSOCK=$WORK/pg/sock
sql() { psql -X -q -A -t -h "$PGSOCK" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$1"; }
sql "CREATE TABLE orders (id serial PRIMARY KEY, item text, at timestamptz DEFAULT now())"
sql "INSERT INTO orders (item) SELECT 'order ' || g FROM generate_series(1, 1000) g"
echo "orders: $(sql 'SELECT count(*) FROM orders') rows"
airlock check --pg "host=$PGSOCK port=$PGPORT user=postgres dbname=postgres" --wal-spool "$WORK/pg/spool"

cat > appliance/airlock.conf <<CONF
site = demo-site
medium = $WORK/medium
signing-key = $WORK/appliance/signing_key
recipient = $R1
recipient = $R2
files = $WORK/site/etc/platform
state-dir = $WORK/appliance/state
s3-endpoint = $EP
bucket = records
pg = host=$PGSOCK port=$PGPORT user=postgres dbname=postgres
spool = $WORK/pg/spool
pg-table-checks = true
export-every = 1h
base-every = 24h
CONF

step "appliance: label the medium; the agent's first pass exports a base backup, dumps, the files and the bucket"
airlock media init medium --label demo-usb-1 --state-dir "$WORK/appliance/state"
T0=$(date -u +%Y-%m-%dT%H:%M:%SZ)
AIRLOCK_NOW=$T0 airlock run --config appliance/airlock.conf --once
echo "workers = 8" >> site/etc/platform/app.conf
sql "INSERT INTO orders (item) SELECT 'late order ' || g FROM generate_series(1, 500) g"
sleep 1
TARGET=$(sql "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1
sql "DELETE FROM orders WHERE id % 2 = 0"
echo "at $TARGET there were 1500 orders; then someone deleted half: $(sql 'SELECT count(*) FROM orders') left"

step "appliance: an hour later (an injected clock) the agent's next pass exports the WAL since, the files and new bucket versions"
T1=$(date -u -d "$T0 + 61 minutes" +%Y-%m-%dT%H:%M:%SZ)
AIRLOCK_NOW=$T1 airlock run --config appliance/airlock.conf --once
ls -l medium/demo-site/demo-site-00000002
step "appliance: backup health (Nagios exit codes; --prometheus writes the same for node_exporter)"
airlock status --config appliance/airlock.conf || echo "(exit $?)"

step "auditor, without the key: airlock-verify"
airlock_verify --allowed-signers auditor/allowed_signers medium

step "auditor, stock tools only: ssh-keygen and sha256sum"
B=medium/demo-site/demo-site-00000002
ssh-keygen -Y verify -f auditor/allowed_signers -I demo-site -n airlock-bundle -s $B/SHA256SUMS.sig < $B/SHA256SUMS
(cd $B && sha256sum --strict -c SHA256SUMS)

step "tamper test: one flipped byte in a copy of the medium is caught"
cp -r medium tampered
printf '\x00' | dd of=tampered/demo-site/demo-site-00000001/payload.000 bs=1 seek=200 conv=notrunc status=none
airlock_verify --allowed-signers auditor/allowed_signers --quiet tampered || echo "(exit $?: as it should)"

step "recovery site: deep verify with the key, then restore the newest bundle"
airlock_verify --allowed-signers auditor/allowed_signers --identity recovery/identity.txt medium
airlock restore files --from medium --identity recovery/escrow.txt --allowed-signers auditor/allowed_signers --to restored
diff -r site/etc/platform "restored$WORK/site/etc/platform" && echo "restored files are identical to the source"
stat -c '%A %n' "restored$WORK/site/etc/platform/secrets/db.env"
readlink "restored$WORK/site/etc/platform/conf.d/active.conf"

step "recovery site: restore the bucket as it was, every version, into a new bucket and into a folder"
airlock restore objects --from medium --identity recovery/identity.txt --allowed-signers auditor/allowed_signers \
  --endpoint "$EP" --bucket-map records=records-restored --id-map id-map.jsonl
s3 GET 'records-restored?versions=' | grep -o '<Key>[^<]*</Key>\|<DeleteMarker>' | tr '\n' ' '; echo
airlock restore objects --from medium --identity recovery/identity.txt --allowed-signers auditor/allowed_signers --to restored-objects
find restored-objects -type f ! -name '.airlock-keys.jsonl' | sort | while read -r f; do echo "$f: $(cat "$f")"; done

step "recovery site: restore the database to $TARGET, before the mistake (verify, base backup + WAL, recover, promote)"
mkdir -p "$WORK/pg-restored"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg-restored"
RPORT=$(( PGPORT + 1 ))
airlock restore pg --from medium --identity recovery/identity.txt --allowed-signers auditor/allowed_signers \
  --pgdata "$WORK/pg-restored/data" --target-time "$TARGET" --port "$RPORT" --start \
  --airlock-cli "$WORK/pg/cli/dist/agent/cli/main.js"
echo "restored orders: $(psql -X -A -t -h "$WORK/pg-restored/data" -p "$RPORT" -U postgres -d postgres -c 'SELECT count(*) FROM orders') (the source has $(sql 'SELECT count(*) FROM orders'))"
echo "restored archive_mode: $(psql -X -A -t -h "$WORK/pg-restored/data" -p "$RPORT" -U postgres -d postgres -c 'SHOW archive_mode')"

step "recovery site: a restore drill of the whole media set, timed, with its report"
airlock drill --from medium --identity recovery/identity.txt --allowed-signers auditor/allowed_signers \
  --airlock-cli "$WORK/pg/cli/dist/agent/cli/main.js" --report drill 2>/dev/null
echo "(also in drill.json and drill.txt)"

step "done: the servers are stopped and the demo folder $WORK removed"
