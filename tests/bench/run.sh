#!/bin/bash
# smartrelay benchmark (docs/performance.md), side by side with a private Postfix.
#
#   tests/bench/run.sh            # as root (or with sudo available)
#
# What it does, in one run (docs/performance.md explains the method):
#   0. installs what it needs with apt-get (postfix for smtp-source and the
#      comparison, build dependencies), builds smartrelay in release mode in
#      build-bench/, makes sure the system Postfix is not running;
#   1. accept throughput, 20 parallel smtp-source clients, 2 KiB messages,
#      smartrelayd vs a private Postfix instance (median of BENCH_RUNS);
#   2. accept latency (final "." -> 250) at 4 parallel clients;
#   3. upstream session reuse against tests/fakegmail (when the relay works);
#   4. memory: idle RSS, 1,000 idle connections, one 30 MB message;
#   5. restart with 100,000 queued messages: exec -> "ready".
# and prints one summary table.  Everything it starts is stopped and its
# temporary directory removed on exit, also on failure or Ctrl-C.
#
# Environment knobs (defaults in brackets):
#   BENCH_N [5000]          messages per throughput run
#   BENCH_RUNS [3]          throughput runs per server (median reported)
#   BENCH_LAT_MSGS [1000]   messages per latency client (4 clients)
#   BENCH_LAT_ROUNDS [3]    latency rounds per server (median p99 reported)
#   BENCH_UP_N [1000]       backlog drained upstream
#   BENCH_UP_MPC [100]      messages_per_connection for that
#   BENCH_COLD=1            also time the restart with a cold page cache
#                           (drops the page cache of the whole machine)
#   BENCH_IDLE_CONNS [1000] idle connections
#   BENCH_RESTART_N [100000] queued messages for the restart test
#   BENCH_DIR [/var/tmp]    where the spools go (a real disk, not tmpfs)
#   BENCH_NO_INSTALL=1      do not run apt-get (fail if something is missing)
#   BENCH_REPLACE_MTA=1     allow installing postfix over another MTA
#   BENCH_ONLY="1 2 3 4 5"  run only these sections
set -Eeuo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$SRC/build-bench
PY=/usr/bin/python3
TOOL=$SRC/tests/bench/benchtool.py
N=${BENCH_N:-5000}
RUNS=${BENCH_RUNS:-3}
LAT_MSGS=${BENCH_LAT_MSGS:-1000}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-3}
UP_N=${BENCH_UP_N:-1000}
UP_MPC=${BENCH_UP_MPC:-100}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
RESTART_N=${BENCH_RESTART_N:-100000}
ONLY=${BENCH_ONLY:-"1 2 3 4 5"}
MSG_LEN=2048
CLIENTS=20

T=
PIDS=()			# background processes we started
PF_STARTED=
RESULTS=()		# "target|measured|verdict"

