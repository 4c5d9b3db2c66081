#!/bin/sh
# The Debian package, built and used as an administrator would: builds it
# with dpkg-buildpackage from a clean export of this checkout (committed
# files plus uncommitted changes to them, nothing else), runs lintian (no
# error allowed; the warnings that stay are explained in
# debian/smartrelay.lintian-overrides), then makes a throwaway Debian 12
# root file system with mmdebstrap from the Debian archive this machine
# uses, installs the package there with apt and runs check.sh inside it
# (chroot): the user, modes and links, --check-config with the shipped
# configuration and a password file, a normal user's sendmail -t into the
# maildrop, mailq, then dpkg -r (spool kept) and dpkg -P (spool gone); and
# meson install's own step (systemd/install-system.sh) on that system.
#
# Run by tests/run-all.sh (as root: mmdebstrap needs it).  It took 12.5
# minutes on a 2-core machine at load 19 (build 3.6, lintian 0.8, the root
# file system and the checks 8); each step has a time bound (the root file
# system PACKAGE_TEST_TIMEOUT seconds, default 1200).  Nothing outside a
# temporary directory is touched.
set -eu
cd "$(dirname "$0")/../.."
src=$PWD
here=$src/tests/package
start=$(date +%s)

[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root (mmdebstrap)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/smartrelay-package.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
step() { echo "== $* ($(( $(date +%s) - start ))s)"; }

# The archive this machine installs from (deb822 or one-line sources).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p' \
    /etc/apt/sources.list 2>/dev/null | grep -v security | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}

step "building the package"
mkdir "$tmp/src"
rev=$(git stash create)
git archive --format=tar "${rev:-HEAD}" | tar -x -C "$tmp/src"
(cd "$tmp/src" && timeout 1800 dpkg-buildpackage -us -uc -b) \
    >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	echo "$0: dpkg-buildpackage failed" >&2
	exit 1
}
deb=$(ls "$tmp"/smartrelay_*_*.deb)
echo "built $(basename "$deb")"

step "lintian"
timeout 900 lintian --fail-on error "$deb" >"$tmp/lintian.log" 2>&1 || {
	cat "$tmp/lintian.log" >&2
	echo "$0: lintian reports errors" >&2
	exit 1
}
cat "$tmp/lintian.log"

step "mmdebstrap bookworm from $mirror, install and check"
cp "$deb" "$tmp/smartrelay.deb"
timeout "${PACKAGE_TEST_TIMEOUT:-1200}" mmdebstrap --quiet --variant=apt \
    --dpkgopt=force-unsafe-io \
    --include=passwd,ca-certificates \
    --customize-hook="copy-in $tmp/smartrelay.deb $here/check.sh \
	$tmp/src/systemd/install-system.sh $tmp/src/systemd/smartrelay.sysusers \
	$tmp/src/systemd/smartrelay.tmpfiles /tmp" \
    --customize-hook='chroot "$1" sh /tmp/check.sh' \
    bookworm /dev/null "$mirror"

step "package test passed"
