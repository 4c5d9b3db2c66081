"""Restart with a large queue (docs/spool.md, "Recovery").

The daemon reports ready once it knows every queued message and when it is
due, from the spool's directory and the journals' inodes alone; the records
themselves are read after that, in the background or when a session needs
one.  These tests check what a user sees:

- "ready queue=N" counts every message, and comes before the log line that
  says the records were read;
- a kill -9 while the records are being read loses nothing and moves
  nothing to corrupt/;
- after the restart every message is delivered exactly once, and messages
  deferred before the restart keep their schedule (they are not sent early
  because their record had not been read yet).
"""
import os
import re
import smtplib
import subprocess
import time

from harness import SMARTRELAY, Daemon, free_port, wait_until

N_PLAIN = 300       # queued while the upstream is down
N_DEFERRED = 20     # deferred by a 451 before the restart, due in an hour


def upstream_conf(tmp, fg, port):
    """An upstream at port with fg's CA and login; retries an hour apart."""
    pw = os.path.join(str(tmp), "app-password")
    with open(pw, "w") as f:
        f.write(fg.password + "\n")
    os.chmod(pw, 0o600)
    return ('upstream = { host = "localhost"; port = %d; tls = "starttls"; '
            'ca_file = "%s"; username = "%s"; password_file = "%s"; '
            'connections = 2; timeout = 10; };\n'
            'retry = { initial = 3600; max = 3600; give_up_after = "5d"; };\n'
            % (port, fg.ca_file, fg.user, pw))


def send_many(d, tokens):
    """Sends one message per token over one SMTP connection."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        for t in tokens:
            body = ("From: <a@example.net>\r\nTo: <b@example.org>\r\n"
                    "Subject: %s\r\n\r\nbody of %s\r\n" % (t, t)).encode()
            s.sendmail("a@example.net", ["b@example.org"], body)


def token_of(data):
    return re.search(rb"\r\nSubject: (\S+)\r\n", data).group(1).decode()


def queue_ids(d):
    out = subprocess.run([SMARTRELAY, "-c", d.conf, "queue", "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return re.findall(r'"id": ?"([0-9A-F]{16})"', out.stdout)


def test_restart_ready_before_records_delivered_once(tmp_path,
                                                     fakegmail_factory):
    fg = fakegmail_factory(fail={"custom": {
        "count": N_DEFERRED, "at": "mail",
        "reply": "451 4.3.0 Injected failure. {id} - gsmtp"}})
    d = Daemon(tmp_path, upstream=upstream_conf(tmp_path, fg,
                                                fg.port_starttls))
    d.start()
    # 1. N_DEFERRED messages get a 451 at MAIL: next attempt in an hour.
    deferred = ["deferred-%d" % i for i in range(N_DEFERRED)]
    send_many(d, deferred)
    wait_until(lambda: d.log().count(" deferred to=<") >= N_DEFERRED, 30,
               "the deferrals")
    assert fg.messages == []
    d.stop()

    # 2. With the upstream down, N_PLAIN more are queued and never tried
    #    (an upstream failure writes nothing per message).
    dead = free_port()
    d.upstream = upstream_conf(tmp_path, fg, dead)
    d.write_config()
    d.start()
    plain = ["plain-%d" % i for i in range(N_PLAIN)]
    send_many(d, plain)
    total = N_DEFERRED + N_PLAIN
    assert len(d.messages()) == total
    d.stop()

    # 3. kill -9 while the records are being read: nothing lost or moved.
    d.start()
    d.kill9()
    assert len(d.messages()) == total
    assert len(queue_ids(d)) == total
    corrupt = os.path.join(d.spool, "corrupt")
    assert not os.path.isdir(corrupt) or os.listdir(corrupt) == []

    # Half of the deferred journals lose their schedule hint (as after a
    # crash, or journals from an older version): their journals, read
    # before any attempt, must still hold them back.
    msgdir = os.path.join(d.spool, "msg")
    journals = sorted(f for f in os.listdir(msgdir) if f.endswith(".state"))
    assert len(journals) == N_DEFERRED
    for j in journals[::2]:
        os.utime(os.path.join(msgdir, j), (time.time() - 60,) * 2)

    # 4. Restart against a working upstream.
    fg2 = fakegmail_factory()
    d.upstream = upstream_conf(tmp_path, fg2, fg2.port_starttls)
    d.write_config()
    offset = len(d.log())
    d.start()
    log = d.log()[offset:]
    ready = log.index("level=info ready ")
    assert "queue=%d " % total in log[ready:ready + 200]
    # The whole queue is listed at once, whatever has been read so far.
    assert len(queue_ids(d)) >= total - len(fg2.messages)
    fg2.wait_for_messages(N_PLAIN, timeout=60)
    wait_until(lambda: "recovery records_read=%d corrupt=0" % total
               in d.log()[offset:], 30, "the records to be read")
    log = d.log()[offset:]
    assert log.index("level=info ready ") < log.index("recovery records_read=")
    wait_until(lambda: len(d.messages()) == N_DEFERRED, 30,
               "the spool to hold only the deferred messages")
    time.sleep(1)      # anything sent early would show up now
    got = [token_of(m.data) for m in fg2.messages]
    assert sorted(got) == sorted(plain), "lost or duplicated: %s" % (
        sorted(set(plain) ^ set(got)) or
        [t for t in set(got) if got.count(t) > 1])
    # The deferred ones keep their schedule: still queued, not resent.
    left = [token_of(d.record(q)[1]) for q in d.messages()]
    assert sorted(left) == sorted(deferred)
    d.stop()