log() { printf '\n== %s\n' "$*" >&2; }
note() { printf '   %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
want() { [[ " $ONLY " == *" $1 "* ]]; }
result() { RESULTS+=("$1|$2|$3"); }

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo

cleanup() {
	local rc=$? pid i
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
	if [ -n "$PF_STARTED" ]; then
		timeout 60 $sudo postfix -c "$T/pf/etc" stop >/dev/null 2>&1 ||
		    timeout 10 $sudo postfix -c "$T/pf/etc" abort >/dev/null 2>&1
	fi
	if [ -n "$T" ] && [ -d "$T" ]; then
		$sudo rm -rf "$T"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs "$@" in the background and remembers it for cleanup.
start_bg() {
	"$@" &
	PIDS+=($!)
}

# Drops a pid that is gone from PIDS (never signal a recycled pid).
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

ms() { date +%s%N; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# key=value from a benchtool result line: kv LINE KEY
kv() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ---------------------------------------------------------------- setup

install_deps() {
	local pkgs="postfix gcc pkg-config meson ninja-build libevent-dev
	    libssl-dev libconfig-dev libsystemd-dev libjansson-dev python3 openssl"
	local missing= p
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
	# instance cannot start; we run our own private instance.
	echo "postfix postfix/main_mailer_type select No configuration" |
	    $sudo debconf-set-selections
	$sudo apt-get update -q >&2
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
# before; ours uses other directories and another port.  But port 25 must
# not be taken by an instance we installed.
check_system_postfix() {
	if [ ! -f /etc/postfix/main.cf ]; then
		note "system Postfix: not configured (cannot run)"
	elif $sudo postfix status >/dev/null 2>&1; then
		note "system Postfix is running (left alone; ours is separate)"
	fi
}

build() {
	log "building smartrelay (release) in $BUILD"
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" "$SRC" -Dbuildtype=release >/dev/null
	fi
	ninja -C "$BUILD" daemon/smartrelayd common/libsmartrelay-common.a \
	    >/dev/null
	SMARTRELAYD=$BUILD/daemon/smartrelayd
	# Linked against meson's static library of common/, so that whatever
	# files the queue needs now (dsnparam.c, ...) come along.
	gcc -std=gnu11 -O2 -D_GNU_SOURCE -I"$SRC/common" \
	    "$SRC/tests/bench/queue_recover.c" \
	    "$BUILD/common/libsmartrelay-common.a" \
	    $(pkg-config --libs libconfig libsystemd openssl jansson \
	    libevent_core libevent_openssl libevent_extra) -pthread \
	    -o "$T/queue_recover"
	gcc -std=gnu11 -O2 -pthread "$SRC/tests/bench/commit_strategies.c" \
	    -o "$T/commit_strategies"
}

# ---------------------------------------------------------------- smartrelayd

# Writes $T/sr/smartrelay.conf for port $SR_PORT and spool $SR_SPOOL.
sr_config() {
	mkdir -p "$T/sr"
	printf 'bench-password\n' >"$T/sr/password"
	chmod 600 "$T/sr/password"
	cat >"$T/sr/smartrelay.conf" <<-EOF
	listen = [ "127.0.0.1:$SR_PORT" ];
	hostname = "bench.test";
	spool = "$SR_SPOOL";
	# A loopback upstream that accepts TCP and never speaks: nothing is
	# ever delivered while we measure (like Postfix's hold queue).
	upstream = {
	  host = "127.0.0.1"; port = $HOLE_PORT; tls = "starttls";
	  insecure_plaintext = true;
	  username = "bench@example.org";
	  password_file = "$T/sr/password";
	  timeout = "1h";
	};
	retry = { initial = "1h"; max = "1h"; };
	limits = { clients = $((IDLE_CONNS + 100)); };
	EOF
}

SR_PID=
SR_DIR=		# the daemon's directory: smartrelay.conf, spool/, daemon.log
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
	local i
	[ -n "$SR_PID" ] || return 0
	kill -TERM "$SR_PID" 2>/dev/null || true
	for i in $(seq 300); do
		kill -0 "$SR_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$SR_PID" 2>/dev/null || true
	wait "$SR_PID" 2>/dev/null || true
	forget_pid "$SR_PID"
	SR_PID=
}

sr_count() {
	find "$SR_SPOOL/msg" -maxdepth 1 -type f ! -name '*.*' 2>/dev/null |
	    wc -l
}

# Nothing is deleted while we measure: this disk is ext4 without a
# journal, where creating a file right after many deletions costs a scan of
# the recently freed inodes (ext4 find_inode_bit/recently_deleted, seen with
# perf), which would slow whichever server runs next.  So each fresh
# daemon gets a new spool directory; all of them go at exit.
SPOOLS=0
sr_fresh() {
	sr_stop
	SPOOLS=$((SPOOLS + 1))
	SR_SPOOL=$SR_DIR/spool-$SPOOLS
	sr_config
	sync
	sr_start
}

settle() { sync; sleep "${BENCH_SETTLE:-2}"; }

# ---------------------------------------------------------------- postfix

# A private Postfix: own config_directory and queue_directory under $T,
# smtpd on 127.0.0.1:$PF_PORT only, every message put on hold by smtpd
# (HOLD action), so cleanup queues it durably (fsync) and nothing is
# delivered.  Logging goes to a file through postlogd, as ours does.
pf_setup() {
	local P=$T/pf
	mkdir -p "$P/etc" "$P/spool" "$P/data"
	$sudo chown postfix "$P/data"
	cat >"$P/etc/main.cf" <<-EOF
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
	smtpd_recipient_restrictions = check_client_access static:HOLD
	smtpd_peername_lookup = no
	maillog_file_prefixes = $P
	maillog_file = $P/maillog
	EOF
	# The stock master.cf with smtpd on our port, and no chroot (the
	# chroot would need copies of /etc files; it does not change the
	# disk work).
	awk -v port="$PF_PORT" '
	/^smtp +inet/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
	/^#/ || /^[ \t]/ || NF == 0 { print; next }
	{ $5 = "n"; print }' "$(postconf -dh config_directory)/master.cf" \
	    >"$P/etc/master.cf"
	$sudo postfix -c "$P/etc" check >/dev/null 2>&1 || true
	$sudo chown postfix "$P/data"
	PF_STARTED=1
	$sudo postfix -c "$P/etc" start >/dev/null 2>&1 ||
	    die "private postfix did not start; see $P/maillog"
	local i
	for i in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	die "private postfix does not listen on $PF_PORT"
}

pf_count() { find "$T/pf/spool/hold" -type f | wc -l; }

# ---------------------------------------------------------------- 1. throughput

# "busy idle" jiffies of the whole machine.
cpu_snap() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }

# smtp_source_rate PORT COUNT -> prints "MSGS_PER_S CPU_BUSY_PERCENT"
# (the machine's CPU use during the run, all cores, smtp-source included).
smtp_source_rate() {
	local port=$1 n=$2 t0 t1 c0 c1
	c0=$(cpu_snap)
	t0=$(ms)
	timeout 600 smtp-source -s "$CLIENTS" -m "$n" -l "$MSG_LEN" \
	    -f bench@example.org -t sink@example.net -M client.bench.test \
	    "127.0.0.1:$port" >"$T/smtp-source.out" 2>&1 ||
	    { cat "$T/smtp-source.out" >&2; die "smtp-source failed"; }
	t1=$(ms)
	c1=$(cpu_snap)
	awk -v n="$n" -v ns=$((t1 - t0)) -v a="$c0" -v b="$c1" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		busy = y[1] - x[1]; idle = y[2] - x[2]
		printf "%.0f %.0f\n", n / (ns / 1e9), 100 * busy / (busy + idle + 1e-9) }'
}

bench_throughput() {
	local i r sr=() pf=() c0 c cpu_sr cpu_pf
	log "1. accept throughput: $CLIENTS clients, $N x $MSG_LEN-byte messages, $RUNS runs"
	# What the disk gives at this moment: the spool's commit one message
	# at a time (as the daemon does) vs grouped (see commit_strategies.c).
	timeout 300 "$T/commit_strategies" "$T/cs" 2000 "$CLIENTS" 4 \
	    >"$T/cs.out"
	sed 's/^/   disk probe: /' "$T/cs.out" >&2
	result "  (disk probe: 2 KiB commits/s)" \
	    "$(awk '$1 == "serial" && !s { s = $4 } $1 == "batch" { b = $4 }
	        $1 == "parallel" { p = $4 }
	        END { printf "%s serial, %s batch/20, %s batch/20+4 thr", s, b, p }' \
	        "$T/cs.out")" "info"
	# Warm-up (not timed): Postfix forks its smtpd and cleanup processes.
	sr_fresh
	smtp_source_rate "$SR_PORT" 500 >/dev/null
	smtp_source_rate "$PF_PORT" 500 >/dev/null
	for i in $(seq "$RUNS"); do
		settle
		c0=$(sr_count)
		read -r r cpu_sr < <(smtp_source_rate "$SR_PORT" "$N")
		c=$(( $(sr_count) - c0 ))
		[ "$c" -eq "$N" ] || die "smartrelayd queued $c of $N"
		sr+=("$r")
		settle
		c0=$(pf_count)
		read -r r cpu_pf < <(smtp_source_rate "$PF_PORT" "$N")
		c=$(( $(pf_count) - c0 ))
		[ "$c" -eq "$N" ] || die "postfix queued $c of $N"
		pf+=("$r")
		note "run $i: smartrelayd ${sr[-1]} msg/s (CPU ${cpu_sr}% of $(nproc) cores), postfix ${pf[-1]} msg/s (CPU ${cpu_pf}%)"
	done
	SR_TPUT=$(median "${sr[@]}")
	PF_TPUT=$(median "${pf[@]}")
	local ratio
	ratio=$(awk -v a="$SR_TPUT" -v b="$PF_TPUT" 'BEGIN { printf "%.2f", a / b }')
	note "median: smartrelayd $SR_TPUT msg/s, postfix $PF_TPUT msg/s, ratio ${ratio}x"
	result "throughput smartrelayd/postfix >= 3x" \
	    "$SR_TPUT vs $PF_TPUT msg/s = ${ratio}x (runs: ${sr[*]} / ${pf[*]})" \
	    "$(awk -v r="$ratio" 'BEGIN { print (r >= 3) ? "PASS" : "FAIL" }')"
}

# ---------------------------------------------------------------- 2. latency

# The disk is shared, so one round can catch another job's burst of I/O:
# LAT_ROUNDS rounds alternate between the two servers and the round with the
# median p99 is reported (every round's p99 is printed).
bench_latency() {
	local i out sr=() pf=() srp=() pfp=() m
	log "2. accept latency: 4 clients x $LAT_MSGS messages, final dot -> 250, $LAT_ROUNDS rounds"
	[ -n "$SR_PID" ] || sr_fresh
	for i in $(seq "$LAT_ROUNDS"); do
		settle
		out=$(timeout 600 "$PY" "$TOOL" latency "$SR_PORT" 4 "$LAT_MSGS")
		note "round $i smartrelayd: $out (ms)"
		sr+=("$out"); srp+=("$(kv "$out" p99)")
		settle
		out=$(timeout 600 "$PY" "$TOOL" latency "$PF_PORT" 4 "$LAT_MSGS")
		note "round $i postfix:     $out (ms)"
		pf+=("$out"); pfp+=("$(kv "$out" p99)")
	done
	m=$(median "${srp[@]}")
	for out in "${sr[@]}"; do
		[ "$(kv "$out" p99)" = "$m" ] && break
	done
	LAT_SR=$out
	m=$(median "${pfp[@]}")
	for out in "${pf[@]}"; do
		[ "$(kv "$out" p99)" = "$m" ] && break
	done
	LAT_PF=$out
	note "median round: smartrelayd $LAT_SR; postfix $LAT_PF"
	result "latency p99 @4 clients < 5 ms" \
	    "$(kv "$LAT_SR" p99) ms (p50 $(kv "$LAT_SR" p50) p90 $(kv "$LAT_SR" p90) max $(kv "$LAT_SR" max))" \
	    "$(awk -v v="$(kv "$LAT_SR" p99)" 'BEGIN { print (v < 5) ? "PASS" : "FAIL" }')"
	result "  (postfix, same client, for comparison)" \
	    "$(kv "$LAT_PF" p99) ms (p50 $(kv "$LAT_PF" p50) p90 $(kv "$LAT_PF" p90) max $(kv "$LAT_PF" max))" "info"
}

# ---------------------------------------------------------------- 3. upstream

# A backlog of UP_N messages is queued while the upstream is down; then the
# fake Gmail (tests/fakegmail) comes up and the daemon drains the queue.
# The fake's record counts the TLS handshakes and AUTHs: at most one of
# each per messages_per_connection messages (docs/relay.md, docs/performance.md).
bench_upstream() {
	local mpc=$UP_MPC n=$UP_N fgport pid i left t0 t1 out limit
	log "3. upstream: drain a backlog of $n messages, messages_per_connection=$mpc"
	if [ ! -f "$SRC/daemon/relay.c" ]; then
		note "no daemon/relay.c yet: skipped"
		result "upstream: <= 1 TLS + 1 AUTH per $mpc messages" "not measured" "SKIP"
		return 0
	fi
	mkdir -p "$T/up" "$T/fg"
	"$PY" "$SRC/tests/fakegmail/mkcerts.py" "$T/fg/certs" >/dev/null
	fgport=$("$PY" "$TOOL" freeport)
	printf 'abcd efgh ijkl mnop\n' >"$T/up/password"
	chmod 600 "$T/up/password"
	cat >"$T/up/smartrelay.conf" <<-EOF
	listen = [ "127.0.0.1:$UP_PORT" ];
	hostname = "bench.test";
	spool = "$T/up/spool";
	upstream = {
	  host = "localhost"; port = $fgport; tls = "starttls";
	  ca_file = "$T/fg/certs/ca.pem";
	  username = "test.user@gmail.com";
	  password_file = "$T/up/password";
	  connections = 2; messages_per_connection = $mpc; timeout = 30;
	};
	retry = { initial = 1; max = 2; };
	EOF
	sr_stop
	local keep=$SR_DIR keep_spool=$SR_SPOOL
	SR_DIR=$T/up SR_SPOOL=$T/up/spool
	sr_start
	# The upstream is down (nothing listens on $fgport): all stay queued.
	timeout 300 smtp-source -s "$CLIENTS" -m "$n" -l "$MSG_LEN" \
	    -f bench@example.org -t sink@example.net -M client.bench.test \
	    "127.0.0.1:$UP_PORT" >"$T/smtp-source.out" 2>&1 ||
	    { cat "$T/smtp-source.out" >&2; die "smtp-source failed"; }
	[ "$(sr_count)" -eq "$n" ] || die "upstream: $(sr_count) of $n queued"
	"$PY" "$SRC/tests/fakegmail/fakegmail.py" --certdir "$T/fg/certs" \
	    --port-starttls "$fgport" --record "$T/fg/record.json" \
	    >"$T/fg/stdout" 2>"$T/fg/stderr" &
	pid=$!
	PIDS+=("$pid")
	t0=$(ms)
	for i in $(seq 1800); do		# 180 s at most
		left=$(sr_count)
		[ "$left" -eq 0 ] && break
		kill -0 "$pid" 2>/dev/null || { cat "$T/fg/stderr" >&2; die "fakegmail died"; }
		sleep 0.1
	done
	t1=$(ms)
	UP_RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SR_PID/status")
	kill -TERM "$pid"
	for i in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
	sr_stop
	SR_DIR=$keep SR_SPOOL=$keep_spool
	[ "$left" -eq 0 ] || die "upstream: $left messages still queued after 180 s"
	out=$("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("delivered=%d sessions=%d tls=%d auth=%d" % (len(r["messages"]),
      r["session_count"], r["tls_handshakes"], r["auth_count"]))' "$T/fg/record.json")
	note "drained in $(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }') s: $out; daemon RSS after the drain: $UP_RSS KiB"
	limit=$(( (n + mpc - 1) / mpc ))
	result "upstream: <= 1 TLS + 1 AUTH per $mpc messages" \
	    "$n msgs: $(kv "$out" tls) TLS, $(kv "$out" auth) AUTH (max $limit)" \
	    "$( [ "$(kv "$out" delivered)" -ge "$n" ] &&
	        [ "$(kv "$out" tls)" -le "$limit" ] &&
	        [ "$(kv "$out" auth)" -le "$limit" ] && echo PASS || echo FAIL)"
	result "  (daemon RSS after relaying, TLS loaded)" \
	    "$(awk -v k="$UP_RSS" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "info"
}

