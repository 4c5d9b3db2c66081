"""OAuth 2.0 sign-in upstream (docs/oauth.md) with the real smartrelayd.

A relay configured with auth = "xoauth2" gets its access token from the
fake token endpoint (tests/fakegmail/faketoken.py, HTTPS with the test CA)
and logs in to the fake Gmail (OAUTHBEARER, which Gmail offers) or to the
fake Microsoft 365 (XOAUTH2 only). What a user would observe is asserted:
the messages that reached the upstream, the token requests the endpoint
counted, the refresh token file, the log, `smartrelay status`, and that no
token or secret appears in the log or the spool.
"""
import json
import os
import stat
import subprocess

import pytest

from faketoken import FakeToken
import harness
from harness import SMARTRELAY, Daemon, wait_until

SENDER = "alice@example.net"
RCPT = "bob@example.org"


@pytest.fixture
def faketoken(fakegmail_certs):
    """factory(**FakeToken kwargs) -> a started fake token endpoint."""
    made = []

    def make(**kw):
        ft = FakeToken(fakegmail_certs["dir"], **kw).start()
        made.append(ft)
        return ft
    yield make
    for ft in made:
        ft.stop()


def oauth_conf(tmp, fg, ft, provider="google", grant="refresh_token",
               refresh_token="1//test-refresh", conns=2, mpc=100, timeout=10,
               initial=1, rmax=2, extra_oauth=""):
    """The upstream part of a config: auth = xoauth2 against fg and ft."""
    tmp = str(tmp)
    cs = os.path.join(tmp, "client-secret")
    with open(cs, "w") as f:
        f.write((ft.client_secret or "") + "\n")
    os.chmod(cs, 0o600)
    rt = os.path.join(tmp, "refresh-token")
    files = 'client_secret_file = "%s"; ' % cs if ft.client_secret else ""
    if grant == "refresh_token":
        with open(rt, "w") as f:
            f.write(refresh_token + "\n")
        os.chmod(rt, 0o600)
        files += 'refresh_token_file = "%s"; ' % rt
    return ('upstream = { host = "localhost"; port = %d; tls = "starttls"; '
            'ca_file = "%s"; username = "%s"; auth = "xoauth2"; '
            'oauth = { provider = "%s"; grant = "%s"; client_id = "%s"; %s'
            'token_url = "%s"; ca_file = "%s"; %s }; '
            'connections = %d; messages_per_connection = %d; timeout = %d; };\n'
            'retry = { initial = %d; max = %d; give_up_after = "1h"; };\n'
            % (fg.port_starttls, fg.ca_file, fg.user,
               "custom" if provider == "custom" else provider, grant,
               ft.client_id, files, ft.url, ft.ca_file, extra_oauth,
               conns, mpc, timeout, initial, rmax))


@pytest.fixture
def oauth_relay(tmp_path, fakegmail_factory, faketoken):
    """make(fake={...}, token={...}, **oauth_conf args) -> (d, fg, ft)."""
    made = []

    def make(fake=None, token=None, start=True, **kw):
        ft = faketoken(**(token or {}))
        fake = dict(fake or {})
        fake.setdefault("oauth_check", ft.token_valid)
        fg = fakegmail_factory(**fake)
        sub = tmp_path / ("d%d" % len(made))
        sub.mkdir()
        kw.setdefault("provider", "custom")
        d = Daemon(sub, upstream=oauth_conf(sub, fg, ft, **kw), debug=True)
        d.rt_file = os.path.join(str(sub), "refresh-token")
        made.append((d, ft))
        if start:
            d.start()
        return d, fg, ft

    yield make
    for d, ft in made:
        d.stop()
        assert_no_secrets(d, ft)


def assert_no_secrets(d, ft):
    """No token or secret of the endpoint in the log or anywhere in the
    spool; the refresh token file is the only place one may be."""
    secrets = [s for s in ft.all_secrets() if s]
    log = d.log()
    for s in secrets:
        assert s not in log, "a secret reached the log"
    for root, _, files in os.walk(d.spool):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for s in secrets:
                assert s.encode() not in data, "a secret in %s" % name


