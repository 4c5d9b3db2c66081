"""Delivery status notifications (RFC 3461/3464) against the real binaries.

Clients ask for notices with NOTIFY/RET/ENVID/ORCPT (SMTP, msmtp, sendmail
-N/-R/-V); the fake Gmail, which like Gmail offers no DSN, receives the
relayed mail and our notices.  A fake that does offer DSN gets the request
passed on instead.  Each test looks at what reached the upstream.
"""
import os
import smtplib
import subprocess
import time

from harness import SENDER, SMARTRELAY, dsn_of, wait_until

BODY_MARK = "body-line-that-only-the-full-message-has"


def submit(d, mail_opts, rcpts, subject="dsn test"):
    """One transaction; rcpts is [(address, [RCPT parameters])]."""
    body = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s\r\n"
            % (SENDER, rcpts[0][0], subject, BODY_MARK)).encode()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        code, text = s.ehlo("client.test")
        assert code == 250 and b"\nDSN" in text, text
        assert s.mail(SENDER, mail_opts)[0] == 250
        for addr, opts in rcpts:
            assert s.rcpt(addr, opts)[0] == 250
        assert s.data(body)[0] == 250


def notices(fg):
    return [m for m in fg.messages if m.mail_from == ""]


def relayed_mail(fg):
    return [m for m in fg.messages if m.mail_from == SENDER]


def settle(d, fg):
    """Waits until the spool is empty, then a little for stray notices."""
    wait_until(lambda: d.messages() == [], what="spool empty")
    time.sleep(1.0)


# ---- NOTIFY -------------------------------------------------------------

def test_notify_never_suppresses_the_failure_notice(relay):
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1":
                                 {"addrs": ["nobody@example.org"]}}})
    submit(d, [], [("bob@example.org", []),
                   ("nobody@example.org", ["NOTIFY=NEVER"])])
    d.wait_log_re(r"bounced to=<nobody@example\.org>")
    settle(d, fg)
    assert [m.rcpts for m in relayed_mail(fg)] == [["bob@example.org"]]
    assert notices(fg) == []
    assert "notification id=" not in d.log()


def test_notify_failure_and_success_pick_the_recipients_reported(relay):
    # Two recipients refused: only the one whose NOTIFY has FAILURE is
    # reported; NOTIFY=SUCCESS alone asks for no failure notice.
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1": {
        "addrs": ["gone1@example.org", "gone2@example.org"]}}})
    submit(d, [], [("gone1@example.org", ["NOTIFY=FAILURE"]),
                   ("gone2@example.org", ["NOTIFY=SUCCESS"])])
    dsns = dsn_of(fg, 1)
    settle(d, fg)
    assert len(notices(fg)) == 1 and dsns[0].rcpts == [SENDER]
    text = dsns[0].data.decode()
    assert "Subject: Undelivered Mail Returned to Sender" in text
    assert "Final-Recipient: rfc822; gone1@example.org\r\nAction: failed" \
        in text
    assert "gone2@example.org" not in text.split("Delivery report")[1]


def test_notify_success_gets_a_relayed_notice_with_envid_and_orcpt(relay):
    d, fg = relay()
    submit(d, ["ENVID=QQ+2B314", "RET=HDRS"],
           [("bob@example.org", ["NOTIFY=SUCCESS,FAILURE",
                                 "ORCPT=rfc822;Bob+2Bx@example.org"]),
            ("carol@example.org", [])])
    dsns = dsn_of(fg, 1)
    settle(d, fg)
    # Gmail offers no DSN: nothing of the request went upstream.
    msg = relayed_mail(fg)[0]
    assert msg.rcpts == ["bob@example.org", "carol@example.org"]
    assert "RET" not in msg.mail_params and "ENVID" not in msg.mail_params
    assert msg.rcpt_params == {}
    assert len(notices(fg)) == 1
    n = dsns[0]
    assert n.rcpts == [SENDER]
    text = n.data.decode()
    assert "Subject: Successful Mail Delivery Report" in text
    assert "Content-Type: multipart/report; report-type=delivery-status" \
        in text
    assert "Original-Envelope-Id: QQ+314\r\n" in text
    assert ("Original-Recipient: rfc822; Bob+x@example.org\r\n"
            "Final-Recipient: rfc822; bob@example.org\r\n"
            "Action: relayed\r\nStatus: 2.0.0\r\n") in text
    # carol gave no NOTIFY: a success is not reported for her.
    assert "carol@example.org" not in text.split("Delivery report")[1]
    assert BODY_MARK not in text
    assert "notification id=" in d.log() and "kind=final" in d.log()


