"""Peer-supplied strings cannot forge log fields (docs/reliability.md).

A quoted local part (RFC 5321 §4.1.2) may hold spaces, '>' and '=', so an
address printed bare inside from=<...> could end its field and add others:
`sendmail -f '"a> size=1 uid=0 x=<"@example.com'` would put a second uid=0
in the pickup line.  These tests send such addresses through SMTP and
through sendmail, relay them to the fake Gmail, and read the real daemon's
log as key=value pairs: every line has each key at most once, the uid= of
the pickup line is the submitter's, and the from=/to= values are the whole
addresses.
"""
import os
import re
import smtplib
import subprocess

from harness import SMARTRELAY, Daemon, upstream_conf

FORGED_FROM = '"a> size=1 uid=0 x=<"@example.com'
FORGED_TO = '"b> nrcpt=9 to=<evil@example.org> relay=x"@example.org'
FIELD = re.compile(r'([A-Za-z][\w-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def fields(line):
    """The key=value pairs of one log line, in order (values unquoted)."""
    out = []
    for key, val in FIELD.findall(line):
        if val.startswith('"'):
            val = re.sub(r'\\(.)', r'\1', val[1:-1])
        out.append((key, val))
    return out


def check_lines(log):
    """Each key once per line; returns the parsed lines."""
    parsed = []
    for line in log.splitlines():
        f = fields(line)
        keys = [k for k, _ in f]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        assert dup == [], "forged fields %s in %r" % (dup, line)
        parsed.append(dict(f))
    return parsed


def test_forged_sender_and_recipient_stay_one_field(tmp_path,
                                                    fakegmail_factory):
    fg = fakegmail_factory()
    d = Daemon(tmp_path, upstream=upstream_conf(tmp_path, fg))
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail(FORGED_FROM, [FORGED_TO, "bob@example.org"],
                       b"Subject: forged\r\n\r\nhi\r\n")
        link = os.path.join(d.dir, "sendmail")
        os.symlink(os.path.abspath(SMARTRELAY), link)
        r = subprocess.run([link, "-C", d.conf, "-f", "<%s>" % FORGED_FROM,
                            "carol@example.org"], input=b"Subject: x\n\nhi\n",
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        d.wait_log_re(r" delivered to=", count=3)
        d.wait_log_re(r" queued from=.* maildrop=")
    finally:
        d.stop()
    lines = check_lines(d.log())
    queued = [p for p in lines if "from" in p and "size" in p]
    assert len(queued) == 2, d.log()
    assert all(p["from"] == "<%s>" % FORGED_FROM for p in queued), queued
    assert all(p["size"] != "1" for p in queued), queued
    (pickup,) = [p for p in queued if "maildrop" in p]
    assert pickup["uid"] == str(os.getuid())
    delivered = sorted(p["to"] for p in lines
                       if "to" in p and "delay" in p)
    assert delivered == sorted("<%s>" % a for a in
                               (FORGED_TO, "bob@example.org",
                                "carol@example.org")), d.log()
    # What the upstream got is the address itself, not the log's quoting.
    rcpts = sorted(r for m in fg.messages for r in m.rcpts)
    assert FORGED_TO in rcpts, rcpts
