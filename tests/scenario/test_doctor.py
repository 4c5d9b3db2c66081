"""The upstream doctor, `smartrelay test` (docs/cli.md), against the fake Gmail.

Each test points a configuration at tests/fakegmail in one failure mode,
runs the real tool and asserts what a sysadmin sees: the step that failed,
the explanation with its fix, and the exit status (0 only when every step
passed, 1 when one failed, 78 when the configuration or the password cannot
be used).  The password must never appear in the output, not even with -v.
"""
import base64
import os
import re
import shutil
import socket
import subprocess
import threading

import pytest

from harness import (SMARTRELAY, Daemon, can_unshare, free_port,
                     local_non_loopback_address, with_hosts)

PASSWORD = "abcdefghijklmnop"


def write_password(tmp, text, mode=0o600):
    pw = os.path.join(str(tmp), "app-password")
    with open(pw, "w") as f:
        f.write(text + "\n")
    os.chmod(pw, mode)
    return pw


def config(tmp, fg=None, host="localhost", port=None, tls="starttls",
           password=None, ca=None, pw_mode=0o600, extra="", user=None):
    """Writes a config for the doctor; returns its path."""
    pw = write_password(tmp, password if password is not None else
                        "abcd efgh ijkl mnop", pw_mode)
    if port is None:
        port = fg.port_implicit if tls == "implicit" else fg.port_starttls
    ca = ca or (fg.ca_file if fg is not None else None)
    up = ('upstream = { host = "%s"; port = %d; tls = "%s"; %s'
          'username = "%s"; password_file = "%s"; timeout = 10; };\n%s'
          % (host, port, tls, 'ca_file = "%s"; ' % ca if ca else "",
             user or (fg.user if fg is not None else "test.user@gmail.com"),
             pw, extra))
    d = Daemon(tmp, upstream=up)
    return d.conf


def doctor(conf, *args, env=None, timeout=60):
    """Runs smartrelay test; returns (status, output, whitespace-normalised)."""
    e = dict(os.environ)
    e.pop("CREDENTIALS_DIRECTORY", None)
    e.update(env or {})
    r = subprocess.run([SMARTRELAY, "-c", conf, "test"] + list(args),
                       capture_output=True, timeout=timeout, env=e)
    out = r.stdout.decode() + r.stderr.decode()
    for secret in (PASSWORD, "abcd efgh ijkl mnop", "wrongpassword1"):
        assert secret not in out, out
    return r.returncode, out, " ".join(out.split())


def step(out, name):
    """The status word of the first line of step `name`, or None."""
    m = re.search(r"^%s +(ok|FAILED) " % re.escape(name), out, re.M)
    return m.group(1) if m else None


@pytest.fixture
def fake(fakegmail_factory):
    return fakegmail_factory


# ---- success ---------------------------------------------------------------

def test_all_ok_starttls_with_message(tmp_path, fake):
    fg = fake()
    rc, out, flat = doctor(config(tmp_path, fg), "--to", "bob@example.org")
    assert rc == 0, out
    for s in ("config", "password", "resolve", "connect", "greeting",
              "starttls", "tls", "auth", "send", "quit"):
        assert step(out, s) == "ok", (s, out)
    assert "(the spaces inside were removed)" in out
    assert re.search(r"^tls +ok +TLSv1\.[23] \S+, certificate for "
                     r"localhost", out, re.M), out
    assert "AUTH LOGIN PLAIN" in out and "SIZE 35882577" in out
    assert "all checks passed" in out
    msg = fg.wait_for_messages(1)[0]
    assert msg.mail_from == fg.user and msg.rcpts == ["bob@example.org"]
    assert msg.mail_params.get("SIZE") == str(len(msg.data))
    assert b"Subject: smartrelay test\r\n" in msg.data
    assert re.search(rb"\r\nDate: .+\r\n", msg.data)
    assert re.search(rb"\r\nMessage-ID: <[^>]+@relay\.test>\r\n", msg.data)
    sess = fg.sessions[-1]
    assert sess.sni == "localhost" and sess.tls_active
    assert sess.auth[0].mechanism == "PLAIN" and sess.auth[0].success
    assert sess.commands[-1] == "QUIT"


