"""Removals after delivery (docs/spool.md, "Removing a message").

Once the upstream has accepted every recipient of a message, the daemon
unlinks its record at once and has the directory fsync that makes this
durable done by the commit workers, off the event loop; only then does it
log the deliveries and "removed", and unlink the journal. These tests hold
that fsync back with tests/scenario/slowsync.c (an LD_PRELOAD shim that
slows directory fsyncs while a file exists) and check what a user sees
meanwhile and after a graceful stop or a kill -9: nothing listed or sent
twice, nothing lost, nothing left in the spool, every delivery logged.
"""
import os
import re
import subprocess
import time

from harness import (SENDER, SMARTRELAY, Daemon, free_port, upstream_conf,
                     wait_until)
import smtplib

SLOWSYNC = os.environ.get("SLOWSYNC", "build/tests/libslowsync.so")
HOLD_MS = 3000          # each directory fsync while held


def spool_files(d):
    return sorted(os.listdir(os.path.join(d.spool, "msg")))


def held_daemon(tmp_path, fakegmail_factory, n, hold_with="%d" % HOLD_MS):
    """A daemon with n messages queued while the upstream is down, its
    directory fsyncs slowed (or failing, with "EIO") from now on, and the
    upstream then started: returns (daemon, fake, hold file)."""
    port = free_port()
    sub = tmp_path / "d"
    sub.mkdir()
    d = Daemon(sub, upstream=upstream_conf(sub, fakegmail_factory(),
                                           port=port, initial=1, rmax=1))
    hold = str(tmp_path / "hold")
    env = dict(os.environ, LD_PRELOAD=SLOWSYNC, SLOWSYNC_FILE=hold)
    d.start(env=env)
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        for i in range(n):
            s.sendmail(SENDER, ["r%d@example.org" % i],
                       b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))
    assert len(d.messages()) == n
    with open(hold, "w") as f:
        f.write(hold_with + "\n")
    return d, fakegmail_factory(port_starttls=port), hold


def delivered_rcpts(fg):
    return sorted(m.rcpts[0] for m in fg.messages)


def test_removal_waits_for_fsync_and_stop_waits_for_removals(
        tmp_path, fakegmail_factory):
    n = 5
    d, fg, hold = held_daemon(tmp_path, fakegmail_factory, n)
    ids = d.messages()
    fg.wait_for_messages(n, timeout=30)
    # Each record is unlinked as soon as its 250 came, but the removals
    # wait for their directory fsync: the journals are still there, and
    # nothing is logged as removed yet...
    wait_until(lambda: d.messages() == [], what="records unlinked")
    assert [f for f in spool_files(d) if f.endswith(".state")] != []
    assert "removed" not in d.log()
    # ...and the messages are not listed any more.
    r = subprocess.run([SMARTRELAY, "-c", d.conf, "queue"],
                       capture_output=True, timeout=20)
    assert r.returncode == 0 and b"Mail queue is empty" in r.stdout, r
    # A message being removed cannot be deleted (its journal must outlive
    # the record's unlink).
    r = subprocess.run([SMARTRELAY, "-c", d.conf, "delete", ids[-1]],
                       capture_output=True, timeout=20)
    assert r.returncode != 0, r
    # A graceful stop with the removals pending waits for them.
    t0 = time.monotonic()
    assert d.stop(timeout=30) == 0
    print("stop took %.1f s with removals pending" % (time.monotonic() - t0))
    assert spool_files(d) == []
    log = d.log()
    for qid in ids:
        lines = [ln for ln in log.splitlines() if "id=%s " % qid in ln]
        kinds = [k for ln in lines for k in ("delivered", "removed")
                 if re.search(r"\b%s\b" % k, ln)]
        assert kinds == ["delivered", "removed"], lines
    assert delivered_rcpts(fg) == sorted("r%d@example.org" % i
                                         for i in range(n))
    # A restart finds nothing to send again.
    os.unlink(hold)
    d.start()
    assert re.search(r"ready .*queue=0 ", d.log())
    time.sleep(1.5)
    assert len(fg.messages) == n
    assert spool_files(d) == []
    d.stop()


def test_kill9_with_removals_pending_sends_nothing_twice(
        tmp_path, fakegmail_factory):
    n = 6
    d, fg, hold = held_daemon(tmp_path, fakegmail_factory, n)
    fg.wait_for_messages(n, timeout=30)
    wait_until(lambda: d.messages() == [], what="records unlinked")
    assert [f for f in spool_files(d) if f.endswith(".state")] != []
    d.kill9()
    # The unlinks happened (only a power loss could undo them, and then
    # the journals, unlinked after the fsync only, would still be there).
    os.unlink(hold)
    d.start()
    assert re.search(r"ready .*queue=0 ", d.log())
    time.sleep(1.5)
    assert delivered_rcpts(fg) == sorted("r%d@example.org" % i
                                         for i in range(n))
    # The journals left behind are orphans, removed at start.
    assert spool_files(d) == []
    d.stop()


def test_deliveries_without_a_hold_are_logged_and_leave_nothing(relay):
    d, fg = relay(debug=False)
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        for i in range(20):
            s.sendmail(SENDER, ["r%d@example.org" % i, "s%d@example.org" % i],
                       b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))
    fg.wait_for_messages(20, timeout=30)
    d.wait_log_re(r" removed", count=20, timeout=30)
    wait_until(lambda: spool_files(d) == [], what="spool empty")
    log = d.log()
    assert len(re.findall(r" delivered to=<[rs]\d+@example\.org>", log)) == 40
    assert len(re.findall(r" removed", log)) == 20
    assert len(fg.messages) == 20


def test_removal_whose_fsync_fails_journals_the_outcomes(
        tmp_path, fakegmail_factory):
    # The fsync of msg/ fails (EIO) after the records were unlinked: the
    # deliveries are journaled instead and the journals kept, so that a
    # record a power loss brought back would not be sent again.
    n = 3
    d, fg, hold = held_daemon(tmp_path, fakegmail_factory, n,
                              hold_with="EIO")
    fg.wait_for_messages(n, timeout=30)
    d.wait_log_re(r"removal not durable, journal kept", count=n)
    d.wait_log_re(r" delivered to=<r\d@example\.org>", count=n)
    assert d.messages() == []
    journals = [f for f in spool_files(d) if f.endswith(".state")]
    assert len(journals) == n
    for j in journals:
        with open(os.path.join(d.spool, "msg", j)) as f:
            assert " rcpt 0 delivered " in f.read()
    os.unlink(hold)
    assert d.stop() == 0
    d.start()
    assert re.search(r"ready .*queue=0 ", d.log())
    time.sleep(1.5)
    assert len(fg.messages) == n
    # Orphans once the records are gone for good: removed at start.
    assert spool_files(d) == []
    d.stop()
