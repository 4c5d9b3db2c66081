"""docs/gmail.md's troubleshooting table against the code and the fake Gmail.

The table's last three columns are the advice table of
common/smtpproto_advice.c, word for word, as `smartrelay test --explain`
prints it for the guide's own example configuration: the first test fails
when the document and the code drift apart.

Every row is then backed by a run against tests/fakegmail failing in that
way: the doctor (`smartrelay test --to`) must print the row's advice under
the failing step, and the daemon must log it (and `smartrelay status` must
show it when the whole upstream is affected), with this configuration's
names filled in.
"""
import os
import re
import smtplib
import socket
import subprocess

import pytest

from harness import (SMARTRELAY, SRCDIR, Daemon, free_port, upstream_conf,
                     wait_until)

GUIDE = os.path.join(SRCDIR, "docs", "gmail.md")
MARKER = "<!-- advice-table:"

# The guide's configuration (docs/gmail.md, step 4).
GUIDE_CONF = """
upstream = {
  host = "smtp.gmail.com";
  port = 587;
  tls = "starttls";
  username = "you@gmail.com";
  password_file = "/etc/smartrelay/app-password";
};
"""

GMAIL_5322 = ("550-5.7.1 [127.0.0.1] Our system has detected that this "
              "message is\n550-5.7.1 not RFC 5322 compliant:\n"
              "550-5.7.1 'From' header is missing.\n"
              "550 5.7.1 To reduce the amount of spam sent to Gmail, this "
              "message has been blocked. {id} - gsmtp")
GMAIL_530_AUTH = ("530-5.7.0 Authentication Required. For more information, "
                  "go to\n530 5.7.0  https://support.google.com/mail/"
                  "?p=WantAuthError {id} - gsmtp")

# How to make the fake Gmail (or the network) answer each row, and whom it
# concerns: "upstream" rows change the upstream's state (log and status),
# "message" rows one message or recipient (log).
SCENARIOS = {
    "530 5.7.0 STARTTLS": ({"fail": "mail_530_starttls"}, "upstream"),
    "530 5.7.0": ({"fail": ("custom", {"at": "mail",
                                       "reply": GMAIL_530_AUTH})},
                  "upstream"),
    "535 5.7.8": ({"fail": "auth_535"}, "upstream"),
    "534 5.7.9": ({"fail": "auth_534_5.7.9"}, "upstream"),
    "534 5.7.14": ({"fail": "auth_534_5.7.14"}, "upstream"),
    "454 4.7.0": ({"fail": "auth_454"}, "upstream"),
    "421 4.7.0": ({"fail": "ehlo_421"}, "upstream"),
    "550 5.4.5": ({"fail": "mail_550_5.4.5"}, "upstream"),
    "552 5.3.4": ({"fail": "dot_552_size"}, "message"),
    "550 5.7.1 RFC 5322": ({"fail": ("custom", {"at": "dot",
                                                "reply": GMAIL_5322})},
                           "message"),
    "550 5.1.1": ({"fail": "rcpt_550_5.1.1"}, "message"),
    "451 4.3.0": ({"fail": "dot_451_4.3.0"}, "message"),
    "421 4.3.0": ({"fail": "dot_421_4.3.0"}, "message"),
    "tls-cert-untrusted": ({"cert": "untrusted"}, "upstream"),
    "tls-cert-name": ({"cert": "wrongname"}, "upstream"),
    "connect-refused": ({"net": "refused"}, "upstream"),
    "connect-timeout": ({"net": "timeout"}, "upstream"),
}


def flat(text):
    return " ".join(text.split())


