"""Tests of the fake Gmail upstream itself, with real clients (smtplib, swaks,
raw sockets). Expected texts are written out literally from Gmail's published replies so the
fake cannot silently drift from it."""

import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from fakegmail import FakeGmail
from fakegmail_fixtures import SMTP, SMTP_SSL, GREETING_RE, RawSMTP, client_context

HERE = os.path.dirname(os.path.abspath(__file__))
USER, PASSWORD = "test.user@gmail.com", "abcdefghijklmnop"

EHLO_PLAIN = [
    "250-smtp.gmail.com at your service, [127.0.0.1]", "250-SIZE 35882577",
    "250-8BITMIME", "250-STARTTLS", "250-ENHANCEDSTATUSCODES", "250-PIPELINING",
    "250-CHUNKING", "250 SMTPUTF8"]
EHLO_TLS = [
    "250-smtp.gmail.com at your service, [127.0.0.1]", "250-SIZE 35882577",
    "250-8BITMIME", "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
    "250-ENHANCEDSTATUSCODES", "250-PIPELINING", "250-CHUNKING", "250 SMTPUTF8"]

# Exact replies; {id} is the session's trace id.
STARTTLS_FIRST = [
    "530-5.7.0 Must issue a STARTTLS command first. For more information, go to",
    "530-5.7.0  https://support.google.com/a/answer/3221692 and review RFC 3207",
    "530 5.7.0 specifications. {id} - gsmtp"]
AUTH_REQUIRED = [
    "530-5.7.0 Authentication Required. For more information, go to",
    "530 5.7.0  https://support.google.com/mail/?p=WantAuthError {id} - gsmtp"]
