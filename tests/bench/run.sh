#!/bin/bash
# smartrelay benchmark (docs/performance.md), side by side with private Postfix
# instances on the same machine, in one run.
#
#   tests/bench/run.sh            # as root (or with sudo available)
#
# What it does (docs/performance.md explains the method):
#   0. installs what it needs with apt-get (postfix for smtp-source and the
#      comparison, libsasl2-modules for Postfix's AUTH PLAIN, gnuplot-nox for
#      the plot, build dependencies), builds smartrelay in release mode in
#      build-bench/;
#   1. accept throughput, 2 KiB messages, smtp-source: the goal figure at 20
#      parallel clients (median of BENCH_RUNS), then one run per client count
#      of BENCH_CLIENT_SERIES for both servers, written to a data file and
#      plotted with gnuplot (accept rate against parallel clients);
#   2. accept latency p99 (final "." -> 250) at 4 clients, upstream down;
#   3. the same while each server relays a backlog to a fake Gmail
#      (tests/fakegmail, STARTTLS + AUTH PLAIN, a WAN round trip);
#   4. WAN drain: a backlog relayed over BENCH_WAN_RTT ms with 2 connections,
#      messages per second, TLS handshakes and AUTHs, both servers;
#   5. memory: idle RSS, 1,000 idle connections, one 30 MB message;
#   6. restart with 100,000 queued messages: exec -> "ready", warm and cold.
# and prints one summary table with smartrelayd's figure, Postfix's, the
# ratio and a verdict per goal.  Everything it starts (daemons, Postfix
# instances, fake Gmails) is stopped and its temporary directory removed on
# exit, also on failure or Ctrl-C.  The results (summary, data file, plot)
# stay in BENCH_OUT.
#
# Environment knobs (defaults in brackets):
#   BENCH_N [5000]          messages per 20-client throughput run
#   BENCH_RUNS [3]          20-client runs per server (median reported)
#   BENCH_CLIENT_SERIES ["1 2 4 8 16 20 32"]  client counts for the plot
#   BENCH_SERIES_N [2000]   messages per point of that series
#   BENCH_SERIES_RUNS [1]   runs per point and server (median plotted)
#   BENCH_LAT_MSGS [1000]   messages per latency client (4 clients)
#   BENCH_LAT_ROUNDS [3]    latency rounds per server and condition
#                           (the round with the median p99 is reported)
#   BENCH_RELAY_BACKLOG [6000] backlog each server relays during a round of 3
#   BENCH_RELAY_RTT [20]    round trip (ms) of the fake Gmail in section 3
#   BENCH_UP_N [1000]       backlog drained in section 4
#   BENCH_UP_MPC [100]      messages per upstream connection (both servers)
#   BENCH_WAN_RTT [20]      round trip (ms) of the fake Gmail in section 4
#   BENCH_COLD [1 as root]  0: skip the cold-cache restart (it drops the
#                           page cache of the whole machine)
#   BENCH_IDLE_CONNS [1000] idle connections
#   BENCH_RESTART_N [100000] queued messages for the restart test
#   BENCH_DIR [/var/tmp]    where the spools go (a real disk, not tmpfs)
#   BENCH_OUT [$BENCH_DIR/smartrelay-bench-results]  summary.txt, accept.dat
#   BENCH_PLOT [$BENCH_OUT/accept.png]  the gnuplot PNG
#   BENCH_SETTLE [2]        seconds of pause (after a sync) before each run
#   BENCH_NO_INSTALL=1      do not run apt-get (fail if something is missing)
#   BENCH_REPLACE_MTA=1     allow installing postfix over another MTA
#   BENCH_ONLY="1 2 3 4 5 6" run only these sections
set -Eeuo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$SRC/build-bench
PY=/usr/bin/python3
TOOL=$SRC/tests/bench/benchtool.py
FAKE=$SRC/tests/fakegmail/fakegmail.py
N=${BENCH_N:-5000}
RUNS=${BENCH_RUNS:-3}
SERIES=${BENCH_CLIENT_SERIES:-"1 2 4 8 16 20 32"}
SERIES_N=${BENCH_SERIES_N:-2000}
SERIES_RUNS=${BENCH_SERIES_RUNS:-1}
LAT_MSGS=${BENCH_LAT_MSGS:-1000}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-3}
RL_BACKLOG=${BENCH_RELAY_BACKLOG:-6000}
RL_RTT=${BENCH_RELAY_RTT:-20}
UP_N=${BENCH_UP_N:-1000}
UP_MPC=${BENCH_UP_MPC:-100}
WAN_RTT=${BENCH_WAN_RTT:-20}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
RESTART_N=${BENCH_RESTART_N:-100000}
ONLY=${BENCH_ONLY:-"1 2 3 4 5 6"}
BENCH_BASE=${BENCH_DIR:-/var/tmp}
OUT=${BENCH_OUT:-$BENCH_BASE/smartrelay-bench-results}
PLOT=${BENCH_PLOT:-$OUT/accept.png}
MSG_LEN=2048
CLIENTS=20		# the throughput goal's client count, and for filling queues
UP_CONNS=2		# upstream connections, both servers
GMAIL_USER=test.user@gmail.com	# the fake Gmail's defaults (fakegmail.py)
GMAIL_PASS=abcdefghijklmnop

T=
PIDS=()			# background processes we started
PF_DIRS=()		# Postfix instances we started (their directories)
RESULTS=()		# "goal|smartrelayd|postfix|ratio|verdict"