# ---------------------------------------------------------------- 4. memory

bench_memory() {
	local rss out inc big
	log "4. memory"
	sr_fresh
	sleep 1
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SR_PID/status")
	note "idle RSS after start, empty queue: $rss KiB ($(grep -E '^Rss(Anon|File)' \
	    "/proc/$SR_PID/status" | tr -s ' \t' ' ' | tr '\n' ' '))"
	note "largest mappings (KiB): $(awk '/^[0-9a-f]/ { n = $6 } /^Rss:/ { r[n] += $2 }
	    END { for (k in r) if (r[k] >= 256) { m = k; sub(".*/", "", m); print r[k], m } }' \
	    "/proc/$SR_PID/smaps" | sort -rn | head -6 | awk '{ printf "%s=%d ", $2, $1 }')"
	result "idle RSS < 8 MiB" "$(awk -v k="$rss" 'BEGIN { printf "%.1f MiB", k / 1024 }')" \
	    "$( [ "$rss" -lt 8192 ] && echo PASS || echo FAIL)"

	out=$( (ulimit -n $((IDLE_CONNS * 2 + 1024)) &&
	    timeout 300 "$PY" "$TOOL" idle "$SR_PORT" "$IDLE_CONNS" "$SR_PID") )
	inc=$(kv "$out" increase_kib)
	note "$IDLE_CONNS idle connections: $out"
	result "$IDLE_CONNS idle connections add < 32 MiB" \
	    "$(awk -v k="$inc" 'BEGIN { printf "+%.1f MiB", k / 1024 }')" \
	    "$( [ "$inc" -lt 32768 ] && echo PASS || echo FAIL)"

	sr_fresh
	sleep 0.5
	big=$(timeout 300 "$PY" "$TOOL" big "$SR_PORT" 30000000 "$SR_PID")
	inc=$(kv "$big" increase_kib)
	note "30 MB message: $big"
	result "30 MB message adds < 2 MiB RSS" \
	    "$(awk -v k="$inc" 'BEGIN { printf "+%.2f MiB", k / 1024 }')" \
	    "$( [ "$inc" -lt 2048 ] && echo PASS || echo FAIL)"
	sr_stop
}