def test_no_notice_ever_goes_to_the_null_sender(relay):
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1":
                                 {"addrs": ["nobody@example.org"]}}})
    body = b"Subject: from <>\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.mail("", ["ENVID=x"])[0] == 250
        assert s.rcpt("bob@example.org", ["NOTIFY=SUCCESS"])[0] == 250
        assert s.rcpt("nobody@example.org", ["NOTIFY=FAILURE"])[0] == 250
        assert s.data(body)[0] == 250
    d.wait_log_re(r"bounced to=<nobody@example\.org>")
    settle(d, fg)
    # Only the message itself went out (its sender is <> too).
    assert [m.rcpts for m in fg.messages] == [["bob@example.org"]]
    assert b"Subject: from <>" in fg.messages[0].data
    assert "notification id=" not in d.log()


def test_notify_success_with_a_dsn_upstream_is_passed_on(relay):
    d, fg = relay(fake={"offer_dsn": True})
    submit(d, ["RET=HDRS", "ENVID=QQ+2B314"],
           [("bob@example.org", ["NOTIFY=SUCCESS,DELAY",
                                 "ORCPT=rfc822;bob@example.org"]),
            ("carol@example.org", ["NOTIFY=NEVER"]),
            ("dave@example.org", [])])
    fg.wait_for_messages(1)
    settle(d, fg)
    msg = relayed_mail(fg)[0]
    assert msg.mail_params.get("RET") == "HDRS"
    assert msg.mail_params.get("ENVID") == "QQ+2B314"
    assert msg.rcpt_params == {
        "bob@example.org": {"NOTIFY": "SUCCESS,DELAY",
                            "ORCPT": "rfc822;bob@example.org"},
        "carol@example.org": {"NOTIFY": "NEVER"}}
    # The upstream reports success itself: no notice of ours.
    assert notices(fg) == []


# ---- RET ----------------------------------------------------------------

def test_ret_hdrs_returns_only_the_headers_and_ret_full_the_message(relay):
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1":
                                 {"addrs": ["nobody@example.org"]}}})
    submit(d, ["RET=HDRS"], [("nobody@example.org", [])], subject="hdrs")
    submit(d, ["RET=FULL"], [("nobody@example.org", [])], subject="full")
    dsns = dsn_of(fg, 2)
    settle(d, fg)
    by = {("hdrs" if "Subject: hdrs" in m.data.decode() else "full"):
          m.data.decode() for m in dsns}
    assert set(by) == {"hdrs", "full"}
    assert BODY_MARK not in by["hdrs"]
    assert "Content-Type: text/rfc822-headers" in by["hdrs"]
    assert BODY_MARK in by["full"]
    assert "Content-Type: message/rfc822" in by["full"]
    for text in by.values():
        assert "Action: failed" in text and "Status: 5.1.1" in text


# ---- DELAY --------------------------------------------------------------

def delayed_notices(fg):
    return [m for m in notices(fg) if b"Action: delayed" in m.data]


def test_delay_warning_once_and_not_again_after_a_restart(relay):
    d, fg = relay(fake={"fail": {"rcpt_450_4.2.1":
                                 {"addrs": ["slow@example.org"]}}},
                  initial=1, rmax=1,
                  extra='bounces = { delay_warning = "2s"; };\n')
    submit(d, ["ENVID=slow-1"], [("slow@example.org", []),
                                 ("never@example.org", ["NOTIFY=FAILURE"])])
    fg.wait_for(lambda f: len(delayed_notices(f)) >= 1, timeout=30)
    n = delayed_notices(fg)[0]
    assert n.rcpts == [SENDER]
    text = n.data.decode()
    assert "Subject: Delayed Mail (still being retried)" in text
    assert "Original-Envelope-Id: slow-1" in text
    assert ("Final-Recipient: rfc822; slow@example.org\r\n"
            "Action: delayed\r\nStatus: 4.2.1\r\n") in text
    assert "Will-Retry-Until: " in text
    # never@ asked only for failures, and was delivered anyway.
    assert "never@example.org" not in text.split("Delivery report")[1]
    # More attempts fail, before and after a restart: no second notice.
    attempts = d.log().count("deferred to=<slow@example.org>")
    d.wait_log_re(r"deferred to=<slow@example\.org>", count=attempts + 2,
             timeout=30)
    d.restart()
    d.wait_log_re(r"deferred to=<slow@example\.org>", count=attempts + 4,
             timeout=30)
    assert len(delayed_notices(fg)) == 1
    assert d.log().count("kind=delayed") == 1
    # Then the recipient takes it: delivered, and no other notice.
    fg.clear_fail("rcpt_450_4.2.1")
    wait_until(lambda: d.messages() == [], timeout=30, what="spool empty")
    time.sleep(1.0)
    assert len(notices(fg)) == 1
    assert any(m.rcpts == ["slow@example.org"] for m in relayed_mail(fg))


