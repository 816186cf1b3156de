#!/usr/bin/env bash
# The airlock demo: a site exports its configuration and secrets to a "medium" (a folder), an auditor
# verifies the media without the key (with airlock-verify and with stock tools), and the recovery
# site verifies again and restores. Everything happens in a temporary folder removed at the end.
# Usage: npm run demo        (after bash scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
airlock() { node "$ROOT/dist/agent/cli/main.js" "$@"; }
airlock_verify() { node "$ROOT/dist/verifier/cli.js" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -n "${NO_COLOR:-}" ] && step() { printf '\n== %s\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/airlock-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir -p appliance recovery auditor medium

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

cat > appliance/airlock.conf <<CONF
site = demo-site
medium = $WORK/medium
signing-key = $WORK/appliance/signing_key
recipient = $R1
recipient = $R2
files = $WORK/site/etc/platform
state-dir = $WORK/appliance/state
CONF

step "appliance: export bundle 1, change a file, export bundle 2"
airlock export --config appliance/airlock.conf
echo "workers = 8" >> site/etc/platform/app.conf
airlock export --config appliance/airlock.conf
ls -l medium/demo-site/demo-site-00000002

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

step "done: the demo folder $WORK is removed"