def test_all_ok_implicit_with_message(tmp_path, fake):
    fg = fake()
    rc, out, _ = doctor(config(tmp_path, fg, tls="implicit"),
                        "--to", "bob@example.org")
    assert rc == 0, out
    assert step(out, "starttls") is None
    assert step(out, "tls") == "ok" and step(out, "send") == "ok"
    msg = fg.wait_for_messages(1)[0]
    assert fg.sessions[msg.session].port == "implicit"


def test_all_ok_without_message_sends_nothing(tmp_path, fake):
    fg = fake()
    rc, out, _ = doctor(config(tmp_path, fg))
    assert rc == 0, out
    assert step(out, "auth") == "ok" and step(out, "send") is None
    assert fg.messages == []


def test_envelope_from_and_verbose_masks_auth(tmp_path, fake):
    fg = fake()
    conf = config(tmp_path, fg,
                  extra='rewrite = { envelope_from = "me@example.net"; };')
    rc, out, _ = doctor(conf, "-v", "--to", "bob@example.org")
    assert rc == 0, out
    assert "> AUTH PLAIN ***" in out
    assert "> EHLO relay.test" in out and "< 235 2.7.0 Accepted" in out
    assert fg.wait_for_messages(1)[0].mail_from == "me@example.net"


# ---- AUTH refusals ------------------------------------------------------------

def test_wrong_password_535(tmp_path, fake):
    fg = fake()
    rc, out, flat = doctor(config(tmp_path, fg, password="wrongpassword1"))
    assert rc == 1, out
    assert step(out, "auth") == "FAILED" and "535 5.7.8" in out
    assert ("username or password not accepted: for Gmail use an App "
            "Password, not the account password; check upstream.username "
            "is the full address") in flat
    # Gmail (the greeting says gsmtp) and not 16 letters: say so.
    assert "14 characters long; a Google App Password is 16 letters" in flat
    assert "all checks passed" not in out


@pytest.mark.parametrize("fail,text", [
    ("auth_534_5.7.9", "this Google account has 2-Step Verification: "
     "create an App Password at https://myaccount.google.com/apppasswords "
     "and put it in {pw}"),
    ("auth_534_5.7.14", "Google wants a web login first: sign in at "
     "https://accounts.google.com from this network, then retry"),
    ("auth_454", "too many login attempts: wait"),
])
def test_auth_failures(tmp_path, fake, fail, text):
    fg = fake(fail=[fail])
    conf = config(tmp_path, fg)
    rc, out, flat = doctor(conf)
    assert rc == 1, out
    assert step(out, "auth") == "FAILED", out
    assert text.format(pw=os.path.join(str(tmp_path), "app-password")) in flat
    if fail == "auth_454":
        assert "smartrelay reuses one session, so this usually comes " \
               "from other clients" in flat
    assert fg.fail_hits == {fail: 1}


def test_password_spaces_mentioned_on_refusal(tmp_path, fake):
    fg = fake(fail=["auth_535"])
    rc, out, flat = doctor(config(tmp_path, fg))
    assert rc == 1, out
    assert "contains spaces, which smartrelay removed" in flat
    assert "normalised" in flat


@pytest.mark.skipif(local_non_loopback_address() is None or
                    not can_unshare(), reason="needs a non-loopback address "
                    "and unshare -rm (to give the tool its own /etc/hosts)")
def test_plaintext_refuses_a_non_loopback_address(tmp_path):
    # tls = "none" with host "localhost", and an /etc/hosts that maps
    # localhost elsewhere: the daemon refuses that address (the password
    # would go in clear text), so the doctor must too (issue 13); it used
    # to connect and log in.
    ip = local_non_loopback_address()
    srv = socket.create_server(("0.0.0.0", 0))
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    try:
        conf = config(tmp_path, host="localhost", port=port, tls="none",
                      extra="", password=PASSWORD)
        with open(conf) as f:
            text = f.read().replace("tls = \"none\";",
                                    "tls = \"none\"; insecure_plaintext = "
                                    "true;")
        with open(conf, "w") as f:
            f.write(text)
        tool = with_hosts(tmp_path, SMARTRELAY, "%s localhost\n" % ip)
        e = dict(os.environ)
        e.pop("CREDENTIALS_DIRECTORY", None)
        r = subprocess.run([tool, "-c", conf, "test"], capture_output=True,
                           timeout=60, env=e)
        out = r.stdout.decode() + r.stderr.decode()
        flat = " ".join(out.split())
        assert r.returncode == 1, out
        assert step(out, "resolve") == "ok" and ip in out, out
        assert step(out, "connect") == "FAILED", out
        assert "%s: not a loopback address" % ip in out
        assert 'tls = "none" is only for a server on this machine' in flat
        with pytest.raises(socket.timeout):
            srv.accept()            # never connected
        assert PASSWORD not in out
    finally:
        srv.close()


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="needs valgrind")
@pytest.mark.skipif(os.environ.get("SMARTRELAY_SANITIZE", "none") != "none",
                    reason="valgrind cannot run a sanitizer build (the gcc "
                    "build runs this test)")