def send(d, n=1, subject="oauth"):
    """Submits n messages over one SMTP connection."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        for i in range(n):
            body = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s %d\r\n\r\n"
                    "hello %d\r\n" % (SENDER, RCPT, subject, i, i)).encode()
            s.sendmail(SENDER, [RCPT], body)


def status(d):
    p = subprocess.run([SMARTRELAY, "-c", d.conf, "status"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout + p.stderr


def flush(d):
    subprocess.run([SMARTRELAY, "-c", d.conf, "flush"], check=True,
                   capture_output=True, timeout=30)


def oauth_auths(fg):
    return [a for s in fg.sessions for a in s.auth
            if a.mechanism in ("XOAUTH2", "OAUTHBEARER")]


# -- delivery ----------------------------------------------------------------

def test_gmail_oauthbearer_delivers(oauth_relay):
    d, fg, ft = oauth_relay()
    send(d)
    fg.wait_for_messages(1)
    auths = oauth_auths(fg)
    assert [a.mechanism for a in auths] == ["OAUTHBEARER"]
    assert auths[0].success and auths[0].username == fg.user
    assert ft.token_requests == 1
    assert ft.requests[0]["grant"] == "refresh_token"
    d.wait_log("oauth access token obtained")
    st = status(d)
    assert "oauth token:   valid until" in st and "last refresh:" in st
    assert "token error" not in st
    js = json.loads(subprocess.run([SMARTRELAY, "-c", d.conf, "status",
                                    "--json"], capture_output=True,
                                   text=True, timeout=30).stdout)
    assert js["oauth"]["requests"] == 1 and js["oauth"]["status"] == "ok"
    assert js["oauth"]["valid_until"] and js["oauth"]["last_error"] is None


def test_office365_xoauth2_client_credentials(oauth_relay):
    """Microsoft 365 app-only: client_credentials, XOAUTH2 (the only OAuth
    mechanism smtp.office365.com offers)."""
    d, fg, ft = oauth_relay(fake={"flavor": "office365"},
                            grant="client_credentials")
    send(d, 3)
    fg.wait_for_messages(3)
    auths = oauth_auths(fg)
    assert [a.mechanism for a in auths] == ["XOAUTH2"]
    assert [r["grant"] for r in ft.requests] == ["client_credentials"]


def test_thousand_messages_one_token_request(oauth_relay):
    """1,000 messages over (at least) 10 upstream sessions: one token."""
    d, fg, ft = oauth_relay(conns=2, mpc=100)
    for _ in range(10):
        send(d, 100, subject="bulk")
    fg.wait_for_messages(1000, timeout=300)
    sessions = [s for s in fg.sessions if s.authed]
    assert len(sessions) >= 10
    assert all(a.success for a in oauth_auths(fg))
    assert len(oauth_auths(fg)) == len(sessions)
    assert ft.token_requests == 1, ft.requests
    print("token requests for 1000 messages over %d sessions: %d"
          % (len(sessions), ft.token_requests))


# -- refresh -------------------------------------------------------------------

def test_refresh_ahead_of_expiry(oauth_relay):
    """Tokens live 2 s here: a session after that gets a new one."""
    d, fg, ft = oauth_relay(token={"expires_in": 2}, mpc=1)
    send(d)
    fg.wait_for_messages(1)
    assert ft.token_requests == 1
    wait_until(lambda: not ft.token_valid(oauth_auths(fg)[0].password),
               what="the token expires")
    send(d)
    fg.wait_for_messages(2)
    assert ft.token_requests == 2
    assert all(a.success for a in oauth_auths(fg))


@pytest.mark.parametrize("flavor", ["gmail", "office365"])
def test_401_challenge_renews_once(oauth_relay, flavor):
    """A cached token the upstream refuses (334 + JSON 401, then 535):
    one new token and one new AUTH in the same session, no pause."""
    d, fg, ft = oauth_relay(fake={"flavor": flavor}, mpc=1)
    send(d)
    fg.wait_for_messages(1)
    ft.expire_tokens()             # revoked early, on the server's side
    send(d)
    fg.wait_for_messages(2)
    auths = oauth_auths(fg)
    assert [a.success for a in auths] == [True, False, True]
    refused = auths[1]
    assert refused.challenge_answer == ("" if flavor == "office365" else "AQ==")
    assert refused.reply.startswith("535 5.7.3" if flavor == "office365"
                                    else "535 5.7.8")
    # The refused and the renewed AUTH share one session.
    assert fg.sessions[-1].auth[-2:] == auths[1:]
    assert ft.token_requests == 2
    assert "paused" not in d.log()


def test_fresh_token_refused_pauses(oauth_relay):
    """A token straight from the endpoint that the upstream refuses: no
    second request in a loop; the queue pauses, nothing bounces."""
    d, fg, ft = oauth_relay(fake={"oauth_check": lambda tok: False})
    send(d)
    d.wait_log("upstream paused")
    assert ft.token_requests == 1
    assert len(oauth_auths(fg)) == 1
    assert len(d.messages()) == 1
    assert "paused" in status(d)


def test_rotation_stored_before_use(oauth_relay):
    """The endpoint rotates refresh tokens (and revokes the old one): the
    file holds the new one, mode 0600, and a restarted daemon uses it."""
    d, fg, ft = oauth_relay(token={"rotate": True}, mpc=1)
    send(d)
    fg.wait_for_messages(1)
    with open(d.rt_file) as f:
        stored = f.read().strip()
    assert stored in ft.current_refresh_tokens()
    assert stored != "1//test-refresh"
    assert stat.S_IMODE(os.stat(d.rt_file).st_mode) == 0o600
    assert not [f for f in os.listdir(os.path.dirname(d.rt_file))
                if ".tmp" in f]
    d.wait_log("oauth refresh token rotated")
    d.restart()                    # the cached access token is gone
    send(d)
    fg.wait_for_messages(2)
    assert ft.token_requests == 2
    with open(d.rt_file) as f:
        assert f.read().strip() in ft.current_refresh_tokens()


# -- failures: pause, nothing bounces, the log says what to do -----------------

def test_revoked_refresh_token_pauses(oauth_relay):
    d, fg, ft = oauth_relay(start=False, provider="google")
    ft.revoke_refresh_tokens()
    # provider google with a custom token_url: the advice is Google's.
    d.start()
    send(d)
    d.wait_log("upstream paused")
    log = d.log()
    assert "status=invalid_grant" in log
    assert "smartrelay oauth" in log and "7 days" in log
    assert len(d.messages()) == 1 and fg.messages == []
    st = status(d)
    assert "paused" in st
    assert "token error:   invalid_grant: HTTP 400 invalid_grant" in st
    assert "fix:" in st and "7 days" in st
    assert "oauth token:   none cached" in st and "1 request since" in st
    # Signing in again (a new refresh token in the file) and a flush.
    with ft.lock:
        ft.refresh_tokens.add("1//new-after-oauth")
    with open(d.rt_file, "w") as f:
        f.write("1//new-after-oauth\n")
    flush(d)
    fg.wait_for_messages(1)
    wait_until(lambda: d.messages() == [], what="queue empty")


def test_invalid_client_pauses(oauth_relay):
    d, fg, ft = oauth_relay(start=False)
    ft.set_fail("invalid_client")
    d.start()
    send(d)
    d.wait_log("upstream paused")
    assert "status=invalid_client" in d.log()
    assert "oauth.client_id" in d.log()
    assert len(d.messages()) == 1 and fg.messages == []
    ft.clear_fail()
    flush(d)
    fg.wait_for_messages(1)


@pytest.mark.parametrize("fail,reason", [
    ("server_error", "HTTP 500"),
    ("stall", "timed out"),
    ("oversized", "too large"),
    ("malformed", "not a JSON object"),
])
def test_endpoint_failure_pauses(oauth_relay, fail, reason):
    d, fg, ft = oauth_relay(start=False, timeout=3)
    ft.set_fail(fail, count=1)
    d.start()
    send(d)
    d.wait_log("upstream paused", timeout=30)
    log = d.log()
    assert "oauth token request failed" in log and reason in log
    assert len(d.messages()) == 1 and fg.messages == []
    assert fg.sessions[0].auth == []   # no AUTH without a token
    flush(d)
    fg.wait_for_messages(1, timeout=30)
    assert ft.token_requests == 2


def test_unreachable_endpoint_pauses(oauth_relay):
    d, fg, ft = oauth_relay(start=False)
    ft.stop()
    d.start()
    send(d)
    d.wait_log("upstream paused")
    assert "oauth token request failed status=temporary" in d.log()
    assert len(d.messages()) == 1


def test_office365_password_refused_advice(tmp_path, fakegmail_factory):
    """Microsoft 365 with basic auth off: 550 5.7.30 pauses, and the log
    says to switch to xoauth2."""
    fg = fakegmail_factory(flavor="office365")
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    os.chmod(pw, 0o600)
    d = Daemon(tmp_path, upstream=(
        'upstream = { host = "localhost"; port = %d; ca_file = "%s"; '
        'username = "%s"; password_file = "%s"; timeout = 10; };\n'
        'retry = { initial = 1; max = 2; };\n'
        % (fg.port_starttls, fg.ca_file, fg.user, pw)))
    d.start()
    try:
        send(d)
        d.wait_log("upstream login refused")
        log = d.log()
        assert "550 5.7.30" in log and 'auth = "xoauth2"' in log
        assert len(d.messages()) == 1
    finally:
        d.stop()


# -- smartrelay oauth and smartrelay test ---------------------------------------

def run_tool(d, *args, timeout=60):
    return subprocess.run([SMARTRELAY, "-c", d.conf] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_oauth_device_flow(oauth_relay):
    """Microsoft's device code flow: URL and code printed, polling until
    the person signed in, the refresh token file written and checked."""
    d, fg, ft = oauth_relay(start=False, token={"device_polls": 3})
    os.unlink(d.rt_file)
    p = run_tool(d, "oauth")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "https://microsoft.com/devicelogin" in p.stdout
    assert "FAKE-CODE" in p.stdout and "checked:" in p.stdout
    with open(d.rt_file) as f:
        rt = f.read().strip()
    assert rt in ft.current_refresh_tokens()
    assert stat.S_IMODE(os.stat(d.rt_file).st_mode) == 0o600
    grants = [r["grant"] for r in ft.requests if r["path"] == "/token"]
    assert grants[:3] == ["urn:ietf:params:oauth:grant-type:device_code"] * 3
    assert grants[-1] == "refresh_token"      # the check
    for s in ft.all_secrets():
        assert s not in p.stdout + p.stderr
    # The daemon delivers with what the tool wrote.
    d.start()
    send(d)
    fg.wait_for_messages(1)


def test_oauth_device_flow_slow_down(oauth_relay):
    """slow_down: the tool polls 5 s less often from then on (RFC 8628
    3.5); the next poll succeeds."""
    d, fg, ft = oauth_relay(start=False, token={"device_polls": 1})
    ft.set_fail("slow_down", count=1)
    p = run_tool(d, "oauth")
    assert p.returncode == 0, p.stdout + p.stderr
    polls = [r["at"] for r in ft.requests if r["grant"] ==
             "urn:ietf:params:oauth:grant-type:device_code"]
    assert len(polls) == 2
    assert polls[1] - polls[0] >= 5.5       # interval 1 s + 5 s


def test_oauth_device_flow_expired(oauth_relay):
    """The code expires before anyone signs in: a clear stop."""
    d, fg, ft = oauth_relay(start=False)
    orig = ft.devicecode

    def forget(form):                  # the code is gone at once
        status, ans = orig(form)
        with ft.lock:
            ft.devices.clear()
        return status, ans
    ft.devicecode = forget
    p = run_tool(d, "oauth")
    assert p.returncode == 1
    assert "expired_token" in p.stderr and "run `smartrelay oauth` again" \
        in p.stderr


def test_oauth_browser_pkce(oauth_relay):
    """Google's installed-app flow: the tool prints the authorisation URL,
    the browser (this test) follows the consent redirect to the tool's
    loopback listener, the tool exchanges the code with its verifier."""
    import http.client
    import ssl
    import urllib.parse
    d, fg, ft = oauth_relay(start=False, provider="google")
    os.unlink(d.rt_file)
    auth = "https://localhost:%d/authorize" % ft.port
    p = subprocess.Popen([SMARTRELAY, "-c", d.conf, "oauth", "--auth-url",
                          auth], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                         text=True)
    try:
        url = None
        while url is None:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            if line.startswith(auth):
                url = line.strip()
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert q["code_challenge_method"] == "S256"
        assert q["redirect_uri"].startswith("http://127.0.0.1:")
        assert q["access_type"] == "offline"
        ctx = ssl.create_default_context(cafile=ft.ca_file)
        c = http.client.HTTPSConnection("localhost", ft.port, context=ctx)
        c.request("GET", url[len("https://localhost:%d" % ft.port):])
        r = c.getresponse()
        assert r.status == 302
        loc = urllib.parse.urlsplit(r.getheader("Location"))
        c = http.client.HTTPConnection(loc.hostname, loc.port, timeout=10)
        c.request("GET", loc.path + "?" + loc.query)
        assert c.getresponse().status == 200
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, out + err
    assert "checked:" in out
    with open(d.rt_file) as f:
        assert f.read().strip() in ft.current_refresh_tokens()


def test_doctor_token_step(oauth_relay):
    d, fg, ft = oauth_relay(start=False)
    p = run_tool(d, "test")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "refresh_token grant, access token for 3600s" in p.stdout
    assert "OAUTHBEARER as %s" % fg.user in p.stdout
    assert oauth_auths(fg)[0].success
    ft.revoke_refresh_tokens()
    p = run_tool(d, "test")
    assert p.returncode == 78
    words = " ".join(p.stdout.split())
    assert "token FAILED invalid_grant" in words
    assert "run `smartrelay oauth` again" in words
    for s in ft.all_secrets():
        assert s not in p.stdout + p.stderr


def test_check_config(oauth_relay):
    """--check-config reads the OAuth files: a missing refresh token file
    is reported at its line with what to run; a good setup passes."""
    d, fg, ft = oauth_relay(start=False)
    p = subprocess.run([harness.SMARTRELAYD, "-c", d.conf, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    os.unlink(d.rt_file)
    p = subprocess.run([harness.SMARTRELAYD, "-c", d.conf, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 78
    out = p.stdout + p.stderr
    assert "oauth.refresh_token_file" in out and "smartrelay oauth" in out
    assert d.conf + ":" in out


def test_reload_drops_the_cached_token(oauth_relay):
    """A reload that changes the OAuth client drops the cached token: the
    next session asks the endpoint again (here refused: a wrong client id,
    which pauses), and one that changes nothing keeps it."""
    import signal
    d, fg, ft = oauth_relay(mpc=1)
    send(d)
    fg.wait_for_messages(1)
    assert ft.token_requests == 1
    d.proc.send_signal(signal.SIGHUP)          # same config
    d.wait_log("reloaded config=")
    send(d)
    fg.wait_for_messages(2)
    assert ft.token_requests == 1               # the cache survived
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace('client_id = "%s"' % ft.client_id,
                             'client_id = "another-client"'))
    n = d.log().count("reloaded config=")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: d.log().count("reloaded config=") > n,
               what="second reload")
    send(d)
    d.wait_log("status=invalid_client")
    assert ft.token_requests == 2
    assert len(fg.messages) == 2 and len(d.messages()) == 1
