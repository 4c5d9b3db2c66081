"""The smartrelay tool: sendmail, mailq, queue, flush, delete, status.

Real programs submit through a `sendmail` symlink to the built binary:
bsd-mailx, a cron/PHP-style `sendmail -t -i` pipe, SMTP dialogues with
`sendmail -bs`.  Messages go through the maildrop into the daemon's queue,
with the daemon running or stopped and started later.  The permission
tests (root only) install a setgid copy of the tool and submit as nobody.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib

import pytest

from harness import (NOBODY, SMARTRELAY, SMARTRELAYD, Daemon, SmtpRaw,
                     setgid_spool, wait_until)



def run(args, input=b"", env=None, timeout=30):
    return subprocess.run(args, input=input, capture_output=True,
                          timeout=timeout, env=env)


def tool(d, *args, **kw):
    return run([SMARTRELAY, "-c", d.conf] + list(args), **kw)


def sendmail(d, *args, input=b"", prog=None):
    """sendmail through a symlink named sendmail, config with -C."""
    return run([prog or sendmail_link(d), "-C", d.conf] + list(args),
               input=input)


def sendmail_link(d):
    bindir = os.path.join(d.dir, "bin")
    os.makedirs(bindir, exist_ok=True)
    for name in ("sendmail", "mailq"):
        link = os.path.join(bindir, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(SMARTRELAY), link)
    return os.path.join(bindir, "sendmail")


def maildrop(d):
    md = os.path.join(d.spool, "maildrop")
    if not os.path.isdir(md):
        return []
    return sorted(f for f in os.listdir(md) if len(f) == 16)


def wait_queued(d, n=1):
    wait_until(lambda: len(d.messages()) >= n, 10,
               lambda: "%d queued:\n%s" % (n, d.log()))
    wait_until(lambda: maildrop(d) == [], 10,
               lambda: "an empty maildrop:\n%s" % d.log())
    # The pickup logs "queued" just after it empties the maildrop.
    wait_until(lambda: d.log().count(" maildrop=") >= n, 10,
               lambda: "%d queued in the log:\n%s" % (n, d.log()))
    return d.messages()


def one_line_error(r):
    err = r.stderr.decode()
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


def queue_json(d):
    r = tool(d, "queue", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def relay(tmp_path):
    """A daemon without upstream, not started (overrides conftest's relay)."""
    d = Daemon(tmp_path, extra='rewrite = { local_domain = "example.org";'
               ' aliases = { root = "admin@example.org"; }; };')
    yield d
    d.stop()


# ---- submission ----------------------------------------------------------


def test_sendmail_running_daemon(relay):
    relay.start()
    msg = b"Subject: hello\nTo: bob@example.net\n\nline one\nline two\n"
    r = sendmail(relay, "-f", "alice@example.com", "-F", "Alice Doe",
                 "bob@example.net", input=msg)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    (qid,) = wait_queued(relay)
    env, body = relay.record(qid)
    assert env["from"] == "<alice@example.com>"
    assert env["rcpt"] == ["<bob@example.net>"]
    head, _, text = body.partition(b"\r\n\r\n")
    assert text == b"line one\r\nline two\r\n"
    assert b"\nFrom: \"Alice Doe\" <alice@example.com>\r\n" in head
    assert b"\nDate: " in head and b"\nMessage-ID: <" in head
    assert head.startswith(b"Received: by relay.test (smartrelay, from "
                           b"userid %d)" % os.getuid())
    assert b"\n" not in body.replace(b"\r\n", b"")
    # The record is visible before pickup's log line is written.
    relay.wait_log("queued from=<alice@example.com>")


def test_sendmail_default_sender_and_local_names(relay):
    relay.start()
    r = sendmail(relay, "-fjoe", "root", "carol", input=b"Subject: x\n\nhi\n")
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(relay)
    env, body = relay.record(qid)
    assert env["from"] == "<joe@example.org>"
    assert env["rcpt"] == ["<admin@example.org>", "<carol@example.org>"]
    assert b"\r\nFrom: <joe@example.org>\r\n" in body or \
        b"\r\nFrom: \"" in body
    # Without -f: the invoking user's login name.
    r = sendmail(relay, "carol", input=b"Subject: y\n\nhi\n")
    assert r.returncode == 0, r.stderr
    wait_queued(relay, 2)
    env, _ = relay.record(relay.messages()[1])
    import pwd
    assert env["from"] == "<%s@example.org>" % pwd.getpwuid(os.getuid())[0]


def test_sendmail_t_takes_recipients_and_strips_bcc(relay):
    relay.start()
    msg = (b"From: Ops <ops@example.com>\n"
           b"To: Alice <alice@example.net>,\n"
           b"  \"Doe, Bob\" <bob@example.net> (Bob)\n"
           b"Cc: carol@example.net, root\n"
           b"Bcc: secret@example.net,\n"
           b"\tother-secret@example.net\n"
           b"Subject: weekly\n"
           b"\n"
           b"Bcc: this line is body, not a header\n")
    r = sendmail(relay, "-t", "-i", input=msg)
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(relay)
    env, body = relay.record(qid)
    assert sorted(env["rcpt"]) == sorted([
        "<alice@example.net>", "<bob@example.net>", "<carol@example.net>",
        "<admin@example.org>", "<secret@example.net>",
        "<other-secret@example.net>"])
    head, _, text = body.partition(b"\r\n\r\n")
    assert b"secret" not in head
    assert b"Bcc" not in head
    assert b"From: Ops <ops@example.com>" in head
    assert b"\r\nFrom: \"" not in head      # no second From:
    assert text == b"Bcc: this line is body, not a header\r\n"


def test_sendmail_t_without_recipients(relay):
    relay.start()
    r = sendmail(relay, "-t", input=b"Subject: none\n\nbody\n")
    assert r.returncode == 65
    assert "no recipient" in one_line_error(r)
    assert relay.messages() == [] and maildrop(relay) == []


def test_lone_dot_ends_input_without_i(relay):
    relay.start()
    msg = b"Subject: dots\n\nbefore\n..two dots\n.\nafter\n"
    r = sendmail(relay, "bob@example.net", input=msg)
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(relay)
    _, body = relay.record(qid)
    text = body.partition(b"\r\n\r\n")[2]
    # sendmail input is not dot-stuffed: "..two dots" stays as it is.
    assert text == b"before\r\n..two dots\r\n"


@pytest.mark.parametrize("flag", ["-i", "-oi"])
def test_lone_dot_is_content_with_i(relay, flag):
    relay.start()
    msg = b"Subject: dots\r\n\r\nbefore\r\n.\r\nafter\r\n.\n"
    r = sendmail(relay, flag, "bob@example.net", input=msg)
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(relay)
    _, body = relay.record(qid)
    text = body.partition(b"\r\n\r\n")[2]
    assert text == b"before\r\n.\r\nafter\r\n.\r\n"


def test_bare_lf_and_no_final_newline(relay):
    relay.start()
    r = sendmail(relay, "-i", "bob@example.net",
                 input=b"Subject: lf\n\na\nb\rc\nlast")
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(relay)
    _, body = relay.record(qid)
    assert body.partition(b"\r\n\r\n")[2] == b"a\r\nb\r\nc\r\nlast\r\n"


def test_bad_recipient_exits_65_with_one_line(relay):
    relay.start()
    for rcpt in ["bad address@@example.net", "<unterminated@example.net"]:
        r = sendmail(relay, rcpt, input=b"Subject: x\n\nbody\n")
        assert r.returncode == 65, r
        assert "recipient" in one_line_error(r)
    r = sendmail(relay, input=b"Subject: x\n\nbody\n")
    assert r.returncode == 65
    one_line_error(r)
    r = sendmail(relay, "-f", "a b@c", "x@example.net", input=b"x\n")
    assert r.returncode == 65
    assert "sender" in one_line_error(r)
    r = sendmail(relay, "-bz", "x@example.net", input=b"x\n")
    assert r.returncode == 64
    one_line_error(r)
    assert relay.messages() == [] and maildrop(relay) == []


def test_bare_name_without_local_domain(make_daemon):
    d = make_daemon()
    d.start()
    r = sendmail(d, "root", input=b"Subject: x\n\nbody\n")
    assert r.returncode == 65
    assert "needs a domain" in one_line_error(r)


def test_nul_byte_and_size_limit(make_daemon):
    d = make_daemon(extra='limits = { message_size = 2048; };')
    d.start()
    r = sendmail(d, "x@example.net", input=b"Subject: x\n\na\0b\n")
    assert r.returncode == 65
    assert "NUL" in one_line_error(r)
    r = sendmail(d, "x@example.net", input=b"Subject: x\n\n" + b"y" * 5000)
    assert r.returncode == 65
    assert "larger" in one_line_error(r)
    assert d.messages() == [] and maildrop(d) == []


def test_legacy_flags_are_accepted(relay):
    relay.start()
    r = sendmail(relay, "-oem", "-odb", "-B8BITMIME", "-N", "never",
                 "-O", "DeliveryMode=b", "-R", "hdrs", "-V", "envid", "-U",
                 "-ti", "--", input=b"To: bob@example.net\n\nhi\n")
    assert r.returncode == 0, r.stderr
    wait_queued(relay)


def test_unwritable_maildrop_exits_75(relay):
    relay.start()
    relay.stop()
    tmp = os.path.join(relay.spool, "maildrop", "tmp")
    shutil.rmtree(tmp)
    with open(tmp, "w") as f:         # not a directory any more
        f.write("x")
    r = sendmail(relay, "bob@example.net", input=b"Subject: x\n\nbody\n")
    assert r.returncode == 75
    assert "cannot store" in one_line_error(r)
    r = run([SMARTRELAY, "sendmail", "-C", relay.conf + ".missing",
             "bob@example.net"], input=b"x\n")
    assert r.returncode == 78
    one_line_error(r)


# ---- the daemon stopped, then started ------------------------------------


def test_stopped_daemon_then_started_delivers_exactly_once(relay):
    relay.start()
    relay.stop()
    for i in range(3):
        r = sendmail(relay, "-v", "bob@example.net",
                     input=b"Subject: while down %d\n\nbody\n" % i)
        assert r.returncode == 0, r.stderr
        assert b"not running" in r.stderr
    assert relay.messages() == []
    assert len(maildrop(relay)) == 3
    listing = queue_json(relay)["messages"]
    assert [m["queue"] for m in listing] == ["maildrop"] * 3
    r = tool(relay, "queue")
    assert r.stdout.count(b"(waiting in the maildrop for smartrelayd)") == 3
    relay.start()
    ids = relay.messages()
    assert len(ids) == 3 and maildrop(relay) == []    # before "ready"
    assert relay.log().count("uid=%d maildrop=" % os.getuid()) == 3
    relay.restart()
    assert relay.messages() == ids
    subjects = sorted(relay.record(i)[1].split(b"Subject: ")[1][:12]
                      for i in ids)
    assert subjects == [b"while down 0", b"while down 1", b"while down 2"]


def test_mailx_through_sendmail_link(relay):
    if shutil.which("mailx") is None:
        pytest.skip("bsd-mailx is not installed (tests/install-deps.sh)")
    relay.start()
    link = sendmail_link(relay)
    rc = os.path.join(relay.dir, "mailrc")
    with open(rc, "w") as f:
        f.write("set sendmail=%s\n" % link)
    env = dict(os.environ, MAILRC=rc, SMARTRELAY_CONFIG=relay.conf)
    r = run(["mailx", "-s", "disk almost full", "-c", "carol@example.net",
             "bob@example.net"], input=b"/ is 93% full\n", env=env)
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(relay)
    env_, body = relay.record(qid)
    assert sorted(env_["rcpt"]) == ["<bob@example.net>",
                                    "<carol@example.net>"]
    assert b"Subject: disk almost full\r\n" in body
    assert body.endswith(b"\r\n\r\n/ is 93% full\r\n")


def test_cron_and_php_style_pipe_with_daemon_stopped(relay):
    """`sendmail -t -i` found on PATH, the way cron and PHP's mail() run it."""
    relay.start()
    relay.stop()
    bindir = os.path.dirname(sendmail_link(relay))
    env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"],
               SMARTRELAY_CONFIG=relay.conf)
    script = ("printf 'To: ops@example.net\\nSubject: cron job\\n"
              "X-Cron-Env: <SHELL=/bin/sh>\\n\\n.\\nbackup ok\\n' | "
              "sendmail -t -i")
    r = subprocess.run(["/bin/sh", "-c", script], env=env,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert relay.messages() == [] and len(maildrop(relay)) == 1
    r = subprocess.run(["/bin/sh", "-c", "mailq"], env=env,
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and b" " * 41 + b"ops@example.net\n" in r.stdout
    relay.start()
    (qid,) = relay.messages()
    _, body = relay.record(qid)
    assert body.endswith(b"\r\n\r\n.\r\nbackup ok\r\n")


# ---- sendmail -bs ---------------------------------------------------------


def bs(d, script):
    r = sendmail(d, "-bs", input=script)
    replies = [ln for ln in r.stdout.split(b"\r\n") if ln]
    return r, replies


def test_bs_dialogue(relay):
    relay.start()
    script = (b"EHLO client.test\r\n"
              b"MAIL FROM:<alice@example.com>\r\n"
              b"RCPT TO:<bob@example.net>\r\n"
              b"RCPT TO:<root>\r\n"
              b"DATA\r\n"
              b"Subject: over -bs\r\n\r\n..stuffed\r\nbare\nlf\r\n.\r\n"
              b"MAIL FROM:<>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n"
              b"Subject: second\r\n\r\nx\r\n.\r\n"
              b"BOGUS\r\n"
              b"QUIT\r\n")
    r, rep = bs(relay, script)
    assert r.returncode == 0, r.stderr
    assert rep[0].startswith(b"220 relay.test ESMTP")
    codes = [ln[:4] for ln in rep]
    assert b"250-" in codes and b"250 " in codes
    queued = [ln for ln in rep if b"queued as" in ln]
    assert len(queued) == 2 and all(q.startswith(b"250 2.0.0")
                                    for q in queued)
    assert any(ln.startswith(b"500 5.5.1") for ln in rep)
    assert rep[-1].startswith(b"221")
    ids = wait_queued(relay, 2)
    env, body = relay.record(ids[0])
    assert env["rcpt"] == ["<bob@example.net>", "<admin@example.org>"]
    assert body.endswith(b"\r\n\r\n.stuffed\r\nbare\r\nlf\r\n")
    env, _ = relay.record(ids[1])
    assert env["from"] == "<>"


def test_bs_errors(make_daemon):
    d = make_daemon(extra='limits = { recipients = 2; };')
    d.start()
    r, rep = bs(d, b"MAIL FROM:<a@b.c>\r\n"
                b"HELO x\r\n"
                b"RCPT TO:<a@b.c>\r\n"
                b"MAIL FROM:<a@b.c> SIZE=999999999999\r\n"
                b"MAIL FROM:<a@b.c>\r\n"
                b"RCPT TO:<root>\r\n"
                b"RCPT TO:<x@b.c>\r\nRCPT TO:<y@b.c>\r\nRCPT TO:<z@b.c>\r\n"
                b"DATA\r\nSubject: nul\r\n\r\na\0b\r\n.\r\n"
                b"QUIT\r\n")
    assert r.returncode == 0
    codes = [ln[:9] for ln in rep]
    assert codes == [b"220 relay", b"503 5.5.1", b"250 relay", b"503 5.5.1",
                     b"552 5.3.4", b"250 2.1.0", b"550 5.1.1", b"250 2.1.5",
                     b"250 2.1.5", b"452 4.5.3", b"354 End d", b"554 5.6.0",
                     b"221 2.0.0"]
    assert d.messages() == [] and maildrop(d) == []


# ---- mailq ----------------------------------------------------------------


def journal(d, qid, *payloads):
    """Appends state journal lines as docs/spool.md describes them."""
    with open(os.path.join(d.spool, "msg", qid + ".state"), "ab") as f:
        for p in payloads:
            p = p.encode()
            f.write(b"%08X %s\n" % (zlib.crc32(p), p))


def test_mailq_shows_each_state(relay):
    relay.start()
    r = tool(relay, "queue")
    assert r.returncode == 0 and r.stdout == b"Mail queue is empty\n"
    assert queue_json(relay)["messages"] == []
    r = sendmail(relay, "-f", "alice@example.com", "a@example.net",
                 "b@example.net", "c@example.net", input=b"Subject: s\n\nx\n")
    assert r.returncode == 0
    (qid,) = wait_queued(relay)
    relay.stop()
    now = int(time.time())
    journal(relay, qid,
            "rcpt 0 delivered %d 250 2.0.0 OK 1700000042 x1si - gsmtp" % now,
            "rcpt 1 failed %d 550-5.1.1 The email account does not exist"
            % now,
            "sched 3 %d 421 4.7.0 Try again later" % (now + 600))
    r = sendmail(relay, "d@example.net", input=b"Subject: t\n\ny\n")
    assert r.returncode == 0
    data = queue_json(relay)
    assert data["version"] == 1 and data["spool"] == relay.spool
    m, dropped = data["messages"]
    assert m["id"] == qid and m["queue"] == "active"
    assert m["sender"] == "alice@example.com"
    assert m["attempts"] == 3 and m["next_attempt"] == now + 600
    assert m["last_reply"] == "421 4.7.0 Try again later"
    assert m["size"] > 0 and abs(m["arrival"] - now) < 60
    states = [(x["address"], x["state"]) for x in m["recipients"]]
    assert states == [("a@example.net", "delivered"),
                      ("b@example.net", "failed"),
                      ("c@example.net", "pending")]
    assert m["recipients"][1]["reply"].startswith("550-5.1.1")
    assert m["recipients"][1]["updated"] == now
    assert m["recipients"][2]["reply"] is None
    assert dropped["queue"] == "maildrop"
    assert dropped["recipients"][0]["state"] == "pending"
    # Postfix's format (the daemon is stopped: read from the spool):
    # pending recipients only, the last reason in parentheses.
    r = tool(relay, "queue")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["-Queue", "ID-", "--Size--", "----Arrival",
                                "Time----", "-Sender/Recipient-------"]
    assert re.match(r"%s  +\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d  "
                    r"alice@example.com$" % qid, lines[1]), lines
    reason = "421 4.7.0 Try again later"
    assert lines[2] == " " * (76 - len(reason)) + "(%s)" % reason
    assert lines[3] == " " * 41 + "c@example.net"
    assert lines[4] == ""
    assert lines[5].startswith(dropped["id"] + " ")
    assert lines[6].strip() == "(waiting in the maildrop for smartrelayd)"
    assert lines[7] == " " * 41 + "d@example.net"
    assert lines[-1] == "-- 0 Kbytes in 2 Requests."
    assert len([x for x in lines if re.match("^[0-9A-Z]", x)]) == 2
    # mailq and sendmail -bp are the same listing.
    link = sendmail_link(relay)
    mq = run([os.path.join(os.path.dirname(link), "mailq"), "-C",
              relay.conf])
    bp = sendmail(relay, "-bp")
    assert mq.returncode == 0 and bp.returncode == 0
    assert mq.stdout == r.stdout == bp.stdout


def test_json_escapes_strings(relay):
    relay.start()
    r = sendmail(relay, "-f", "<\"we ird\\\"q\"@example.com>",
                 "bob@example.net", input=b"x\n")
    assert r.returncode == 0, r.stderr
    wait_queued(relay)
    (m,) = queue_json(relay)["messages"]
    assert m["sender"] == "\"we ird\\\"q\"@example.com"


# ---- flush, delete, status -------------------------------------------------


def test_flush_and_delete_with_daemon_running(relay):
    relay.start()
    for i in range(2):
        assert sendmail(relay, "bob@example.net",
                        input=b"Subject: %d\n\nx\n" % i).returncode == 0
    a, b = wait_queued(relay, 2)
    r = tool(relay, "flush")
    assert r.returncode == 0, r.stderr
    relay.wait_log("flush all by=%d" % os.getuid())
    r = tool(relay, "flush", a)
    assert r.returncode == 0 and r.stdout == b"%s: flushed\n" % a.encode()
    relay.wait_log("id=%s flush due=" % a)
    r = sendmail(relay, "-q")
    assert r.returncode == 0
    r = tool(relay, "delete", a)
    assert r.returncode == 0 and r.stdout == b"%s: deleted\n" % a.encode()
    relay.wait_log("id=%s deleted by=%d" % (a, os.getuid()))
    assert relay.messages() == [b]
    assert not os.path.exists(os.path.join(relay.spool, "msg", a + ".state"))
    assert [m["id"] for m in queue_json(relay)["messages"]] == [b]
    r = tool(relay, "delete", a)
    assert r.returncode == 67
    assert "no such message" in one_line_error(r)
    r = tool(relay, "flush", "0000000000000000")
    assert r.returncode == 67
    r = tool(relay, "delete", "not-an-id")
    assert r.returncode == 65
    one_line_error(r)
    r = tool(relay, "delete")
    assert r.returncode == 64


def test_delete_and_flush_with_daemon_stopped(relay):
    relay.start()
    assert sendmail(relay, "bob@example.net", input=b"x\n").returncode == 0
    (qid,) = wait_queued(relay)
    relay.stop()
    r = tool(relay, "flush")
    assert r.returncode == 69
    assert "not running" in one_line_error(r)
    assert sendmail(relay, "bob@example.net", input=b"y\n").returncode == 0
    (dropped,) = maildrop(relay)
    r = tool(relay, "delete", qid, dropped)
    assert r.returncode == 0, r.stderr
    assert relay.messages() == [] and maildrop(relay) == []
    assert tool(relay, "queue").stdout == b"Mail queue is empty\n"


def test_status(relay):
    relay.start()
    assert sendmail(relay, "bob@example.net", input=b"x\n").returncode == 0
    wait_queued(relay)
    r = tool(relay, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("daemon:        running (pid %d" % relay.proc.pid)
    assert "queue:         1 message" in out and "upstream:" in out
    st = json.loads(tool(relay, "status", "--json").stdout)
    assert st["daemon"]["running"] is True
    assert st["daemon"]["pid"] == relay.proc.pid
    assert st["queue"]["messages"] == 1
    assert st["queue"]["oldest_arrival"] <= time.time()
    assert st["upstream"]["state"] in ("ok", "retrying", "paused-credentials",
                                       "paused-quota", "unknown")
    relay.stop()
    r = tool(relay, "status")
    assert r.returncode == 3
    assert b"daemon:        not running" in r.stdout
    st = json.loads(tool(relay, "status", "--json").stdout)
    assert st["daemon"] == {"running": False}
    assert st["queue"]["messages"] == 1 and st["upstream"]["state"] is None


def test_second_daemon_on_the_same_spool_refuses(relay, tmp_path):
    relay.start()
    other = subprocess.run([os.environ.get("SMARTRELAYD",
                                           "build/daemon/smartrelayd"),
                            "-c", relay.conf], capture_output=True,
                           timeout=30)
    assert other.returncode != 0
    assert b"another smartrelayd" in other.stderr
    assert tool(relay, "status").returncode == 0


# ---- permissions: any user submits, only root and the owner administer ----


@pytest.fixture
def setgid_relay():
    with setgid_spool("srcli") as (top, bindir):
        d = Daemon(top)
        os.chmod(d.conf, 0o644)
        d.start()
        d.bindir = bindir
        yield d
        d.stop()


def as_nobody(args, input=b""):
    return run(NOBODY + args, input=input)


def test_nobody_submits_through_the_setgid_tool(setgid_relay):
    d = setgid_relay
    sm = os.path.join(d.bindir, "sendmail")
    st = os.stat(os.path.join(d.spool, "maildrop"))
    assert st.st_mode & 0o5777 == 0o1730     # setgid kept if set
    r = as_nobody([sm, "-C", d.conf, "bob@example.net"],
                  input=b"Subject: from nobody\n\nhi\n")
    assert r.returncode == 0, r.stderr
    (qid,) = wait_queued(d)
    env, body = d.record(qid)
    assert env["from"] == "<nobody@relay.test>"
    assert body.startswith(b"Received: by relay.test (smartrelay, from "
                           b"userid 65534)")
    d.wait_log("uid=65534 maildrop=")  # logged after the rename
    # mailx as nobody, through the same link (config from the environment).
    if shutil.which("mailx"):
        rc = os.path.join(d.dir, "mailrc")
        with open(rc, "w") as f:
            f.write("set sendmail=%s\n" % sm)
        os.chmod(rc, 0o644)
        r = subprocess.run(NOBODY + ["env", "MAILRC=" + rc,
                                     "SMARTRELAY_CONFIG=" + d.conf,
                                     "mailx", "-s", "nobody's mailx",
                                     "carol@example.net"],
                           input=b"text\n", capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        wait_queued(d, 2)
    # status works for anyone; flush, delete and listing do not.
    tool_ = os.path.join(d.bindir, "smartrelay")
    r = as_nobody([tool_, "-c", d.conf, "status"])
    assert r.returncode == 0 and b"running" in r.stdout
    for args in (["flush"], ["flush", qid], ["delete", qid]):
        r = as_nobody([tool_, "-c", d.conf] + args)
        assert r.returncode == 77, (args, r)
        assert "only root" in one_line_error(r)
    # Anyone may list the queue (through the daemon), never the contents.
    r = as_nobody([tool_, "-c", d.conf, "queue"])
    assert r.returncode == 0, r.stderr
    assert qid.encode() in r.stdout and b"bob@example.net" in r.stdout
    assert b"from nobody" not in r.stdout
    assert qid in d.messages()
    assert "refused command=DELETE uid=65534" in d.log()


def test_nobody_without_the_group_cannot_store(setgid_relay):
    d = setgid_relay
    # The plain binary (not setgid): the spool is closed to nobody.
    r = as_nobody([SMARTRELAY, "sendmail", "-C", d.conf, "bob@example.net"],
                  input=b"x\n")
    assert r.returncode == 75
    assert "cannot store" in one_line_error(r)
    # A configuration nobody controls makes the setgid tool drop its group.
    own = tempfile.mkdtemp(prefix="srcli-nobody.")
    try:
        os.chown(own, 65534, -1)
        conf = os.path.join(own, "my.conf")
        shutil.copy(d.conf, conf)
        os.chown(conf, 65534, -1)
        os.chmod(own, 0o755)
        r = as_nobody([os.path.join(d.bindir, "sendmail"), "-C", conf,
                       "bob@example.net"], input=b"x\n")
        assert r.returncode == 75
        one_line_error(r)
    finally:
        shutil.rmtree(own)
    assert d.messages() == [] and maildrop(d) == []


def test_symlinked_config_loads_the_checked_file(setgid_relay):
    """-C through a link: the file that was checked is the one loaded.

    A race on the link itself cannot be tested reliably; a relative spool
    shows which path was loaded (relative paths follow the loaded file).
    """
    d = setgid_relay
    top = os.path.dirname(d.spool)
    rel = os.path.join(top, "rel.conf")
    with open(d.conf) as f:
        text = f.read().replace('spool = "%s";' % d.spool, 'spool = "spool";')
    assert 'spool = "spool";' in text
    with open(rel, "w") as f:
        f.write(text)
    os.chmod(rel, 0o644)
    own = tempfile.mkdtemp(prefix="srcli-nobody.")
    try:
        os.chmod(own, 0o755)
        os.chown(own, 65534, -1)
        link = os.path.join(own, "link.conf")
        os.symlink(rel, link)
        r = as_nobody([os.path.join(d.bindir, "sendmail"), "-C", link,
                       "bob@example.net"], input=b"Subject: linked\n\nhi\n")
        assert r.returncode == 0, r.stderr
        assert not os.path.exists(os.path.join(own, "spool"))
    finally:
        shutil.rmtree(own)
    (qid,) = wait_queued(d)
    assert b"Subject: linked" in d.record(qid)[1]


def test_root_sendmail_before_first_start_does_not_break_the_daemon():
    """The daemon runs as the spool's owner; root submits before its start."""
    if os.getuid() != 0:
        pytest.skip("needs root: the daemon runs as nobody")
    top = tempfile.mkdtemp(prefix="srcli.")
    try:
        os.chmod(top, 0o755)
        d = Daemon(top)
        os.chmod(d.conf, 0o644)
        os.mkdir(d.spool, 0o700)         # as tmpfiles.d/StateDirectory= do
        os.chown(d.spool, 65534, 65534)
        r = sendmail(d, "bob@example.net", input=b"Subject: early\n\nhi\n")
        # Either it is kept and delivered, or refused clearly (ours).
        if r.returncode != 0:
            assert r.returncode == 75, r
            assert "the spool is not set up: start smartrelayd once" in \
                one_line_error(r)

        def as_spool_owner():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        # A copy nobody can reach, wherever the build tree is.
        exe = os.path.join(top, "smartrelayd")
        shutil.copy(SMARTRELAYD, exe)
        d.start(preexec=as_spool_owner, exe=exe)
        try:
            early = r.returncode == 0
            st = os.stat(os.path.join(d.spool, "maildrop"))
            assert st.st_uid == 65534
            r = sendmail(d, "bob@example.net",
                         input=b"Subject: later\n\nhi\n")
            assert r.returncode == 0, r.stderr
            qids = wait_queued(d, 1 + early)
            assert len(qids) == 1 + early
            assert b"Subject: later" in d.record(qids[-1])[1]
        finally:
            d.stop()
    finally:
        shutil.rmtree(top)


def test_mailq_and_status_before_the_first_start(tmp_path):
    """Just after a package install the spool holds only the maildrop
    (tmpfiles.d makes it; the daemon makes the rest at its first start):
    mail that sendmail stored there is listed and counted."""
    d = Daemon(str(tmp_path))
    md = os.path.join(d.spool, "maildrop")
    os.makedirs(os.path.join(md, "tmp"))
    r = sendmail(d, "bob@example.net", input=b"Subject: early\n\nhi\n")
    assert r.returncode == 0, r.stderr
    (mdid,) = maildrop(d)
    r = run([sendmail_link(d), "-C", d.conf, "-bp"])
    assert r.returncode == 0, r.stderr
    assert mdid.encode() in r.stdout and b"bob@example.net" in r.stdout
    r = tool(d, "status")
    assert r.returncode == 3, r          # the daemon is not running
    assert b"(and 1 in the maildrop)" in r.stdout, r.stdout


def test_from_line_keeps_its_crlf_with_long_name_and_address(relay):
    relay.start()
    sender = ("a" * 60 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 50 +
              ".com")
    for name in ['"' * 300, "\\" * 300, "x" * 300]:
        r = sendmail(relay, "-f", sender, "-F", name, "bob@example.net",
                     input=b"Subject: long\n\nthe body\n")
        assert r.returncode == 0, r.stderr
    ids = wait_queued(relay, 3)
    for qid in ids:
        _, body = relay.record(qid)
        head, _, text = body.partition(b"\r\n\r\n")
        assert text == b"the body\r\n"
        (line,) = [ln for ln in head.split(b"\r\n")
                   if ln.startswith(b"From:")]
        assert line.endswith(b"\" <%s>" % sender.encode())
        assert b"\n" not in body.replace(b"\r\n", b"")


def test_refused_maildrop_record_is_moved_to_corrupt(relay):
    relay.start()
    relay.stop()
    r = sendmail(relay, "bob@example.net",
                 input=b"Subject: big\n\n" + b"y" * 5000 + b"\n")
    assert r.returncode == 0, r.stderr
    (mdid,) = maildrop(relay)
    relay.extra += "\nlimits = { message_size = 1024; };"
    relay.write_config()
    relay.start()
    assert maildrop(relay) == [] and relay.messages() == []
    corrupt = os.path.join(relay.spool, "corrupt")
    assert os.listdir(corrupt) == ["maildrop-" + mdid]
    with open(os.path.join(corrupt, "maildrop-" + mdid), "rb") as f:
        assert b"y" * 5000 in f.read()
    log = relay.log()
    assert ('maildrop=%s uid=%d rejected reason="message too big" '
            'moved=%s/corrupt/maildrop-%s' % (mdid, os.getuid(),
                                             relay.spool, mdid)) in log


def test_pickup_of_many_records_lets_sessions_run(relay):
    """50 records: each picked up once, an SMTP session answered meanwhile."""
    n = 50
    relay.start()
    relay.stop()
    body = b"Subject: %d\n\n" + (b"z" * 999 + b"\n") * 200
    for i in range(n):
        r = sendmail(relay, "bob@example.net", input=body % i)
        assert r.returncode == 0, r.stderr
    hold = os.path.join(relay.spool, "hold")
    os.mkdir(hold)
    ids = maildrop(relay)
    assert len(ids) == n
    md = os.path.join(relay.spool, "maildrop")
    for i in ids:
        os.rename(os.path.join(md, i), os.path.join(hold, i))
    relay.start()
    s = SmtpRaw(relay.port)
    try:
        assert s.reply()[0] == 220
        assert s.cmd("EHLO client.test")[0] == 250
        for i in ids:
            os.rename(os.path.join(hold, i), os.path.join(md, i))
        r = sendmail(relay, "bob@example.net", input=body % n)  # kicks
        assert r.returncode == 0, r.stderr
        during = 0

        def picked_up():
            nonlocal during
            if not maildrop(relay):
                return True
            assert s.cmd("NOOP")[0] == 250
            if 0 < len(maildrop(relay)) < n:
                during += 1
            return False
        wait_until(picked_up, 60, lambda: "pickup:\n" + relay.log(),
                   interval=0)
        # Picked up in one callback, the maildrop could be seen part done
        # at most once (then NOOP waits for the end of the run).
        assert during >= 3, (during, relay.log())
    finally:
        s.close()
    qids = relay.messages()
    assert len(qids) == n + 1
    subjects = sorted(int(relay.record(q)[1].split(b"Subject: ")[1]
                          .split(b"\r\n")[0]) for q in qids)
    assert subjects == list(range(n + 1))