def test_password_file_without_newline_reads_no_uninitialised_memory(
        tmp_path):
    # printf 'abcd efgh ijkl mnop' > file: no line end.  The doctor used to
    # look for the spaces by re-reading the file into a buffer that was
    # not NUL-terminated (issue 13); valgrind saw the read past the data.
    conf = config(tmp_path, port=free_port())
    pw = os.path.join(str(tmp_path), "app-password")
    with open(pw, "w") as f:
        f.write("abcd efgh ijkl mnop")
    e = dict(os.environ)
    e.pop("CREDENTIALS_DIRECTORY", None)
    r = subprocess.run(["valgrind", "-q", "--error-exitcode=99",
                        SMARTRELAY, "-c", conf, "test"],
                       capture_output=True, timeout=120, env=e)
    out = r.stdout.decode() + r.stderr.decode()
    assert "uninitialised" not in out, out
    assert r.returncode == 1, out       # the connection is refused
    assert re.search(r"^password +ok .*, 16 characters \(the spaces inside "
                     r"were removed\)", out, re.M), out


class LoginOnlyStub:
    """A plain-text SMTP stub on loopback offering only AUTH LOGIN (for
    tls = "none" with insecure_plaintext); records the lines it got."""

    def __init__(self):
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.port = self.ls.getsockname()[1]
        self.lines = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.ls.accept()
        conn.settimeout(10)
        f = conn.makefile("rb")

        def say(text):
            conn.sendall(text.encode() + b"\r\n")

        def read():
            line = f.readline().decode().rstrip("\r\n")
            self.lines.append(line)
            return line
        say("220 stub ESMTP")
        try:
            while True:
                line = read()
                verb = line.split(" ")[0].upper()
                if verb == "EHLO":
                    say("250-stub\r\n250-SIZE 1000\r\n250 AUTH LOGIN")
                elif line == "AUTH LOGIN":
                    say("334 VXNlcm5hbWU6")
                    user = base64.b64decode(read()).decode()
                    say("334 UGFzc3dvcmQ6")
                    pw = base64.b64decode(read()).decode()
                    ok = user == "test.user@gmail.com" and pw == PASSWORD
                    say("235 2.7.0 Accepted" if ok else
                        "535 5.7.8 Bad credentials")
                elif verb == "QUIT":
                    say("221 2.0.0 bye")
                    break
                else:
                    say("502 5.5.1 no")
        except (OSError, ValueError):
            pass
        conn.close()

    def close(self):
        self.ls.close()
        self.thread.join(5)


def test_auth_login_over_loopback_plaintext(tmp_path):
    stub = LoginOnlyStub()
    try:
        conf = config(tmp_path, host="127.0.0.1", port=stub.port, tls="none",
                      extra="", password=PASSWORD)
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace('tls = "none";',
                                 'tls = "none"; insecure_plaintext = true;'))
        rc, out, _ = doctor(conf, "-v")
    finally:
        stub.close()
    assert rc == 0, out
    assert re.search(r"^tls +ok +skipped", out, re.M), out
    assert re.search(r"^auth +ok +LOGIN as test.user@gmail.com", out, re.M)
    # Both 334 answers are credentials: masked in the trace.
    assert out.count("> ***") == 2, out
    assert base64.b64encode(PASSWORD.encode()).decode() not in out
    assert stub.lines[-1] == "QUIT"


# ---- TLS and certificates ---------------------------------------------------

def test_wrong_name_certificate(tmp_path, fake):
    fg = fake(cert="wrongname")
    rc, out, flat = doctor(config(tmp_path, fg))
    assert rc == 1, out
    assert step(out, "tls") == "FAILED"
    assert "certificate verify failed" in out
    assert ('The certificate is for wrong.example, but upstream.host is '
            '"localhost"') in flat
    assert fg.auth_count == 0


