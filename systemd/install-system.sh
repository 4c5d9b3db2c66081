#!/bin/sh
# Run by `meson install` once the files are in place (systemd/meson.build):
# creates the smartrelay user and group from the installed sysusers.d file,
# the spool from the tmpfiles.d file, and makes the tool setgid to the group
# smartrelay (mode 2755), which sendmail needs to drop mail into the
# maildrop as any user (docs/cli.md).  Without the group the tool would stay
# root:root and every non-root sendmail would fail with 75, so an install
# that cannot do this fails here, saying what to run.
#
# A staged install (--destdir, as packages do) only lays out the files: the
# package's own scripts create the user and set the mode
# (debian/smartrelay.postinst).
#
# usage: install-system.sh BINDIR SYSUSERSDIR TMPFILESDIR
set -eu
tool=$1/smartrelay
sysusers=$2/smartrelay.conf
tmpfiles=$3/smartrelay.conf

[ -z "${MESON_INSTALL_DRY_RUN:-}" ] || exit 0
if [ "${MESON_INSTALL_DESTDIR_PREFIX:-}" != "${MESON_INSTALL_PREFIX:-}" ]; then
	echo "staged install: not creating the smartrelay user; the" \
	    "package must, then make $tool group smartrelay, mode 2755"
	exit 0
fi

fail() {
	echo "meson install: $*" >&2
	echo "meson install: then: chgrp smartrelay $tool &&" \
	    "chmod 2755 $tool && systemd-tmpfiles --create $tmpfiles" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "not root: cannot create the user" \
    "smartrelay nor make $tool setgid smartrelay (non-root sendmail" \
    "would fail with 75); run it as root, or create the user:" \
    "systemd-sysusers $sysusers"
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers "$sysusers" ||
	    fail "systemd-sysusers $sysusers failed"
fi
getent group smartrelay >/dev/null || fail "no group smartrelay and no" \
    "systemd-sysusers to create it: adduser --system --group" \
    "--no-create-home smartrelay"
chgrp smartrelay "$tool" && chmod 2755 "$tool" ||
    fail "cannot set the group and mode of $tool"
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create "$tmpfiles" ||
	    fail "systemd-tmpfiles --create $tmpfiles failed"
fi
echo "user smartrelay ready; $tool setgid smartrelay (2755); spool created"
