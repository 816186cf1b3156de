#!/usr/bin/env bash
# The OS users and folders SECURITY.md describes, for a Debian appliance (run as root, once):
#   airlock        the agent: owns the signing key, the catalog (/var/lib/airlock) and the exports
#   postgres       the database: its archive_command (airlock wal-push) writes only the spool
#   airlock-spool  a group: postgres writes the spool, airlock reads and prunes it
# Then: install the units of this folder into /etc/systemd/system and enable airlock.service or
# airlock-once.timer (and airlock-status.timer for monitoring).
set -euo pipefail
getent group airlock-spool >/dev/null || groupadd --system airlock-spool
id airlock >/dev/null 2>&1 || useradd --system --home-dir /var/lib/airlock --shell /usr/sbin/nologin airlock
usermod -a -G airlock-spool airlock
usermod -a -G airlock-spool postgres
install -d -o airlock -g airlock -m 0700 /var/lib/airlock /etc/airlock
# setgid: spooled files keep the group, so the agent can read and remove them
install -d -o postgres -g airlock-spool -m 2770 /var/spool/airlock/wal
echo "now: airlock keygen --signing-key /etc/airlock/signing_key --site SITE (as airlock), write /etc/airlock/airlock.conf,"
echo "set archive_command = '<airlock>/dist/native/airlock-wal-push %p --spool /var/spool/airlock/wal'"
echo "(or 'airlock wal-push %p --spool /var/spool/airlock/wal' without the native helper) and run airlock check"