def guide_rows():
    """The troubleshooting table: [{key, answer, meaning, action, fix}]."""
    with open(GUIDE, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith(MARKER))
    rows = []
    for line in lines[start + 3:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, line
        key = re.search(r"`([^`]+)`", cells[0])
        assert key, "no `key` in the first cell: " + line
        rows.append({"key": key.group(1), "answer": cells[0],
                     "meaning": cells[1], "action": cells[2],
                     "fix": cells[3]})
    return rows


def explain(conf, key):
    """`smartrelay test --explain KEY`: {meaning, action, fix}."""
    r = subprocess.run([SMARTRELAY, "-c", conf, "test", "--explain", key],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    meaning = re.search(r"^meaning:\s+(.*)$", out, re.M).group(1)
    action = re.search(r"^smartrelay:\s+(.*)$", out, re.M).group(1)
    fix = out.split("\nfix:\n", 1)[1]
    return {"meaning": flat(meaning), "action": flat(action),
            "fix": flat(fix)}


def md_text(cell):
    """A table cell as plain text: no backticks, no escaped pipes."""
    return flat(cell.replace("`", "").replace("\\|", "|"))


def test_guide_table_is_the_advice_table(tmp_path):
    conf = tmp_path / "guide.conf"
    conf.write_text('spool = "%s";\n%s' % (tmp_path / "spool", GUIDE_CONF))
    rows = guide_rows()
    assert sorted(r["key"] for r in rows) == sorted(SCENARIOS), \
        "every row of docs/gmail.md needs a scenario here, and no other"
    for row in rows:
        want = explain(str(conf), row["key"])
        for col in ("meaning", "action", "fix"):
            assert md_text(row[col]) == want[col], (row["key"], col)


# ---- each row against the fake Gmail ----------------------------------------

def blackhole():
    """A listening socket whose queue is full: connections get no answer.

    Linux drops a SYN when the accept queue is full, so a client's connect
    times out on loopback as it would behind a firewall that drops.
    """
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fillers = []
    for _ in range(8):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex(ls.getsockname())
        fillers.append(c)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(ls.getsockname())
        pytest.skip("the kernel answered a full listen queue")
    except (socket.timeout, OSError):
        pass
    finally:
        probe.close()
    return ls, fillers


def fake_for(scenario, factory):
    how = scenario[0]
    fg = factory(cert=how.get("cert", "good"),
                 password="abcdefghijklmnop")
    fail = how.get("fail")
    if isinstance(fail, tuple):
        fg.set_fail(fail[0], **fail[1])
    elif fail:
        fg.set_fail(fail)
    return fg


def log_text(d):
    """The daemon's log with log_quote()'s escapes undone."""
    return flat(d.log().replace('\\"', '"').replace("\\\\", "\\"))


@pytest.mark.parametrize("key", sorted(SCENARIOS))
def test_row_against_fake_gmail(key, tmp_path, fakegmail_factory):
    scenario = SCENARIOS[key]
    fg = fake_for(scenario, fakegmail_factory)
    net, port, keep = scenario[0].get("net"), None, None
    if net == "refused":
        port = free_port()
    elif net == "timeout":
        keep = blackhole()
        port = keep[0].getsockname()[1]
    host = "127.0.0.1" if net else "localhost"
    d = Daemon(tmp_path, upstream=upstream_conf(
        tmp_path, fg, port=port, host=host, timeout=3, rmax=2))
    fix = explain(d.conf, key)["fix"]

    # The doctor, with a test message so that MAIL/RCPT/dot rows are met.
    r = subprocess.run([SMARTRELAY, "-c", d.conf, "test", "--to",
                        "bob@example.org"], capture_output=True, text=True,
                       timeout=90)
    assert r.returncode == 1, r.stdout + r.stderr
    assert fix in flat(r.stdout), r.stdout

    # The daemon, with one message.
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail("alice@example.net", ["bob@example.org"],
                       b"From: alice@example.net\r\nTo: bob@example.org\r\n"
                       b"Subject: guide\r\n\r\nhello\r\n")
        wait_until(lambda: fix in log_text(d), 40,
                   lambda: "%r in the log:\n%s" % (fix, d.log()[-3000:]))
        if scenario[1] == "upstream":
            st = subprocess.run([SMARTRELAY, "-c", d.conf, "status"],
                                capture_output=True, text=True, timeout=30)
            assert fix in flat(st.stdout), st.stdout
    finally:
        d.stop()
        if keep is not None:
            for s in [keep[0]] + keep[1]:
                s.close()
