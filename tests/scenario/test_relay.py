"""The relay to the smart host (docs/relay.md) against the fake Gmail.

The real smartrelayd takes mail on loopback and relays it to
tests/fakegmail: verified TLS (STARTTLS and implicit), AUTH, one session
for many messages, every failure reply Gmail sends with the action of
docs/relay.md's table, backoff timings, give-up and delivery status notifications,
and what survives a restart. Retry values are seconds so that the whole
file runs in a few minutes.
"""
import math
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

import harness
from harness import (SENDER, SMARTRELAY, Daemon, can_unshare, dsn_of,
                     free_port, local_non_loopback_address, upstream_conf,
                     wait_until)

def send(d, rcpts, body=None, sender=SENDER, subject="test"):
    """Submits one message to the daemon; returns its body as sent."""
    if body is None:
        body = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nhello\r\n"
                % (sender, rcpts[0], subject)).encode()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail(sender, rcpts, body)
    return body


def send_backlog(d, n, prefix="r"):
    """Submits n one-recipient messages, prefix0@example.org and on, over
    one SMTP session."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        for i in range(n):
            s.sendmail(SENDER, ["%s%d@example.org" % (prefix, i)],
                       b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))


def wait_log(d, pattern, timeout=15, count=1):
    """Waits until the regex matches count times in the daemon's log."""
    return d.wait_log_re(pattern, timeout, count)


def no_mail_or_auth(fg):
    for s in fg.sessions:
        assert s.auth == [], s
        assert not any(c.upper().startswith("MAIL") for c in s.commands), s


# ---- delivery ----------------------------------------------------------

