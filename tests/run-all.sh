#!/bin/sh
# The whole test suite: installs the test dependencies, then builds and runs
# every test twice: with gcc (build/), and with clang, AddressSanitizer,
# UndefinedBehaviorSanitizer and the libFuzzer targets (build-asan/), which
# adds the "fuzz" suite (each parser fuzzed for a bounded time).  Both builds
# treat warnings as errors.  This is the README's test command and what CI
# runs.
set -eu
cd "$(dirname "$0")/.."

sh tests/install-deps.sh test

setup() {
	dir=$1; shift
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

setup build
ninja -C build
meson test -C build --print-errorlogs

CC=clang setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug -Dfuzz=true
ninja -C build-asan
meson test -C build-asan --print-errorlogs --timeout-multiplier 3

echo "all tests passed"
