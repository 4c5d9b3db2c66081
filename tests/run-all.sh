#!/bin/sh
# The whole test suite: installs the test dependencies, then builds and runs
# every test twice: with gcc (build/), and with clang, AddressSanitizer,
# UndefinedBehaviorSanitizer and the libFuzzer targets (build-asan/), which
# adds the "fuzz" suite (each parser fuzzed for a bounded time).  Both builds
# treat warnings as errors.  Then the Debian package is built and tested in
# a throwaway Debian root (tests/package/run.sh).  This is the README's test
# command and what CI runs.
set -eu
cd "$(dirname "$0")/.."

sh tests/install-deps.sh test

# Configures (or reconfigures) a build directory with the test suite on;
# meson's messages stay hidden unless it fails.
setup() {
	dir=$1; shift
	log=$(mktemp)
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		set -- --reconfigure "$@"
	fi
	if ! meson setup "$dir" -Dtests=enabled "$@" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

setup build
ninja -C build
meson test -C build --print-errorlogs

CC=clang setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug -Dfuzz=true
ninja -C build-asan
meson test -C build-asan --print-errorlogs --timeout-multiplier 3

# The Debian package: built, linted, installed into a throwaway Debian root
# made from Debian's archive, and checked there (needs root, as CI runs).
if [ "$(id -u)" -eq 0 ]; then
	sh tests/package/run.sh
else
	echo "NOT RUN: tests/package/run.sh (the package test) needs root" >&2
fi

echo "all tests passed"
