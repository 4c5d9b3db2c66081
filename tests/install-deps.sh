#!/bin/sh
# Installs what smartrelay needs on Debian 12: "build" for building and
# running the daemon (what conf/run-local.sh installs), "test" for the whole
# test suite as well (tests/run-all.sh), the Debian package's test included.
# Uses sudo when not root; does nothing when everything is installed.
set -eu

build="gcc pkg-config meson ninja-build libevent-dev libssl-dev libconfig-dev
libsystemd-dev libjansson-dev"
test="$build libcmocka-dev python3 python3-pytest swaks openssl clang
libclang-rt-14-dev systemd valgrind bsd-mailx libnet-ssleay-perl
libio-socket-ssl-perl msmtp mutt git git-email libmailtools-perl php-cli
monitoring-plugins-standard mandoc groff-base debhelper lintian mmdebstrap
debian-archive-keyring"

case "${1:-build}" in
build) pkgs=$build ;;
test) pkgs=$test ;;
*) echo "usage: $0 [build|test]" >&2; exit 64 ;;
esac

missing=
for p in $pkgs; do
	if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null |
	    grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing:$missing" >&2
# A first run interrupted inside dpkg leaves it half-configured.
$sudo dpkg --configure -a
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
    --no-install-recommends $missing
