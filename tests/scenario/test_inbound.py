"""The inbound SMTP server against real clients (docs/smtp.md).

Every row of the bad-input table, pipelining, the SMTP smuggling sequences,
8-bit and SMTPUTF8 messages, a 30 MB message and many concurrent clients,
all against the real smartrelayd on loopback.
"""
import hashlib
import os
import resource
import smtplib
import socket
import threading
import time

import pytest

from harness import SmtpRaw


def stuffed(content):
    """What the relay will put on the wire for stored content."""
    out = []
    for line in content.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


def body_of(d, qid):
    """The client's message as stored: the record minus our Received."""
    env, body = d.record(qid)
    lines = body.split(b"\r\n")
    assert lines[0].startswith(b"Received: from ")
    # Received is three lines, or four with "for <...>".
    n = 4 if lines[2].startswith(b"\tfor <") else 3
    return env, b"\r\n".join(lines[n:])


def ehlo(c, name="client.test"):
    code, text = c.reply()
    assert code == 220, text
    code, text = c.cmd("EHLO " + name)
    assert code == 250, text
    return text


def test_smtplib_delivery_is_queued_with_trace_headers(daemon):
    msg = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as s:
        code, text = s.ehlo("client.test")
        assert code == 250
        for ext in ("pipelining", "8bitmime", "size", "enhancedstatuscodes",
                    "smtputf8", "help"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == str(34 * 1024 * 1024)
        s.sendmail("a@example.org", ["b@example.net"], msg)
    ids = daemon.messages()
    assert len(ids) == 1
    env, body = daemon.record(ids[0])
    assert env["from"] == "<a@example.org>"
    assert env["rcpt"] == ["<b@example.net>"]
    assert body.startswith(b"Received: from client.test ([127.0.0.1])\r\n"
                           b"\tby relay.test (smartrelay) with ESMTP id " +
                           ids[0].encode())
    assert b"\tfor <b@example.net>;" in body
    # Date and Message-ID were missing, so they were added to the header.
    head, _, rest = body.partition(b"\r\n\r\n")
    assert b"\r\nDate: " in head and b"\r\nMessage-ID: <" in head
    assert rest == b"hello\r\n"
    daemon.wait_log("id=%s queued from=<a@example.org>" % ids[0])
    assert "nrcpt=1" in daemon.log()


def test_existing_date_and_message_id_are_kept(daemon):
    msg = (b"From: <a@example.org>\r\n"
           b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
           b"Message-ID: <keep@example.org>\r\n\r\nx\r\n")
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as s:
        s.sendmail("a@example.org", ["b@example.net"], msg)
    env, body = body_of(daemon, daemon.messages()[0])
    assert body == msg


def test_ipv6_listener(daemon):
    c = SmtpRaw(daemon.port, host="::1")
    ehlo(c)
    assert c.cmd("QUIT")[0] == 221


def test_helo_and_small_commands(daemon):
    c = SmtpRaw(daemon.port)
    assert c.reply()[0] == 220
    assert c.cmd("HELO old.client")[1] == "250 relay.test"
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("VRFY root")[1].startswith("252 2.5.2")
    code, text = c.cmd("HELP")
    assert code == 214
    assert c.cmd("RSET")[1] == "250 2.0.0 Ok"
    assert c.cmd("STARTTLS")[1].startswith("502 5.5.1")
    assert c.cmd("QUIT")[1].startswith("221 2.0.0")
    assert c.closed()


def test_client_not_in_allow_is_refused(make_daemon):
    d = make_daemon('allow = [ "192.0.2.0/24" ];').start()
    c = SmtpRaw(d.port)
    code, text = c.reply()
    assert code == 554 and text.startswith("554 5.7.1"), text
    assert c.closed()
    d.wait_log('refused client=[127.0.0.1] reason="not in allow"')


def test_too_many_clients(make_daemon):
    d = make_daemon("limits = { clients = 2; };").start()
    a, b = SmtpRaw(d.port), SmtpRaw(d.port)
    assert a.reply()[0] == 220 and b.reply()[0] == 220
    c = SmtpRaw(d.port)
    code, text = c.reply()
    assert text.startswith("421 4.7.0"), text
    assert c.closed()
    a.cmd("QUIT")
    assert a.closed()
    time.sleep(0.3)
    e = SmtpRaw(d.port)
    assert e.reply()[0] == 220


def test_unknown_and_long_commands_keep_the_session(daemon):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    assert c.cmd("FROBNICATE")[1].startswith("500 5.5.1")
    assert c.cmd("X" * 600)[1].startswith("500 5.5.2")
    # Over 512 octets in several writes, then more commands.
    c.send("NOOP " + "y" * 4000)
    c.send("y" * 4000 + "\r\n")
    assert c.reply()[1].startswith("500 5.5.2")
    assert c.cmd("NOOP")[0] == 250
    # 510 octets + CRLF = 512: still a valid line.
    assert c.cmd("NOOP " + "z" * 505)[0] == 250


def test_endless_long_lines_are_bounded(daemon):
    """Refused lines count as errors too: more than 20, 421 and closed."""
    for line in ("X" * 600, "NOOP a\0b"):
        c = SmtpRaw(daemon.port)
        ehlo(c)
        codes = [c.cmd(line)[0] for _ in range(21)]
        assert codes == [500] * 21, codes
        assert c.reply()[1].startswith("421 4.7.0")
        assert c.closed()


def test_bad_address_syntax(daemon):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    assert c.cmd("MAIL FROM:<a@b@c>")[1].startswith("501 5.1.3")
    assert c.cmd("MAIL FROM:<no closing")[1].startswith("501 5.1.3")
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<two words@example.org>")[1].startswith("501 5.1.3")
    assert c.cmd("RCPT TO:<>")[1].startswith("501 5.1.3")
    assert c.cmd("RCPT TO:<ok@example.org>")[0] == 250


def test_commands_out_of_order(daemon):
    c = SmtpRaw(daemon.port)
    assert c.reply()[0] == 220
    assert c.cmd("MAIL FROM:<a@example.org>")[1].startswith("503 5.5.1")
    assert c.cmd("EHLO x")[0] == 250
    assert c.cmd("RCPT TO:<a@example.org>")[1].startswith("503 5.5.1")
    assert c.cmd("DATA")[1].startswith("503 5.5.1")
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>")[1].startswith("503 5.5.1")
    assert c.cmd("DATA")[1].startswith("503 5.5.1")
    assert c.cmd("RCPT TO:<b@example.org>")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("DATA")[1].startswith("503 5.5.1")
    assert daemon.messages() == []


def test_size_parameter_over_limit(make_daemon):
    d = make_daemon('limits = { message_size = "10K"; };').start()
    c = SmtpRaw(d.port)
    assert "SIZE 10240" in ehlo(c)
    code, text = c.cmd("MAIL FROM:<a@example.org> SIZE=10241")
    assert text.startswith("552 5.3.4"), text
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=10240")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=abc")[1].startswith("501")
    assert c.cmd("MAIL FROM:<a@example.org> FOO=bar")[1].startswith("555")