log() { printf '\n== %s\n' "$*" >&2; }
note() { printf '   %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
want() { [[ " $ONLY " == *" $1 "* ]]; }
result() { RESULTS+=("$1|$2|$3|$4|$5"); }

sudo=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || die "run as root (no sudo here)"
	sudo=sudo
fi
COLD=${BENCH_COLD:-}
if [ -z "$COLD" ]; then
	[ -z "$sudo" ] && COLD=1 || COLD=0
fi

cleanup() {
	local rc=$? pid i P
	set +e
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
	if [ -n "$T" ] && [ -f "$T/daemon.pid" ]; then
		kill -KILL "$(cat "$T/daemon.pid")" 2>/dev/null
	fi
	for P in "${PF_DIRS[@]}"; do
		timeout 60 $sudo postfix -c "$P/etc" stop >/dev/null 2>&1 ||
		    timeout 10 $sudo postfix -c "$P/etc" abort >/dev/null 2>&1
	done
	if [ -n "$T" ] && [ -d "$T" ]; then
		$sudo rm -rf "$T"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Drops a pid that is gone from PIDS (never signal a recycled pid).
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# Stops a background process we started: SIGTERM, 30 s, then SIGKILL.
stop_pid() {
	local i
	kill -TERM "$1" 2>/dev/null || true
	for i in $(seq 300); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget_pid "$1"
}

ms() { date +%s%N; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# key=value from a result line: kv LINE KEY
kv() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ratio A B -> A/B with 2 decimals; verdict RATIO OP LIMIT -> PASS/FAIL
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
verdict() {
	awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN {
		ok = (op == ">=") ? r >= l : (op == "<=") ? r <= l : r < l
		print ok ? "PASS" : "FAIL" }'
}

settle() { sync; sleep "${BENCH_SETTLE:-2}"; }

# ---------------------------------------------------------------- setup

install_deps() {
	local pkgs="postfix libsasl2-modules gnuplot-nox gcc pkg-config meson
	    ninja-build libevent-dev libssl-dev libconfig-dev libsystemd-dev
	    libjansson-dev python3 openssl"
	local missing='' p
	for p in $pkgs; do
		dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null |
		    grep -q 'install ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	[ -n "${BENCH_NO_INSTALL:-}" ] && die "missing packages:$missing"
	if [[ " $missing " == *" postfix "* ]] && [ -e /usr/sbin/sendmail ] &&
	    [ -z "${BENCH_REPLACE_MTA:-}" ]; then
		# Installing postfix would remove another MTA package.
		die "another MTA provides /usr/sbin/sendmail; installing postfix" \
		    "would replace it. Set BENCH_REPLACE_MTA=1 to allow that."
	fi
	log "installing:$missing"
	# "No configuration": no /etc/postfix/main.cf, so the system
	# instance cannot start; we run our own private instances.
	echo "postfix postfix/main_mailer_type select No configuration" |
	    $sudo debconf-set-selections
	$sudo apt-get update -q >&2
	# shellcheck disable=SC2086	# a list of package names
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
	    --no-install-recommends $missing >&2
	if [[ " $missing " == *" postfix "* ]]; then
		# We installed it: it must not run as the system MTA.
		if [ -d /run/systemd/system ]; then
			$sudo systemctl disable --now postfix >/dev/null 2>&1 || true
		fi
		if $sudo postfix status >/dev/null 2>&1; then
			$sudo postfix stop >/dev/null 2>&1 || true
		fi
	fi
}

# The system Postfix (if any) keeps running untouched when it was there
# before; ours use other directories and other ports.
check_system_postfix() {
	if [ ! -f /etc/postfix/main.cf ]; then
		note "system Postfix: not configured (cannot run)"
	elif $sudo postfix status >/dev/null 2>&1; then
		note "system Postfix is running (left alone; ours are separate)"
	fi
}

# The daemon and the tool from meson; the two helpers with gcc, linked
# against meson's static library of common/ (whatever files it needs).
build() {
	log "building smartrelay (release) in $BUILD"
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" "$SRC" -Dbuildtype=release >/dev/null
	fi
	ninja -C "$BUILD" daemon/smartrelayd daemon/tool/smartrelay \
	    common/libsmartrelay-common.a >/dev/null
	SMARTRELAYD=$BUILD/daemon/smartrelayd
	SMARTRELAY=$BUILD/daemon/tool/smartrelay
	# shellcheck disable=SC2046	# pkg-config prints several words
	gcc -std=gnu11 -O2 -D_GNU_SOURCE -I"$SRC/common" \
	    "$SRC/tests/bench/queue_recover.c" \
	    "$BUILD/common/libsmartrelay-common.a" \
	    $(pkg-config --libs libconfig libsystemd openssl jansson \
	    libevent_core libevent_openssl libevent_extra) -pthread \
	    -o "$T/queue_recover"
	gcc -std=gnu11 -O2 -pthread "$SRC/tests/bench/commit_strategies.c" \
	    -o "$T/commit_strategies"
}

# smtp-source with CLIENTS sessions (one message each): fill PORT COUNT SENDER
fill() {
	timeout 600 smtp-source -s "$CLIENTS" -m "$2" -l "$MSG_LEN" \
	    -f "$3" -t sink@example.net -M client.bench.test \
	    "127.0.0.1:$1" >"$T/smtp-source.out" 2>&1 ||
	    { cat "$T/smtp-source.out" >&2; die "smtp-source failed"; }
}

# ---------------------------------------------------------------- smartrelayd

# Writes $SR_DIR/smartrelay.conf for port $SR_PORT and spool $SR_SPOOL.
# SR_UPSTREAM empty: the upstream is the blackhole (nothing is ever
# delivered while we measure, like Postfix's hold queue).  Else the fake
# Gmail on that port, with retries only when flushed (retry 1h), so that a
# backlog waits until `smartrelay flush`, as Postfix's waits for postqueue -f.
sr_config() {
	mkdir -p "$SR_DIR"
	printf 'abcd efgh ijkl mnop\n' >"$SR_DIR/password"
	chmod 600 "$SR_DIR/password"
	if [ -z "$SR_UPSTREAM" ]; then
		cat >"$SR_DIR/smartrelay.conf" <<-EOF
		listen = [ "127.0.0.1:$SR_PORT" ];
		hostname = "bench.test";
		spool = "$SR_SPOOL";
		# A loopback upstream that accepts TCP and never speaks.
		upstream = {
		  host = "127.0.0.1"; port = $HOLE_PORT; tls = "starttls";
		  insecure_plaintext = true;
		  username = "bench@example.org";
		  password_file = "$SR_DIR/password";
		  timeout = "1h";
		};
		retry = { initial = "1h"; max = "1h"; };
		limits = { clients = $((IDLE_CONNS + 100)); };
		EOF
	else
		cat >"$SR_DIR/smartrelay.conf" <<-EOF
		listen = [ "127.0.0.1:$SR_PORT" ];
		hostname = "bench.test";
		spool = "$SR_SPOOL";
		upstream = {
		  host = "localhost"; port = $SR_UPSTREAM; tls = "starttls";
		  ca_file = "$CERTS/ca.pem";
		  username = "$GMAIL_USER";
		  password_file = "$SR_DIR/password";
		  connections = $UP_CONNS; messages_per_connection = $UP_MPC;
		  timeout = 30;
		};
		retry = { initial = "1h"; max = "1h"; };
		limits = { clients = $((IDLE_CONNS + 100)); };
		EOF
	fi
}

SR_PID=
SR_DIR=		# the daemon's directory: smartrelay.conf, spools, daemon.log
SR_UPSTREAM=
sr_start() {
	local i
	: >"$SR_DIR/daemon.log"
	(ulimit -n $((IDLE_CONNS * 2 + 1024)) &&
	    exec "$SMARTRELAYD" -c "$SR_DIR/smartrelay.conf") \
	    2>>"$SR_DIR/daemon.log" &
	SR_PID=$!
	PIDS+=("$SR_PID")
	for i in $(seq 400); do
		grep -q 'level=info ready ' "$SR_DIR/daemon.log" && return 0
		kill -0 "$SR_PID" 2>/dev/null || break
		sleep 0.05
	done
	tail -20 "$SR_DIR/daemon.log" >&2
	die "smartrelayd did not become ready"
}

sr_stop() {
	[ -n "$SR_PID" ] || return 0
	stop_pid "$SR_PID"
	SR_PID=
}

sr_count() {
	find "$SR_SPOOL/msg" -maxdepth 1 -type f ! -name '*.*' 2>/dev/null |
	    wc -l
}

# Nothing is deleted while we measure accepting: this disk is ext4 without
# a journal, where creating a file right after many deletions costs a scan
# of the recently freed inodes (ext4 find_inode_bit/recently_deleted, seen
# with perf), which would slow whichever server runs next.  So each fresh
# daemon gets a new spool directory; all of them go at exit.
SPOOLS=0
# sr_fresh [UPSTREAM_PORT]: a new daemon in $SR_DIR on a new spool.
sr_fresh() {
	sr_stop
	SPOOLS=$((SPOOLS + 1))
	SR_SPOOL=$SR_DIR/spool-$SPOOLS
	SR_UPSTREAM=${1:-}
	sr_config
	sync
	sr_start
}

# "smartrelay flush": every queued message is due now (docs/cli.md).
sr_release() {
	timeout 60 "$SMARTRELAY" -c "$SR_DIR/smartrelay.conf" flush >/dev/null
}

# ---------------------------------------------------------------- postfix

# pf_instance DIR PORT hold|relay [FAKE_PORT]: a private Postfix with its
# own config_directory and queue_directory under DIR, smtpd on
# 127.0.0.1:PORT only, no chroot (it would need copies of /etc files; it
# does not change the disk work), logging to a file through postlogd, as
# smartrelayd logs every event.
#   hold:  every message is put on hold by smtpd (HOLD action): cleanup
#          queues it durably (fsync) and nothing is delivered.
#   relay: relays everything to the fake Gmail on FAKE_PORT as smartrelayd
#          does: STARTTLS with the certificate verified against the test CA
#          (name "localhost", sent as SNI), AUTH PLAIN with the fake's
#          account, $UP_CONNS connections, $UP_MPC messages per connection,
#          connections reused across messages (tlsproxy).  Only mail from
#          backlog@example.org is put on hold, so that a backlog can be
#          queued first and released at once (pf_release).
pf_instance() {
	local P=$1 port=$2 mode=$3 fport=${4:-} i
	mkdir -p "$P/etc" "$P/spool" "$P/data"
	$sudo chown postfix "$P/data"
	{
		cat <<-EOF
		compatibility_level = 3.6
		queue_directory = $P/spool
		data_directory = $P/data
		command_directory = $(postconf -dh command_directory)
		daemon_directory = $(postconf -dh daemon_directory)
		shlib_directory = $(postconf -dh shlib_directory)
		meta_directory = $(postconf -dh meta_directory)
		mail_owner = postfix
		setgid_group = postdrop
		myhostname = pfbench.test
		mydestination =
		inet_interfaces = 127.0.0.1
		inet_protocols = ipv4
		mynetworks = 127.0.0.0/8
		smtpd_relay_restrictions = permit_mynetworks, reject
		smtpd_peername_lookup = no
		maillog_file_prefixes = $P
		maillog_file = $P/maillog
		EOF
		if [ "$mode" = hold ]; then
			echo "smtpd_recipient_restrictions = check_client_access static:HOLD"
		else
			cat <<-EOF
			smtpd_recipient_restrictions = check_sender_access inline:{ backlog@example.org=HOLD }
			relayhost = [127.0.0.1]:$fport
			smtp_sasl_auth_enable = yes
			smtp_sasl_password_maps = static:$GMAIL_USER:$GMAIL_PASS
			smtp_sasl_security_options = noanonymous
			smtp_sasl_tls_security_options = noanonymous
			smtp_tls_security_level = secure
			smtp_tls_secure_cert_match = localhost
			smtp_tls_servername = localhost
			smtp_tls_CAfile = $CERTS/ca.pem
			smtp_tls_connection_reuse = yes
			smtp_connection_reuse_count_limit = $UP_MPC
			default_destination_concurrency_limit = $UP_CONNS
			smtp_destination_concurrency_limit = $UP_CONNS
			EOF
		fi
	} >"$P/etc/main.cf"
	# The stock master.cf with smtpd on our port, no chroot, and tlsproxy
	# (Postfix reuses a TLS connection only through it).
	awk -v port="$port" '
	/^smtp +inet/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
	/^#tlsproxy / { print "tlsproxy unix - - n - 0 tlsproxy"; next }
	/^#/ || /^[ \t]/ || NF == 0 { print; next }
	{ $5 = "n"; print }' "$(postconf -dh config_directory)/master.cf" \
	    >"$P/etc/master.cf"
	$sudo postfix -c "$P/etc" check >/dev/null 2>&1 || true
	$sudo chown postfix "$P/data"
	PF_DIRS+=("$P")
	$sudo postfix -c "$P/etc" start >/dev/null 2>&1 ||
	    die "private postfix did not start; see $P/maillog"
	for i in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	die "private postfix does not listen on $port"
}

pf_stop() {
	local P=$1 keep=() d
	timeout 60 $sudo postfix -c "$P/etc" stop >/dev/null 2>&1 ||
	    timeout 10 $sudo postfix -c "$P/etc" abort >/dev/null 2>&1 || true
	for d in "${PF_DIRS[@]}"; do
		[ "$d" = "$P" ] || keep+=("$d")
	done
	PF_DIRS=("${keep[@]}")
}

pf_held() { find "$1/spool/hold" -type f | wc -l; }

# Every message the instance still has: received, active, deferred or held.
pf_queued() {
	local q=$1/spool
	find "$q/incoming" "$q/active" "$q/deferred" "$q/hold" "$q/maildrop" \
	    -type f 2>/dev/null | wc -l
}

# Releases the held backlog and asks for immediate delivery of everything
# (postqueue -f ignores the deferred queue's retry times).
pf_release() {
	timeout 60 $sudo postsuper -c "$1/etc" -H ALL >/dev/null 2>&1
	timeout 60 $sudo postqueue -c "$1/etc" -f
}

# ---------------------------------------------------------------- fake Gmail

FG_PID=
# fg_start DIR PORT RTT_MS: tests/fakegmail on 127.0.0.1:PORT (STARTTLS),
# the round trip emulated on that port; ready once it printed its ports.
fg_start() {
	local d=$1 i
	mkdir -p "$d"
	"$PY" "$FAKE" --certdir "$CERTS" --port-starttls "$2" --rtt "$3" \
	    --record "$d/record.json" >"$d/stdout" 2>"$d/stderr" &
	FG_PID=$!
	PIDS+=("$FG_PID")
	for i in $(seq 200); do
		[ -s "$d/stdout" ] && return 0
		kill -0 "$FG_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$d/stderr" >&2
	die "fake Gmail did not start"
}

# Stops the fake; it writes its record (record.json) on SIGTERM.
fg_stop() {
	[ -n "$FG_PID" ] || return 0
	stop_pid "$FG_PID"
	FG_PID=
}

# fg_stats DIR -> "delivered= sessions= tls= auth= span=" from its record;
# span: first connection to last accepted message, by the fake's clock.
fg_stats() {
	timeout 60 "$PY" - "$1/record.json" <<-'EOF'
	import json, sys
	r = json.load(open(sys.argv[1]))
	m = r["messages"]
	t0 = min((s["started"] for s in r["sessions"]), default=0)
	t1 = max((x["monotonic"] for x in m), default=t0)
	print("delivered=%d sessions=%d tls=%d auth=%d span=%.2f" % (len(m),
	      r["session_count"], r["tls_handshakes"], r["auth_count"], t1 - t0))
	EOF
}

# ---------------------------------------------------------------- queues

# q_count sr|pf: messages the server still has (PFR: the relay instance).
q_count() {
	if [ "$1" = sr ]; then sr_count; else pf_queued "$PFR"; fi
}

# wait_queue sr|pf MAX SECONDS: until at most MAX messages are left, polled
# every 0.1 s; returns 1 on timeout.
wait_queue() {
	local i
	for i in $(seq $(($3 * 10))); do
		[ "$(q_count "$1")" -le "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

release() {
	if [ "$1" = sr ]; then sr_release; else pf_release "$PFR"; fi
}

# ---------------------------------------------------------------- 1. throughput

# "busy idle" jiffies of the whole machine.
cpu_snap() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }

# rate PORT COUNT CLIENTS -> RATE (msg/s) and CPU (the machine's CPU use
# during the run, all cores, smtp-source included, in %).
rate() {
	local t0 t1 c0 c1
	c0=$(cpu_snap)
	t0=$(ms)
	timeout 600 smtp-source -s "$3" -m "$2" -l "$MSG_LEN" \
	    -f bench@example.org -t sink@example.net -M client.bench.test \
	    "127.0.0.1:$1" >"$T/smtp-source.out" 2>&1 ||
	    { cat "$T/smtp-source.out" >&2; die "smtp-source failed"; }
	t1=$(ms)
	c1=$(cpu_snap)
	read -r RATE CPU < <(awk -v n="$2" -v ns=$((t1 - t0)) -v a="$c0" \
	    -v b="$c1" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		busy = y[1] - x[1]; idle = y[2] - x[2]
		printf "%.0f %.0f\n", n / (ns / 1e9), 100 * busy / (busy + idle + 1e-9) }')
}

# One timed run against each server, the queues checked to have grown by
# exactly COUNT (every 250 counted is a queued message): both PORT... COUNT
# CLIENTS -> SR_RATE PF_RATE (and SR_CPU PF_CPU).
both() {
	local c0 c
	settle
	c0=$(sr_count)
	rate "$SR_PORT" "$1" "$2"
	c=$(($(sr_count) - c0))
	[ "$c" -eq "$1" ] || die "smartrelayd queued $c of $1"
	SR_RATE=$RATE SR_CPU=$CPU
	settle
	c0=$(pf_held "$PF")
	rate "$PF_PORT" "$1" "$2"
	c=$(($(pf_held "$PF") - c0))
	[ "$c" -eq "$1" ] || die "postfix queued $c of $1"
	PF_RATE=$RATE PF_CPU=$CPU
}

bench_throughput() {
	local i sr=() pf=() r
	log "1. accept throughput: $CLIENTS clients, $N x $MSG_LEN-byte messages, $RUNS runs"
	# What the disk gives at this moment: the spool's commit one message
	# at a time vs grouped (see commit_strategies.c).
	timeout 300 "$T/commit_strategies" "$T/cs" 2000 "$CLIENTS" 4 \
	    >"$T/cs.out"
	sed 's/^/   disk probe: /' "$T/cs.out" >&2
	result "(disk probe: 2 KiB commits/s)" \
	    "$(awk '$1 == "serial" && !s { s = $4 } $1 == "batch" { b = $4 }
	        $1 == "parallel" { p = $4 }
	        END { printf "%s serial, %s batch, %s 4 thr", s, b, p }' \
	        "$T/cs.out")" "-" "-" "info"
	# Warm-up (not timed): Postfix forks its smtpd and cleanup processes.
	sr_fresh
	rate "$SR_PORT" 500 "$CLIENTS"
	rate "$PF_PORT" 500 "$CLIENTS"
	for i in $(seq "$RUNS"); do
		both "$N" "$CLIENTS"
		sr+=("$SR_RATE")
		pf+=("$PF_RATE")
		note "run $i: smartrelayd $SR_RATE msg/s (CPU $SR_CPU% of $(nproc) cores), postfix $PF_RATE msg/s (CPU $PF_CPU%)"
	done
	SR_TPUT=$(median "${sr[@]}")
	PF_TPUT=$(median "${pf[@]}")
	r=$(ratio "$SR_TPUT" "$PF_TPUT")
	note "median: smartrelayd $SR_TPUT msg/s, postfix $PF_TPUT msg/s, ratio ${r}x"
	result "accept, $CLIENTS clients: >= 3x postfix" "$SR_TPUT msg/s" \
	    "$PF_TPUT msg/s" "${r}x" "$(verdict "$r" ">=" 3)"
	result "  (runs, msg/s)" "${sr[*]}" "${pf[*]}" "-" "info"
	bench_series
}

# Accept rate against parallel clients: SERIES_RUNS runs per point and
# server (alternating), the medians written to accept.dat and plotted.
bench_series() {
	local c i r s p sa pa dat=$OUT/accept.dat
	log "1b. accept rate vs parallel clients ($SERIES), $SERIES_N messages per point, $SERIES_RUNS run(s)"
	printf '# clients smartrelayd_msg_s postfix_msg_s ratio (median of %s x %s x %d bytes, smtp-source; %s)\n' \
	    "$SERIES_RUNS" "$SERIES_N" "$MSG_LEN" "$(date -u '+%Y-%m-%d %H:%M UTC')" >"$dat"
	for c in $SERIES; do
		sa=() pa=()
		for i in $(seq "$SERIES_RUNS"); do
			both "$SERIES_N" "$c"
			note "$c clients, run $i: smartrelayd $SR_RATE msg/s (CPU $SR_CPU%), postfix $PF_RATE msg/s (CPU $PF_CPU%)"
			sa+=("$SR_RATE") pa+=("$PF_RATE")
		done
		s=$(median "${sa[@]}") p=$(median "${pa[@]}")
		r=$(ratio "$s" "$p")
		note "$c clients: smartrelayd $s msg/s, postfix $p msg/s, ratio ${r}x"
		printf '%s %s %s %s\n' "$c" "$s" "$p" "$r" >>"$dat"
		result "  (accept, $c clients, $SERIES_N msgs)" "$s msg/s" \
		    "$p msg/s" "${r}x" "info"
	done
	note "data: $dat"
	plot "$dat"
}

# The PNG: accept rate against clients, both servers, and 3x Postfix.
plot() {
	local xt
	if ! command -v gnuplot >/dev/null; then
		note "gnuplot not installed: no plot"
		return 0
	fi
	# shellcheck disable=SC2086	# the list of client counts
	xt=$(printf '%s\n' $SERIES | paste -sd, -)
	timeout 60 gnuplot <<-EOF
	set terminal pngcairo size 900,560 font "sans,11"
	set output "$PLOT"
	set title "Accept rate vs parallel clients ($MSG_LEN-byte messages, smtp-source, one per connection)\n$(date -u '+%Y-%m-%d'), git $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores"
	set xlabel "parallel clients (smtp-source -s)"
	set ylabel "accepted messages per second"
	set logscale x 2
	set xtics ($xt)
	set yrange [0:*]
	set grid
	set key outside bottom center horizontal
	plot "$1" using 1:2 with linespoints lw 2 pt 7 title "smartrelayd", \
	     "$1" using 1:3 with linespoints lw 2 pt 5 title "Postfix $(postconf -dh mail_version)", \
	     "$1" using 1:(\$3 * 3) with lines dt 2 lc rgb "gray40" title "3 x Postfix (the goal at 20 clients)"
	EOF
	note "plot: $PLOT"
}

# ---------------------------------------------------------------- 2, 3. latency

# lat_median LINE... -> the line (benchtool latency output) with the
# median p99.
lat_median() {
	local out m p=()
	for out in "$@"; do p+=("$(kv "$out" p99)"); done
	m=$(median "${p[@]}")
	for out in "$@"; do
		[ "$(kv "$out" p99)" = "$m" ] && break
	done
	printf '%s\n' "$out"
}

lat_detail() {
	printf 'p50 %s p90 %s max %s' "$(kv "$1" p50)" "$(kv "$1" p90)" "$(kv "$1" max)"
}

# lat_result CONDITION SR_LINE PF_LINE: the goal row and the detail row.
lat_result() {
	local r
	r=$(ratio "$(kv "$2" p99)" "$(kv "$3" p99)")
	note "median round: smartrelayd $2; postfix $3; p99 ratio $r"
	result "p99 @4 clients, $1: <= 0.5x postfix" \
	    "$(kv "$2" p99) ms" "$(kv "$3" p99) ms" "$r" "$(verdict "$r" "<=" 0.5)"
	result "  (p50 p90 max, ms)" "$(lat_detail "$2")" "$(lat_detail "$3")" "-" "info"
}

# The disk is shared, so one round can catch another job's burst of I/O:
# LAT_ROUNDS rounds alternate between the two servers and the round with the
# median p99 is reported (every round's p99 is printed).
bench_latency() {
	local i out sr=() pf=()
	log "2. accept latency, upstream down: 4 clients x $LAT_MSGS messages, final dot -> 250, $LAT_ROUNDS rounds"
	[ -n "$SR_PID" ] || sr_fresh
	for i in $(seq "$LAT_ROUNDS"); do
		settle
		out=$(timeout 600 "$PY" "$TOOL" latency "$SR_PORT" 4 "$LAT_MSGS")
		note "round $i smartrelayd: $out (ms)"
		sr+=("$out")
		settle
		out=$(timeout 600 "$PY" "$TOOL" latency "$PF_PORT" 4 "$LAT_MSGS")
		note "round $i postfix:     $out (ms)"
		pf+=("$out")
	done
	lat_result "upstream down" "$(lat_median "${sr[@]}")" "$(lat_median "${pf[@]}")"
}

# relay_round sr|pf PORT FAKE_PORT DIR: one latency round while the server
# relays (a fresh spool or Postfix instance each round, so that every round
# starts from the same queue).  A backlog is queued while the upstream is
# down (smartrelayd: the fake does not listen yet; Postfix: the backlog's
# sender is held), the fake starts, the backlog is released, and once the
# first message has gone the 4 latency clients run; their messages join the
# relayed stream.  Sets
# ROUND to the latency line plus relayed= (messages the server relayed
# during the clients' run), relay_rate= and left= (still queued at its end).
relay_round() {
	local who=$1 port=$2 q0 q1 t0 t1 out relayed
	fill "$port" "$RL_BACKLOG" backlog@example.org
	fg_start "$4" "$3" "$RL_RTT"
	release "$who"
	q0=$(q_count "$who")
	wait_queue "$who" $((q0 - 1)) 60 || die "$who: nothing relayed in 60 s"
	q0=$(q_count "$who")
	t0=$(ms)
	out=$(timeout 600 "$PY" "$TOOL" latency "$port" 4 "$LAT_MSGS")
	t1=$(ms)
	q1=$(q_count "$who")
	fg_stop
	relayed=$((q0 + 4 * LAT_MSGS - q1))
	ROUND="$out relayed=$relayed relay_rate=$(awk -v n="$relayed" \
	    -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }') left=$q1"
	if [ "$relayed" -ge "$q0" ]; then
		note "WARNING: $who relayed its whole backlog during the run;" \
		    "raise BENCH_RELAY_BACKLOG"
	fi
}

bench_latency_relaying() {
	local i sr=() pf=() fsr fpf
	log "3. accept latency while relaying: 4 clients x $LAT_MSGS messages while a backlog of $RL_BACKLOG goes to a fake Gmail (${RL_RTT} ms RTT, $UP_CONNS connections), $LAT_ROUNDS rounds"
	fsr=$("$PY" "$TOOL" freeport)
	fpf=$("$PY" "$TOOL" freeport)
	SR_DIR=$T/rl
	for i in $(seq "$LAT_ROUNDS"); do
		sr_fresh "$fsr"
		settle
		relay_round sr "$SR_PORT" "$fsr" "$T/fg-rl-sr-$i"
		sr_stop
		note "round $i smartrelayd: $ROUND (ms)"
		sr+=("$ROUND")
		PFR=$T/pr-$i
		pf_instance "$PFR" "$PR_PORT" relay "$fpf"
		settle
		relay_round pf "$PR_PORT" "$fpf" "$T/fg-rl-pf-$i"
		pf_stop "$PFR"
		note "round $i postfix:     $ROUND (ms)"
		pf+=("$ROUND")
	done
	fsr=$(lat_median "${sr[@]}")
	fpf=$(lat_median "${pf[@]}")
	lat_result "relaying" "$fsr" "$fpf"
	result "  (relayed during that round)" \
	    "$(kv "$fsr" relayed) msgs, $(kv "$fsr" relay_rate)/s, $(kv "$fsr" left) left" \
	    "$(kv "$fpf" relayed) msgs, $(kv "$fpf" relay_rate)/s, $(kv "$fpf" left) left" \
	    "-" "info"
}

# ---------------------------------------------------------------- 4. WAN drain

# drain sr|pf PORT FAKE_PORT DIR: queues UP_N messages while the upstream is
# down, starts the fake with a WAN_RTT round trip, releases the backlog and
# times it until the server has none left.  Sets DRAIN to "seconds=" plus
# the fake's fg_stats.
drain() {
	local who=$1 t0 t1 left
	fill "$2" "$UP_N" backlog@example.org
	[ "$(q_count "$who")" -eq "$UP_N" ] ||
	    die "$who: $(q_count "$who") of $UP_N queued for the drain"
	settle
	fg_start "$4" "$3" "$WAN_RTT"
	t0=$(ms)
	release "$who"
	wait_queue "$who" 0 $((UP_N / 2 + 60)) || true
	t1=$(ms)
	left=$(q_count "$who")
	[ "$who" = sr ] && UP_RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SR_PID/status")
	fg_stop
	[ "$left" -eq 0 ] || die "$who: $left messages still queued after the drain's time limit"
	DRAIN="seconds=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }') $(fg_stats "$4")"
}

bench_drain() {
	local fsr fpf s p rs rp r lim v
	log "4. WAN drain: $UP_N queued messages over a ${WAN_RTT} ms round trip, $UP_CONNS connections, $UP_MPC messages per connection"
	fsr=$("$PY" "$TOOL" freeport)
	fpf=$("$PY" "$TOOL" freeport)
	sr_stop
	SR_DIR=$T/wan
	sr_fresh "$fsr"
	drain sr "$SR_PORT" "$fsr" "$T/fg-wan-sr"
	s=$DRAIN
	sr_stop
	note "smartrelayd: $s; daemon RSS after the drain: $UP_RSS KiB"
	PFR=$T/pw
	pf_instance "$PFR" "$PW_PORT" relay "$fpf"
	drain pf "$PW_PORT" "$fpf" "$T/fg-wan-pf"
	p=$DRAIN
	pf_stop "$PFR"
	note "postfix:     $p"
	rs=$(awk -v n="$UP_N" -v s="$(kv "$s" seconds)" 'BEGIN { printf "%.1f", n / s }')
	rp=$(awk -v n="$UP_N" -v s="$(kv "$p" seconds)" 'BEGIN { printf "%.1f", n / s }')
	r=$(ratio "$rs" "$rp")
	v=$(verdict "$r" ">=" 2)
	[ "$(kv "$s" delivered)" -eq "$UP_N" ] || v=FAIL
	result "WAN drain ${WAN_RTT} ms RTT, $UP_CONNS conns: >= 2x postfix" \
	    "$rs msg/s" "$rp msg/s" "${r}x" "$v"
	result "  (seconds; fake's first connection to last 250)" \
	    "$(kv "$s" seconds) s; $(kv "$s" span) s" \
	    "$(kv "$p" seconds) s; $(kv "$p" span) s" "-" "info"
	lim=$(((UP_N + UP_MPC - 1) / UP_MPC))
	v=FAIL
	[ "$(kv "$s" tls)" -le "$lim" ] && [ "$(kv "$s" auth)" -le "$lim" ] && v=PASS
	result "TLS + AUTH: <= 1 each per $UP_MPC msgs (max $lim)" \
	    "$(kv "$s" tls) TLS, $(kv "$s" auth) AUTH, $(kv "$s" sessions) sess" \
	    "$(kv "$p" tls) TLS, $(kv "$p" auth) AUTH, $(kv "$p" sessions) sess" "-" "$v"
	result "  (delivered to the fake)" "$(kv "$s" delivered)" "$(kv "$p" delivered)" "-" "info"
	result "  (daemon RSS after relaying, TLS loaded)" \
	    "$(awk -v k="$UP_RSS" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "-" "-" "info"
}

# ---------------------------------------------------------------- 5. memory

bench_memory() {
	local rss out inc big
	log "5. memory"
	SR_DIR=$T/sr
	sr_fresh
	sleep 1
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SR_PID/status")
	note "idle RSS after start, empty queue: $rss KiB ($(grep -E '^Rss(Anon|File)' \
	    "/proc/$SR_PID/status" | tr -s ' \t' ' ' | tr '\n' ' '))"
	note "largest mappings (KiB): $(awk '/^[0-9a-f]/ { n = $6 } /^Rss:/ { r[n] += $2 }
	    END { for (k in r) if (r[k] >= 256) { m = k; sub(".*/", "", m); print r[k], m } }' \
	    "/proc/$SR_PID/smaps" | sort -rn | head -6 | awk '{ printf "%s=%d ", $2, $1 }')"
	result "idle RSS < 8 MiB" "$(awk -v k="$rss" 'BEGIN { printf "%.1f MiB", k / 1024 }')" \
	    "-" "-" "$( [ "$rss" -lt 8192 ] && echo PASS || echo FAIL)"

	out=$( (ulimit -n $((IDLE_CONNS * 2 + 1024)) &&
	    timeout 300 "$PY" "$TOOL" idle "$SR_PORT" "$IDLE_CONNS" "$SR_PID") )
	inc=$(kv "$out" increase_kib)
	note "$IDLE_CONNS idle connections: $out"
	result "$IDLE_CONNS idle connections add < 32 MiB" \
	    "$(awk -v k="$inc" 'BEGIN { printf "+%.1f MiB", k / 1024 }')" "-" "-" \
	    "$( [ "$inc" -lt 32768 ] && echo PASS || echo FAIL)"

	sr_fresh
	sleep 0.5
	big=$(timeout 300 "$PY" "$TOOL" big "$SR_PORT" 30000000 "$SR_PID")
	inc=$(kv "$big" increase_kib)
	note "30 MB message: $big"
	result "30 MB message adds < 2 MiB RSS" \
	    "$(awk -v k="$inc" 'BEGIN { printf "+%.2f MiB", k / 1024 }')" "-" "-" \
	    "$( [ "$inc" -lt 2048 ] && echo PASS || echo FAIL)"
	sr_stop
}

# ---------------------------------------------------------------- 6. restart

# ready_time -> prints "seconds=S queue=Q": exec to the "ready" log line.
ready_time() {
	timeout 120 "$PY" "$TOOL" ready 60 "$SR_DIR/daemon.log" \
	    "$T/daemon.pid" -- "$SMARTRELAYD" -c "$SR_DIR/smartrelay.conf"
}

bench_restart() {
	local i out s warm=() cold
	log "6. restart with $RESTART_N queued messages"
	sr_stop
	SR_DIR=$T/sr
	SR_SPOOL=$SR_DIR/spool-restart
	SR_UPSTREAM=
	sr_config
	timeout 600 "$T/queue_recover" "$SR_SPOOL" "$RESTART_N" 200 \
	    >"$T/queue_recover.out"
	sed 's/^/   queue_recover: /' "$T/queue_recover.out" >&2
	for i in $(seq 3); do
		out=$(ready_time)
		[ "$(kv "$out" queue)" -eq "$RESTART_N" ] ||
		    die "restart: expected queue=$RESTART_N, got $out"
		warm+=("$(kv "$out" seconds)")
		note "warm page cache #$i: $out"
	done
	s=$(median "${warm[@]}")
	result "restart, $RESTART_N queued: ready < 3 s" "${s} s (warm cache)" \
	    "-" "-" "$(verdict "$s" "<" 3)"
	# Cold page cache (as after a reboot): drops the whole machine's
	# cache (BENCH_COLD=0 skips it).
	if [ "$COLD" = 1 ]; then
		sync
		echo 3 | $sudo tee /proc/sys/vm/drop_caches >/dev/null ||
		    die "cannot drop the page cache"
		out=$(ready_time)
		cold=$(kv "$out" seconds)
		note "cold page cache: $out"
		result "restart, $RESTART_N queued, cold cache: < 3 s" \
		    "${cold} s (after drop_caches)" "-" "-" "$(verdict "$cold" "<" 3)"
	else
		result "restart, $RESTART_N queued, cold cache: < 3 s" \
		    "not run (BENCH_COLD=0)" "-" "-" "SKIP"
	fi
}

# ---------------------------------------------------------------- main

summary() {
	local r a b c d e line
	line=$(printf '%.0s-' $(seq 150))
	printf '\n%-48s | %-36s | %-36s | %-6s | %s\n' "goal" "smartrelayd" \
	    "postfix" "ratio" "verdict"
	printf '%s\n' "$line"
	for r in "${RESULTS[@]}"; do
		IFS='|' read -r a b c d e <<<"$r"
		printf '%-48s | %-36s | %-36s | %-6s | %s\n' "$a" "$b" "$c" "$d" "$e"
	done
	printf '\n%s, took %d s (before the cleanup); machine: %s, %s cores, %s; %s; spools on %s (%s)\n' \
	    "$(date -u '+%Y-%m-%d %H:%M UTC')" $(($(date +%s) - STARTED)) \
	    "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(nproc)" \
	    "$(systemd-detect-virt 2>/dev/null || echo "virt unknown")" \
	    "$(uname -r)" "$BENCH_BASE" "$FS_NOTE"
	printf 'load average at the end: %s; disk pressure (/proc/pressure/io, some avg300): %s%%\n' \
	    "$(cut -d' ' -f1-3 /proc/loadavg)" \
	    "$(sed -n 's/^some .*avg300=\([0-9.]*\).*/\1/p' /proc/pressure/io 2>/dev/null || echo '?')"
	printf 'postfix %s, smartrelay %s (git %s%s)\n' \
	    "$(postconf -dh mail_version)" \
	    "$("$SMARTRELAYD" -V | awk '{ print $2 }')" \
	    "$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?')" \
	    "$(git -C "$SRC" diff --quiet HEAD 2>/dev/null || echo ', modified')"
	printf 'sections: %s; knobs: N=%s RUNS=%s SERIES="%s" SERIES_N=%s SERIES_RUNS=%s LAT_MSGS=%s LAT_ROUNDS=%s RELAY_BACKLOG=%s RELAY_RTT=%s UP_N=%s UP_MPC=%s WAN_RTT=%s COLD=%s\n' \
	    "$ONLY" "$N" "$RUNS" "$SERIES" "$SERIES_N" "$SERIES_RUNS" "$LAT_MSGS" "$LAT_ROUNDS" \
	    "$RL_BACKLOG" "$RL_RTT" "$UP_N" "$UP_MPC" "$WAN_RTT" "$COLD"
}

main() {
	local dev
	STARTED=$(date +%s)
	install_deps
	command -v smtp-source >/dev/null || die "smtp-source not found"
	mkdir -p "$OUT" "$(dirname "$PLOT")"
	T=$(mktemp -d "$BENCH_BASE/smartrelay-bench.XXXXXX")
	chmod 755 "$T"		# postfix's unprivileged daemons must traverse
	check_system_postfix
	FS_NOTE=$(df -T "$BENCH_BASE" | awk 'NR == 2 { print $2 }')
	dev=$(df --output=source "$BENCH_BASE" | tail -1)
	if [ "$FS_NOTE" = ext4 ] && ! ls -d /proc/fs/jbd2/"${dev##*/}"-* >/dev/null 2>&1; then
		FS_NOTE="ext4 without journal"
		note "$BENCH_BASE is on ext4 without a journal: files deleted in the"
		note "last 5 minutes slow down file creation (for both servers);"
		note "leave 5 minutes between two runs of this script."
	fi
	build
	CERTS=$T/certs
	"$PY" "$SRC/tests/fakegmail/mkcerts.py" "$CERTS" >/dev/null
	SR_PORT=$("$PY" "$TOOL" freeport)
	PF_PORT=$("$PY" "$TOOL" freeport)
	PR_PORT=$("$PY" "$TOOL" freeport)
	PW_PORT=$("$PY" "$TOOL" freeport)
	HOLE_PORT=$("$PY" "$TOOL" freeport)
	"$PY" "$TOOL" blackhole "$HOLE_PORT" &
	PIDS+=($!)
	SR_DIR=$T/sr
	SR_SPOOL=$SR_DIR/spool
	PF=$T/pf
	if want 1 || want 2; then
		pf_instance "$PF" "$PF_PORT" hold
	fi
	want 1 && bench_throughput
	want 2 && bench_latency
	if want 1 || want 2; then
		pf_stop "$PF"
	fi
	# Relaying deletes files; it comes after the accept-only sections.
	want 3 && bench_latency_relaying
	want 4 && bench_drain
	want 5 && bench_memory
	want 6 && bench_restart
	sr_stop
	summary | tee "$OUT/summary.txt"
	printf 'results: %s (summary.txt, accept.dat), plot: %s\n' "$OUT" "$PLOT"
}

main "$@"
