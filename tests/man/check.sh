#!/bin/sh
# The manual pages' test (docs/man): each page renders without a single
# warning, with mandoc's linter and with groff (what man(1) uses on Debian),
# and smartrelay.conf(5) documents exactly the keys the configuration loader
# accepts: cfg_keys prints the loader's keys from its own tables, the page's
# KEYS section names each key in a ".It Ic group.key" line.  A key added to
# the loader without its paragraph in the manual, or a paragraph left for a
# key that is gone, fails here with its name.
#
# usage: check.sh MANDOC GROFF CFG_KEYS PAGE...
set -eu
mandoc=$1 groff=$2 cfg_keys=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

for page; do
	# -W warning: every warning and error (style hints such as a
	# reference to a page missing on this machine are not counted).
	if ! "$mandoc" -T lint -W warning "$page" >"$tmp/lint" 2>&1 ||
	    [ -s "$tmp/lint" ]; then
		echo "mandoc -T lint: $page:" >&2
		cat "$tmp/lint" >&2
		fail=1
	fi
	LC_ALL=C.UTF-8 "$groff" -ww -z -mandoc -Tutf8 "$page" \
	    >"$tmp/groff" 2>&1 || echo "groff failed" >>"$tmp/groff"
	if [ -s "$tmp/groff" ]; then
		echo "groff -ww: $page:" >&2
		cat "$tmp/groff" >&2
		fail=1
	fi
	case $page in
	*/smartrelay.conf.5) conf_page=$page ;;
	esac
done

[ -n "${conf_page:-}" ] || { echo "smartrelay.conf.5 not given" >&2; exit 1; }
"$cfg_keys" | LC_ALL=C sort >"$tmp/loader"
[ -s "$tmp/loader" ] || { echo "cfg_keys listed no key" >&2; exit 1; }
awk '/^\.Sh / { keys = ($2 == "KEYS") }
    keys && /^\.It Ic / { print $3 }' "$conf_page" |
    LC_ALL=C sort >"$tmp/manual"
if ! cmp -s "$tmp/loader" "$tmp/manual"; then
	echo "smartrelay.conf(5) and the configuration loader disagree:" >&2
	LC_ALL=C comm -23 "$tmp/loader" "$tmp/manual" |
	    sed 's/^/  not documented: /' >&2
	LC_ALL=C comm -13 "$tmp/loader" "$tmp/manual" |
	    sed 's/^/  documented but not a key (or listed twice): /' >&2
	fail=1
fi
[ "$fail" -eq 0 ] && echo "$# pages clean; $(wc -l <"$tmp/loader") keys documented"
exit "$fail"
