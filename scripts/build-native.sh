#!/bin/sh
# Builds dist/native/airlock-wal-push, the fast path of `airlock wal-push` for archive_command
# (agent/native/wal-push.c), with the C compiler and libcrypto (Debian: gcc, libssl-dev).
# Run by `npm run build` after tsc. Without a compiler or the headers it says so and builds nothing:
# `airlock wal-push` does the same work, only slower to start.
set -eu
cd "$(dirname "$0")/.."
src=agent/native/wal-push.c
# AIRLOCK_NATIVE_OUT and AIRLOCK_NODE: where the package step puts the helper and the node it runs
out=${AIRLOCK_NATIVE_OUT:-dist/native/airlock-wal-push}
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || cc=gcc
node=${AIRLOCK_NODE:-$(command -v node)}
rm -f "$out"
if ! command -v "$cc" >/dev/null 2>&1 || [ ! -f /usr/include/openssl/evp.h ]; then
  echo "build: $out not built (needs a C compiler and libcrypto headers: apt-get install gcc libssl-dev); archive_command can run airlock wal-push instead" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
# warnings fail the build in CI; elsewhere a newer compiler's new warning must not stop an install
werror=
[ -n "${CI:-}" ] && werror=-Werror
# the helper hands everything but a plain new push to this node running dist/agent/cli/main.js
"$cc" -O2 -std=c11 -Wall -Wextra $werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
  -DAIRLOCK_NODE="\"$node\"" -o "$out.tmp" "$src" -lcrypto
mv "$out.tmp" "$out"
