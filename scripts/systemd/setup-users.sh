#!/usr/bin/env bash
# The OS users and folders SECURITY.md describes, for a Debian appliance (run as root, once):
#   airlock        the agent: owns the signing key, the catalog (/var/lib/airlock) and the exports
#   postgres       the database: its archive_command (airlock wal-push) writes only the spool
#   airlock-spool  a group: postgres writes the spool, airlock reads and prunes it
# Then: install the units of this folder into /etc/systemd/system and enable airlock.service or
# airlock-once.timer (and airlock-status.timer for monitoring); or, for several sites on one
# appliance, airlock@NAME.timer and airlock-status@NAME.timer per site, each with /etc/airlock/NAME.conf.
set -euo pipefail
getent group airlock-spool >/dev/null || groupadd --system airlock-spool
id airlock >/dev/null 2>&1 || useradd --system --home-dir /var/lib/airlock --shell /usr/sbin/nologin airlock
usermod -a -G airlock-spool airlock
usermod -a -G airlock-spool postgres
install -d -o airlock -g airlock -m 0700 /var/lib/airlock /etc/airlock
# setgid: spooled files keep the group, so the agent can read and remove them
install -d -o postgres -g airlock-spool -m 2770 /var/spool/airlock/wal
# the status units write node_exporter's textfile folder (Debian's prometheus-node-exporter reads
# /var/lib/prometheus/node-exporter): the agent's user may add files there, nothing more
install -d -m 0755 /var/lib/prometheus/node-exporter
if command -v setfacl >/dev/null; then
  setfacl -m u:airlock:rwx /var/lib/prometheus/node-exporter
else
  chgrp airlock /var/lib/prometheus/node-exporter && chmod 0775 /var/lib/prometheus/node-exporter
fi
# several sites on one appliance (airlock@NAME units): one spool per instance, e.g.
#   install -d -o postgres -g airlock-spool -m 2770 /var/spool/airlock/NAME/wal
echo "now: airlock keygen --signing-key /etc/airlock/signing_key --site SITE (as airlock), write /etc/airlock/airlock.conf,"
echo "set archive_command = '<airlock>/dist/native/airlock-wal-push %p --spool /var/spool/airlock/wal'"
echo "(or 'airlock wal-push %p --spool /var/spool/airlock/wal' without the native helper) and run airlock check"