def test_starttls_delivery_exact_bytes(relay):
    # DATA (no CHUNKING offered): the dot-stuffing on the wire.
    d, fg = relay(fake={"no_ext": ["CHUNKING"]})
    content = (b"From: <alice@example.net>\r\nTo: <bob@example.org>\r\n"
               b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
               b"Message-ID: <t1@example.net>\r\n"
               b"Subject: caf\xc3\xa9\r\n\r\nline one\r\n.dot line\r\n"
               b"..two dots\r\n.\r\nd\xc3\xa9j\xc3\xa0 vu\r\n")
    send(d, ["bob@example.org"], content)
    msg = fg.wait_for_messages(1)[0]
    # Our Received: header first, then the client's bytes unchanged.
    assert msg.data.startswith(b"Received: from ")
    assert msg.data.endswith(content)
    # Dot-stuffing redone on the wire, a lone "." too (RFC 5321 4.5.2).
    assert (b"\r\n..dot line\r\n...two dots\r\n..\r\nd\xc3\xa9j\xc3\xa0 vu\r\n"
            in msg.raw_data)
    assert msg.mail_from == SENDER and msg.rcpts == ["bob@example.org"]
    assert msg.mail_params.get("BODY") == "8BITMIME"
    assert msg.mail_params.get("SIZE") == str(len(msg.data))
    sess = fg.sessions[msg.session]
    assert sess.sni == "localhost"
    assert sess.tls_version in ("TLSv1.2", "TLSv1.3")
    assert [a.success and a.tls_active for a in sess.auth] == [True]
    assert sess.auth[0].mechanism == "PLAIN"
    # Discarded after STARTTLS: EHLO twice, STARTTLS before AUTH.
    cmds = [c.split()[0].upper() for c in sess.commands]
    assert cmds[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    log = wait_log(d, r"delivered to=<bob@example\.org> relay=localhost"
                   r"\[127\.0\.0\.1\]:%d delay=\d+s reply=\"250 2\.0\.0 OK"
                   % fg.port_starttls)
    assert log
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert fg.password not in d.log()
    assert "AUTH PLAIN ***" in d.log()


def test_implicit_tls_delivery(relay):
    d, fg = relay(tls="implicit")
    send(d, ["bob@example.org"])
    msg = fg.wait_for_messages(1)[0]
    sess = fg.sessions[msg.session]
    assert sess.port == "implicit" and sess.sni == "localhost"
    assert "STARTTLS" not in [c.upper() for c in sess.commands]
    assert [a.tls_active for a in sess.auth] == [True]
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_pipelining_and_envelope_rewrite(relay):
    d, fg = relay(extra='rewrite = { envelope_from = "test.user@gmail.com"; };')
    send(d, ["a@example.org", "b@example.org", "c@example.org"])
    msg = fg.wait_for_messages(1)[0]
    assert msg.mail_from == "test.user@gmail.com"
    assert msg.rcpts == ["a@example.org", "b@example.org", "c@example.org"]
    sess = fg.sessions[msg.session]
    assert sess.pipelined >= 4   # MAIL, 3 RCPT and DATA in one write
    for p in ("NOTIFY", "RET", "ENVID", "ORCPT"):
        assert not any(p in c for c in sess.commands)


def test_new_mail_goes_out_at_once_over_the_open_session(relay):
    d, fg = relay()
    for i in range(3):
        t0 = time.monotonic()
        send(d, ["r%d@example.org" % i])
        fg.wait_for_messages(i + 1)
        assert time.monotonic() - t0 < 1.0     # no polling delay
    assert fg.session_count == 1 and fg.auth_count == 1
    # Idle: QUIT after the short hold, not kept open forever.
    s = fg.wait_for_sessions(1, ended=True, timeout=10)[0]
    assert s.close_reason == "quit"


# ---- TLS refusals -------------------------------------------------------

@pytest.mark.parametrize("fake,reason", [
    ({"cert": "wrongname"}, "certificate verify failed"),
    ({"cert": "untrusted"}, "certificate verify failed"),
    ({"offer_starttls": False}, "does not offer STARTTLS"),
])
def test_unverified_tls_keeps_mail_queued(relay, fake, reason):
    d, fg = relay(fake=fake)
    send(d, ["bob@example.org"])
    wait_log(d, r"upstream unavailable failures=1 .*%s" % reason)
    fg.wait_for_sessions(1, ended=True)
    no_mail_or_auth(fg)
    assert fg.messages == []
    assert len(d.messages()) == 1
    # The upstream's failure, not the message's: no attempt recorded.
    assert "deferred to=" not in d.log()
    assert state_files(d) == 0


def test_implicit_tls_wrong_name(relay):
    d, fg = relay(tls="implicit", fake={"cert": "wrongname"})
    send(d, ["bob@example.org"])
    wait_log(d, r"upstream unavailable .*certificate verify failed")
    no_mail_or_auth(fg)
    assert len(d.messages()) == 1


# ---- the trust store (made for the first session, rebuilt at reload) ----

@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_unusable_ca_file_stops_the_start(
        tmp_path, fakegmail_factory, content):
    ca = str(tmp_path / "ca.pem")
    if content is not None:
        with open(ca, "w") as f:
            f.write(content)
    d = Daemon(tmp_path, upstream=upstream_conf(tmp_path,
                                                fakegmail_factory(), ca=ca))
    d.start(wait=False)
    assert d.proc.wait(10) == 78
    assert "cannot load upstream.ca_file %s" % ca in d.log()
    assert "level=info ready" not in d.log()


def test_ca_file_that_does_not_parse_keeps_mail_queued(relay, tmp_path):
    # A local configuration error: like a pause, nothing bounces, even
    # past give_up_after; the log and status say what to fix.
    ca = str(tmp_path / "broken.pem")
    with open(ca, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                "-----END CERTIFICATE-----\n")
    d, fg = relay(ca=ca, initial=1, rmax=1, give_up="2s")
    send(d, ["bob@example.org"])
    wait_log(d, r"level=err tls error=\"cannot load upstream\.ca_file"
                r"[^\"]*fix upstream\.ca_file")
    wait_log(d, r"upstream paused failures=1 .*cannot load upstream")
    wait_log(d, r"upstream paused failures=5 ", timeout=20)   # ~4 s
    no_mail_or_auth(fg)
    assert "expired" not in d.log() and "bounced" not in d.log()
    assert "notification" not in d.log()
    assert len(d.messages()) == 1
    st = subprocess.run([SMARTRELAY, "-c", d.conf, "status"],
                        capture_output=True, text=True, timeout=10)
    assert "fix upstream.ca_file" in st.stdout, st.stdout + st.stderr
    assert d.proc.poll() is None


def reload_with(d, fg, ca, **kw):
    """Points the daemon's upstream.ca_file at ca and sends SIGHUP."""
    start = len(d.log())
    d.upstream = upstream_conf(d.dir, fg, ca=ca, **kw)
    d.write_config()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reloaded config=", start_at=start)
    return d.log()[start:]


@pytest.mark.parametrize("relayed_before", [False, True])
def test_reload_with_a_bad_ca_file_keeps_the_previous_one(relay,
                                                          relayed_before):
    d, fg = relay()
    if relayed_before:      # a TLS context exists
        send(d, ["first@example.org"])
        fg.wait_for_messages(1, timeout=20)
    log = reload_with(d, fg, os.path.join(d.dir, "missing.pem"))
    assert re.search(r"level=err reload tls error=\"cannot load "
                     r"upstream\.ca_file [^\"]*missing\.pem: No such file",
                     log), log
    assert "kept=previous TLS settings" in log
    send(d, ["bob@example.org"])
    msgs = fg.wait_for_messages(1 + relayed_before, timeout=20)
    assert msgs[-1].rcpts == ["bob@example.org"]


def test_reload_with_the_right_ca_file_drains_the_queue(
        relay, fakegmail_factory):
    fg = fakegmail_factory()
    d, _ = relay(fg=fg, initial=1, rmax=1, ca=fg.certs["untrusted_ca"])
    send(d, ["bob@example.org"])
    wait_log(d, r"upstream unavailable failures=1 .*certificate verify "
                r"failed")
    assert fg.messages == []
    reload_with(d, fg, fg.ca_file, initial=1, rmax=1)
    fg.wait_for_messages(1, timeout=20)
    wait_until(lambda: d.messages() == [], what="spool empty")


# ---- tls = "none": loopback only, and never taken up by a live session ----

def line_server(host, script):
    """A raw upstream on host: (port, record, thread); serves one
    connection with script(conn, readline, record)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(20)
    record = {"lines": []}

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        finally:
            srv.close()
        with c:
            c.settimeout(20)
            f = c.makefile("rb")

            def readline():
                line = f.readline()
                record["lines"].append(line)
                return line
            try:
                script(c, readline, record)
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv.getsockname()[1], record, t


def plain_upstream(tmp, host, port, tls):
    pw = os.path.join(str(tmp), "pw")
    with open(pw, "w") as f:
        f.write("abcdefghijklmnop\n")
    os.chmod(pw, 0o600)
    return ('upstream = { host = "%s"; port = %d; tls = "%s"; %s'
            'username = "u@example.net"; password_file = "%s"; '
            'timeout = 30; };\n'
            'retry = { initial = 60; max = 60; give_up_after = "1h"; };\n'
            % (host, port, tls, 'insecure_plaintext = true; '
               if tls == "none" else "", pw))


def test_reload_to_tls_none_does_not_change_a_live_session(tmp_path):
    # The session began with STARTTLS and waits for its EHLO reply when a
    # reload switches to tls = "none": it must still do STARTTLS, never
    # AUTH in clear text.
    ehlo_seen, go = threading.Event(), threading.Event()

    def script(c, readline, record):
        c.sendall(b"220 slow.test ESMTP\r\n")
        readline()
        ehlo_seen.set()
        go.wait(20)
        c.sendall(b"250-slow.test\r\n250-AUTH PLAIN LOGIN\r\n"
                  b"250 STARTTLS\r\n")
        readline()
    port, rec, t = line_server("127.0.0.1", script)
    d = Daemon(tmp_path, upstream=plain_upstream(tmp_path, "127.0.0.1",
                                                 port, "starttls"))
    try:
        d.start()
        send(d, ["bob@example.org"])
        assert ehlo_seen.wait(20)
        start = len(d.log())
        d.upstream = plain_upstream(tmp_path, "127.0.0.1", port, "none")
        d.write_config()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded config=", start_at=start)
        go.set()
        t.join(20)
        assert rec["lines"][0].startswith(b"EHLO ")
        assert rec["lines"][1] == b"STARTTLS\r\n", rec["lines"]
    finally:
        d.stop()


@pytest.mark.skipif(local_non_loopback_address() is None or
                    not can_unshare(), reason="needs a non-loopback address "
                    "and unshare -rm (to give the daemon its own /etc/hosts)")
def test_tls_none_connects_to_loopback_only(tmp_path, monkeypatch):
    # tls = "none" with host "localhost": when /etc/hosts does not say
    # 127.0.0.1, whatever the name resolves to must not get the password
    # in clear text.  The daemon runs with its own /etc/hosts that maps
    # localhost to this host's non-loopback address, where a raw server
    # listens.
    ip = local_non_loopback_address()

    def script(c, readline, record):
        c.sendall(b"220 remote.test ESMTP\r\n")
        readline()
        c.sendall(b"250-remote.test\r\n250 AUTH PLAIN LOGIN\r\n")
        readline()
    port, rec, t = line_server("0.0.0.0", script)
    hosts = tmp_path / "hosts"
    hosts.write_text("%s localhost\n" % ip)
    wrapper = tmp_path / "smartrelayd"
    wrapper.write_text('#!/bin/sh\nexec unshare -rm sh -c \'mount --bind '
                       '"$0" /etc/hosts && exec "$@"\' %s %s "$@"\n'
                       % (hosts, os.path.abspath(harness.SMARTRELAYD)))
    wrapper.chmod(0o755)
    monkeypatch.setattr(harness, "SMARTRELAYD", str(wrapper))
    d = Daemon(tmp_path, upstream=plain_upstream(tmp_path, "localhost",
                                                 port, "none"))
    try:
        d.start()
        send(d, ["bob@example.org"])
        wait_log(d, r"upstream unavailable failures=1 ")
        t.join(1)
        assert rec["lines"] == []      # never connected
        assert re.search(r"upstream unavailable failures=1 .*refusing "
                         r"localhost\[%s\]:%d: tls = \S*none\S* allows "
                         r"only a loopback address" % (re.escape(ip), port),
                         d.log())
    finally:
        d.stop()


# ---- one session for many messages ---------------------------------------

def test_backlog_of_200_uses_few_sessions(
        relay, fakegmail_factory):
    port = free_port()
    # The upstream is down while the backlog builds up.
    d, _ = relay(fg=fakegmail_factory(), port=port, initial=1, rmax=2,
                 conns=2, mpc=50, debug=False)
    send_backlog(d, 200)
    assert len(d.messages()) == 200
    fg = fakegmail_factory(port_starttls=port)
    t0 = time.monotonic()
    fg.wait_for_messages(200, timeout=60)
    took = time.monotonic() - t0
    wait_until(lambda: d.messages() == [], what="spool empty")
    sessions = [s for s in fg.sessions if s.transactions]
    print("200 messages: %d sessions, %d AUTHs, %.1fs after the upstream "
          "came up" % (fg.session_count, fg.auth_count, took))
    assert fg.session_count <= math.ceil(200 / 50)
    assert fg.auth_count <= math.ceil(200 / 50)
    # Never more than upstream.connections at once (the fake notes a
    # session's end a moment after its 221: allow 0.2 s for that).
    peak = max(len([o for o in fg.sessions if o.started <= s.started and
                    (o.ended is None or o.ended - 0.2 > s.started)])
               for s in fg.sessions)
    assert peak <= 2
    assert all(len([a for a in s.auth]) == 1 for s in sessions)
    assert sorted(m.rcpts[0] for m in fg.messages) == \
        sorted("r%d@example.org" % i for i in range(200))


def state_files(d):
    """How many messages have a state journal (msg/ID.state)."""
    return len([f for f in os.listdir(os.path.join(d.spool, "msg"))
                if f.endswith(".state")])


def greeting_delays(d, seconds):
    """Connects to the daemon again and again: the delays to each 220."""
    delays = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", d.port), timeout=20) as c:
            assert c.recv(512).startswith(b"220")
            delays.append(time.monotonic() - t0)
            c.sendall(b"QUIT\r\n")
        time.sleep(0.01)
    return delays


def test_failed_probes_do_not_stall_a_big_queue(
        relay, fakegmail_factory):
    # An upstream failure is not the messages' fault: nothing is written
    # per message, so a failed probe costs the same with 2000 queued
    # messages as with one (a write + fdatasync each stalled the loop
    # for ~1 s per probe, for a minute at 100k).
    port = free_port()      # nothing listens there: connection refused
    fg = fakegmail_factory()
    d, _ = relay(fg=fg, port=port, initial=3600, rmax=3600, debug=False)
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        for i in range(2000):
            s.sendmail(SENDER, ["r%d@example.org" % i],
                       b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))
    assert len(d.messages()) == 2000
    journals = state_files(d)
    # Restart with the 2000 due at once and a probe about every second.
    d.stop()
    d.upstream = upstream_conf(d.dir, fg, port=port, initial=1, rmax=1)
    d.write_config()
    start = len(d.log())
    d.start()
    delays = greeting_delays(d, 6)
    probes = len(re.findall(r"upstream unavailable failures=",
                            d.log()[start:]))
    print("%d failed probes, %d connections: worst 220 after %.0f ms, "
          "journals %d -> %d" % (probes, len(delays), max(delays) * 1000,
                                 journals, state_files(d)))
    assert probes >= 4
    assert max(delays) < 0.2, sorted(delays)[-5:]
    assert state_files(d) == journals
    assert len(d.messages()) == 2000


# ---- the failure table ----------------------------------------------------

@pytest.mark.parametrize("fail,advice", [
    ("auth_535", "App Password"),
    ("auth_534_5.7.9", "2-Step Verification"),
    ("auth_534_5.7.14", "web browser"),
    ("auth_454", "too many login attempts"),
])
def test_auth_rejections_pause_without_bounce(relay, fail, advice):
    d, fg = relay(fake={"fail": {fail: {"count": 2}}}, initial=1, rmax=2)
    send(d, ["bob@example.org"])
    wait_log(d, r"upstream state=paused-credentials")
    wait_log(d, r"upstream login refused: .*fix: .*%s" % advice)
    assert "bounced" not in d.log()
    # Retried with backoff; delivered once Google accepts the login.
    msg = fg.wait_for_messages(1, timeout=20)[0]
    assert msg.mail_from == SENDER     # not a notification
    assert fg.auth_count == 3           # one AUTH per session
    for s in fg.sessions:
        assert len(s.auth) <= 1
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert len(fg.messages) == 1


def test_daily_limit_pauses_queue(relay):
    d, fg = relay(fake={"fail": {"mail_550_5.4.5": {"count": 1}}},
                  initial=1, rmax=2)
    send(d, ["bob@example.org"])
    wait_log(d, r"upstream state=paused-quota")
    assert "bounced" not in d.log()
    msg = fg.wait_for_messages(1, timeout=20)[0]
    assert msg.mail_from == SENDER
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert len(fg.messages) == 1


def test_rcpt_5xx_fails_one_recipient_with_dsn(relay):
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1":
                                 {"addrs": ["nobody@example.org"]}}})
    send(d, ["bob@example.org", "nobody@example.org"])
    dsns = dsn_of(fg, 1)
    good = [m for m in fg.messages if m.mail_from == SENDER]
    assert [m.rcpts for m in good] == [["bob@example.org"]]
    assert len(dsns) == 1 and dsns[0].rcpts == [SENDER]
    text = dsns[0].data.decode()
    assert "multipart/report; report-type=delivery-status" in text
    assert "Final-Recipient: rfc822; nobody@example.org" in text
    assert "Status: 5.1.1" in text
    assert "Action: failed" in text
    assert "bob@example.org\r\nAction" not in text
    assert "Subject: test" in text      # the original headers
    wait_log(d, r"bounced to=<nobody@example\.org>")
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_552_after_dot_fails_message_with_dsn(relay):
    d, fg = relay(fake={"fail": {"dot_552_size": {"count": 1}}})
    send(d, ["bob@example.org", "carol@example.org"])
    dsns = dsn_of(fg, 1)
    text = dsns[0].data.decode()
    assert "Status: 5.3.4" in text
    assert text.count("Final-Recipient:") == 2
    assert [m for m in fg.messages if m.mail_from == SENDER] == []
    assert len(fg.unacked_messages) == 1   # tried once, not retried
    wait_until(lambda: d.messages() == [], what="spool empty")


@pytest.mark.parametrize("fail", ["dot_421_4.3.0", "dot_451_4.3.0",
                                  "ehlo_421"])
def test_temporary_failures_retry_and_deliver(relay, fail):
    d, fg = relay(fake={"fail": {fail: {"count": 1}}}, initial=1, rmax=2)
    send(d, ["bob@example.org"])
    msg = fg.wait_for_messages(1, timeout=20)[0]
    assert msg.mail_from == SENDER
    if fail.startswith("dot"):
        assert "deferred to=<bob@example.org> attempt=1" in d.log()
        assert "RFC 1047" in d.log()
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert "bounced" not in d.log()


def test_backoff_follows_config(relay):
    # Every session gets 421 at EHLO: the upstream is retried after
    # initial, 2*initial, 4*initial..., capped at max, +-10% jitter.
    d, fg = relay(fake={"fail": ["ehlo_421"]}, initial=1, rmax=4,
                  debug=False)
    send(d, ["bob@example.org"])
    fg.wait_for(lambda f: len(f.connection_times) >= 5, timeout=25)
    t = fg.connection_times
    gaps = [b - a for a, b in zip(t, t[1:])][:4]
    print("backoff gaps: " + " ".join("%.2f" % g for g in gaps))
    for gap, want in zip(gaps, [1, 2, 4, 4]):
        assert want * 0.88 <= gap <= want * 1.12 + 0.25, (gaps, want)
    wait_log(d, r"upstream unavailable failures=4 ")
    assert "deferred to=" not in d.log() and "bounced" not in d.log()


def test_give_up_sends_one_dsn_and_none_for_null_sender(
        relay, fakegmail_factory):
    port = free_port()
    d, _ = relay(fg=fakegmail_factory(), port=port, initial=1, rmax=1,
                 give_up="3s")
    send(d, ["bob@example.org"])
    send(d, ["carol@example.org"], sender="")
    wait_log(d, r"expired to=<bob@example\.org>")
    wait_log(d, r"expired to=<carol@example\.org>")
    wait_log(d, r"notification id=\w+ to=<alice@example\.net>")
    fg = fakegmail_factory(port_starttls=port)
    dsns = dsn_of(fg, 1)
    time.sleep(2)
    assert len(fg.messages) == 1 and len(dsn_of(fg, 1)) == 1
    assert dsns[0].rcpts == [SENDER]
    text = dsns[0].data.decode()
    assert "Final-Recipient: rfc822; bob@example.org" in text
    assert "Status: 5.4.7" in text
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert d.log().count("notification id=") == 1


def test_fixing_the_password_file_drains_the_queue(relay):
    d, fg = relay(password="wrongwrongwrongw", initial=1, rmax=2)
    for i in range(3):
        send(d, ["r%d@example.org" % i])
    wait_log(d, r"upstream state=paused-credentials")
    assert fg.messages == [] and len(d.messages()) == 3
    pw = os.path.join(d.dir, "app-password")
    with open(pw, "w") as f:
        f.write(fg.password + "\n")
    fg.wait_for_messages(3, timeout=20)
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert d.proc.poll() is None       # no restart
    assert "bounced" not in d.log()
    assert fg.auth_count == len(fg.sessions)


def test_connection_dropped_mid_data_loses_nothing(relay):
    # DATA (no CHUNKING): the fake drops the connection inside DATA.
    d, fg = relay(fake={"no_ext": ["CHUNKING"],
                        "fail": {"drop_mid_data": {"count": 1,
                                                   "after_bytes": 50}}},
                  initial=1, rmax=2)
    big = b"".join(b"%06d %s\r\n" % (i, b"x" * 90) for i in range(20000))
    send(d, ["bob@example.org"], b"Subject: big\r\n\r\n" + big)
    msg = fg.wait_for_messages(1, timeout=20)[0]
    assert msg.data.endswith(b"\r\n\r\n" + big)
    assert re.search(r"deferred to=<bob@example\.org> attempt=1 .*"
                     r"lost connection in state (body|dot)", d.log())
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_connection_dropped_after_dot_is_logged(relay):
    d, fg = relay(fake={"fail": {"drop_after_dot": {"count": 1}}},
                  initial=1, rmax=2)
    send(d, ["bob@example.org"])
    fg.wait_for_messages(1, timeout=20)
    assert "connection lost after the final dot" in d.log()
    assert len(fg.unacked_messages) == 1    # the accepted duplicate


def test_restart_does_not_resend_to_delivered(relay):
    # The second RCPT of the first transaction gets 452 4.5.3: deferred.
    d, fg = relay(fake={"fail": {"rcpt_452_too_many": {"count": 1,
                                                       "limit": 1}}},
                  initial=4, rmax=8)
    send(d, ["a@example.org", "b@example.org"])
    fg.wait_for_messages(1)
    wait_log(d, r"deferred to=<b@example\.org> attempt=1")
    d.stop()
    d.start()
    msgs = fg.wait_for_messages(2, timeout=20)
    assert [m.rcpts for m in msgs] == [["a@example.org"], ["b@example.org"]]
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_sigterm_with_idle_session_quits(relay):
    d, fg = relay()
    send(d, ["bob@example.org"])
    fg.wait_for_messages(1)
    assert d.stop() == 0
    s = fg.wait_for_sessions(1, ended=True)[0]
    assert s.close_reason == "quit"


# ---- a minimal upstream: AUTH LOGIN only, no PIPELINING, plain text -----

class LoginOnlyServer:
    """A tiny SMTP server on loopback offering only AUTH LOGIN and no
    PIPELINING (the fake Gmail always offers PLAIN and PIPELINING). It runs
    in plain text, reached with tls = "none" + insecure_plaintext, which
    the config allows on loopback only."""

    def __init__(self, reject=()):
        import socket
        import threading
        self.reject = set(reject)
        self.lines, self.data = [], []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    self.session(conn.makefile("rwb"))
        except OSError:
            pass

    def session(self, f):
        def reply(text):
            f.write(text.encode() + b"\r\n")
            f.flush()

        def line():
            raw = f.readline()
            text = raw.decode().rstrip("\r\n")
            self.lines.append(text)
            return text

        reply("220 login.test ESMTP")
        while True:
            cmd = line()
            verb = cmd.split(" ")[0].upper()
            if verb == "EHLO":
                reply("250-login.test\r\n250-8BITMIME\r\n250 AUTH LOGIN")
            elif verb == "AUTH":
                reply("334 VXNlcm5hbWU6")
                line()
                reply("334 UGFzc3dvcmQ6")
                line()
                reply("235 2.7.0 Accepted")
            elif verb == "MAIL":
                reply("250 2.1.0 OK")
            elif verb == "RCPT":
                addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                reply("550 5.1.1 no such user" if addr in self.reject
                      else "250 2.1.5 OK")
            elif verb == "DATA":
                reply("354 go ahead")
                buf = b""
                while not buf.endswith(b"\r\n.\r\n"):
                    buf += f.readline()
                self.data.append(buf)
                reply("250 2.0.0 OK queued")
            elif verb == "QUIT" or not cmd:
                reply("221 2.0.0 bye")
                return
            else:
                reply("250 2.0.0 OK")

    def close(self):
        self.sock.close()


def test_auth_login_without_pipelining(tmp_path):
    import base64
    srv = LoginOnlyServer(reject={"nobody@example.org"})
    pw = tmp_path / "pw"
    pw.write_text("secret pass word\n")
    os.chmod(pw, 0o600)
    d = Daemon(tmp_path, debug=True, upstream=(
        'upstream = { host = "127.0.0.1"; port = %d; tls = "none"; '
        'insecure_plaintext = true; username = "u@example.org"; '
        'password_file = "%s"; };' % (srv.port, pw)))
    d.start()
    try:
        send(d, ["bob@example.org", "nobody@example.org"])
        wait_until(lambda: srv.data and d.messages() == [],
                   what="delivery")
        cmds = srv.lines
        assert cmds[1] == "AUTH LOGIN"
        assert base64.b64decode(cmds[2]) == b"u@example.org"
        assert base64.b64decode(cmds[3]) == b"secretpassword"
        # One command at a time, then the notice in the same session.
        assert [c.split(" ")[0] for c in cmds[4:8]] == \
            ["MAIL", "RCPT", "RCPT", "DATA"]
        wait_until(lambda: len(srv.data) == 2, what="the notification")
        assert srv.lines[8] == "MAIL FROM:<>"
        assert srv.lines[9] == "RCPT TO:<%s>" % SENDER
        # No SIZE offered: none sent.
        assert cmds[4] == "MAIL FROM:<%s>" % SENDER
        log = d.log()
        assert "secretpassword" not in log and cmds[3] not in log
        assert "upstream > ***" in log
        wait_log(d, r"bounced to=<nobody@example\.org>")
    finally:
        d.stop()
        srv.close()


def test_smtputf8_message_needs_smtputf8_upstream(relay):
    d, fg = relay(fake={"no_ext": {"SMTPUTF8"}})
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail(SENDER, ["j\u00f6rg@example.org"],
                   "Subject: x\r\n\r\nhi\r\n".encode(),
                   mail_options=["SMTPUTF8"])
    dsns = dsn_of(fg, 1)
    assert dsns[0].rcpts == [SENDER]
    assert "Status: 5.6.7" in dsns[0].data.decode("utf-8", "replace")
    assert [m for m in fg.messages if m.mail_from == SENDER] == []
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_sigterm_mid_transaction_loses_nothing(relay):
    # The upstream stops answering after DATA: SIGTERM ends the
    # transaction (no dot was sent, so no duplicate is possible), the
    # message stays queued and goes out after a restart.
    d, fg = relay(fake={"no_ext": ["CHUNKING"],
                        "fail": {"hang": {"count": 1, "at": "data"}}})
    send(d, ["bob@example.org"])
    fg.wait_for(lambda f: f.fail_hits.get("hang") == 1)
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 5
    assert len(d.messages()) == 1
    assert "deferred to=<bob@example.org> attempt=1" in d.log()
    d.start()
    fg.wait_for_messages(1, timeout=20)
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_record_removed_behind_its_back_is_forgotten(
        relay, fakegmail_factory):
    port = free_port()
    d, _ = relay(fg=fakegmail_factory(), port=port, initial=1, rmax=1)
    send(d, ["a@example.org"])
    send(d, ["b@example.org"])
    wait_log(d, r"upstream unavailable failures=2 ")   # both waiting
    gone = d.messages()[0]
    for name in (gone, gone + ".state"):
        try:
            os.unlink(os.path.join(d.spool, "msg", name))
        except FileNotFoundError:
            pass
    fg = fakegmail_factory(port_starttls=port)
    msgs = fg.wait_for_messages(1, timeout=20)
    wait_log(d, r"id=%s record gone from the spool, forgotten" % gone)
    assert [m.rcpts for m in msgs] == [["b@example.org"]]
    assert d.proc.poll() is None


# ---- CHUNKING (RFC 3030): the whole transaction in one write ------------

def test_bdat_bytes_exact_one_write(relay):
    """Gmail offers CHUNKING: MAIL, RCPT, "BDAT n LAST" and the body go in
    one write, the body as stored (no dot-stuffing, BDAT has no
    terminator), n counting exactly the bytes sent."""
    d, fg = relay()
    content = (b"From: <alice@example.net>\r\nTo: <bob@example.org>\r\n"
               b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
               b"Message-ID: <b1@example.net>\r\n"
               b"Subject: dots\r\n\r\n.dot line\r\n..two dots\r\n.\r\n"
               b"last\r\n")
    send(d, ["bob@example.org"], content)
    msg = fg.wait_for_messages(1)[0]
    assert msg.via == "BDAT"
    assert msg.raw_data.endswith(content) and msg.data == msg.raw_data
    sess = fg.sessions[-1]
    i = next(k for k, c in enumerate(sess.commands)
             if c.upper().startswith("MAIL"))
    assert [c.split()[0].upper() for c in sess.commands[i:i + 3]] == [
        "MAIL", "RCPT", "BDAT"]
    assert sess.commands[i + 2] == "BDAT %d LAST" % msg.size
    # Sent without waiting for the MAIL and RCPT replies.
    assert sess.pipelined >= 2
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_bdat_refused_rcpt_fails_only_that_recipient(relay):
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1": {
        "addrs": ["nobody@example.org"]}}})
    send(d, ["bob@example.org", "nobody@example.org", "carol@example.org"])
    msg = fg.wait_for_messages(1)[0]
    assert msg.via == "BDAT"
    assert msg.rcpts == ["bob@example.org", "carol@example.org"]
    wait_log(d, r"bounced to=<nobody@example\.org> .*550")
    wait_until(lambda: d.messages() == [], what="spool empty")
    log = d.log()
    assert log.count("delivered to=<bob@example.org>") == 1
    assert log.count("delivered to=<carol@example.org>") == 1
    assert "delivered to=<nobody@example.org>" not in log


def test_bdat_failure_after_data(relay):
    """The chunk's reply decides the message: a 5xx fails it (only it), a
    4xx defers it (logged as a possible duplicate) and the retry
    delivers."""
    d, fg = relay(fake={"fail": {"dot_552_size": {"count": 1}}},
                  initial=1, rmax=2)
    send(d, ["bob@example.org"], subject="first")
    wait_log(d, r"bounced to=<bob@example\.org> .*552")
    send(d, ["bob@example.org"], subject="second")
    msgs = fg.wait_for_messages(2, timeout=20)   # 2nd, and the notice
    subjects = [re.search(rb"Subject: (.*)\r\n", m.data).group(1)
                for m in msgs]
    assert b"second" in subjects and b"first" not in subjects
    fg.set_fail("dot_451_4.3.0", count=1)
    fg.reset_record()
    send(d, ["bob@example.org"], subject="third")
    msg = fg.wait_for_messages(1, timeout=20)[0]
    assert b"Subject: third" in msg.data and msg.via == "BDAT"
    assert "temporary failure after the final dot" in d.log()
    wait_log(d, r"deferred to=<bob@example\.org> attempt=1")
    wait_until(lambda: d.messages() == [], what="spool empty")


def test_bdat_421_mid_pipeline(relay):
    """A 421 to RCPT while the chunk is already on its way: the session
    ends, the message is deferred (nothing was delivered: no RFC 1047
    warning) and delivered exactly once by the retry."""
    d, fg = relay(fake={"fail": {"custom": {
        "count": 1, "at": "rcpt", "close": True,
        "reply": "421 4.7.0 Try again later, closing connection. {id} - gsmtp"}}},
        initial=1, rmax=2)
    send(d, ["bob@example.org"])
    msg = fg.wait_for_messages(1, timeout=20)[0]
    assert msg.via == "BDAT"
    wait_log(d, r"deferred to=<bob@example\.org> attempt=1 .*421")
    wait_until(lambda: d.messages() == [], what="spool empty")
    assert len(fg.messages) == 1 and fg.unacked_messages == []
    assert "may have been delivered" not in d.log()


def test_backlog_pipelines_transactions(relay, fakegmail_factory):
    """A backlog over a 0.4 s round trip and one connection: small messages
    go behind the one in flight without waiting for its replies (RSET
    first), several per round trip, and each is delivered once, decided by
    its own replies.  Without that, each message would wait a round trip
    for the one before."""
    port = free_port()
    d, _ = relay(fg=fakegmail_factory(), port=port, initial=1, rmax=2,
                 conns=1, mpc=100, debug=False)
    send_backlog(d, 12)
    fg = fakegmail_factory(port_starttls=port, rtt=0.4, fail={
        "rcpt_550_5.1.1": {"addrs": ["r5@example.org"]}})
    fg.wait_for_messages(11, timeout=60)
    # The notice for r5 goes too.
    wait_until(lambda: d.messages() == [], what="spool empty")
    msgs = [m for m in fg.messages if m.rcpts[0].startswith("r")]
    times = sorted(m.monotonic for m in msgs)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(g < 0.2 for g in gaps) >= 6, gaps
    assert fg.session_count == 1
    cmds = [c.split()[0].upper() for c in fg.sessions[0].commands]
    assert cmds.count("MAIL") >= 12 and cmds.count("RSET") >= 6, cmds
    assert sorted(m.rcpts[0] for m in msgs) == sorted(
        "r%d@example.org" % i for i in range(12) if i != 5)
    log = d.log()
    for i in range(12):
        if i != 5:
            assert log.count("delivered to=<r%d@example.org>" % i) == 1
    assert re.search(r"bounced to=<r5@example\.org> .*550", log)


def test_quota_reply_to_pipelined_messages_pauses_once(
        relay, fakegmail_factory):
    """The daily-limit reply to every message of a pipelined backlog is one
    pause of the upstream: counted and logged once (the backoff does not
    grow with the number of messages in flight), nothing bounces, and the
    messages go once the limit is lifted."""
    port = free_port()
    d, _ = relay(fg=fakegmail_factory(), port=port, initial=2, rmax=4,
                 conns=1, mpc=100, debug=False)
    send_backlog(d, 6, prefix="q")
    fg = fakegmail_factory(port_starttls=port, rtt=0.2,
                           fail={"dot_550_5.4.5": {"count": 6}})
    wait_log(d, r"upstream paused failures=1 ", timeout=30)
    wait_until(lambda: fg.fail_hits.get("dot_550_5.4.5", 0) >= 2,
               what="several messages refused in one flight")
    wait_until(lambda: d.messages() == [], timeout=60, what="spool empty")
    log = d.log()
    assert "failures=2" not in log, log
    assert log.count("upstream paused") == 1
    assert "bounced" not in log
    assert sorted(m.rcpts[0] for m in fg.messages) == sorted(
        "q%d@example.org" % i for i in range(6))
