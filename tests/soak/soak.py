#!/usr/bin/python3
"""The long-run fault harness: kill -9 rounds against the real daemon.

docs/reliability.md explains what this proves.  One fake Gmail
(tests/fakegmail) runs for the whole run; smartrelayd is started on one
spool again and again.  Each round has a phase:

  accepting  SMTP clients send as fast as they can; kill -9 at random
  relaying   a flush makes the backlog due; kill -9 while it is relayed
  pickup     `sendmail` while the daemon is down and while it is up;
             kill -9 while the maildrop is picked up
  reload     SIGHUP (one to three) under load; kill -9 right after
  shutdown   SIGTERM under load; kill -9 during the graceful stop

and a fault the fake upstream injects for the round, drawn at random:
4xx at MAIL, RCPT or after the final dot, 421 (EHLO, final dot), a dropped
connection in the middle of DATA or after the final dot, a stall (no
reply until upstream.timeout) at the greeting or after the final dot, or a
certificate change (wrong name, untrusted).  One recipient in ten is one
the upstream always refuses with 550 5.1.1 (a permanent per-recipient
failure, which must produce a bounce to the sender).

Every address is unique to its message (r1-TOKEN@, bad-TOKEN@, the sender
s-TOKEN@), so the upstream's copies, the queue listing (`smartrelay queue
--json`, read with the daemon dead) and the clients' acknowledgements can
be matched without reading the spool's format.  After every round:

  lost       each acknowledged recipient is either pending in the queue
             or already accepted upstream (or, when refused, the bounce to
             its sender is queued or accepted upstream);
  resent     no upstream copy arrives for a recipient that was already
             done at an earlier round's end (recorded delivered, or its
             message completed and removed);
  phantom    nothing whose final dot the client never sent appears, in
             the queue or upstream;
  truthful   a recipient the queue lists as delivered was accepted
             upstream; no good recipient is listed as failed;
  spool      nothing in corrupt/, nothing the listing cannot read;
  bounded    the daemon's RSS and open descriptors (sampled before each
             kill) stay under fixed limits.

At the end the faults stop, the queue must drain, and then every
acknowledged recipient has at least one intact upstream copy (the body
carries its own SHA-256), every refused one a bounce, and every duplicate
is explained by a kill -9 in one of three windows:
  - between the upstream's 250 and the journal write (RFC 1047: the kill
    ended the round of the first copy, the recipient was not yet recorded;
    the time from that 250 to the kill is reported);
  - in the maildrop pickup between its commit and the removal of the
    maildrop file (that round's listing shows the message in both);
  - between queueing a bounce and removing its message (that round's
    listing shows both), so the bounce is queued again.
Two copies within one daemon's life are never explained.

Run it:  tests/soak/soak.py --rounds 1000 --report soak.json
(SMARTRELAYD / SMARTRELAY name the binaries, as for the scenario tests).
tests/soak/test_soak.py runs a short version in the test suite.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scenario"))
sys.path.insert(0, os.path.join(HERE, "..", "fakegmail"))

from harness import SMARTRELAY, Daemon, SmtpRaw, wait_until  # noqa: E402
from fakegmail import FakeGmail  # noqa: E402

PHASES = ("accepting", "relaying", "pickup", "reload", "shutdown")

# name -> (FakeGmail failure, parameters) or a certificate name.
FAULTS = {
    "none": None,
    "mail_451": ("custom", {"at": "mail",
                            "reply": "451 4.3.0 Injected. {id} - gsmtp"}),
    "rcpt_451": ("custom", {"at": "rcpt",
                            "reply": "451 4.3.0 Injected. {id} - gsmtp"}),
    "dot_451": ("dot_451_4.3.0", {}),
    "dot_421": ("dot_421_4.3.0", {}),
    "ehlo_421": ("ehlo_421", {}),
    "drop_mid_data": ("drop_mid_data", {"after_bytes": 200}),
    "drop_after_dot": ("drop_after_dot", {}),
    "stall_greeting": ("hang", {"at": "greeting"}),
    "stall_after_dot": ("hang", {"at": "dot"}),
    "cert_wrongname": "wrongname",
    "cert_untrusted": "untrusted",
}

RSS_LIMIT_KB = 64 * 1024
FD_LIMIT = 200


def message(token, sender, rcpts):
    """A message whose body carries its own digest and token."""
    body = ("token %s\r\n" % token + "x" * random.randint(10, 3000) + "\r\n")
    digest = hashlib.sha256(body.encode()).hexdigest()
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nX-Digest: %s\r\n\r\n%s"
            % (sender, rcpts[0], token, digest, body)).encode()


def intact(data):
    """True when an upstream copy's body matches its X-Digest."""
    head, sep, rest = data.partition(b"X-Digest: ")
    digest, _, rest = rest.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return bool(sep) and hashlib.sha256(body).hexdigest() == digest.decode()


