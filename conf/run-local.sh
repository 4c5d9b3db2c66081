#!/bin/sh
# Builds smartrelay and runs the daemon in the foreground, unprivileged, with
# the shipped example configuration adapted for a local run: it listens on
# 127.0.0.1:${PORT:-2525} and [::1]:${PORT:-2525} and spools under
# build/spool.  Edit build/smartrelay.conf (upstream.username,
# password_file) to relay for real.  Stop it with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
port=${PORT:-2525}

sh tests/install-deps.sh build
[ -d build ] || meson setup build >/dev/null
ninja -C build

if [ ! -e build/smartrelay.conf ]; then
	sed -e "s|^listen = .*|listen = [ \"127.0.0.1:$port\", \"[::1]:$port\" ];|" \
	    -e "s|^spool = .*|spool = \"$PWD/build/spool\";|" \
	    conf/smartrelay.conf > build/smartrelay.conf
	echo "wrote build/smartrelay.conf (listen on port $port," \
	    "spool in build/spool)" >&2
fi
exec build/daemon/smartrelayd -c build/smartrelay.conf "$@"
