#!/bin/sh
# Builds smartrelay and runs the daemon in the foreground, unprivileged, with
# the shipped example configuration adapted for a local run: it listens on
# 127.0.0.1:${PORT:-2525} and [::1]:${PORT:-2525} and spools under
# build/spool.  Edit build/smartrelay.conf (upstream.username,
# password_file) to relay for real.  Stop it with Ctrl-C.
#
# It may be run again after any failure or interruption: a build/ that meson
# did not finish is configured again, or remade when meson cannot use it
# (build/smartrelay.conf and build/spool, the queued mail, are kept).  Only
# the build dependencies are installed; the test suite is built too when
# cmocka is already there (tests/run-all.sh installs and runs everything).
set -eu
cd "$(dirname "$0")/.."
port=${PORT:-2525}

# Removes what meson made in build/, keeping the local config and the spool.
clean_build() {
	find build -mindepth 1 -maxdepth 1 ! -name smartrelay.conf \
	    ! -name spool -exec rm -rf {} +
}

# Leaves a configured build/: ninja re-runs meson itself when it must.
configure() {
	if [ -f build/meson-private/coredata.dat ]; then
		[ -f build/build.ninja ] && return 0
		echo "build/ was not fully configured; configuring it again" >&2
		meson setup --reconfigure build && return 0
		echo "build/ is not usable; remaking it (keeping" \
		    "build/smartrelay.conf and build/spool)" >&2
		clean_build
	fi
	meson setup build
}

sh tests/install-deps.sh build
configure
ninja -C build

if [ ! -e build/smartrelay.conf ]; then
	sed -e "s|^listen = .*|listen = [ \"127.0.0.1:$port\", \"[::1]:$port\" ];|" \
	    -e "s|^spool = .*|spool = \"$PWD/build/spool\";|" \
	    conf/smartrelay.conf > build/smartrelay.conf.tmp
	mv build/smartrelay.conf.tmp build/smartrelay.conf
	echo "wrote build/smartrelay.conf (listen on port $port," \
	    "spool in build/spool)" >&2
fi
exec build/daemon/smartrelayd -c build/smartrelay.conf "$@"
