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

from harness import NOBODY, SMARTRELAY, Daemon, setgid_spool, upstream_conf

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
def gmail(relay):
    """make(rewrite="...") -> (daemon, fake Gmail), both started."""
    def make(rewrite=ALIASES, extra=""):
        return relay(debug=False,
                     extra="rewrite = { %s };\n%s" % (rewrite, extra))
    return make

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


# ---- the callers, with their exact argument vectors ------------------------


def login():
    import pwd
    return pwd.getpwuid(os.getuid())[0]


CRON_MAIL = (b"From: root (Cron Daemon)\n"
             b"To: alice\n"
             b"Subject: Cron <root@web1> /usr/local/bin/backup\n"
             b"MIME-Version: 1.0\n"
             b"Content-Type: text/plain; charset=UTF-8\n"
             b"Content-Transfer-Encoding: 8bit\n"
             b"X-Cron-Env: <SHELL=/bin/sh>\n"
             b"X-Cron-Env: <HOME=/root>\n"
             b"X-Cron-Env: <LOGNAME=root>\n"
             b"\n"
             b"backup done: 3 files, 1.2 GB \xc3\xa9t\xc3\xa9\n")


def test_cron(gmail):
    """Debian cron (cron/do_command.c): the command's output, as root."""
    d, fg = gmail()
    r = sendmail(d, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice",
                 input=CRON_MAIL)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert msg.mail_from == "%s@relay.test" % login()
    assert msg.rcpts == ["alice@example.net"]
    assert values(fields, "From") == [b"root@relay.test (Cron Daemon)"]
    assert values(fields, "To") == [b"alice@example.net"]
    assert values(fields, "X-Cron-Env")[0] == b"<SHELL=/bin/sh>"
    assert_rfc5322(fields)
    assert body == b"backup done: 3 files, 1.2 GB \xc3\xa9t\xc3\xa9\r\n"


UU_MAIL = (b"From: root\n"
           b"To: root\n"
           b"Subject: [host] unattended-upgrades result for web1: SUCCESS\n"
           b"Content-Type: text/plain; charset=\"utf-8\"\n"
           b"MIME-Version: 1.0\n"
           b"Content-Transfer-Encoding: 8bit\n"
           b"\n"
           b"Unattended upgrade result: All upgrades installed\n")


def test_unattended_upgrades(gmail):
    """unattended-upgrades' send_summary_mail(): `sendmail -oi -t`."""
    d, fg = gmail(rewrite='local_domain = "example.org";')
    r = sendmail(d, "-oi", "-t", input=UU_MAIL)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert msg.rcpts == ["root@example.org"]
    assert values(fields, "From") == [b"root@example.org"]
    assert values(fields, "To") == [b"root@example.org"]
    assert_rfc5322(fields)
    assert body == b"Unattended upgrade result: All upgrades installed\r\n"


def test_git_send_email_argv(gmail):
    """git send-email --smtp-server=PATH runs `PATH -i RCPT...`; a patch
    saved by format-patch starts with its mbox From line."""
    d, fg = gmail()
    r = sendmail(d, "-i", "a@x.example", "b@y.example", input=FORMAT_PATCH)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert sorted(msg.rcpts) == ["a@x.example", "b@y.example"]
    assert values(fields, "From") == [b"Dev Eloper <dev@example.com>"]
    assert values(fields, "Date") == [b"Tue, 1 Dec 2026 10:00:00 +0000"]
    assert_rfc5322(fields)
    assert body.startswith(b"The frobnicator")


PHP_MAIL = (b"To: bob@example.net\n"
            b"Subject: Order 42\n"
            b"X-PHP-Originating-Script: 0:shop.php\n"
            b"\n"
            b"Thank you for your order.\n")