class Ledger:
    """What the clients submitted and what they were told."""

    def __init__(self, soak):
        self.soak = soak
        self.lock = threading.Lock()
        self.msgs = {}          # token -> dict(rcpts, bad, sender, state, via)
        self.n = 0

    def new(self, round_no, via):
        """A fresh token with its addresses; state "started"."""
        with self.lock:
            self.n += 1
            token = "r%dn%d" % (round_no, self.n)
            k = random.randint(1, 3)
            rcpts = ["r%d-%s@example.org" % (i, token) for i in range(1, k + 1)]
            bad = None
            if random.random() < 0.1:
                bad = "bad-%s@example.org" % token
                rcpts.append(bad)
            m = dict(rcpts=rcpts, bad=bad, sender="s-%s@example.net" % token,
                     state="started", via=via, round=round_no)
            self.msgs[token] = m
        if bad is not None:
            self.soak.refuse(bad)
        return token, m

    def set(self, token, state):
        with self.lock:
            self.msgs[token]["state"] = state

    def items(self):
        with self.lock:
            return [(t, dict(m)) for t, m in self.msgs.items()]


class Soak:
    """One run: the fake upstream, one spool, the rounds and the checks."""

    def __init__(self, workdir, seed, certdir=None, log=print):
        self.dir = workdir
        self.rng = random.Random(seed)
        random.seed(seed)
        self.say = log
        certdir = certdir or os.path.join(workdir, "certs")
        os.makedirs(certdir, exist_ok=True)
        self.fg = FakeGmail(certdir=certdir, idle_timeout=30).start()
        self.refused = set()
        self.refused_lock = threading.Lock()
        self.ledger = Ledger(self)
        self.d = Daemon(os.path.join(workdir), upstream=self.upstream_conf())
        self.logdir = os.path.join(workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.seen = 0                     # upstream copies checked so far
        self.copies = collections.defaultdict(list)   # addr -> [round, ...]
        self.done = set()                 # addrs done at a round's end
        self.both_places = set()          # addrs listed in queue and maildrop
        self.bounce_window = set()        # bounces queued, original not gone
        self.unrecorded_at_kill = collections.defaultdict(set)
        self.window = collections.Counter()   # cause -> duplicates
        self.violations = []
        self.stats = collections.Counter()
        self.rss = []                     # (round, kB)
        self.fds = []
        self.round_end = {}               # round -> "kill" | "term"
        self.kill_at = {}                 # round -> time.monotonic() of kill
        self.faults = collections.Counter()
        self.finished = set()             # tokens all done (not rechecked)
        self.started = time.monotonic()

    # ---- setup ----------------------------------------------------------

    def upstream_conf(self):
        pw = os.path.join(self.dir, "app-password")
        with open(pw, "w") as f:
            f.write(self.fg.password + "\n")
        os.chmod(pw, 0o600)
        return ('upstream = { host = "localhost"; port = %d; tls = "starttls";'
                ' ca_file = "%s"; username = "%s"; password_file = "%s";'
                ' connections = 2; messages_per_connection = 20;'
                ' timeout = 2; };\n'
                'retry = { initial = 1; max = 2; give_up_after = "1h"; };\n'
                % (self.fg.port_starttls, self.fg.ca_file, self.fg.user, pw))

    def refuse(self, addr):
        """Makes the upstream refuse addr with 550 5.1.1 from now on."""
        with self.refused_lock:
            self.refused.add(addr)
            self.fg.set_fail("rcpt_550_5.1.1", addrs=set(self.refused))

    def close(self):
        if self.d.proc is not None and self.d.proc.poll() is None:
            self.d.kill9()
        self.fg.stop()

    # ---- clients --------------------------------------------------------

    def smtp_client(self, round_no, stop, limit):
        """Sends up to limit messages on one connection until it dies."""
        try:
            c = SmtpRaw(self.d.port, timeout=5)
            c.reply()
            c.cmd("EHLO soak")
            for _ in range(limit):
                if stop.is_set():
                    return
                token, m = self.ledger.new(round_no, "smtp")
                c.cmd("MAIL FROM:<%s>" % m["sender"])
                for r in m["rcpts"]:
                    c.cmd("RCPT TO:<%s>" % r)
                c.cmd("DATA")
                c.send(message(token, m["sender"], m["rcpts"]) + b".\r\n")
                self.ledger.set(token, "sent")
                code, text = c.reply()
                if code == 250:
                    self.ledger.set(token, "acked")
                else:
                    self.ledger.set(token, "refused:%d" % code)
                time.sleep(random.uniform(0, 0.02))
            c.cmd("QUIT")
        except (OSError, EOFError, ValueError):
            pass

    def sendmail(self, round_no):
        """One `smartrelay sendmail` submission; acked when it exits 0."""
        token, m = self.ledger.new(round_no, "sendmail")
        self.ledger.set(token, "sent")
        r = subprocess.run([SMARTRELAY, "-c", self.d.conf, "sendmail", "-i",
                            "-f", m["sender"]] + m["rcpts"],
                           input=message(token, m["sender"], m["rcpts"]),
                           capture_output=True, timeout=30)
        self.ledger.set(token, "acked" if r.returncode == 0 else
                        "refused:%d" % r.returncode)
        if r.returncode != 0:
            self.stats["sendmail_failed"] += 1

    def sendmail_loop(self, round_no, stop, limit):
        for _ in range(limit):
            if stop.is_set():
                return
            self.sendmail(round_no)

    # ---- the daemon -----------------------------------------------------

    def start(self, round_no):
        self.d.logpath = os.path.join(self.logdir, "round-%05d.log" % round_no)
        self.d.start()

    def sample(self, round_no):
        """RSS and open descriptors of the live daemon."""
        pid = self.d.proc.pid
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss.append((round_no, int(line.split()[1])))
            self.fds.append((round_no, len(os.listdir("/proc/%d/fd" % pid))))
        except (OSError, ValueError):
            pass

    def tool(self, *args):
        return subprocess.run([SMARTRELAY, "-c", self.d.conf] + list(args),
                              capture_output=True, timeout=30)

    # ---- one round ------------------------------------------------------

    def arm(self, fault):
        f = FAULTS[fault]
        if f is None:
            return
        if isinstance(f, str):
            self.fg.set_cert(f)
            return
        name, params = f
        self.fg.set_fail(name, count=self.rng.randint(1, 3), **params)

    def disarm(self):
        for name in ("custom", "dot_451_4.3.0", "dot_421_4.3.0", "ehlo_421",
                     "drop_mid_data", "drop_after_dot", "hang"):
            self.fg.clear_fail(name)
        if self.fg.cert != "good":
            self.fg.set_cert("good")

    def traffic(self, round_no, clients, sendmails, limit=6):
        stop = threading.Event()
        ts = [threading.Thread(target=self.smtp_client,
                               args=(round_no, stop, limit))
              for _ in range(clients)]
        ts += [threading.Thread(target=self.sendmail_loop,
                                args=(round_no, stop, 2))
               for _ in range(sendmails)]
        for t in ts:
            t.start()
        return stop, ts

    def run_round(self, round_no, phase, fault):
        rng = self.rng
        self.arm(fault)
        self.faults[fault] += 1
        if phase == "pickup":
            for _ in range(rng.randint(1, 4)):
                self.sendmail(round_no)        # the daemon is down
        self.start(round_no)
        end = "kill"
        if phase == "accepting":
            stop, ts = self.traffic(round_no, 3, 0)
            time.sleep(rng.uniform(0.05, 0.5))
        elif phase == "relaying":
            self.tool("flush")
            stop, ts = self.traffic(round_no, 1, 0, limit=3)
            n = len(self.fg.sessions)
            self.fg.wait_for(lambda f: len(f._sessions) > n, 2)
            time.sleep(rng.uniform(0, 0.6))
        elif phase == "pickup":
            stop, ts = self.traffic(round_no, 0, 1)
            time.sleep(rng.uniform(0, 0.3))
        elif phase == "reload":
            stop, ts = self.traffic(round_no, 2, 0)
            for _ in range(rng.randint(1, 3)):
                time.sleep(rng.uniform(0.02, 0.2))
                self.d.proc.send_signal(signal.SIGHUP)
            time.sleep(rng.uniform(0, 0.1))
        else:
            stop, ts = self.traffic(round_no, 2, 1)
            time.sleep(rng.uniform(0.05, 0.3))
            self.sample(round_no)
            self.d.proc.send_signal(signal.SIGTERM)
            try:
                self.d.proc.wait(rng.uniform(0, 0.3))
                end = "term"
            except subprocess.TimeoutExpired:
                pass
        if self.d.proc.poll() is None:
            self.sample(round_no)
            self.kill_at[round_no] = time.monotonic()
            self.d.kill9()
        elif self.d.proc.returncode != 0:
            self.violation(round_no, "daemon exited %s (%s)" %
                           (self.d.proc.returncode, end))
        self.round_end[round_no] = end
        stop.set()
        for t in ts:
            t.join(30)
        self.disarm()
        self.check_round(round_no)

    # ---- checks ---------------------------------------------------------

    def violation(self, round_no, text):
        self.violations.append("round %d: %s" % (round_no, text))
        self.say("VIOLATION round %d: %s" % (round_no, text))

    def listing(self):
        r = self.tool("queue", "--json")
        if r.returncode != 0:
            raise AssertionError("queue --json: %s" % r.stderr.decode())
        return json.loads(r.stdout)

    def check_round(self, round_no):
        """The per-round invariants, with the daemon dead."""
        self.fg.wait_for(lambda f: all(s.ended is not None
                                       for s in f._sessions), 10)
        copies = self.fg.messages
        new = copies[self.seen:]
        self.seen = len(copies)
        for m in new:
            if not intact(m.data) and m.mail_from != "":
                self.violation(round_no, "upstream copy damaged for %s" %
                               m.rcpts)
            for a in m.rcpts:
                if a in self.done:
                    self.violation(round_no, "%s sent again after it was "
                                   "done" % a)
                self.copies[a].append((round_no, m.monotonic))
        listing = self.listing()
        if listing["unreadable"]:
            self.violation(round_no, "%d unreadable records" %
                           listing["unreadable"])
        corrupt = os.path.join(self.d.spool, "corrupt")
        if os.path.isdir(corrupt) and os.listdir(corrupt):
            self.violation(round_no, "corrupt/ holds %s" % os.listdir(corrupt))
        state = {}            # addr -> set of (queue, state)
        for msg in listing["messages"]:
            for r in msg["recipients"]:
                state.setdefault(r["address"], set()).add(
                    (msg["queue"], r["state"], msg["id"]))
        for a, s in state.items():
            if len({q for q, _, _ in s}) > 1 or len({i for _, _, i in s}) > 1:
                self.both_places.add(a)
        for token, m in self.ledger.items():
            if m["bad"] is not None and m["sender"] in state and \
                    m["bad"] in state:
                # The bounce is queued and its message not yet removed.
                self.bounce_window.add(m["sender"])
        self.check_ledger(round_no, state)

    def check_ledger(self, round_no, state):
        for token, m in self.ledger.items():
            st = m["state"]
            addrs = m["rcpts"] + [m["sender"]]
            seen = [a for a in addrs if a in state or a in self.copies]
            if st == "started" or st.startswith("refused"):
                if seen:
                    self.violation(round_no, "%s (%s) appeared: %s" %
                                   (token, st, seen))
                continue
            if st == "sent":
                continue        # committed before the reply, or not
            if token in self.finished:
                continue
            if self.check_acked(round_no, token, m, state):
                self.finished.add(token)

    def check_acked(self, round_no, token, m, state):
        """Checks one acknowledged message; True once it is all done."""
        for a in m["rcpts"]:
            here = state.get(a, set())
            if a == m["bad"]:
                bounce = m["sender"] in state or m["sender"] in self.copies
                if not here and not bounce:
                    self.violation(round_no, "%s refused but no bounce" % a)
                if a in self.copies:
                    self.violation(round_no, "refused %s accepted" % a)
                continue
            if not here and a not in self.copies:
                self.violation(round_no, "LOST %s (%s)" % (a, token))
            for q, s, _ in here:
                if s == "delivered" and a not in self.copies:
                    self.violation(round_no, "%s listed delivered, never "
                                   "accepted upstream" % a)
                if s == "failed":
                    self.violation(round_no, "%s listed failed" % a)
            if a in self.copies and not any(s == "pending"
                                            for _, s, _ in here):
                if a not in self.done:
                    self.done.add(a)
            elif a in self.copies:
                self.unrecorded_at_kill[a].add(round_no)
        s = m["sender"]
        if m["bad"] is not None and s in self.copies and s not in state:
            self.done.add(s)
        return all(a in self.done for a in m["rcpts"] if a != m["bad"]) and \
            (m["bad"] is None or m["sender"] in self.done)

    # ---- the end --------------------------------------------------------

    def drain(self, timeout=300):
        """No faults; the daemon runs until the queue is empty."""
        self.disarm()
        self.start(10 ** 6)
        self.tool("flush")

        def empty():
            self.sample(10 ** 6)
            lst = self.listing()
            return lst["messages"] == []
        wait_until(empty, timeout, lambda: "the queue to drain: %s" %
                   json.dumps(self.listing())[:2000], interval=0.5)
        self.sample(10 ** 6)
        self.d.stop()
        self.round_end[10 ** 6] = "term"
        self.check_round(10 ** 6)

    def final(self):
        """The end-of-run invariants and the figures."""
        lost, bounced, acked = [], 0, 0
        for token, m in self.ledger.items():
            if m["state"] != "acked":
                if m["state"] == "sent" and any(
                        a in self.copies for a in m["rcpts"]):
                    self.stats["committed_before_reply"] += 1
                continue
            acked += 1
            for a in m["rcpts"]:
                if a == m["bad"]:
                    if m["sender"] not in self.copies:
                        lost.append("no bounce for %s" % a)
                    else:
                        bounced += 1
                elif a not in self.copies:
                    lost.append(a)
        for a in lost:
            self.violation(-1, "LOST at the end: %s" % a)
        dups = collections.Counter()
        gaps = []           # ms from an unrecorded 250 to the kill
        for a, seen in self.copies.items():
            for (first, t1), (later, _) in zip(seen, seen[1:]):
                if a in self.both_places:
                    dups["pickup killed between its commit and the "
                         "maildrop file's removal (queued twice)"] += 1
                elif a in self.bounce_window:
                    dups["killed between queueing a bounce and removing "
                         "its message (bounce queued twice)"] += 1
                elif later == first:
                    self.violation(-1, "%s sent twice in round %d" %
                                   (a, first))
                elif self.round_end.get(first) == "kill":
                    dups["kill -9 between the upstream's 250 and the "
                         "journal write (RFC 1047 window)"] += 1
                    gaps.append(1000 * (self.kill_at[first] - t1))
                else:
                    self.violation(-1, "unexplained duplicate %s rounds %s"
                                   % (a, [r for r, _ in seen]))
        rss = max((k for _, k in self.rss), default=0)
        fds = max((n for _, n in self.fds), default=0)
        if rss > RSS_LIMIT_KB:
            self.violation(-1, "RSS %d kB over %d" % (rss, RSS_LIMIT_KB))
        if fds > FD_LIMIT:
            self.violation(-1, "%d open files over %d" % (fds, FD_LIMIT))
        window = collections.Counter()
        for m in self.fg.unacked_messages:
            if any(a in self.copies for a in m.rcpts):
                window[m.outcome] += 1
        hits = self.fg.fail_hits
        return dict(
            rounds=sum(1 for r in self.round_end if r < 10 ** 6),
            acked_messages=acked,
            submitted=len(self.ledger.msgs),
            upstream_copies=self.seen,
            recipients_delivered=sum(1 for a in self.copies
                                     if not a.startswith("s-")),
            refused_recipients_bounced=bounced,
            lost=len(lost),
            duplicates=dict(dups),
            kill_after_250_ms=dict(
                n=len(gaps), max=round(max(gaps), 1) if gaps else None,
                median=round(sorted(gaps)[len(gaps) // 2], 1)
                if gaps else None),
            after_dot_no_250_then_resent=dict(window),
            committed_before_reply=self.stats["committed_before_reply"],
            sendmail_failed=self.stats["sendmail_failed"],
            faults_armed=dict(self.faults),
            faults_fired=hits,
            rss_kb_max=rss, rss_kb_first=self.rss[0][1] if self.rss else 0,
            fds_max=fds, fds_first=self.fds[0][1] if self.fds else 0,
            seconds=round(time.monotonic() - self.started, 1),
            violations=self.violations)


def run(workdir, rounds, seed, max_seconds=None, certdir=None, log=print,
        keep_logs=False):
    """Runs the rounds, drains, and returns the figures (dict)."""
    s = Soak(workdir, seed, certdir=certdir, log=log)
    phases = collections.Counter()
    t0 = time.monotonic()
    try:
        for i in range(rounds):
            if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                break
            phase = PHASES[i % len(PHASES)]
            fault = s.rng.choice(list(FAULTS))
            s.run_round(i, phase, fault)
            phases[phase] += 1
            if not keep_logs and not s.violations and i >= 3:
                try:
                    os.unlink(os.path.join(s.logdir, "round-%05d.log" % (i - 3)))
                except FileNotFoundError:
                    pass
            if i % 50 == 0:
                log("round %d %s %s: submitted=%d upstream=%d violations=%d "
                    "t=%.0fs" % (i, phase, fault, len(s.ledger.msgs), s.seen,
                                 len(s.violations), time.monotonic() - t0))
        s.drain()
        out = s.final()
        out["rounds_by_phase"] = dict(phases)
        out["seed"] = seed
        return out
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--seed", default="smartrelay-soak")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--report", default=None, help="write the figures here")
    a = ap.parse_args()
    workdir = a.workdir or tempfile.mkdtemp(prefix="smartrelay-soak-")
    os.makedirs(workdir, exist_ok=True)
    print("workdir %s" % workdir, flush=True)
    out = run(workdir, a.rounds, a.seed, a.max_seconds,
              log=lambda s: print(s, flush=True), keep_logs=True)
    text = json.dumps(out, indent=1, sort_keys=True)
    print(text)
    if a.report:
        with open(a.report, "w") as f:
            f.write(text + "\n")
    if not out["violations"] and a.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if out["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