BAD_CREDS = [
    "535-5.7.8 Username and Password not accepted. For more information, go to",
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp"]
ASP = [
    "534-5.7.9 Application-specific password required. For more information, go to",
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor {id} - gsmtp"]
WEB_LOGIN = [
    "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbtFAKE>"
    " Please log in via your web browser and",
    "534 5.7.14 then try again. Learn more at"
    " https://support.google.com/mail/answer/78754 {id} - gsmtp"]
TOO_MANY_LOGINS = [
    "454-4.7.0 Too many login attempts, please try again later. For more information,",
    "454-4.7.0 go to",
    "454 4.7.0  https://support.google.com/mail/answer/7126229 {id} - gsmtp"]
EHLO_421 = [
    "421-4.7.0 Try again later, closing connection. (EHLO)",
    "421-4.7.0  For more information, go to",
    "421 4.7.0  https://support.google.com/a/answer/3221692 {id} - gsmtp"]
DAILY_LIMIT = [
    "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail",
    "550-5.4.5 sending limits go to",
    "550 5.4.5  https://support.google.com/a/answer/166852 {id} - gsmtp"]
TOO_BIG = [
    "552-5.3.4 Your message exceeded Google's message size limits. For more information,",
    "552 5.3.4 visit  https://support.google.com/mail/?p=MaxSizeError {id} - gsmtp"]
TEMP_421 = ["421 4.3.0 Temporary System Problem.  Try again later (10). {id} - gsmtp"]
TEMP_451 = ["451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp"]
IDLE = ["451 4.4.2 Timeout - closing connection. {id} - gsmtp"]
NO_SUCH_USER = [
    "550-5.1.1 The email account that you tried to reach does not exist. Please try",
    "550-5.1.1 double-checking the recipient's email address for typos or",
    "550-5.1.1 unnecessary spaces. For more information, go to",
    "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {id} - gsmtp"]
TOO_MANY_RCPTS = ["452 4.5.3 Your message has too many recipients. {id} - gsmtp"]


def bad_address(addr):
    return [
        "553-5.1.3 The recipient address <%s> is not a valid RFC 5321 address. For more" % addr,
        "553-5.1.3 information, go to",
        "553-5.1.3  https://support.google.com/a/answer/3221692 and review RFC 5321",
        "553 5.1.3 specifications. {id} - gsmtp"]


def login_plain(s, user=USER, password=PASSWORD):
    """smtplib AUTH PLAIN only (login() would go on to LOGIN after a 535)."""
    s.ehlo_or_helo_if_needed()
    s.user, s.password = user, password
    return s.auth("PLAIN", s.auth_plain)


def expect(reply, lines, trace_id):
    """Assert a reply equals the expected lines with {id} filled in."""
    assert reply == [l.replace("{id}", trace_id) for l in lines]


MESSAGE = (b"From: Test User <test.user@gmail.com>\r\n"
           b"To: rcpt@example.org\r\n"
           b"Subject: hello\r\n"
           b"\r\n"
           b"first line\r\n"
           b".a line starting with a dot\r\n"
           b"last line\r\n")
STUFFED = MESSAGE.replace(b"\r\n.a line", b"\r\n..a line")


# -- certificates ---------------------------------------------------------------

def test_certs_verify_as_intended(fakegmail_certs):
    c = fakegmail_certs

    def verify(ca, cert):
        return subprocess.run(["openssl", "verify", "-CAfile", ca, cert],
                              capture_output=True).returncode == 0
    assert verify(c["ca"], c["server"])
    assert verify(c["ca"], c["wrongname"])
    assert not verify(c["ca"], c["untrusted"])
    assert verify(c["untrusted_ca"], c["untrusted"])
    assert not verify(c["ca"], c["nosni"])


def test_mkcerts_cli(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(HERE, "mkcerts.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    paths = json.loads(out)
    assert all(os.path.exists(p) for p in paths.values())
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths.values())


# -- normal delivery ----------------------------------------------------------------

def test_starttls_delivery_smtplib(fakegmail):
    fg = fakegmail
    s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    code, text = s.ehlo("relay.example.org")
    assert code == 250 and b"STARTTLS" in text and b"AUTH" not in text
    assert s.starttls(context=client_context(fg.ca_file))[0] == 220
    code, text = s.ehlo("relay.example.org")
    assert b"AUTH LOGIN PLAIN XOAUTH2" in text and b"STARTTLS" not in text
    s.login(USER, PASSWORD)
    assert s.sendmail(USER, ["rcpt@example.org", "second@example.net"], MESSAGE,
                      mail_options=["BODY=8BITMIME"]) == {}
    s.quit()

    [msg] = fg.wait_for_messages(1)
    assert msg.mail_from == USER
    assert msg.rcpts == ["rcpt@example.org", "second@example.net"]
    assert msg.mail_params == {"SIZE": str(len(MESSAGE)), "BODY": "8BITMIME"}
    assert msg.raw_data == STUFFED          # as sent on the wire, dot-stuffed
    assert msg.data == MESSAGE              # dot-unstuffed
    assert msg.session == 0 and msg.via == "DATA"

    [sess] = fg.wait_for_sessions(1, ended=True)
    assert sess.port == "starttls" and sess.sni == "localhost"
    assert sess.tls_version in ("TLSv1.2", "TLSv1.3") and sess.tls_active
    assert sess.ehlo_names == ["relay.example.org", "relay.example.org"]
    [att] = sess.auth
    assert (att.mechanism, att.username, att.success, att.tls_active) == \
        ("PLAIN", USER, True, True)
    assert [c.split()[0].upper() for c in sess.commands] == \
        ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert sess.transactions[0].outcome == "250"
    assert sess.close_reason == "quit"
    assert GREETING_RE.fullmatch(sess.replies[0])
    assert sess.replies[-2].startswith("250 2.0.0 OK  ")
    assert sess.replies[-1] == "221 2.0.0 closing connection %s - gsmtp" % sess.trace_id
    assert (fg.session_count, fg.auth_count, fg.tls_handshakes, fg.tls_failures) == (1, 1, 1, 0)


def test_implicit_tls_delivery_login(fakegmail):
    fg = fakegmail
    s = SMTP_SSL("127.0.0.1", fg.port_implicit, timeout=5,
                 context=client_context(fg.ca_file))
    code, text = s.ehlo("relay.example.org")
    assert b"STARTTLS" not in text and b"AUTH LOGIN" in text
    s.user, s.password = USER, PASSWORD
    # initial_response_ok=False: the 334 VXNlcm5hbWU6 / UGFzc3dvcmQ6 prompts.
    assert s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0] == 235
    s.sendmail(USER, ["rcpt@example.org"], b".\r\n..\r\nx\r\n")
    s.quit()
    [msg] = fg.wait_for_messages(1)
    assert msg.raw_data == b"..\r\n...\r\nx\r\n" and msg.data == b".\r\n..\r\nx\r\n"
    [sess] = fg.wait_for_sessions(1, ended=True)
    assert sess.port == "implicit" and sess.tls_active and sess.sni == "localhost"
    assert sess.auth[0].mechanism == "LOGIN" and sess.auth[0].success
    assert "AUTH LOGIN" in sess.commands


def test_raw_replies_of_a_normal_session(fakegmail):
    c = RawSMTP(fakegmail)
    tid = c.trace_id
    assert tid, c.greeting
    assert c.cmd("EHLO client.example") == EHLO_PLAIN
    c.starttls()
    assert c.cmd("EHLO client.example") == EHLO_TLS
    assert c.cmd("AUTH LOGIN") == ["334 VXNlcm5hbWU6"]
    assert c.cmd("dGVzdC51c2VyQGdtYWlsLmNvbQ==") == ["334 UGFzc3dvcmQ6"]
    assert c.cmd("YWJjZGVmZ2hpamtsbW5vcA==") == ["235 2.7.0 Accepted"]
    assert c.cmd("MAIL FROM:<%s> SIZE=10" % USER) == ["250 2.1.0 OK %s - gsmtp" % tid]
    assert c.cmd("RCPT TO:<a@example.org>") == ["250 2.1.5 OK %s - gsmtp" % tid]
    assert c.cmd("DATA") == ["354  Go ahead %s - gsmtp" % tid]
    reply = c.cmd("x\r\n.")
    assert reply[0].startswith("250 2.0.0 OK  ") and reply[0].endswith(" %s - gsmtp" % tid)
    assert c.cmd("NOOP") == ["250 2.0.0 OK %s - gsmtp" % tid]
    assert c.cmd("RSET") == ["250 2.1.5 Flushed %s - gsmtp" % tid]
    assert c.cmd("FOO") == ["502 5.5.1 Unrecognized command. %s - gsmtp" % tid]
    assert c.cmd("QUIT") == ["221 2.0.0 closing connection %s - gsmtp" % tid]
    c.expect_closed()


def test_auth_plain_after_334(fakegmail):
    c = RawSMTP(fakegmail, implicit=True)
    c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN") == ["334 "]
    assert c.cmd("AHRlc3QudXNlckBnbWFpbC5jb20AYWJjZGVmZ2hpamtsbW5vcA==") == \
        ["235 2.7.0 Accepted"]


# -- before TLS -------------------------------------------------------------------------

def test_no_auth_before_starttls_and_530s(fakegmail):
    fg = fakegmail
    c = RawSMTP(fg)
    assert "250-AUTH" not in " ".join(c.cmd("EHLO x"))
    expect(c.login(), STARTTLS_FIRST, c.trace_id)
    expect(c.cmd("MAIL FROM:<%s>" % USER), STARTTLS_FIRST, c.trace_id)
    c.starttls()
    c.cmd("EHLO x")
    expect(c.cmd("MAIL FROM:<%s>" % USER), AUTH_REQUIRED, c.trace_id)
    assert c.login() == ["235 2.7.0 Accepted"]
    c.close()
    [sess] = fg.wait_for_sessions(1, ended=True)
    assert [(a.tls_active, a.success) for a in sess.auth] == [(False, False), (True, True)]
    assert sess.auth_without_tls
    assert sess.auth[0].username == USER   # the credentials it leaked are recorded
    assert sess.transactions == [] and fg.auth_count == 2


def test_starttls_injection_is_discarded(fakegmail):
    fg = fakegmail
    c = RawSMTP(fg)
    c.cmd("EHLO x")
    c.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
    assert c.read_reply() == ["220 2.0.0 Ready to start TLS"]
    c.sock = c.ctx.wrap_socket(c.sock, server_hostname="localhost")
    assert c.cmd("EHLO x") == EHLO_TLS
    c.close()
    [sess] = fg.wait_for_sessions(1, ended=True)
    assert sess.starttls_injection == len("MAIL FROM:<evil@example.org>\r\n")
    assert sess.transactions == []


def test_server_without_starttls(fakegmail_factory):
    fg = fakegmail_factory(offer_starttls=False)
    c = RawSMTP(fg)
    assert "250-STARTTLS" not in c.cmd("EHLO x")
    assert c.cmd("STARTTLS") == ["502 5.5.1 Unrecognized command. %s - gsmtp" % c.trace_id]
    expect(c.login(), STARTTLS_FIRST, c.trace_id)


# -- certificates as the client sees them -------------------------------------------------

def test_no_sni_gets_self_signed_cert(fakegmail):
    fg = fakegmail
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", fg.port_implicit)) as raw:
        with insecure.wrap_socket(raw) as tls:   # no server_hostname: no SNI
            der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    text = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem,
                          capture_output=True, text=True).stdout
    assert "No SNI provided" in text

    # A verifying client without SNI (connects by IP) must fail.
    s = smtplib.SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    s.ehlo()
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed"):
        s.starttls(context=client_context(fg.ca_file))
    fg.wait_for(lambda f: f.tls_failures == 1, 5)
    sessions = fg.wait_for_sessions(2, ended=True)
    assert sessions[0].sni is None and sessions[1].sni is None
    assert sessions[1].tls_error and sessions[1].auth == [] and sessions[1].transactions == []
    assert fg.auth_count == 0


@pytest.mark.parametrize("cert,error", [("wrongname", "match"),
                                        ("untrusted", "unable to get local issuer")])
def test_bad_certs_fail_verification(fakegmail_factory, cert, error):
    fg = fakegmail_factory(cert=cert)
    s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    s.ehlo()
    with pytest.raises(ssl.SSLCertVerificationError, match=error):
        s.starttls(context=client_context(fg.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        SMTP_SSL("127.0.0.1", fg.port_implicit, timeout=5, context=client_context(fg.ca_file))
    assert fg.wait_for(lambda f: f.tls_failures == 2, 5)
    for sess in fg.wait_for_sessions(2, ended=True):
        assert sess.sni == "localhost" and sess.tls_error and not sess.tls_active
        assert sess.auth == [] and sess.transactions == [] and sess.close_reason == "tls failed"
    assert fg.tls_handshakes == 0 and fg.auth_count == 0


def test_certificate_change_at_runtime(fakegmail_factory):
    fg = fakegmail_factory()
    s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    s.ehlo()
    s.starttls(context=client_context(fg.ca_file))
    s.quit()
    fg.set_cert("wrongname")
    s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    s.ehlo()
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        s.starttls(context=client_context(fg.ca_file))
    fg.set_cert("good")
    s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    s.ehlo()
    s.starttls(context=client_context(fg.ca_file))
    s.quit()
    assert fg.wait_for(lambda f: f.tls_handshakes == 2 and f.tls_failures == 1, 5)


# -- AUTH -----------------------------------------------------------------------------------

def test_bad_password_then_runtime_password_change(fakegmail):
    fg = fakegmail
    c = RawSMTP(fg)
    c.cmd("EHLO x")
    c.starttls()
    c.cmd("EHLO x")
    expect(c.login(password="wrong"), BAD_CREDS, c.trace_id)
    fg.password = "wrong"
    assert c.login(password="wrong") == ["235 2.7.0 Accepted"]
    s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
    s.starttls(context=client_context(fg.ca_file))
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login(USER, PASSWORD)
    assert e.value.smtp_code == 535 and b"5.7.8 Username and Password not accepted" in \
        e.value.smtp_error
    # smtplib tries PLAIN, then LOGIN after the 535: two more AUTH commands.
    assert fg.auth_count == 4
    assert [a.mechanism for a in fg.sessions[1].auth] == ["PLAIN", "LOGIN"]


def test_xoauth2(fakegmail_factory):
    import base64
    fg = fakegmail_factory(oauth_token="tok123")
    c = RawSMTP(fg, implicit=True)
    c.cmd("EHLO x")
    bad = base64.b64encode(b"user=%s\x01auth=Bearer nope\x01\x01" % USER.encode()).decode()
    reply = c.cmd("AUTH XOAUTH2 " + bad)
    assert reply[0].startswith("334 ")
    assert b'"status":"401"' in base64.b64decode(reply[0][4:])
    expect(c.cmd(""), BAD_CREDS, c.trace_id)
    good = base64.b64encode(b"user=%s\x01auth=Bearer tok123\x01\x01" % USER.encode()).decode()
    assert c.cmd("AUTH XOAUTH2 " + good) == ["235 2.7.0 Accepted"]


def test_oauthbearer_and_oauth_check(fakegmail_factory):
    """OAUTHBEARER (RFC 7628): GS2 header, the error challenge answered
    with AQ==; oauth_check decides which tokens are good."""
    import base64
    good_tokens = {"tokA"}
    fg = fakegmail_factory(oauth_check=lambda t: t in good_tokens)
    c = RawSMTP(fg, implicit=True)
    c.cmd("EHLO x")

    def msg(tok):
        return base64.b64encode(b"n,a=%s,\x01host=localhost\x01port=465\x01"
                                b"auth=Bearer %s\x01\x01" % (USER.encode(),
                                                           tok)).decode()
    reply = c.cmd("AUTH OAUTHBEARER " + msg(b"tokB"))
    assert reply[0].startswith("334 ")
    assert b"invalid_token" in base64.b64decode(reply[0][4:])
    expect(c.cmd("AQ=="), BAD_CREDS, c.trace_id)
    assert fg.sessions[0].auth[0].challenge_answer == "AQ=="
    assert c.cmd("AUTH OAUTHBEARER " + msg(b"tokA")) == ["235 2.7.0 Accepted"]
    assert fg.sessions[0].auth[1].username == USER


def test_office365_flavor(fakegmail_factory):
    """smtp.office365.com's greeting, AUTH LOGIN XOAUTH2 only, 550 5.7.30
    for a password, 535 5.7.3 after the 401 challenge."""
    import base64
    fg = fakegmail_factory(flavor="office365", oauth_token="tok")
    c = RawSMTP(fg, implicit=True)
    assert "Microsoft ESMTP MAIL Service ready" in c.greeting[0]
    ehlo = c.cmd("EHLO x")
    assert "250-AUTH LOGIN XOAUTH2" in ehlo
    assert c.login() == ["550 5.7.30 Basic authentication is not supported "
                         "for Client Submission."]
    bad = base64.b64encode(b"user=%s\x01auth=Bearer no\x01\x01"
                           % USER.encode()).decode()
    assert c.cmd("AUTH XOAUTH2 " + bad)[0].startswith("334 ")
    assert c.cmd("")[0].startswith("535 5.7.3 Authentication unsuccessful")
    good = base64.b64encode(b"user=%s\x01auth=Bearer tok\x01\x01"
                            % USER.encode()).decode()
    assert c.cmd("AUTH XOAUTH2 " + good) == ["235 2.7.0 Accepted"]


# -- named failures --------------------------------------------------------------------------

def _to_rcpt(c):
    """Authenticated session with a MAIL and one RCPT done."""
    c.ready()
    c.cmd("MAIL FROM:<%s>" % USER)
    assert c.cmd("RCPT TO:<a@example.org>")[0].startswith("250 ")


@pytest.mark.parametrize("name,stage,expected,closes", [
    ("ehlo_421", "ehlo", EHLO_421, True),
    ("auth_535", "auth", BAD_CREDS, False),
    ("auth_534_5.7.9", "auth", ASP, False),
    ("auth_534_5.7.14", "auth", WEB_LOGIN, False),
    ("auth_454", "auth", TOO_MANY_LOGINS, False),
    ("mail_530_starttls", "mail", STARTTLS_FIRST, False),
    ("mail_550_5.4.5", "mail", DAILY_LIMIT, False),
    ("mail_552_size", "mail", TOO_BIG, False),
    ("rcpt_550_5.1.1", "rcpt", NO_SUCH_USER, False),
    ("rcpt_553_5.1.3", "rcpt", bad_address("a@example.org"), False),
    ("data_550_5.4.5", "data", DAILY_LIMIT, False),
    ("dot_550_5.4.5", "dot", DAILY_LIMIT, False),
    ("dot_552_size", "dot", TOO_BIG, False),
    ("dot_421_4.3.0", "dot", TEMP_421, True),
    ("dot_451_4.3.0", "dot", TEMP_451, False),
])
def test_named_failure_replies(fakegmail, name, stage, expected, closes):
    fg = fakegmail
    fg.set_fail(name)
    c = RawSMTP(fg)
    if stage == "ehlo":
        reply = c.cmd("EHLO x")
    elif stage == "auth":
        c.cmd("EHLO x")
        c.starttls()
        c.cmd("EHLO x")
        reply = c.login()
    elif stage == "mail":
        c.ready()
        reply = c.cmd("MAIL FROM:<%s>" % USER)
    elif stage == "rcpt":
        c.ready()
        c.cmd("MAIL FROM:<%s>" % USER)
        reply = c.cmd("RCPT TO:<a@example.org>")
    elif stage == "data":
        _to_rcpt(c)
        reply = c.cmd("DATA")
    else:
        _to_rcpt(c)
        assert c.cmd("DATA")[0].startswith("354 ")
        reply = c.cmd("Subject: x\r\n\r\nbody\r\n.")
    expect(reply, expected, c.trace_id)
    if closes:
        c.expect_closed()
    else:
        assert c.cmd("NOOP")[0].startswith("250 ")
    assert fg.fail_hits == {name: 1}
    assert fg.messages == []
    if stage == "dot":
        [m] = fg.unacked_messages
        assert m.outcome == expected[0][:3] and m.data == b"Subject: x\r\n\r\nbody\r\n"


def test_size_limits(fakegmail_factory):
    fg = fakegmail_factory(max_size=1000)
    c = RawSMTP(fg).ready()
    expect(c.cmd("MAIL FROM:<%s> SIZE=1001" % USER), TOO_BIG, c.trace_id)
    c.cmd("MAIL FROM:<%s> SIZE=1000" % USER)
    c.cmd("RCPT TO:<a@example.org>")
    c.cmd("DATA")
    expect(c.cmd("x" * 998 + "\r\n" + "y" * 200 + "\r\n."), TOO_BIG, c.trace_id)
    [m] = fg.unacked_messages
    assert m.outcome == "552" and m.size == 1202
    # Far past the bound the fake stops storing but still counts and finds the end.
    c.cmd("MAIL FROM:<%s>" % USER)
    c.cmd("RCPT TO:<a@example.org>")
    c.cmd("DATA")
    c.send((b"z" * 998 + b"\r\n") * 300)
    expect(c.cmd("."), TOO_BIG, c.trace_id)
    assert fg.unacked_messages[1].size == 300000 and fg.unacked_messages[1].raw_data == b""
    assert c.cmd("NOOP")[0].startswith("250 ")
    # Gmail's real limit: SIZE= just over 35882577 is refused at MAIL.
    fg2 = fakegmail_factory()
    c2 = RawSMTP(fg2).ready()
    assert c2.cmd("MAIL FROM:<%s> SIZE=35882577" % USER)[0].startswith("250 ")
    c2.cmd("RSET")
    expect(c2.cmd("MAIL FROM:<%s> SIZE=35882578" % USER), TOO_BIG, c2.trace_id)


def test_per_recipient_rejections_and_bad_syntax(fakegmail):
    fg = fakegmail
    fg.set_fail("rcpt_550_5.1.1", addrs={"Nobody@Example.org"})
    c = RawSMTP(fg).ready()
    c.cmd("MAIL FROM:<%s>" % USER)
    assert c.cmd("RCPT TO:<ok@example.org>")[0].startswith("250 ")
    expect(c.cmd("RCPT TO:<nobody@example.org>"), NO_SUCH_USER, c.trace_id)
    expect(c.cmd("RCPT TO:<not-an-address>"), bad_address("not-an-address"), c.trace_id)
    assert c.cmd("RCPT TO:<b@example.org> NOTIFY=NEVER") == \
        ["555 5.5.2 Syntax error. %s - gsmtp" % c.trace_id]
    assert c.cmd("DATA")[0].startswith("354 ")
    assert c.cmd("hi\r\n.")[0].startswith("250 ")
    [m] = fg.messages
    assert m.rcpts == ["ok@example.org"]
    t = fg.sessions[0].transactions[0]
    assert t.rejected_rcpts == [["nobody@example.org", 550], ["not-an-address", 553]]


def test_dsn_only_when_offered(fakegmail_factory):
    # Like Gmail, the default fake offers no DSN and refuses its
    # parameters; offer_dsn=True is a server that takes and records them.
    fg = fakegmail_factory()
    c = RawSMTP(fg).ready()
    assert not any(l[4:] == "DSN" for l in c.cmd("EHLO x"))
    assert c.cmd("MAIL FROM:<%s> RET=HDRS" % USER)[0].startswith("555 ")
    fg = fakegmail_factory(offer_dsn=True)
    c = RawSMTP(fg).ready()
    assert any(l[4:] == "DSN" for l in c.cmd("EHLO x"))
    assert c.cmd("MAIL FROM:<%s> RET=HDRS ENVID=e+2B1" % USER)[0] \
        .startswith("250 ")
    assert c.cmd("RCPT TO:<a@example.org> NOTIFY=SUCCESS,DELAY "
                 "ORCPT=rfc822;a@example.org")[0].startswith("250 ")
    assert c.cmd("RCPT TO:<b@example.org>")[0].startswith("250 ")
    assert c.cmd("RCPT TO:<c@example.org> X=1")[0].startswith("555 ")
    assert c.cmd("DATA")[0].startswith("354 ")
    assert c.cmd("hi\r\n.")[0].startswith("250 ")
    [m] = fg.messages
    assert m.mail_params == {"RET": "HDRS", "ENVID": "e+2B1"}
    assert m.rcpt_params == {"a@example.org": {
        "NOTIFY": "SUCCESS,DELAY", "ORCPT": "rfc822;a@example.org"}}


def test_too_many_recipients(fakegmail):
    fg = fakegmail
    fg.set_fail("rcpt_452_too_many", limit=2)
    c = RawSMTP(fg).ready()
    c.cmd("MAIL FROM:<%s>" % USER)
    for i in range(2):
        assert c.cmd("RCPT TO:<r%d@example.org>" % i)[0].startswith("250 ")
    expect(c.cmd("RCPT TO:<r2@example.org>"), TOO_MANY_RCPTS, c.trace_id)
    expect(c.cmd("RCPT TO:<r3@example.org>"), TOO_MANY_RCPTS, c.trace_id)
    assert fg.fail_hits == {"rcpt_452_too_many": 2}


def test_count_limited_failure_then_success(fakegmail):
    fg = fakegmail
    fg.set_fail("auth_535", count=2)
    outcomes = []
    for _ in range(3):
        s = SMTP("127.0.0.1", fg.port_starttls, timeout=5)
        s.starttls(context=client_context(fg.ca_file))
        try:
            outcomes.append(login_plain(s)[0])
        except smtplib.SMTPAuthenticationError as e:
            outcomes.append(e.smtp_code)
        s.quit()
    assert outcomes == [535, 535, 235]
    assert fg.fail_hits == {"auth_535": 2} and fg.fails == {}
    assert fg.auth_count == 3 and fg.session_count == 3
    assert len(fg.connection_times) == 3


def test_failures_given_to_constructor(fakegmail_factory):
    fg = fakegmail_factory(fail={"mail_550_5.4.5": {"count": 1}, "auth_454": {}})
    assert set(fg.fails) == {"mail_550_5.4.5", "auth_454"}
    fg.clear_fail("auth_454")
    c = RawSMTP(fg).ready()
    expect(c.cmd("MAIL FROM:<%s>" % USER), DAILY_LIMIT, c.trace_id)
    assert c.cmd("MAIL FROM:<%s>" % USER)[0].startswith("250 ")
    with pytest.raises(ValueError):
        fg.set_fail("no_such_failure")


def test_idle_timeout(fakegmail):
    fg = fakegmail
    fg.set_fail("idle_451_4.4.2", after=0.3)
    c = RawSMTP(fg)
    c.cmd("EHLO x")
    t0 = time.monotonic()
    expect(c.read_reply(), IDLE, c.trace_id)
    assert 0.25 < time.monotonic() - t0 < 3
    c.expect_closed()
    assert fg.wait_for_sessions(1, ended=True)[0].close_reason == "idle"


# -- pipelining and data ----------------------------------------------------------------------

def test_pipelined_transaction_in_one_write(fakegmail):
    fg = fakegmail
    fg.set_fail("rcpt_550_5.1.1", addrs={"bad@example.org"})
    c = RawSMTP(fg, implicit=True).ready()
    c.send("MAIL FROM:<%s> SIZE=%d\r\nRCPT TO:<a@example.org>\r\n"
           "RCPT TO:<bad@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
           % (USER, len(MESSAGE)))
    tid = c.trace_id
    assert c.read_reply() == ["250 2.1.0 OK %s - gsmtp" % tid]
    assert c.read_reply() == ["250 2.1.5 OK %s - gsmtp" % tid]
    expect(c.read_reply(), NO_SUCH_USER, tid)
    assert c.read_reply() == ["250 2.1.5 OK %s - gsmtp" % tid]
    assert c.read_reply() == ["354  Go ahead %s - gsmtp" % tid]
    # The message, the final dot and the next commands in one write too.
    c.send(STUFFED + b".\r\nNOOP\r\nQUIT\r\n")
    assert c.read_reply()[0].startswith("250 2.0.0 OK  ")
    assert c.read_reply() == ["250 2.0.0 OK %s - gsmtp" % tid]
    assert c.read_reply()[0].startswith("221 ")
    [m] = fg.messages
    assert m.raw_data == STUFFED and m.data == MESSAGE
    assert m.rcpts == ["a@example.org", "b@example.org"]
    sess = fg.wait_for_sessions(1, ended=True)[0]
    assert sess.pipelined >= 4


def test_data_ends_only_at_crlf_dot_crlf(fakegmail):
    fg = fakegmail
    c = RawSMTP(fg).ready()
    c.cmd("MAIL FROM:<%s>" % USER)
    c.cmd("RCPT TO:<a@example.org>")
    c.cmd("DATA")
    body = b"a\n.\nb\r.\r\nc .\r\n.x\r\n"     # bare LF/CR dots are not the end
    for i in range(0, len(body), 3):           # in small pieces
        c.send(body[i:i + 3])
        time.sleep(0.005)
    c.send(b".\r\n")
    assert c.read_reply()[0].startswith("250 ")
    [m] = fg.messages
    assert m.raw_data == body and m.data == b"a\n.\nb\r.\r\nc .\r\nx\r\n"


def test_empty_message_and_bdat(fakegmail):
    fg = fakegmail
    c = RawSMTP(fg).ready()
    c.cmd("MAIL FROM:<>")
    c.cmd("RCPT TO:<a@example.org>")
    c.cmd("DATA")
    assert c.cmd(".")[0].startswith("250 ")
    c.cmd("MAIL FROM:<%s> BODY=8BITMIME SMTPUTF8" % USER)
    c.cmd("RCPT TO:<a@example.org>")
    c.send(b"BDAT 5\r\nhello")
    assert c.read_reply()[0].startswith("250 ")
    c.send(b"BDAT 3 LAST\r\n.\r\n")
    assert c.read_reply()[0].startswith("250 2.0.0 OK  ")
    m1, m2 = fg.messages
    assert (m1.mail_from, m1.raw_data) == ("", b"")
    assert m2.via == "BDAT" and m2.data == b"hello.\r\n"
    assert m2.mail_params == {"BODY": "8BITMIME", "SMTPUTF8": True}


# -- transport faults ----------------------------------------------------------------------------

def test_drop_mid_data(fakegmail):
    fg = fakegmail
    fg.set_fail("drop_mid_data", after_bytes=10, count=1)
    s = SMTP_SSL("127.0.0.1", fg.port_implicit, timeout=5, context=client_context(fg.ca_file))
    s.login(USER, PASSWORD)
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError)):
        s.sendmail(USER, ["a@example.org"], MESSAGE * 100)
    [sess] = fg.wait_for_sessions(1, ended=True)
    assert sess.close_reason == "drop_mid_data"
    assert sess.transactions[0].outcome == "dropped"
    assert sess.transactions[0].data_bytes >= 10
    assert fg.messages == [] and fg.unacked_messages == []
    # the next session is fine again
    s = SMTP_SSL("127.0.0.1", fg.port_implicit, timeout=5, context=client_context(fg.ca_file))
    s.login(USER, PASSWORD)
    s.sendmail(USER, ["a@example.org"], MESSAGE)
    s.quit()
    assert len(fg.wait_for_messages(1)) == 1


@pytest.mark.parametrize("reset", [False, True])
def test_drop_after_dot(fakegmail, reset):
    fg = fakegmail
    fg.set_fail("drop_after_dot", reset=reset)
    c = RawSMTP(fg).ready()
    c.cmd("MAIL FROM:<%s>" % USER)
    c.cmd("RCPT TO:<a@example.org>")
    c.cmd("DATA")
    c.send(STUFFED + b".\r\n")
    c.expect_closed()
    [m] = fg.unacked_messages
    assert m.outcome == "dropped" and m.data == MESSAGE
    assert fg.messages == []


def test_hang_and_stop_leaves_no_threads(fakegmail_certs):
    before = set(threading.enumerate())
    fg = FakeGmail(certdir=fakegmail_certs["dir"], fail={"hang": {"at": "mail"}}).start()
    c = RawSMTP(fg, timeout=0.5).ready()
    c.send("MAIL FROM:<%s>\r\n" % USER)
    with pytest.raises(socket.timeout):
        c.read_reply()
    # A second connection left in the TLS handshake of the implicit port.
    hung_sock = socket.create_connection(("127.0.0.1", fg.port_implicit))
    fg.wait_for_sessions(2)
    t0 = time.monotonic()
    fg.stop()
    assert time.monotonic() - t0 < 3
    assert set(threading.enumerate()) <= before
    assert fg.sessions[0].close_reason == "hang"
    hung_sock.close()
    c.close()


def test_long_line_reset_record_and_wait_timeout(fakegmail):
    fg = fakegmail
    c = RawSMTP(fg)
    c.send(b"NOOP " + b"x" * 20000 + b"\r\n")
    assert c.read_reply() == ["500 5.5.2 Line too long. %s - gsmtp" % c.trace_id]
    c.expect_closed()
    fg.wait_for_sessions(1, ended=True)
    fg.reset_record()
    assert (fg.sessions, fg.session_count, fg.connection_times) == ([], 0, [])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        fg.wait_for_messages(1, timeout=0.2)
    assert time.monotonic() - t0 < 1


def test_custom_reply_at_stage(fakegmail):
    fg = fakegmail
    fg.set_fail("custom", at="rcpt", reply="450-4.2.1 first\n450 4.2.1 second {id} - gsmtp",
                count=1)
    c = RawSMTP(fg).ready()
    c.cmd("MAIL FROM:<%s>" % USER)
    assert c.cmd("RCPT TO:<a@example.org>") == \
        ["450-4.2.1 first", "450 4.2.1 second %s - gsmtp" % c.trace_id]
    assert c.cmd("RCPT TO:<a@example.org>")[0].startswith("250 ")


# -- other clients and modes ------------------------------------------------------------------------

SWAKS = shutil.which("swaks")


@pytest.mark.skipif(not SWAKS, reason="swaks not installed")
@pytest.mark.parametrize("mode,auth", [("starttls", "PLAIN"), ("implicit", "LOGIN")])
def test_swaks(fakegmail, mode, auth):
    fg = fakegmail
    port = fg.port_starttls if mode == "starttls" else fg.port_implicit
    args = [SWAKS, "--server", "127.0.0.1:%d" % port,
            "--tls" if mode == "starttls" else "--tls-on-connect",
            "--tls-verify", "--tls-ca-path", fg.ca_file, "--tls-sni", "localhost",
            "--auth", auth, "--auth-user", USER, "--auth-password", PASSWORD,
            "--from", USER, "--to", "rcpt@example.org", "--helo", "swaks.example",
            "--header", "Subject: via swaks", "--body", "line\n.dotted\n"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [m] = fg.wait_for_messages(1)
    assert m.rcpts == ["rcpt@example.org"] and m.mail_from == USER
    assert b"\r\n..dotted\r\n" in m.raw_data and b"\r\n.dotted\r\n" in m.data
    assert b"Subject: via swaks\r\n" in m.data
    [sess] = fg.wait_for_sessions(1, ended=True)
    assert sess.sni == "localhost" and sess.auth[0].mechanism == auth and sess.authed


@pytest.mark.skipif(not SWAKS, reason="swaks not installed")
def test_swaks_rejects_untrusted_cert(fakegmail_factory):
    fg = fakegmail_factory(cert="untrusted")
    proc = subprocess.run(
        [SWAKS, "--server", "127.0.0.1:%d" % fg.port_starttls, "--tls", "--tls-verify",
         "--tls-ca-path", fg.ca_file, "--tls-sni", "localhost", "--auth", "PLAIN",
         "--auth-user", USER, "--auth-password", PASSWORD, "--from", USER,
         "--to", "rcpt@example.org"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    fg.wait_for_sessions(1, ended=True)
    assert fg.auth_count == 0 and fg.messages == [] and fg.tls_failures == 1


def test_ipv6(fakegmail_factory):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1")
    fg = fakegmail_factory(host="::1")
    s = SMTP("::1", fg.port_starttls, timeout=5)
    s.starttls(context=client_context(fg.ca_file))
    code, text = s.ehlo("x")
    assert b"at your service, [::1]" in text
    s.login(USER, PASSWORD)
    s.sendmail(USER, ["a@example.org"], b"hi\r\n")
    s.quit()
    assert fg.wait_for_messages(1)[0].data == b"hi\r\n"


def test_standalone_mode(fakegmail_certs, tmp_path):
    record = tmp_path / "record.json"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fakegmail.py"), "--certdir",
         fakegmail_certs["dir"], "--user", "u@gmail.com", "--password", "pw",
         "--fail", "rcpt_550_5.1.1:addrs=x@example.org", "--fail", "auth_535:count=1",
         "--record", str(record)],
        stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        ctx = client_context(info["ca"])
        s = SMTP("127.0.0.1", info["port_starttls"], timeout=5)
        s.starttls(context=ctx)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            login_plain(s, "u@gmail.com", "pw")
        s.quit()
        s = SMTP_SSL("127.0.0.1", info["port_implicit"], timeout=5, context=ctx)
        s.login("u@gmail.com", "pw")
        assert set(s.sendmail("u@gmail.com", ["a@example.org", "x@example.org"],
                              b"hi\r\n")) == {"x@example.org"}
        s.quit()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    dump = json.loads(out)
    assert dump == json.loads(record.read_text())
    assert dump["session_count"] == 2 and dump["auth_count"] == 2
    [m] = dump["messages"]
    assert m["rcpts"] == ["a@example.org"] and m["data"] == "hi\r\n"
    assert dump["fail_hits"] == {"auth_535": 1, "rcpt_550_5.1.1": 1}


def test_rtt_costs_one_round_trip_per_flight(fakegmail_factory):
    """rtt= holds each flight of bytes, not each reply: a pipelined
    transaction (MAIL, RCPT, BDAT LAST with its body, in one write) gets
    all its replies after one round trip, while the same commands one at a
    time cost one round trip each."""
    rtt = 0.4
    fg = fakegmail_factory(rtt=rtt)
    c = RawSMTP(fg)          # the greeting itself came through the link
    c.ready()
    body = b"Subject: x\r\n\r\n.not stuffed\r\n"

    def transaction(to):
        return (b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nBDAT %d LAST\r\n%s"
                % (fg.user.encode(), to, len(body), body))

    t0 = time.monotonic()
    c.send(transaction(b"a@example.org"))
    replies = [c.read_reply() for _ in range(3)]
    pipelined = time.monotonic() - t0
    assert [r[-1][:3] for r in replies] == ["250", "250", "250"]

    t0 = time.monotonic()
    for line in (b"MAIL FROM:<%s>\r\n" % fg.user.encode(),
                 b"RCPT TO:<b@example.org>\r\n",
                 b"BDAT %d LAST\r\n%s" % (len(body), body)):
        c.send(line)
        assert c.read_reply()[-1][:3] == "250"
    one_by_one = time.monotonic() - t0
    c.cmd("QUIT")
    # Lower bounds hold whatever the load; the upper one has 2 rtt of slack.
    assert pipelined >= rtt
    assert one_by_one >= 3 * rtt
    assert pipelined < 3 * rtt, (pipelined, one_by_one)
    msgs = fg.wait_for_messages(2)
    assert [m.via for m in msgs] == ["BDAT", "BDAT"]
    assert msgs[0].data == body       # BDAT: the bytes, no dot-unstuffing