def test_no_delay_warning_without_the_key_or_for_notify_failure(relay):
    d, fg = relay(fake={"fail": {"rcpt_450_4.2.1":
                                 {"addrs": ["slow@example.org"]}}},
                  initial=1, rmax=1)
    submit(d, [], [("slow@example.org", [])])
    d.wait_log_re(r"deferred to=<slow@example\.org>", count=4, timeout=30)
    assert notices(fg) == [] and "notification id=" not in d.log()


# ---- real clients -------------------------------------------------------

def test_msmtp_with_dsn_notify_and_return(relay, tmp_path):
    d, fg = relay()
    conf = tmp_path / "msmtprc"
    conf.write_text("account default\nhost 127.0.0.1\nport %d\n"
                    "tls off\nauth off\nfrom %s\ndsn_notify success\n"
                    "dsn_return headers\n" % (d.port, SENDER))
    os.chmod(conf, 0o600)
    msg = ("From: <%s>\nTo: <bob@example.org>\nSubject: via msmtp\n\n%s\n"
           % (SENDER, BODY_MARK))
    p = subprocess.run(["msmtp", "-C", str(conf), "bob@example.org"],
                       input=msg.encode(), capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    dsns = dsn_of(fg, 1)
    settle(d, fg)
    assert [m.rcpts for m in relayed_mail(fg)] == [["bob@example.org"]]
    text = dsns[0].data.decode()
    assert "Action: relayed" in text and BODY_MARK not in text


# ---- sendmail -N / -R / -V ----------------------------------------------

def sendmail(d, *args, body=None):
    """The tool as `sendmail` (a symlink of that name), config with -C."""
    bindir = os.path.join(d.dir, "bin")
    os.makedirs(bindir, exist_ok=True)
    link = os.path.join(bindir, "sendmail")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(SMARTRELAY), link)
    if body is None:
        body = "Subject: via sendmail\n\n%s\n" % BODY_MARK
    return subprocess.run([link, "-C", d.conf] + list(args),
                          input=body.encode(), capture_output=True,
                          timeout=30)


def test_sendmail_N_never_stops_a_bounce(relay):
    d, fg = relay(fake={"fail": {"rcpt_550_5.1.1":
                                 {"addrs": ["nobody@example.org"]}}})
    r = sendmail(d, "-N", "never", "-f", SENDER, "nobody@example.org")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    d.wait_log_re(r"bounced to=<nobody@example\.org>")
    settle(d, fg)
    assert notices(fg) == [] and "notification id=" not in d.log()
    # The same without -N bounces: -N never is what kept it quiet.
    r = sendmail(d, "-f", SENDER, "nobody@example.org")
    assert r.returncode == 0, r.stderr
    dsns = dsn_of(fg, 1)
    settle(d, fg)
    assert len(notices(fg)) == 1 and dsns[0].rcpts == [SENDER]
    assert b"Action: failed" in dsns[0].data


def test_sendmail_N_R_V_ask_for_a_relayed_notice(relay):
    d, fg = relay()
    # Options after the recipient, as callers write them.
    r = sendmail(d, "-f", SENDER, "bob@example.org", "-N",
                 "success,delay,failure", "-R", "hdrs", "-V",
                 "job 42+x=y")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    dsns = dsn_of(fg, 1)
    settle(d, fg)
    assert [m.rcpts for m in relayed_mail(fg)] == [["bob@example.org"]]
    text = dsns[0].data.decode()
    assert "Original-Envelope-Id: job 42+x=y\r\n" in text
    assert ("Final-Recipient: rfc822; bob@example.org\r\n"
            "Action: relayed\r\n") in text
    assert BODY_MARK not in text


def test_sendmail_bad_dsn_values_warn_and_the_mail_goes(relay):
    d, fg = relay()
    r = sendmail(d, "-N", "sometimes", "-R", "all", "-f", SENDER,
                 "bob@example.org")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "warning: bad -N value \"sometimes\" ignored" in err
    assert "warning: bad -R value \"all\" ignored" in err
    fg.wait_for_messages(1)
    settle(d, fg)
    assert [m.rcpts for m in relayed_mail(fg)] == [["bob@example.org"]]
    assert notices(fg) == []