def test_php_mail(gmail):
    """PHP's mail() with the default sendmail_path `sendmail -t -i`, then
    with `-f` (the fifth argument of mail())."""
    d, fg = gmail()
    r = sendmail(d, "-t", "-i", input=PHP_MAIL)
    assert r.returncode == 0, r.stderr
    msg, fields, _ = arrived(fg)
    assert msg.rcpts == ["bob@example.net"]
    froms = values(fields, "From")
    assert len(froms) == 1 and froms[0].endswith(
        b"<%s@relay.test>" % login().encode()), froms
    assert_rfc5322(fields)
    r = sendmail(d, "-t", "-i", "-f", "shop@example.com", input=PHP_MAIL)
    assert r.returncode == 0, r.stderr
    msg, fields, _ = arrived(fg, 2)
    assert msg.mail_from == "shop@example.com"
    assert values(fields, "From") == [b"<shop@example.com>"]
    assert_rfc5322(fields)


MUTT_MAIL = (b"Date: Tue, 1 Dec 2026 10:00:00 +0100\n"
             b"From: Alice Example <alice@example.com>\n"
             b"To: Bob <bob@example.net>\n"
             b"Subject: lunch?\n"
             b"Message-ID: <20261201090000.GA1234@example.com>\n"
             b"MIME-Version: 1.0\n"
             b"Content-Type: text/plain; charset=us-ascii\n"
             b"Content-Disposition: inline\n"
             b"User-Agent: Mutt/2.2.9 (2022-11-12)\n"
             b"\n"
             b"At noon?\n")


def test_mutt_argv(gmail):
    """mutt's send_msg(): `sendmail -oem -oi -- RCPT`."""
    d, fg = gmail()
    r = sendmail(d, "-oem", "-oi", "--", "bob@example.net", input=MUTT_MAIL)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert msg.rcpts == ["bob@example.net"]
    assert values(fields, "From") == [b"Alice Example <alice@example.com>"]
    assert values(fields, "Message-ID") == [
        b"<20261201090000.GA1234@example.com>"]
    assert_rfc5322(fields)
    assert body == b"At noon?\r\n"


def test_header_from_for_smart_hosts_that_refuse_foreign_senders(gmail):
    d, fg = gmail(rewrite='local_domain = "example.org"; '
                  'header_from = "relay@example.com";')
    r = sendmail(d, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice",
                 input=CRON_MAIL.replace(b"To: alice", b"To: a@x.example"))
    assert r.returncode == 0, r.stderr
    msg, fields, _ = arrived(fg)
    assert values(fields, "From") == [b"relay@example.com (Cron Daemon)"]
    assert values(fields, "Reply-To") == [b"<root@example.org>"]
    assert_rfc5322(fields)


def test_smtp_client_from_null_sender_gets_a_from(gmail):
    """Loopback SMTP clients get the same hygiene (the DATA filter)."""
    import smtplib
    d, fg = gmail()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("", ["bob@example.net"],
                   b"To: alice\r\nSubject: bounce-ish\r\n\r\nhi\r\n")
        s.sendmail("nagios@example.org", ["bob@example.net"],
                   b"From: nagios\r\nFrom: other@example.org\r\n"
                   b"Message-ID: broken\r\nSubject: x" + b" y" * 700 +
                   b"\r\n\r\nhi\r\n")
    _, fields, _ = arrived(fg)
    assert values(fields, "From") == [b"MAILER-DAEMON@relay.test"]
    assert values(fields, "To") == [b"alice@example.net"]
    assert_rfc5322(fields)
    msg, fields, _ = arrived(fg, 2)
    assert values(fields, "From") == [b"nagios@relay.test"]
    assert values(fields, "X-Original-From") == [b"other@example.org"]
    assert_rfc5322(fields)
    head = msg.data.partition(b"\r\n\r\n")[0]
    assert max(len(ln) for ln in head.split(b"\r\n")) <= 998
    assert b" y" * 700 in re.sub(rb"\r\n(?=[ \t])", b"", head)


# ---- the real programs ----------------------------------------------------


