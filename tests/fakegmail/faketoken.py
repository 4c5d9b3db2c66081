#!/usr/bin/python3
"""A fake OAuth 2.0 token endpoint (Google's and Microsoft's) for the tests.

It serves HTTPS with the fake Gmail's test CA (mkcerts: "localhost",
127.0.0.1, ::1) and answers like oauth2.googleapis.com/token and
login.microsoftonline.com/{tenant}/oauth2/v2.0/token do (docs/oauth.md):

* POST /token, form-encoded, grants
  - refresh_token: client_id (and client_secret when one is configured)
    must match; the refresh token must be one this endpoint issued and did
    not revoke. With `rotate=True` every answer carries a new refresh token
    and the old one is revoked (Microsoft rotates them; revoking at once is
    the strict reading that catches a client using the old one again).
  - client_credentials: client_id + client_secret + scope (app-only).
  - urn:ietf:params:oauth:grant-type:device_code (RFC 8628): answers
    authorization_pending until `approve_device()` (or after
    `device_polls` polls), then tokens.
  - authorization_code with PKCE (RFC 7636): the code from GET /authorize
    and the S256 code_verifier.
* POST /devicecode: a device code, a user code, verification_uri, interval 1.
* GET /authorize: the consent page of a person who always says yes: a 302
  to redirect_uri with ?code=...&state=...
* Access tokens: "fake-at-N-<random>", valid for `expires_in` seconds;
  `token_valid(tok)` tells the fake SMTP upstream whether to accept one,
  `expire_tokens()` makes every issued token stale at once.

Failures (`set_fail(name, count=None)`), each fired by a POST /token:
invalid_grant, invalid_client, server_error (HTTP 500 with an HTML page),
stall (never answers until stop()), oversized (a 200 JSON answer of
`OVERSIZED` bytes), malformed (a 200 answer cut in the middle of its JSON).

Every POST /token is recorded in `requests` (grant and time only; the
secrets stay out of the record except `refresh_token` tail for rotation
checks). Standard library only.
"""

import base64
import hashlib
import http.server
import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkcerts  # noqa: E402