def test_untrusted_ca(tmp_path, fake):
    fg = fake(cert="untrusted")
    rc, out, flat = doctor(config(tmp_path, fg))
    assert rc == 1, out
    assert step(out, "tls") == "FAILED"
    assert ("the certificate is not signed by a trusted CA (ca_file / "
            "system store)") in flat
    assert "untrusted test CA" in flat and fg.ca_file in flat
    assert fg.auth_count == 0


def test_ip_address_host_gets_no_sni_certificate(tmp_path, fake):
    fg = fake()
    rc, out, flat = doctor(config(tmp_path, fg, host="127.0.0.1"))
    assert rc == 1, out
    assert step(out, "tls") == "FAILED"
    assert "invalid2.invalid" in out
    assert "\"No SNI provided\" certificate" in flat
    assert "Use the host name" in flat


def test_no_starttls_offered(tmp_path, fake):
    fg = fake(offer_starttls=False)
    rc, out, flat = doctor(config(tmp_path, fg))
    assert rc == 1, out
    assert step(out, "starttls") == "FAILED"
    assert ('the server does not offer STARTTLS: if this is port 465 set '
            'tls = "implicit"') in flat
    assert fg.auth_count == 0


def test_implicit_on_starttls_port(tmp_path, fake):
    fg = fake()
    rc, out, flat = doctor(config(tmp_path, fg, tls="implicit",
                                  port=fg.port_starttls))
    assert rc == 1, out
    assert step(out, "tls") == "FAILED"
    assert '"220 smtp.gmail.com ESMTP' in out
    assert ('this port speaks plain SMTP first: use tls = "starttls" '
            '(port 587)') in flat


def test_starttls_on_implicit_port(tmp_path, fake):
    fg = fake()
    rc, out, flat = doctor(config(tmp_path, fg, tls="starttls",
                                  port=fg.port_implicit))
    assert rc == 1, out
    assert step(out, "greeting") == "FAILED"
    assert "no greeting within 5 seconds" in out
    assert ('this port expects TLS from the first byte (implicit TLS, port '
            '465). Set tls = "implicit"') in flat
    # The probe really was a TLS handshake with our name.
    assert fg.wait_for(lambda f: f.tls_handshakes >= 1, 5)
    assert fg.auth_count == 0


# ---- network ------------------------------------------------------------------

def test_connection_refused(tmp_path):
    port = free_port()
    rc, out, flat = doctor(config(tmp_path, port=port))
    assert rc == 1, out
    assert step(out, "resolve") == "ok"
    assert step(out, "connect") == "FAILED"
    assert "Connection refused" in out
    assert "nothing accepts connections on port %d of localhost" % port in flat
    assert ('port 587 needs tls = "starttls", port 465 needs tls = '
            '"implicit"') in flat


def test_unresolvable_host(tmp_path):
    rc, out, flat = doctor(config(tmp_path, host="nonexistent.invalid",
                                  port=587))
    assert rc == 1, out
    assert step(out, "resolve") == "FAILED"
    assert ("cannot resolve nonexistent.invalid: check the name and DNS"
            in flat)
    assert step(out, "connect") is None


def test_gmail_host_hint_for_non_app_password(tmp_path):
    # smtp.gmail.com cannot be reached from the tests: only step 1 matters.
    rc, out, flat = doctor(config(tmp_path, host="smtp.gmail.com", port=587,
                                  password="wrongpassword1"))
    assert step(out, "password") == "ok", out
    assert ("Google accounts need an App Password (16 letters" in flat and
            "https://myaccount.google.com/apppasswords" in flat)


# ---- the password -------------------------------------------------------------

def test_missing_password_file(tmp_path, fake):
    fg = fake()
    conf = config(tmp_path, fg)
    os.unlink(os.path.join(str(tmp_path), "app-password"))
    rc, out, flat = doctor(conf)
    assert rc == 78, out
    assert step(out, "password") == "FAILED"
    assert "does not exist" in flat and "chmod 600" in flat
    assert fg.session_count == 0


def test_world_readable_password_file(tmp_path, fake):
    fg = fake()
    conf = config(tmp_path, fg, pw_mode=0o644)
    rc, out, flat = doctor(conf)
    assert rc == 78, out
    assert step(out, "password") == "FAILED"
    assert "mode 0644" in flat
    assert "chmod 600 %s" % os.path.join(str(tmp_path), "app-password") in flat
    assert fg.session_count == 0