def test_body_over_limit_is_read_to_the_end(make_daemon):
    d = make_daemon('limits = { message_size = "10K"; };').start()
    c = SmtpRaw(d.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 1000 + b".\r\n")
    code, text = c.reply()
    assert text.startswith("552 5.3.4"), text
    # The session survives and the next message goes through.
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    code, text = c.cmd("small\r\n.")
    assert code == 250, text
    assert len(d.messages()) == 1
    assert os.listdir(os.path.join(d.spool, "tmp")) == []


def test_too_many_recipients(make_daemon):
    d = make_daemon("limits = { recipients = 3; };").start()
    c = SmtpRaw(d.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    for i in range(3):
        assert c.cmd("RCPT TO:<r%d@example.org>" % i)[0] == 250
    assert c.cmd("RCPT TO:<r9@example.org>")[1].startswith("452 4.5.3")
    assert c.cmd("DATA")[0] == 354
    assert c.cmd("x\r\n.")[0] == 250
    env, _ = d.record(d.messages()[0])
    assert len(env["rcpt"]) == 3


def test_nul_byte_is_refused(daemon):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    c.cmd("DATA")
    code, text = c.cmd("Subject: nul\r\n\r\nbad\x00byte\r\n.")
    assert text.startswith("554 5.6.0"), text
    assert c.cmd("NOOP")[0] == 250
    assert daemon.messages() == []
    assert os.listdir(os.path.join(daemon.spool, "tmp")) == []


def test_idle_timeout(make_daemon):
    d = make_daemon('limits = { idle_timeout = "1s"; };').start()
    c = SmtpRaw(d.port)
    ehlo(c)
    t0 = time.monotonic()
    code, text = c.reply()
    assert text.startswith("421 4.4.2"), text
    assert 0.8 < time.monotonic() - t0 < 5
    assert c.closed()


def test_bare_recipients_need_alias_or_local_domain(make_daemon):
    d = make_daemon().start()
    c = SmtpRaw(d.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd("RCPT TO:<root>")[1].startswith("550 5.1.1")
    d.stop()
    d2 = make_daemon('rewrite = { local_domain = "example.org";\n'
                     '  aliases = { root = "admin@example.net"; }; };').start()
    c = SmtpRaw(d2.port)
    ehlo(c)
    c.cmd("MAIL FROM:<cron>")
    assert c.cmd("RCPT TO:<root>")[0] == 250
    assert c.cmd("RCPT TO:<www>")[0] == 250
    c.cmd("DATA")
    assert c.cmd("x\r\n.")[0] == 250
    env, _ = d2.record(d2.messages()[0])
    assert env["from"] == "<cron@example.org>"
    assert env["rcpt"] == ["<admin@example.net>", "<www@example.org>"]


def test_whole_transaction_in_one_write(daemon):
    c = SmtpRaw(daemon.port)
    assert c.reply()[0] == 220
    one = ("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
           "RCPT TO:<c@example.org>\r\nDATA\r\nSubject: p%d\r\n\r\n"
           "pipelined\r\n.\r\n")
    c.send("EHLO pipe\r\n" + one % 1 + one % 2 + "QUIT\r\n")
    codes = [c.reply()[0] for _ in range(1 + 2 * 5 + 1)]
    assert codes == [250] + [250, 250, 250, 354, 250] * 2 + [221]
    assert c.closed()
    assert len(daemon.messages()) == 2


def test_half_closed_client_gets_its_replies(daemon):
    c = SmtpRaw(daemon.port)
    c.send("EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
           "DATA\r\nhi\r\n.\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    codes = [c.reply()[0] for _ in range(7)]
    assert codes == [220, 250, 250, 250, 354, 250, 221]
    assert len(daemon.messages()) == 1


SMUGGLING = [b"\n.\r\n", b"\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n",
             b"\r\n.\n", b"\n.\r", b"\r.\n", b"\r\n.\r\r\n"]


@pytest.mark.parametrize("seq", SMUGGLING,
                         ids=[repr(s)[2:-1] for s in SMUGGLING])
def test_smuggling_sequences_stay_one_message(daemon, seq):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: smuggle\r\n\r\nbefore" + seq +
           b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
           b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    assert c.cmd("QUIT")[0] == 221
    ids = daemon.messages()
    assert len(ids) == 1
    env, body = daemon.record(ids[0])
    assert env["rcpt"] == ["<b@example.org>"]
    assert b"MAIL FROM:<evil@example.com>" in body
    # Only CRLF line ends, and the wire form holds no end of data.
    assert body.replace(b"\r\n", b"").count(b"\r") == 0
    assert body.replace(b"\r\n", b"").count(b"\n") == 0
    assert b"\r\n.\r\n" not in stuffed(body)


def test_dot_stuffing_undone(daemon):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    c.cmd("DATA")
    assert c.cmd("Subject: dots\r\n\r\n..leading\r\n..\r\nlast\r\n.")[0] == 250
    _, body = body_of(daemon, daemon.messages()[0])
    assert body.endswith(b"\r\n\r\n.leading\r\n.\r\nlast\r\n")


def test_8bit_and_smtputf8_kept_byte_exact(daemon):
    content = ("Subject: =?utf-8?q?caf=C3=A9?=\r\nDate: x\r\nMessage-ID: <m@x>\r\n"
               "From: Jörg <jörg@bücher.example>\r\n"
               "\r\nJörg grüßt 日本語 \r\n").encode() + b"latin1 \xe9\xff\r\n"
    c = SmtpRaw(daemon.port)
    ehlo(c)
    assert c.cmd("MAIL FROM:<jörg@bücher.example> BODY=8BITMIME SMTPUTF8")[0] == 250
    assert c.cmd("RCPT TO:<日本@例え.jp>")[0] == 250
    c.cmd("DATA")
    c.send(content + b".\r\n")
    assert c.reply()[0] == 250
    env, body = body_of(daemon, daemon.messages()[0])
    assert body == content
    assert env["from"] == "<jörg@bücher.example>"
    assert env["rcpt"] == ["<日本@例え.jp>"]
    raw_env, raw_body = daemon.record(daemon.messages()[0])
    assert b"with UTF8SMTP" in raw_body.split(b"\r\n\r\n")[0]


def test_30mb_message(daemon):
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"   # 74 bytes
    n = 30 * 1024 * 1024 // len(line)
    head = b"From: a@example.org\r\nDate: x\r\nMessage-ID: <big@x>\r\n\r\n"
    h = hashlib.sha256(head)
    c = SmtpRaw(daemon.port, timeout=60)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org> SIZE=%d" % (len(head) + n * len(line)))
    c.cmd("RCPT TO:<b@example.org>")
    assert c.cmd("DATA")[0] == 354
    c.send(head)
    chunk = line * 1000
    for _ in range(n // 1000):
        c.send(chunk)
        h.update(chunk)
    rest = line * (n % 1000)
    c.send(rest + b".\r\n")
    h.update(rest)
    code, text = c.reply()
    assert code == 250, text
    _, body = body_of(daemon, daemon.messages()[0])
    assert len(body) == len(head) + n * len(line)
    assert hashlib.sha256(body).hexdigest() == h.hexdigest()


def test_many_concurrent_clients(make_daemon):
    d = make_daemon("limits = { clients = 100; };").start()
    nclients, per = 40, 5
    acked, errors = [], []

    def client(i):
        try:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
                for j in range(per):
                    msg = "Subject: c%d m%d\r\n\r\ntoken-%d-%d\r\n" % (i, j, i, j)
                    s.sendmail("a@example.org", ["b@example.org"], msg)
                    acked.append("token-%d-%d" % (i, j))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,))
               for i in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ids = d.messages()
    assert len(ids) == nclients * per == len(set(ids))
    tokens = set()
    for qid in ids:
        _, body = d.record(qid)
        tokens.add(body.rsplit(b"\r\n\r\n", 1)[1].strip().decode())
    assert tokens == set(acked)


def test_lost_connection_mid_data_leaves_nothing(daemon):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    c.cmd("DATA")
    c.send("Subject: cut\r\n\r\nhalf a mess")
    c.close()
    daemon.wait_log('reason="lost connection in transaction"')
    assert daemon.messages() == []
    assert os.listdir(os.path.join(daemon.spool, "tmp")) == []


def test_sigterm_during_data(daemon):
    c = SmtpRaw(daemon.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    c.cmd("DATA")
    c.send("Subject: stop\r\n\r\npartial")
    time.sleep(0.2)
    daemon.proc.terminate()
    code, text = c.reply()
    assert text.startswith("421 4.3.2"), text
    assert daemon.proc.wait(15) == 0
    assert daemon.messages() == []
    assert os.listdir(os.path.join(daemon.spool, "tmp")) == []
    assert "stopped" in daemon.log()


def _limit_file_size(nbytes):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


def test_spool_write_error_gives_451_and_leaves_nothing(make_daemon):
    """A write error in the spool (here: RLIMIT_FSIZE, as when the disk
    fills) answers 451 4.3.0 at the end of DATA and keeps nothing."""
    d = make_daemon()
    d.start(preexec=_limit_file_size(64 * 1024))
    c = SmtpRaw(d.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    c.cmd("DATA")
    c.send(b"Subject: big\r\n\r\n" + b"y" * 200000 + b"\r\n.\r\n")
    code, text = c.reply()
    assert text.startswith("451 4.3.0"), text
    assert c.cmd("NOOP")[0] == 250
    assert d.messages() == []
    assert os.listdir(os.path.join(d.spool, "tmp")) == []
    # Small messages still fit.
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.org>")
    c.cmd("DATA")
    assert c.cmd("small\r\n.")[0] == 250


def test_spool_unusable_gives_452_at_mail(daemon):
    tmp = os.path.join(daemon.spool, "tmp")
    os.rmdir(tmp)
    with open(tmp, "w") as f:     # tmp/ is now a file: nothing can be created
        f.write("x")
    try:
        c = SmtpRaw(daemon.port)
        ehlo(c)
        code, text = c.cmd("MAIL FROM:<a@example.org>")
        assert text.startswith("452 4.3.1"), text
        assert c.cmd("NOOP")[0] == 250
    finally:
        os.unlink(tmp)
        os.mkdir(tmp, 0o700)


def test_clients_that_reset_without_reading_do_not_leak_sessions(make_daemon):
    """A client that pipelines a session, never reads and resets must not
    keep its session (and its slot in limits.clients) alive."""
    d = make_daemon("limits = { clients = 3; };").start()
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"EHLO x\r\nHELP\r\nHELP\r\nQUIT\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                       # RST, replies unread
    time.sleep(0.5)
    c = SmtpRaw(d.port)
    code, text = c.reply()
    assert code == 220, text


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_commands_and_unread_replies_are_bounded(make_daemon):
    d = make_daemon("limits = { recipients = 10; };").start()
    before = _rss_kib(d.proc.pid)
    c = SmtpRaw(d.port)
    ehlo(c)
    c.cmd("MAIL FROM:<a@example.org>")
    # A flood of pipelined commands inside a transaction, replies unread.
    try:
        c.sock.settimeout(10)
        for _ in range(200):
            c.send(b"HELP\r\n" * 5000)
    except OSError:
        pass                            # closed by the server: fine
    codes = []
    try:
        while True:
            codes.append(c.reply()[0])
    except (EOFError, OSError):
        pass
    assert 421 in codes
    assert len(codes) <= 10 + 100 + 5
    assert _rss_kib(d.proc.pid) - before < 16 * 1024
    c2 = SmtpRaw(d.port)
    assert c2.reply()[0] == 220
