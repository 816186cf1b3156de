#!/bin/sh
# Runs one program of a PostgreSQL major version that lives in a Debian root folder (a chroot), as if
# it were installed here: the tests use it for PostgreSQL 17, which Debian 12 does not ship.
#
# A folder of wrappers holds this script, a pg-chroot.conf beside it and one symbolic link per
# program (postgres, initdb, pg_ctl, psql, pg_basebackup, ...) pointing to it; that folder is what
# airlock takes as --pg-bin. The link's name says which program runs. pg-chroot.conf sets:
#   root=DIR         the Debian root (mmdebstrap --variant=apt --include=postgresql-17 trixie DIR)
#   major=N          the version folder inside it, /usr/lib/postgresql/N/bin
#   binds='A B ...'  host folders and files bind-mounted at the same path inside (no spaces): the
#                    tests' work folder (data folders, sockets, spools, the copied airlock CLI) and
#                    the node binary, so the archive_command (dist/native/airlock-wal-push, which
#                    hands over to node) and the restore_command (node .../main.js wal-fetch) that
#                    the server runs inside the root find the same files at the same paths. Each
#                    mount point must exist in the root (whoever writes the conf creates them).
#
# The mounts live in a mount namespace of this process alone (unshare), so they vanish with it and
# never show on the host. As root that is all; as another user (the cluster's owner: postgres and
# initdb refuse root) a user namespace maps that user to itself and keeps the capabilities needed to
# mount and chroot inside it, so the server runs under its own uid, which must be one the root's
# /etc/passwd knows (initdb looks it up). Every step execs, so the process id is the program's:
# signals and postmaster.pid mean the same inside and out. TCP goes to 127.0.0.1 as usual (no
# network namespace).
set -eu
here=$(dirname "$0")
prog=$(basename "$0")
# shellcheck source=/dev/null
. "$here/pg-chroot.conf"
# recursive binds: in a user namespace a plain bind of a folder with mounts below it (a test's
# ramfs, anyone's) is refused; a failed mount stops here instead of running against the root's own /tmp
inner='set -e; root=$1 bin=$2 binds=$3 cwd=$4; shift 4
for b in $binds; do /usr/bin/mount --rbind "$b" "$root$b"; done
exec /usr/sbin/chroot "$root" /bin/sh -c '"'"'cd "$1" 2>/dev/null || cd /; shift; exec "$@"'"'"' - "$cwd" "$bin" "$@"'
set -- "$root" "/usr/lib/postgresql/$major/bin/$prog" "$binds" "$PWD" "$@"
if [ "$(id -u)" = 0 ]; then
  exec /usr/bin/unshare --mount --propagation private -- /bin/sh -c "$inner" - "$@"
fi
exec /usr/bin/unshare --user --map-user="$(id -u)" --map-group="$(id -g)" --keep-caps --mount --propagation private -- /bin/sh -c "$inner" - "$@"