def test_credentials_directory_takes_precedence(tmp_path, fake):
    fg = fake()
    conf = config(tmp_path, fg, password="wrongpassword1")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "upstream-password").write_text(PASSWORD + "\n")
    rc, out, _ = doctor(conf, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert rc == 0, out
    assert "systemd credential %s" % (creds / "upstream-password") in out


# ---- the test message ---------------------------------------------------------

def test_daily_limit_at_mail(tmp_path, fake):
    fg = fake(fail=["mail_550_5.4.5"])
    rc, out, flat = doctor(config(tmp_path, fg), "--to", "bob@example.org")
    assert rc == 1, out
    assert step(out, "auth") == "ok" and step(out, "send") == "FAILED"
    assert "550 5.4.5" in out
    assert "daily sending limit reached: it resets within 24 hours" in flat
    assert fg.messages == []


def test_size_refusal_after_dot(tmp_path, fake):
    fg = fake(fail=["dot_552_size"])
    rc, out, flat = doctor(config(tmp_path, fg), "--to", "bob@example.org")
    assert rc == 1, out
    assert step(out, "send") == "FAILED" and "552 5.3.4" in out
    assert "the message is too big" in flat


def test_recipient_refused(tmp_path, fake):
    fg = fake(fail=["rcpt_550_5.1.1"])
    rc, out, flat = doctor(config(tmp_path, fg), "--to", "nobody@example.org")
    assert rc == 1, out
    assert "The recipient nobody@example.org was refused" in flat


def test_ehlo_421(tmp_path, fake):
    fg = fake(fail=["ehlo_421"])
    rc, out, flat = doctor(config(tmp_path, fg))
    assert rc == 1, out
    assert step(out, "ehlo") == "FAILED" and "421 4.7.0" in out
    assert "try again later" in flat


def test_bad_to_address_is_usage_error(tmp_path, fake):
    fg = fake()
    rc, out, _ = doctor(config(tmp_path, fg), "--to", "not an address")
    assert rc == 64, out
    assert fg.session_count == 0


# ---- --explain: the advice table, as the log and status word it ----------

def test_explain_reply_and_key(tmp_path):
    conf = config(tmp_path, port=587, host="smtp.example.org")
    pw = os.path.join(str(tmp_path), "app-password")
    rc, out, flat = doctor(conf, "--explain",
                           "534-5.7.9 Application-specific password "
                           "required.\n534 5.7.9  https://support.google"
                           ".com/mail/?p=InvalidSecondFactor x - gsmtp")
    assert rc == 0, out
    assert "advice: 534 5.7.9" in flat
    assert "smartrelay: the queue pauses, nothing bounces" in flat
    assert "create an App Password at https://myaccount.google.com/" \
           "apppasswords and put it in %s" % pw in flat
    rc, out, flat = doctor(conf, "--explain", "connect-refused")
    assert rc == 0, out
    assert "nothing accepts connections on port 587 of smtp.example.org" \
        in flat
    rc, out, _ = doctor(conf, "--explain", "250 2.0.0 OK")
    assert rc == 1 and 'no advice for "250 2.0.0 OK"' in out, out
    rc, out, _ = doctor(conf, "--explain", "hello")
    assert rc == 1 and "(not an SMTP reply)" in out, out


def test_no_auth_offered_is_explained(tmp_path, fake):
    # tls = "none" to the fake's port before STARTTLS: Gmail offers no AUTH
    # there, so the AUTH step fails and says which mechanisms we need.
    fg = fake()
    conf = config(tmp_path, fg, host="127.0.0.1", port=fg.port_starttls,
                  tls="none")
    with open(conf) as f:
        text = f.read().replace('tls = "none";',
                                'tls = "none"; insecure_plaintext = true;')
    with open(conf, "w") as f:
        f.write(text)
    rc, out, flat = doctor(conf)
    assert rc == 1, out
    assert step(out, "auth") == "FAILED", out
    assert "the server offers no AUTH" in flat, out
    assert "smartrelay logs in with AUTH PLAIN or LOGIN" in flat, out
    assert fg.sessions[-1].auth == [], "no credentials may be sent"
