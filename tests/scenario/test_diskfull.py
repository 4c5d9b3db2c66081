"""A full spool (docs/reliability.md): accepting and relaying.

The spool lives on a 2 MiB tmpfs mounted for the test, filled to the last
page by a filler file.  While it is full, the daemon answers with temporary
replies (452 4.3.1 at MAIL or 451 4.3.0 at the end of data, sendmail exits
75), leaves nothing half-written, and relays nothing whose outcome it could
not record; once the filler is gone everything works again.  A recipient
delivered around a full spool is never sent twice, even across kill -9.

Mounting needs root (CI runs the suite as root) and a kernel that lets us
mount; otherwise the tests are skipped with the reason.  There is no honest
fallback without a mount: a real ENOSPC comes only from a real filesystem,
and RLIMIT_FSIZE (EFBIG, used by the queue's unit tests) cannot make
creating files or directory entries fail the way a full disk does.
"""
import errno
import os
import smtplib
import subprocess
import time

import pytest

from harness import SMARTRELAY, Daemon, SmtpRaw, upstream_conf, wait_until


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs; unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("a full spool needs a small filesystem, and mounting "
                    "one needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755",
                        "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s)" %
                    r.stderr.decode().strip())
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path):
    """Writes a filler file until the filesystem is full; returns its path."""
    filler = os.path.join(path, "filler")
    chunk = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, chunk[:size])
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    st = os.statvfs(path)
    assert st.f_bavail == 0, st
    return filler


def spool_daemon(tmp_path, fs, upstream=""):
    d = Daemon(tmp_path, upstream=upstream)
    d.spool = os.path.join(fs, "spool")
    d.write_config()
    return d


def files(d, sub):
    p = os.path.join(d.spool, sub)
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def send_big(port, rcpt="bob@example.org", size=200000):
    """One SMTP transaction; returns the replies to MAIL and to the dot."""
    c = SmtpRaw(port)
    c.reply()
    c.cmd("EHLO full")
    mail = c.cmd("MAIL FROM:<alice@example.net>")
    if mail[0] != 250:
        return c, mail, None
    assert c.cmd("RCPT TO:<%s>" % rcpt)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (size // 1000)
           + b".\r\n")
    return c, mail, c.reply()


def test_accepting_on_a_full_spool(tmp_path, small_fs):
    d = spool_daemon(tmp_path, small_fs)
    d.start()
    try:
        filler = fill(small_fs)
        c, mail, dot = send_big(d.port)
        if dot is None:
            assert mail[0] == 452 and "4.3.1" in mail[1], mail
        else:
            assert dot[0] == 451 and "4.3.0" in dot[1], dot
        # The session goes on; nothing half-written stays.
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("NOOP")[0] == 250
        c.close()
        assert d.messages() == [] and files(d, "tmp") == []
        assert files(d, "corrupt") == []
        # sendmail: a temporary failure with one line, nothing left behind.
        r = subprocess.run([SMARTRELAY, "-c", d.conf, "sendmail",
                            "bob@example.org"], input=b"Subject: x\n\nhi\n",
                           capture_output=True, timeout=30)
        assert r.returncode == 75, r
        assert r.stderr.count(b"\n") == 1, r.stderr
        assert files(d, "maildrop/tmp") == []
        assert [f for f in files(d, "maildrop") if f != "tmp"] == []
        # Space returns: both ways work again at once.
        os.unlink(filler)
        c, mail, dot = send_big(d.port)
        assert dot is not None and dot[0] == 250, (mail, dot)
        c.close()
        r = subprocess.run([SMARTRELAY, "-c", d.conf, "sendmail",
                            "bob@example.org"], input=b"Subject: x\n\nhi\n",
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r
        wait_until(lambda: len(d.messages()) == 2, 10, d.log)
        assert "spool error" in d.log()
    finally:
        d.stop()
    d.start()            # the records and journals are intact
    assert len(d.messages()) == 2
    assert files(d, "corrupt") == []
    d.stop()


def test_relaying_on_a_full_spool_sends_each_recipient_once(
        tmp_path, small_fs, fakegmail_factory):
    fg = fakegmail_factory(fail={"ehlo_421": {}})
    d = spool_daemon(tmp_path, small_fs, upstream_conf(
        tmp_path, fg, initial=1, rmax=2, timeout=5))
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail("alice@example.net", ["carol@example.org",
                                             "bob@example.org"],
                       b"Subject: full\r\n\r\nhi\r\n")
        d.wait_log_re(r"upstream unavailable")
        filler = fill(small_fs)
        # The upstream works again; it defers carol once, takes bob.
        fg.clear_fail()
        fg.set_fail("custom", count=1, at="rcpt",
                    reply="451 4.3.0 Try carol later. {id} - gsmtp")
        subprocess.run([SMARTRELAY, "-c", d.conf, "flush"],
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not fg.messages:
            time.sleep(0.1)
        sent_while_full = [r for m in fg.messages for r in m.rcpts]
        # Killed while full, restarted once space is back.
        d.kill9()
        assert files(d, "corrupt") == []
        os.unlink(filler)
        d.start()
        subprocess.run([SMARTRELAY, "-c", d.conf, "flush"],
                       capture_output=True, timeout=30)
        wait_until(lambda: d.messages() == [], 30,
                   lambda: "the queue to drain: %s\n%s" % (fg.summary(),
                                                          d.log()))
        # One more restart sends nothing again.
        d.stop()
        d.start()
        time.sleep(2)
    finally:
        d.stop()
    sent = sorted(r for m in fg.messages for r in m.rcpts)
    assert sent == ["bob@example.org", "carol@example.org"], sent
    # Nothing went upstream whose outcome could not be recorded.
    assert sent_while_full == []
    assert "spool full: nothing is relayed" in d.log()