def real(prog):
    if shutil.which(prog) is None:
        pytest.skip("%s is not installed (tests/install-deps.sh test)" % prog)


def test_real_mailx(gmail):
    real("mailx")
    d, fg = gmail()
    rc = os.path.join(d.dir, "mailrc")
    with open(rc, "w") as f:
        f.write("set sendmail=%s\n" % os.path.join(links(d), "sendmail"))
    env = dict(os.environ, MAILRC=rc, SMARTRELAY_CONFIG=d.conf)
    r = run(["mailx", "-s", "disk almost full", "alice"],
            input=b"/ is 93% full\n", env=env)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert msg.rcpts == ["alice@example.net"]
    assert values(fields, "To") == [b"alice@example.net"]
    assert_rfc5322(fields)
    assert body == b"/ is 93% full\r\n"


def test_real_mutt(gmail):
    real("mutt")
    d, fg = gmail()
    rc = os.path.join(d.dir, "muttrc")
    with open(rc, "w") as f:
        f.write('set sendmail="%s"\nset from="Alice <alice@example.com>"\n'
                'set use_from=yes\nset record=""\nset copy=no\n'
                % os.path.join(links(d), "sendmail"))
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf, HOME=d.dir)
    r = run(["mutt", "-n", "-F", rc, "-s", "lunch?", "bob@example.net"],
            input=b"At noon?\n", env=env)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert msg.rcpts == ["bob@example.net"]
    assert values(fields, "From") == [b"Alice <alice@example.com>"]
    assert_rfc5322(fields)
    assert body.startswith(b"At noon?")


def test_real_git_send_email(gmail, tmp_path):
    real("git")
    if run(["git", "send-email", "--help"]).returncode != 0 and \
            run(["git", "send-email", "-h"]).returncode not in (0, 129):
        pytest.skip("git-email is not installed")
    d, fg = gmail()
    repo = str(tmp_path / "repo")
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf, HOME=str(tmp_path),
               GIT_AUTHOR_NAME="Dev Eloper",
               GIT_AUTHOR_EMAIL="dev@example.com",
               GIT_COMMITTER_NAME="Dev Eloper",
               GIT_COMMITTER_EMAIL="dev@example.com")
    run(["git", "init", "-q", repo], env=env)
    with open(os.path.join(repo, "frob.c"), "w") as f:
        f.write("int frob = 1;\n")
    run(["git", "-C", repo, "add", "frob.c"], env=env)
    run(["git", "-C", repo, "commit", "-qm", "fix the frobnicator"], env=env)
    r = run(["git", "-C", repo, "format-patch", "-1", "-o", str(tmp_path)],
            env=env)
    patch = r.stdout.decode().strip()
    assert open(patch, "rb").read().startswith(b"From ")
    r = run(["git", "-C", repo, "send-email", "--confirm=never", "--quiet",
             "--suppress-cc=all",
             "--smtp-server=" + os.path.join(links(d), "sendmail"),
             "--to=a@x.example", "--cc=b@y.example", patch], env=env)
    assert r.returncode == 0, r.stderr
    msg, fields, body = arrived(fg)
    assert sorted(msg.rcpts) == ["a@x.example", "b@y.example"]
    assert values(fields, "From") == [b"Dev Eloper <dev@example.com>"]
    assert values(fields, "Subject") == [b"[PATCH] fix the frobnicator"]
    assert_rfc5322(fields)


def test_real_php_mail(gmail):
    real("php")
    d, fg = gmail()
    sm = os.path.join(links(d), "sendmail")
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf)
    for path, extra in (("%s -t -i" % sm, ""),
                        ("%s -t -i -f shop@example.com" % sm,
                         "From: Shop <shop@example.com>")):
        r = run(["php", "-n", "-d", "sendmail_path=" + path, "-r",
                 'exit(mail("bob@example.net", "Order 42", "Thanks.", '
                 '"%s") ? 0 : 1);' % extra], env=env)
        assert r.returncode == 0, (r.stdout, r.stderr)
    msg, fields, _ = arrived(fg)
    assert msg.rcpts == ["bob@example.net"]
    assert_rfc5322(fields)
    msg, fields, _ = arrived(fg, 2)
    assert msg.mail_from == "shop@example.com"
    assert values(fields, "From") == [b"Shop <shop@example.com>"]
    assert_rfc5322(fields)