# ---------------------------------------------------------------- 5. restart

# ready_time -> prints "seconds=S queue=Q": exec to the "ready" log line.
ready_time() {
	timeout 120 "$PY" "$TOOL" ready 60 "$SR_DIR/daemon.log" \
	    "$T/daemon.pid" -- "$SMARTRELAYD" -c "$SR_DIR/smartrelay.conf"
}

bench_restart() {
	local i out s warm=() cold=
	log "5. restart with $RESTART_N queued messages"
	sr_stop
	SR_SPOOL=$SR_DIR/spool-restart
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
	result "restart, $RESTART_N queued: ready < 3 s" "${s} s (page cache warm)" \
	    "$(awk -v v="$s" 'BEGIN { print (v < 3) ? "PASS" : "FAIL" }')"
	# Cold page cache (as after a reboot): drops the whole machine's
	# cache, so only when asked.
	if [ -n "${BENCH_COLD:-}" ]; then
		sync
		echo 3 | $sudo tee /proc/sys/vm/drop_caches >/dev/null ||
		    die "cannot drop the page cache"
		out=$(ready_time)
		cold=$(kv "$out" seconds)
		note "cold page cache: $out"
		result "restart, $RESTART_N queued, cold cache: ready < 3 s" \
		    "${cold} s (after drop_caches)" \
		    "$(awk -v v="$cold" 'BEGIN { print (v < 3) ? "PASS" : "FAIL" }')"
	fi
}

