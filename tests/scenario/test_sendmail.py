"""sendmail as real callers run it, checked at the fake Gmail.

Each caller's exact argument vector and input (cron, unattended-upgrades,
git send-email, PHP mail(), mutt, bsd-mailx) goes through a `sendmail`
symlink to the built tool, into the real smartrelayd, and out to
tests/fakegmail; the tests look at the envelope and the header block
that arrived there.  Where the real program is installed (see
tests/install-deps.sh) it is run itself.  Also here: the command line
(options after recipients, "--", the -b modes, newaliases), the mbox
"From " line, and bare CR line ends that must not disclose a Bcc.
"""
import os
import re
import shutil
import subprocess

import pytest

from harness import SMARTRELAY, Daemon
from fixtures import fakegmail_certs, fakegmail_factory  # noqa: F401
from test_relay import upstream_conf

ALIASES = 'aliases = { alice = "alice@example.net"; };'


def run(args, input=b"", env=None, timeout=30, cwd=None):
    return subprocess.run(args, input=input, capture_output=True,
                          timeout=timeout, env=env, cwd=cwd)


def links(d):
    """sendmail, mailq and newaliases symlinks to the built tool."""
    bindir = os.path.join(d.dir, "bin")
    os.makedirs(bindir, exist_ok=True)
    for name in ("sendmail", "mailq", "newaliases"):
        link = os.path.join(bindir, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(SMARTRELAY), link)
    return bindir


def sendmail(d, *args, input=b""):
    """Runs sendmail exactly with args; the config comes from the
    environment, so that the argument vector is the caller's own."""
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf)
    return run([os.path.join(links(d), "sendmail")] + list(args),
               input=input, env=env)


def one_line_error(r):
    err = r.stderr.decode()
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


@pytest.fixture
def gmail(tmp_path, fakegmail_factory):  # noqa: F811
    """make(rewrite="...") -> (daemon, fake Gmail), both started."""
    made = []

    def make(rewrite=ALIASES, extra=""):
        fg = fakegmail_factory()
        sub = tmp_path / ("d%d" % len(made))
        sub.mkdir()
        d = Daemon(sub, upstream=upstream_conf(sub, fg),
                   extra="rewrite = { %s };\n%s" % (rewrite, extra))
        made.append(d)
        d.start()
        return d, fg

    yield make
    for d in made:
        d.stop()


def arrived(fg, n=1):
    """The n-th message at the fake Gmail: (envelope, header fields, body).
    Header fields are (name, value) with folding kept."""
    msg = fg.wait_for_messages(n, timeout=20)[n - 1]
    head, _, body = msg.data.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name.decode(), value.strip()))
    return msg, fields, body


def values(fields, name):
    return [v for n, v in fields if n.lower() == name.lower()]


ADDR_SPEC = re.compile(rb"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+"
                       rb"\.[A-Za-z]+")


def assert_rfc5322(fields):
    """What Gmail checks before it accepts a message: exactly one From:
    with a qualified address, one Date:, one valid Message-ID:."""
    froms = values(fields, "From")
    assert len(froms) == 1, fields
    assert ADDR_SPEC.search(froms[0]), froms
    assert len(values(fields, "Date")) == 1, fields
    mids = values(fields, "Message-ID")
    assert len(mids) == 1 and re.fullmatch(rb"<[^<>@\s]+@[^<>@\s]+>",
                                           mids[0]), mids
    assert not values(fields, "Bcc"), fields


# ---- the command line -----------------------------------------------------


def test_options_after_recipients(gmail):
    d, fg = gmail()
    r = sendmail(d, "rcpt@example.com", "-f", "late@example.org",
                 input=b"Subject: late -f\n\nhi\n")
    assert r.returncode == 0, r.stderr
    msg, fields, _ = arrived(fg)
    assert msg.mail_from == "late@example.org"
    assert msg.rcpts == ["rcpt@example.com"]


def test_nothing_starting_with_dash_becomes_a_recipient(gmail):
    d, fg = gmail()
    for args in (["-", "bob@example.net"], ["--", "-x@example.net"],
                 ["bob@example.net", "--", "-oi"],
                 ["bob@example.net, -evil@example.net"]):
        r = sendmail(d, *args, input=b"Subject: x\n\nhi\n")
        assert r.returncode in (64, 65), (args, r)
        assert "'-'" in one_line_error(r)
    r = sendmail(d, "-f", "-t", "bob@example.net", input=b"x\n")
    assert r.returncode == 65 and "sender" in one_line_error(r)
    # "--" ends the options: what follows is a recipient.
    r = sendmail(d, "-i", "--", "bob@example.net", input=b"Subject: y\n\n.\n")
    assert r.returncode == 0, r.stderr
    msg, _, body = arrived(fg)
    assert msg.rcpts == ["bob@example.net"] and body == b".\r\n"
    assert len(fg.messages) == 1