OVERSIZED = 200 * 1024
FAILURES = ("invalid_grant", "invalid_client", "server_error", "stall",
            "oversized", "malformed", "slow_down")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class FakeToken:
    """The endpoint: state, failure injection, and an HTTPS server thread."""

    def __init__(self, certdir, client_id="test-client",
                 client_secret="test-secret", refresh_token="1//test-refresh",
                 expires_in=3600, rotate=False, device_polls=None,
                 host="127.0.0.1"):
        self.certdir, self.host = certdir, host
        self.client_id, self.client_secret = client_id, client_secret
        self.expires_in, self.rotate = expires_in, rotate
        self.device_polls = device_polls
        self.lock = threading.Condition()
        self.refresh_tokens = {refresh_token} if refresh_token else set()
        self.revoked = set()
        self.tokens = {}               # access token -> expiry (monotonic)
        self.requests = []             # dicts: path, grant, status, at
        self.fails = {}                # name -> remaining count or None
        self.devices = {}              # device_code -> {"approved", "polls"}
        self.codes = {}                # auth code -> (challenge, redirect)
        self.issued = 0
        self.stopping = threading.Event()
        self.server = self.thread = None
        self.port = None

    # -- state the tests look at --------------------------------------------

    @property
    def token_requests(self):
        """How many POST /token the endpoint received."""
        with self.lock:
            return sum(1 for r in self.requests if r["path"] == "/token")

    def token_valid(self, tok):
        with self.lock:
            exp = self.tokens.get(tok)
            return exp is not None and exp > time.monotonic()

    def expire_tokens(self):
        with self.lock:
            for t in self.tokens:
                self.tokens[t] = 0

    def revoke_refresh_tokens(self):
        with self.lock:
            self.revoked |= self.refresh_tokens
            self.refresh_tokens = set()

    def current_refresh_tokens(self):
        with self.lock:
            return set(self.refresh_tokens)

    def all_secrets(self):
        """Every token and secret this endpoint ever handed out or knows."""
        with self.lock:
            return (set(self.tokens) | self.refresh_tokens | self.revoked |
                    {self.client_secret} - {None})

    def set_fail(self, name, count=None):
        if name not in FAILURES:
            raise ValueError("unknown failure %r" % name)
        with self.lock:
            self.fails[name] = count

    def clear_fail(self, name=None):
        with self.lock:
            if name is None:
                self.fails.clear()
            else:
                self.fails.pop(name, None)

    def approve_device(self):
        with self.lock:
            for d in self.devices.values():
                d["approved"] = True

    def wait_requests(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.token_requests_locked() < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    def token_requests_locked(self):
        return sum(1 for r in self.requests if r["path"] == "/token")

    @property
    def url(self):
        return "https://localhost:%d/token" % self.port

    @property
    def ca_file(self):
        return mkcerts.cert_paths(self.certdir)["ca"]

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        paths = mkcerts.cert_paths(self.certdir)
        if not os.path.exists(paths["server"]):
            paths = mkcerts.make_certs(self.certdir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(paths["server"], paths["server_key"])
        fake = self

        class Handler(_Handler):
            ft = fake
        self.server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket,
                                             server_side=True,
                                             do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is None:
            return
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- protocol ----------------------------------------------------------------

    def _take_fail(self):
        with self.lock:
            for name in FAILURES:
                if name in self.fails:
                    n = self.fails[name]
                    if n is not None:
                        if n <= 1:
                            del self.fails[name]
                        else:
                            self.fails[name] = n - 1
                    return name
        return None

    def _issue(self, want_refresh):
        """A new access token (and refresh token when rotating)."""
        with self.lock:
            self.issued += 1
            at = "fake-at-%d-%s" % (self.issued, secrets.token_urlsafe(12))
            self.tokens[at] = time.monotonic() + self.expires_in
            ans = {"access_token": at, "expires_in": self.expires_in,
                   "token_type": "Bearer", "scope": "https://mail.google.com/"}
            if want_refresh:
                rt = "1//rt-%d-%s" % (self.issued, secrets.token_urlsafe(12))
                self.refresh_tokens.add(rt)
                ans["refresh_token"] = rt
        return ans

    def _client_ok(self, form, need_secret):
        if form.get("client_id") != self.client_id:
            return False
        if need_secret or self.client_secret is not None:
            return form.get("client_secret") == self.client_secret
        return True

    def token(self, form):
        """Answer a POST /token: (status, JSON dict)."""
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if not self._client_ok(form, True):
                return 401, _err("invalid_client", "AADSTS7000215: Invalid "
                                 "client secret provided.")
            return 200, self._issue(False)
        if not self._client_ok(form, False):
            return 401, _err("invalid_client", "Unauthorized")
        if grant == "refresh_token":
            return self._refresh(form)
        if grant == DEVICE_GRANT:
            return self._device_poll(form)
        if grant == "authorization_code":
            return self._code(form)
        return 400, _err("unsupported_grant_type", "grant %s" % grant)

    def _refresh(self, form):
        rt = form.get("refresh_token")
        with self.lock:
            ok = rt in self.refresh_tokens
            if ok and self.rotate:
                self.refresh_tokens.discard(rt)
                self.revoked.add(rt)
        if not ok:
            return 400, _err("invalid_grant", "Token has been expired or "
                             "revoked.")
        return 200, self._issue(self.rotate)

    def _device_poll(self, form):
        with self.lock:
            d = self.devices.get(form.get("device_code"))
            if d is None:
                return 400, _err("expired_token", "The device code expired.")
            d["polls"] += 1
            if self.device_polls is not None and d["polls"] >= self.device_polls:
                d["approved"] = True
            if not d["approved"]:
                return 400, _err("authorization_pending", "AADSTS70016: "
                                 "OAuth 2.0 device flow error.")
            del self.devices[form.get("device_code")]
        return 200, self._issue(True)

    def _code(self, form):
        with self.lock:
            c = self.codes.pop(form.get("code"), None)
        if c is None:
            return 400, _err("invalid_grant", "Malformed auth code.")
        challenge, redirect = c
        verifier = form.get("code_verifier", "")
        calc = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if calc != challenge or form.get("redirect_uri") != redirect:
            return 400, _err("invalid_grant", "Bad Request")
        return 200, self._issue(True)

    def devicecode(self, form):
        if form.get("client_id") != self.client_id:
            return 400, _err("invalid_client", "AADSTS700016: Application "
                             "not found in the directory.")
        dc = "dc-" + secrets.token_urlsafe(16)
        with self.lock:
            self.devices[dc] = {"approved": False, "polls": 0}
        return 200, {"device_code": dc, "user_code": "FAKE-CODE",
                     "verification_uri": "https://microsoft.com/devicelogin",
                     "expires_in": 900, "interval": 1,
                     "message": "To sign in, use a web browser..."}

    def authorize(self, query):
        """The person consents: (status, Location)."""
        q = dict(urllib.parse.parse_qsl(query))
        if q.get("client_id") != self.client_id or \
                q.get("code_challenge_method") != "S256" or \
                q.get("response_type") != "code":
            return 400, None
        code = "4/code-" + secrets.token_urlsafe(8)
        with self.lock:
            self.codes[code] = (q.get("code_challenge"), q.get("redirect_uri"))
        loc = "%s?%s" % (q["redirect_uri"], urllib.parse.urlencode(
            {"code": code, "state": q.get("state", ""),
             "scope": q.get("scope", "")}))
        return 302, loc


def _err(code, desc):
    return {"error": code, "error_description": desc}


class _Handler(http.server.BaseHTTPRequestHandler):
    ft = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _record(self, path, grant, status):
        with self.ft.lock:
            self.ft.requests.append({"path": path, "grant": grant,
                                     "status": status, "at": time.monotonic()})
            self.ft.lock.notify_all()

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path != "/authorize":
            return self._send(404, b"not found", "text/plain")
        status, loc = self.ft.authorize(query)
        self._record(path, None, status)
        self._send(status, b"", "text/html",
                   [("Location", loc)] if loc else ())

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        path = self.path.split("?")[0]
        if path == "/devicecode":
            status, ans = self.ft.devicecode(form)
            self._record(path, None, status)
            return self._send(status, json.dumps(ans).encode())
        if path != "/token" or self.headers.get("Content-Type") != \
                "application/x-www-form-urlencoded":
            self._record(path, form.get("grant_type"), 415)
            return self._send(415, b"{}")
        fail = self.ft._take_fail()
        self._record(path, form.get("grant_type"), fail or "answered")
        if fail == "stall":
            self.ft.stopping.wait(120)
            return None
        if fail == "server_error":
            return self._send(500, b"<html><body>Internal Server Error"
                              b"</body></html>", "text/html")
        if fail == "oversized":
            ans = self.ft._issue(False)
            ans["padding"] = "x" * OVERSIZED
            return self._send(200, json.dumps(ans).encode())
        if fail == "malformed":
            body = json.dumps(self.ft._issue(False)).encode()
            return self._send(200, body[:len(body) // 2])
        if fail == "invalid_grant":
            return self._send(400, json.dumps(_err(
                "invalid_grant", "Token has been expired or revoked.")).encode())
        if fail == "slow_down":
            return self._send(400, json.dumps(_err(
                "slow_down", "Polling too fast.")).encode())
        if fail == "invalid_client":
            return self._send(401, json.dumps(_err(
                "invalid_client", "The OAuth client was not found.")).encode())
        status, ans = self.ft.token(form)
        self._send(status, json.dumps(ans).encode())