# ---------------------------------------------------------------- main

summary() {
	local r
	printf '\n%-50s | %-78s | %s\n' "target" "measured" "verdict"
	printf '%s\n' "$(printf '%.0s-' $(seq 140))"
	for r in "${RESULTS[@]}"; do
		IFS='|' read -r a b c <<<"$r"
		printf '%-50s | %-78s | %s\n' "$a" "$b" "$c"
	done
	printf '\nmachine: %s, %s cores, %s; %s; spools on %s (%s)\n' \
	    "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(nproc)" \
	    "$(systemd-detect-virt 2>/dev/null || echo "virt unknown")" \
	    "$(uname -r)" "$BENCH_BASE" "$FS_NOTE"
	printf 'disk pressure during the run (/proc/pressure/io, some avg300): %s%%\n' \
	    "$(sed -n 's/^some .*avg300=\([0-9.]*\).*/\1/p' /proc/pressure/io 2>/dev/null || echo '?')"
	printf 'postfix %s, smartrelay %s (git %s)\n' \
	    "$(postconf -dh mail_version)" \
	    "$("$SMARTRELAYD" -V | awk '{ print $2 }')" \
	    "$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

main() {
	install_deps
	command -v smtp-source >/dev/null || die "smtp-source not found"
	BENCH_BASE=${BENCH_DIR:-/var/tmp}
	T=$(mktemp -d "$BENCH_BASE/smartrelay-bench.XXXXXX")
	chmod 755 "$T"		# postfix's unprivileged daemons must traverse
	check_system_postfix
	FS_NOTE=$(df -T "$BENCH_BASE" | awk 'NR == 2 { print $2 }')
	local dev
	dev=$(df --output=source "$BENCH_BASE" | tail -1)
	if [ "$FS_NOTE" = ext4 ] && ! ls -d /proc/fs/jbd2/"${dev##*/}"-* >/dev/null 2>&1; then
		FS_NOTE="ext4 without journal"
		note "$BENCH_BASE is on ext4 without a journal: files deleted in the"
		note "last 5 minutes slow down file creation (for both servers);"
		note "leave 5 minutes between two runs of this script."
	fi
	build
	SR_PORT=$("$PY" "$TOOL" freeport)
	PF_PORT=$("$PY" "$TOOL" freeport)
	HOLE_PORT=$("$PY" "$TOOL" freeport)
	UP_PORT=$("$PY" "$TOOL" freeport)
	start_bg "$PY" "$TOOL" blackhole "$HOLE_PORT"
	SR_DIR=$T/sr
	SR_SPOOL=$SR_DIR/spool
	sr_config
	if want 1 || want 2; then
		pf_setup
	fi
	want 1 && bench_throughput
	want 2 && bench_latency
	want 3 && bench_upstream
	want 4 && bench_memory
	want 5 && bench_restart
	sr_stop
	summary
}

main "$@"