# ---- mailq as monitoring parses it ------------------------------------------


def check_mailq(d, bindir, *args, user=None):
    """The real check_mailq (monitoring-plugins), its mailq pointed at ours:
    a copy of the plugin beside a copy of utils.pm with PATH_TO_MAILQ set."""
    src = "/usr/lib/nagios/plugins"
    plug = os.path.join(bindir, "plugins")
    if not os.path.isdir(plug):
        os.makedirs(plug)
        shutil.copy(os.path.join(src, "check_mailq"), plug)
        with open(os.path.join(src, "utils.pm")) as f:
            utils = f.read()
        utils = re.sub(r'\$PATH_TO_MAILQ\s*=\s*"[^"]*"',
                       '$PATH_TO_MAILQ = "%s"' % os.path.join(bindir, "mailq"),
                       utils)
        with open(os.path.join(plug, "utils.pm"), "w") as f:
            f.write(utils)
        os.chmod(plug, 0o755)
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf)
    argv = [os.path.join(plug, "check_mailq")] + list(args)
    if user:
        argv = user + ["env", "SMARTRELAY_CONFIG=" + d.conf] + argv
    r = run(argv, env=env)
    return r.returncode, r.stdout.decode().strip().split("|")[0]


def queued_and_tried(d, n):
    """Waits until n messages are queued and each was tried once."""
    import json
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = run([SMARTRELAY, "-c", d.conf, "queue", "--json"])
        msgs = json.loads(r.stdout)["messages"]
        if len(msgs) == n and all(m["attempts"] > 0 for m in msgs):
            return msgs
        time.sleep(0.2)
    raise AssertionError(d.log())