def test_dsn_options_are_options(gmail):
    d, fg = gmail()
    r = sendmail(d, "bob@example.net", "-N", "never", "-R", "hdrs", "-V",
                 "env1", "-Nsuccess,delay,failure",
                 input=b"Subject: dsn\n\nhi\n")
    assert r.returncode == 0, r.stderr
    msg, _, _ = arrived(fg)
    assert msg.rcpts == ["bob@example.net"]


def test_b_modes(gmail, tmp_path):
    d, fg = gmail(rewrite='local_domain = "example.org"; '
                  'aliases = { root = "admin@example.net"; };')
    r = sendmail(d, "-bv", "root", "carol", "Bob <bob@example.net>")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().splitlines()
    assert out == [
        "root -> <admin@example.net> (rewrite.aliases): deliverable: "
        "relayed to localhost port %d" % fg.port_starttls,
        "carol -> <carol@example.org> (rewrite.local_domain): deliverable: "
        "relayed to localhost port %d" % fg.port_starttls,
        "<bob@example.net> -> <bob@example.net>: deliverable: "
        "relayed to localhost port %d" % fg.port_starttls]
    r = sendmail(d, "-bv", "bad address@@x")
    assert r.returncode == 65 and b"undeliverable" in r.stdout
    r = sendmail(d, "-bv")
    assert r.returncode == 64
    # -bi, -I and newaliases: nothing to build, exit 0, say where.
    for argv in ([os.path.join(links(d), "sendmail"), "-bi"],
                 [os.path.join(links(d), "sendmail"), "-I"],
                 [os.path.join(links(d), "newaliases")]):
        r = run(argv, env=dict(os.environ, SMARTRELAY_CONFIG=d.conf))
        assert r.returncode == 0, (argv, r)
        assert b"rewrite.aliases in " + d.conf.encode() in r.stdout
        assert b"reload" in r.stdout
    # -bh, -bH (host status) and -q with an interval: nothing, exit 0.
    for flag in ("-bh", "-bH", "-q30m"):
        r = sendmail(d, flag)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b""), flag
    # -bd, -bl: the daemon runs: 0; stopped: 69 with how to start it.
    assert sendmail(d, "-bd").returncode == 0
    assert sendmail(d, "-bl", "-q1h").returncode == 0
    d.stop()
    r = sendmail(d, "-bd")
    assert r.returncode == 69 and "systemctl start" in one_line_error(r)
    # Modes that take no recipients, and -t outside delivery mode.
    assert sendmail(d, "-bp", "bob@example.net").returncode == 64
    assert sendmail(d, "-bd", "bob@example.net").returncode == 64
    assert sendmail(d, "-t", "-bs").returncode == 64
    assert fg.messages == []


# ---- message preparation ----------------------------------------------------


FORMAT_PATCH = (b"From 2d1b4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e Mon Sep 17 "
                b"00:00:00 2001\n"
                b"From: Dev Eloper <dev@example.com>\n"
                b"Date: Tue, 1 Dec 2026 10:00:00 +0000\n"
                b"Subject: [PATCH] fix the frobnicator\n"
                b"To: a@x.example\n"
                b"\n"
                b"The frobnicator was off by one.\n"
                b"---\n"
                b" frob.c | 2 +-\n")


@pytest.mark.parametrize("args", [["-i", "a@x.example"], ["-t", "-i"],
                                  ["-oi", "-t"]])
def test_mbox_from_line_is_skipped(gmail, args):
    d, fg = gmail()
    r = sendmail(d, *args, input=FORMAT_PATCH)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert msg.rcpts == ["a@x.example"]
    assert values(fields, "Subject") == [b"[PATCH] fix the frobnicator"]
    assert values(fields, "From") == [b"Dev Eloper <dev@example.com>"]
    assert b"From 2d1b" not in msg.data
    assert body.startswith(b"The frobnicator was off by one.\r\n")


def test_bare_cr_line_ends_do_not_disclose_bcc(gmail):
    d, fg = gmail(rewrite='local_domain = "example.org";')
    r = sendmail(d, "-t", "-f", "me@example.org",
                 input=b"To: a\rBcc: secret@x.example\rSubject: s\r\rbody\r")
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert sorted(msg.rcpts) == ["a@example.org", "secret@x.example"]
    assert b"secret" not in msg.data
    assert values(fields, "Subject") == [b"s"]
    assert values(fields, "From"), fields
    assert body == b"body\r\n"
    # Without -t the Bcc: header is removed as well.
    r = sendmail(d, "b@example.org",
                 input=b"Bcc: hidden@x.example\rSubject: t\r\rtext\r")
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg, 2)
    assert msg.rcpts == ["b@example.org"]
    assert b"hidden" not in msg.data and body == b"text\r\n"