def test_mailq_postfix_format_and_check_mailq(gmail):
    if not os.path.exists("/usr/lib/nagios/plugins/check_mailq"):
        pytest.skip("monitoring-plugins-standard is not installed")
    d, fg = gmail()
    bindir = links(d)
    mailq = os.path.join(bindir, "mailq")
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf)
    assert run([mailq], env=env).stdout == b"Mail queue is empty\n"
    assert check_mailq(d, bindir, "-M", "postfix", "-w", "2", "-c", "5") == \
        (0, "OK: postfix mailq reports queue is empty")
    assert check_mailq(d, bindir, "-M", "sendmail", "-w", "2", "-c", "5") == \
        (0, "OK: sendmail mailq is empty")
    fg.set_fail("rcpt_450_4.2.1")
    for i in range(3):
        r = sendmail(d, "-f", "alice@example.com", "bob%d@example.net" % i,
                     "carol@example.net", input=b"Subject: %d\n\nx\n" % i)
        assert r.returncode == 0, r.stderr
    msgs = queued_and_tried(d, 3)
    r = run([mailq], env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["-Queue", "ID-", "--Size--"]
    heads = [x for x in lines if re.match("^[0-9A-Z]", x)]
    assert len(heads) == 3
    assert sorted(h.split()[0].rstrip("*") for h in heads) == \
        sorted(m["id"] for m in msgs)
    assert all(h.endswith("  alice@example.com") for h in heads)
    reasons = [x.strip() for x in lines if x.strip().startswith("(")]
    assert len(reasons) == 3 and all("450 4.2.1" in x for x in reasons)
    assert out.count(" " * 41 + "carol@example.net\n") == 3
    assert lines[-1] == "-- %d Kbytes in 3 Requests." % (
        sum(m["size"] for m in msgs) // 1024)
    assert b"Subject" not in r.stdout
    # sendmail -bp is the same listing; grep -c '^[0-9A-Z]' counts messages.
    assert sendmail(d, "-bp").stdout.count(b"carol@example.net") == 3
    grep = subprocess.run("%s | grep -c '^[0-9A-Z]'" % mailq, shell=True,
                          env=env, capture_output=True)
    assert grep.stdout == b"3\n"
    # The real check_mailq, both parsers, each threshold.
    for kind in ("postfix", "sendmail"):
        assert check_mailq(d, bindir, "-M", kind, "-w", "5", "-c", "10") == \
            (0, "OK: %s mailq (3) is below threshold (5/10)" % kind)
        assert check_mailq(d, bindir, "-M", kind, "-w", "2", "-c", "5") == \
            (1, "WARNING: %s mailq is 3 (threshold w = 2)" % kind)
        assert check_mailq(d, bindir, "-M", kind, "-w", "1", "-c", "3") == \
            (2, "CRITICAL: %s mailq is 3 (threshold c = 3)" % kind)


def test_mailq_marks_the_message_being_sent(gmail):
    d, fg = gmail()
    fg.set_fail("hang", at="dot")
    r = sendmail(d, "bob@example.net", input=b"Subject: slow\n\nx\n")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, SMARTRELAY_CONFIG=d.conf)
    import time
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = run([os.path.join(links(d), "mailq")], env=env).stdout
        if re.search(rb"^[0-9A-F]{16}\* ", out, re.M):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(out)
    assert out.splitlines()[-1] == b"-- 0 Kbytes in 1 Request."


@pytest.fixture
def setgid_gmail(fakegmail_factory):
    """A daemon whose spool only its group may reach, and a setgid copy of
    the tool, so that nobody can be tested (root only)."""
    with setgid_spool("srsm") as (top, bindir):
        fg = fakegmail_factory()
        d = Daemon(top, upstream=upstream_conf(top, fg),
                   extra="rewrite = { %s };" % ALIASES)
        os.chmod(d.conf, 0o644)
        d.start()
        yield d, fg, bindir
        d.stop()




def test_mailq_for_a_normal_user(setgid_gmail):
    d, fg, bindir = setgid_gmail
    if not os.path.exists("/usr/lib/nagios/plugins/check_mailq"):
        pytest.skip("monitoring-plugins-standard is not installed")
    fg.set_fail("rcpt_450_4.2.1")
    for i in range(2):
        r = run(NOBODY + [os.path.join(bindir, "sendmail"), "-C", d.conf,
                          "bob@example.net"], input=b"Subject: secret\n\nx\n")
        assert r.returncode == 0, r.stderr
    queued_and_tried(d, 2)
    r = run(NOBODY + [os.path.join(bindir, "mailq"), "-C", d.conf])
    assert r.returncode == 0, r.stderr
    assert len(re.findall(rb"^[0-9A-Z]", r.stdout, re.M)) == 2
    assert b"450 4.2.1" in r.stdout and b"secret" not in r.stdout
    assert r.stdout.endswith(b" in 2 Requests.\n")
    # --json too, for scripts run as a normal user.
    r = run(NOBODY + [os.path.join(bindir, "smartrelay"), "-c", d.conf,
                      "queue", "--json"])
    assert r.returncode == 0, r.stderr
    import json
    assert len(json.loads(r.stdout)["messages"]) == 2
    for kind in ("postfix", "sendmail"):
        assert check_mailq(d, bindir, "-M", kind, "-w", "2", "-c", "5",
                           user=NOBODY) == \
            (1, "WARNING: %s mailq is 2 (threshold w = 2)" % kind)
    # With the daemon stopped, the spool is closed to nobody: a clear error.
    d.stop()
    r = run(NOBODY + [os.path.join(bindir, "mailq"), "-C", d.conf])
    assert r.returncode == 69
    assert b"not running" in r.stderr
