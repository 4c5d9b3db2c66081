#!/usr/bin/python3
"""A fake smtp.gmail.com for smartrelay's tests.

Our machines cannot reach Gmail, so the tests talk to this instead. It
reproduces what smtp.gmail.com is documented to do (docs/relay.md): the greeting and per-session
trace id, the EHLO lists before and after STARTTLS, STARTTLS on one port and
implicit TLS on another, Google's SNI behaviour (no SNI -> a self-signed "No
SNI provided" certificate), AUTH PLAIN / LOGIN (and XOAUTH2) checked against a
user and password, MAIL / RCPT / DATA / BDAT / RSET / NOOP / QUIT with Gmail's
reply texts, PIPELINING, and every failure Gmail is known to send, each selectable by
a stable name (see FAILURES).

Design
------
* One `FakeGmail` object owns two listening sockets (port_starttls,
  port_implicit) bound to port 0 on 127.0.0.1 or ::1, one acceptor thread
  (a selector over both listeners and a wake-up socketpair), and one thread
  per connection running a `_Session`. Everything is plain blocking sockets
  with timeouts; `stop()` shuts every socket down, which unblocks every
  thread, and joins them, so no thread outlives the object.
* A `_Session` reads into its own byte buffer and handles one command line at
  a time, writing each reply as soon as the command is handled. That is what
  makes pipelining work: a client may send MAIL, RCPTs and DATA in one write
  and gets the replies in order. After DATA's 354 the same buffer continues
  as message data, which ends only at CRLF "." CRLF.
* Everything received is recorded, under one lock (a Condition, so tests can
  wait for a message or a session): `sessions` (SessionRecord: TLS, SNI, EHLO
  names, AUTH attempts, commands, transactions...), `messages` (accepted
  mail, raw and dot-unstuffed bytes), `unacked_messages` (complete messages
  that got no 250: rejected, or dropped/hung after the final dot), counters.
  The record properties return snapshots (lists) of live record objects.
* Failures are injected by name, at construction (`fail=`) or at runtime
  (`set_fail(name, count=N, **params)`), thread-safe. Each one fires at a
  fixed point in the protocol; `count` limits it to the first N firings,
  after which it is gone (retry-then-success scenarios). `fail_hits` counts
  firings per name. The AUTH check reads `self.user` / `self.password` at
  the time of each attempt, so a test may change them at runtime.
* Standalone: `fakegmail.py --certdir D --user U --password P [--fail ...]`
  prints one JSON line with the ports and, on SIGTERM/SIGINT, dumps the whole
  record as JSON to stdout (and to --record FILE if given).

Only the Python standard library and the openssl CLI (via mkcerts) are used.
"""

import argparse
import base64
import json
import os
import queue
import re
import secrets
import selectors
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkcerts  # noqa: E402  (sibling module)
from fakegmail_records import (  # noqa: E402  (sibling module)
    AuthAttempt, MessageRecord, SessionRecord, Transaction, _jsonable)

# ---------------------------------------------------------------------------
# Gmail's numbers and texts, as published in Gmail's session logs
# ---------------------------------------------------------------------------

MAX_SIZE = 35882577          # SIZE advertised by Gmail, in octets
MAX_RECIPIENTS = 100         # per message over SMTP
MAX_LINE = 16384             # command line bound (AUTH lines may exceed 512)
AUTH_MECHS = "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"

# Multi-line replies as (code, enhanced code, [text lines]). Rendering puts
# "CODE-X.Y.Z " before every line but the last, "CODE X.Y.Z " before the last,
# and "<id> - gsmtp" after it. A text starting with a space therefore gives
# Gmail's double space ("530 5.7.0  https://...").
T_STARTTLS_FIRST = (530, "5.7.0", [
    "Must issue a STARTTLS command first. For more information, go to",
    " https://support.google.com/a/answer/3221692 and review RFC 3207",
    "specifications."])
T_AUTH_REQUIRED = (530, "5.7.0", [
    "Authentication Required. For more information, go to",
    " https://support.google.com/mail/?p=WantAuthError"])
T_BAD_CREDENTIALS = (535, "5.7.8", [
    "Username and Password not accepted. For more information, go to",
    " https://support.google.com/mail/?p=BadCredentials"])
T_ASP_REQUIRED = (534, "5.7.9", [
    "Application-specific password required. For more information, go to",
    " https://support.google.com/mail/?p=InvalidSecondFactor"])
T_WEB_LOGIN = (534, "5.7.14", [
    "<https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbtFAKE>"
    " Please log in via your web browser and",
    "then try again. Learn more at https://support.google.com/mail/answer/78754"])
T_TOO_MANY_LOGINS = (454, "4.7.0", [
    "Too many login attempts, please try again later. For more information,",
    "go to",
    " https://support.google.com/mail/answer/7126229"])
T_EHLO_421 = (421, "4.7.0", [
    "Try again later, closing connection. (EHLO)",
    " For more information, go to",
    " https://support.google.com/a/answer/3221692"])
T_TEMP_421 = (421, "4.3.0", ["Temporary System Problem.  Try again later (10)."])
T_TEMP_451 = (451, "4.3.0", ["Mail server temporarily rejected message."])
T_IDLE = (451, "4.4.2", ["Timeout - closing connection."])
T_DAILY_LIMIT = (550, "5.4.5", [
    "Daily user sending limit exceeded. For more information on Gmail",
    "sending limits go to",
    " https://support.google.com/a/answer/166852"])
T_TOO_BIG = (552, "5.3.4", [
    "Your message exceeded Google's message size limits. For more information,",
    "visit  https://support.google.com/mail/?p=MaxSizeError"])
T_BAD_ADDRESS = (553, "5.1.3", [  # {addr} is filled in
    "The recipient address <{addr}> is not a valid RFC 5321 address. For more",
    "information, go to",
    " https://support.google.com/a/answer/3221692 and review RFC 5321",
    "specifications."])
T_NO_SUCH_USER = (550, "5.1.1", [
    "The email account that you tried to reach does not exist. Please try",
    "double-checking the recipient's email address for typos or",
    "unnecessary spaces. For more information, go to",
    " https://support.google.com/mail/?p=NoSuchUser"])
T_TOO_MANY_RCPTS = (452, "4.5.3", ["Your message has too many recipients."])
T_RATE_LIMITED = (450, "4.2.1", [
    "The user you are trying to contact is receiving mail at a rate that",
    "prevents additional messages from being delivered. Please resend your",
    "message at a later time."])
T_SYNTAX = (555, "5.5.2", ["Syntax error."])
# A path's contents: atoms, or a quoted local part (RFC 5321 §4.1.2) that
# may hold spaces, '<' and '>'.
PATH_RE = r'(?:"(?:[^"\\\r\n]|\\.)*"|[^<>"\s])*'
T_UNRECOGNIZED = (502, "5.5.1", ["Unrecognized command."])
T_EHLO_FIRST = (503, "5.5.1", ["EHLO/HELO first."])
T_MAIL_FIRST = (503, "5.5.1", ["MAIL first."])
T_RCPT_FIRST = (503, "5.5.1", ["RCPT first."])
T_NESTED_MAIL = (503, "5.5.1", ["Nested MAIL command."])
T_ALREADY_AUTH = (503, "5.5.1", ["Already authenticated."])
T_BAD_MECH = (504, "5.7.4", ["Unrecognized authentication type."])
T_CANNOT_DECODE = (501, "5.5.2", ["Cannot Decode response."])
T_EMPTY_EHLO = (501, "5.5.4", ["Empty HELO/EHLO argument not allowed, closing connection."])
T_LINE_TOO_LONG = (500, "5.5.2", ["Line too long."])

XOAUTH2_ERROR = base64.b64encode(
    b'{"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}').decode()
OAUTHBEARER_ERROR = base64.b64encode(
    b'{"status":"invalid_token","scope":"https://mail.google.com/"}').decode()

# Microsoft 365 (flavor="office365"): smtp.office365.com's own texts for the
# greeting, EHLO and AUTH (docs/oauth.md); the mail transaction keeps
# Gmail's texts, which the relay treats the same way.
O365_HOST = "BN9PR03CA0001.outlook.office365.com"
O365_AUTH_MECHS = "LOGIN XOAUTH2"
O365_BASIC_OFF = ("550 5.7.30 Basic authentication is not supported for "
                  "Client Submission.")
O365_BAD_TOKEN = "535 5.7.3 Authentication unsuccessful [%s]" % O365_HOST

# ---------------------------------------------------------------------------
# Failure catalogue: name -> default parameters. `count` is separate.
# ---------------------------------------------------------------------------

# Protocol points ("stages") where hang / drop / custom can fire. "tls" is
# after "220 Ready to start TLS" (or right after accept on the implicit port)
# and before the handshake; "dot" is after the final dot, before the reply.
STAGES = ("tls", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt",
          "data", "dot", "rset", "quit")

FAILURES = {
    # At EHLO (any EHLO of the session): 421-4.7.0 ... then close.
    "ehlo_421": {},
    # After the client has sent its credentials, whatever they are.
    "auth_535": {},
    "auth_534_5.7.9": {},
    "auth_534_5.7.14": {},
    "auth_454": {},
    # At an otherwise valid MAIL.
    "mail_530_starttls": {},
    "mail_550_5.4.5": {},
    "mail_552_size": {},
    # At an otherwise valid RCPT. addrs: set of addresses (case-insensitive)
    # to reject, None = every recipient.
    "rcpt_553_5.1.3": {"addrs": None},
    "rcpt_550_5.1.1": {"addrs": None},
    "rcpt_450_4.2.1": {"addrs": None},     # temporary: deferred
    # 452 4.5.3 to every RCPT past the first `limit` of a transaction.
    "rcpt_452_too_many": {"limit": 1},
    # At DATA (instead of 354).
    "data_550_5.4.5": {},
    # After the final dot of a complete message.
    "dot_550_5.4.5": {},
    "dot_552_size": {},
    "dot_421_4.3.0": {},       # then close
    "dot_451_4.3.0": {},
    # After `after` idle seconds: 451 4.4.2 and close.
    "idle_451_4.4.2": {"after": 0.5},
    # Transport faults. reset=True closes with a TCP RST instead of a FIN.
    "drop_mid_data": {"after_bytes": 1, "reset": False},
    "drop_after_dot": {"reset": False},
    "drop": {"at": "greeting", "reset": False},
    "hang": {"at": "greeting"},
    # Any reply at any stage. reply: text with "\n" between lines, "{id}" is
    # replaced by the trace id; close: close the connection after it.
    "custom": {"at": "mail", "reply": "451 4.3.0 Injected failure. {id} - gsmtp",
               "close": False},
}


def _trace_id():
    """Make a per-connection id in Gmail's format, e.g.
    ffacd0b85a97d-3825fbedfccsm6327686f8f.101"""
    return "%s-%ssm%s.%d" % (secrets.token_hex(7)[:13], secrets.token_hex(6)[:11],
                             secrets.token_hex(5), secrets.randbelow(999) + 1)


def render(template, trace_id, **fmt):
    """Render a (code, enhanced, lines) template into reply lines."""
    code, enh, lines = template
    lines = [line.format(**fmt) for line in lines]
    out = ["%d-%s %s" % (code, enh, line) for line in lines[:-1]]
    out.append("%d %s %s %s - gsmtp" % (code, enh, lines[-1], trace_id))
    return out


class _Fired(dict):
    """Parameters of a failure that fired: truthy even when empty."""

    def __bool__(self):
        return True


class _Close(Exception):
    """Raised inside a session to end it; the argument is the close reason."""


# ---------------------------------------------------------------------------
# The server object
# ---------------------------------------------------------------------------

class FakeGmail:
    """A fake smtp.gmail.com: two ports, threads, a record, failure injection.

    Use as `with FakeGmail(certdir=d) as fg: ...` or start()/stop().
    """

    def __init__(self, user="test.user@gmail.com", password="abcdefghijklmnop",
                 certdir=None, cert="good", server_name="localhost",
                 host="127.0.0.1", port_starttls=0, port_implicit=0,
                 offer_starttls=True, allow_plain_auth=False, no_ext=(),
                 max_size=MAX_SIZE, max_recipients=MAX_RECIPIENTS,
                 idle_timeout=300.0, handshake_timeout=10.0,
                 oauth_token=None, oauth_check=None, flavor="gmail",
                 auth_mechs=None, fail=None, offer_dsn=False, rtt=0.0):
        """Configure (nothing is bound until start()).

        cert: "good" | "wrongname" | "untrusted" | "nosni" — what a client
        that sends SNI == server_name gets; without SNI (or another name) it
        always gets the self-signed nosni certificate, as from Google.
        offer_starttls=False: STARTTLS is not offered and answered 502.
        allow_plain_auth=True: an insecure server that offers and accepts
        AUTH/MAIL without TLS (to catch a client that would send credentials).
        no_ext: EHLO keywords to leave out, e.g. {"PIPELINING", "CHUNKING"}.
        offer_dsn=True: not Gmail — a server that offers DSN (RFC 3461) and
        takes RET/ENVID at MAIL and NOTIFY/ORCPT at RCPT (recorded in
        rcpt_params); by default, like Gmail, it refuses them (555).
        fail: names, or {name: {"count": N, **params}}, as for set_fail().
        rtt: a round-trip time in seconds to emulate (a WAN): the ports
        are then delay lines in front of the server (_DelayLink), which
        hold every flight of bytes rtt/2 in each direction, so pipelined
        commands cost one round trip and each awaited reply one more.
        auth_mechs: the AUTH line's mechanisms instead of the flavor's.
        oauth_token: the one access token XOAUTH2/OAUTHBEARER accept, or
        oauth_check(user, token) -> bool (e.g. a FakeToken's token_valid).
        flavor="office365": smtp.office365.com's greeting, EHLO and AUTH
        (AUTH LOGIN XOAUTH2; password logins get 550 5.7.30; a refused
        token the 401 challenge, then 535 5.7.3).
        """
        if flavor not in ("gmail", "office365"):
            raise ValueError("flavor must be gmail or office365")
        self.flavor, self.oauth_check = flavor, oauth_check
        self.auth_mechs = auth_mechs or (O365_AUTH_MECHS if flavor == "office365"
                                         else AUTH_MECHS)
        if cert not in ("good", "wrongname", "untrusted", "nosni"):
            raise ValueError("cert must be good, wrongname, untrusted or nosni")
        self.user, self.password, self.oauth_token = user, password, oauth_token
        self.certdir, self.cert, self.server_name = certdir, cert, server_name
        self.host = host
        self._want_ports = (port_starttls, port_implicit)
        self.offer_starttls, self.allow_plain_auth = offer_starttls, allow_plain_auth
        self.no_ext = {e.upper() for e in no_ext}
        self.offer_dsn = offer_dsn
        self.max_size, self.max_recipients = max_size, max_recipients
        self.idle_timeout, self.handshake_timeout = idle_timeout, handshake_timeout
        self.port_starttls = self.port_implicit = None
        self.rtt = rtt
        self._links = []

        self._lock = threading.Condition()
        self._fails = {}              # name -> [count or None, params]
        self._tmpdir = None
        self._listeners = []
        self._acceptor = None
        self._wake = None
        self._threads = set()
        self._live = set()            # running _Session objects
        self._stopping = False
        self.reset_record()
        if isinstance(fail, dict):
            for name, params in fail.items():
                self.set_fail(name, **dict(params or {}))
        else:
            for name in fail or ():
                self.set_fail(name)

    def _oauth_ok(self, user, token):
        """Whether XOAUTH2/OAUTHBEARER credentials are accepted."""
        if user != self.user or not token:
            return False
        if self.oauth_check is not None:
            return self.oauth_check(token)
        return self.oauth_token is not None and token == self.oauth_token

    # -- failure injection -------------------------------------------------

    def set_fail(self, name, count=None, **params):
        """Arm failure `name` (see FAILURES) for its next `count` firings
        (None = until cleared), with parameters overriding its defaults."""
        if name not in FAILURES:
            raise ValueError("unknown failure %r (known: %s)" % (name, ", ".join(FAILURES)))
        unknown = set(params) - set(FAILURES[name])
        if unknown:
            raise ValueError("failure %s has no parameter %s" % (name, ", ".join(unknown)))
        full = dict(FAILURES[name], **params)
        if "at" in full and full["at"] not in STAGES:
            raise ValueError("at= must be one of %s" % ", ".join(STAGES))
        if full.get("addrs") is not None:
            full["addrs"] = {a.lower() for a in ([full["addrs"]] if isinstance(
                full["addrs"], str) else full["addrs"])}
        with self._lock:
            if count is not None and count <= 0:
                self._fails.pop(name, None)
            else:
                self._fails[name] = [count, full]

    def clear_fail(self, name=None):
        """Disarm one failure, or all of them when name is None."""
        with self._lock:
            if name is None:
                self._fails.clear()
            else:
                self._fails.pop(name, None)

    @property
    def fails(self):
        """Armed failures: {name: (remaining count or None, params)}."""
        with self._lock:
            return {n: (c, dict(p)) for n, (c, p) in self._fails.items()}

    def _peek_fail(self, name, pred=None):
        """Return the params of armed failure `name` if pred(params) holds."""
        with self._lock:
            entry = self._fails.get(name)
            if entry and (pred is None or pred(entry[1])):
                return _Fired(entry[1])
            return None

    def _take_fail(self, name, session, pred=None):
        """Fire failure `name` if armed (and pred(params) holds): count it,
        note it in the session, and return its params; else None."""
        with self._lock:
            entry = self._fails.get(name)
            if not entry or (pred is not None and not pred(entry[1])):
                return None
            if entry[0] is not None:
                entry[0] -= 1
                if entry[0] <= 0:
                    del self._fails[name]
            self._fail_hits[name] = self._fail_hits.get(name, 0) + 1
            session.rec.failures.append(name)
            return _Fired(entry[1])

    # -- record --------------------------------------------------------------

    def reset_record(self):
        """Forget everything received so far (armed failures stay)."""
        with self._lock:
            self._sessions, self._messages, self._unacked = [], [], []
            self._connection_times = []
            self._counters = dict(session_count=0, auth_count=0,
                                  tls_handshakes=0, tls_failures=0)
            self._fail_hits = {}
            self._lock.notify_all()

    def _snapshot(self, attr):
        with self._lock:
            return list(getattr(self, attr))

    sessions = property(lambda self: self._snapshot("_sessions"),
                        doc="SessionRecord per connection, in accept order")
    messages = property(lambda self: self._snapshot("_messages"),
                        doc="accepted MessageRecords, in order")
    unacked_messages = property(lambda self: self._snapshot("_unacked"),
                                doc="complete messages that got no 250")
    connection_times = property(lambda self: self._snapshot("_connection_times"),
                                doc="time.monotonic() of each accepted connection")
    session_count = property(lambda self: self._counters["session_count"])
    auth_count = property(lambda self: self._counters["auth_count"],
                          doc="AUTH commands received (any state, any outcome)")
    tls_handshakes = property(lambda self: self._counters["tls_handshakes"])
    tls_failures = property(lambda self: self._counters["tls_failures"])

    @property
    def fail_hits(self):
        """{failure name: times it fired} since the last reset_record()."""
        with self._lock:
            return dict(self._fail_hits)

    def _count(self, name):
        with self._lock:
            self._counters[name] += 1

    def _add(self, attr, item):
        """Append to a record list under the lock and wake waiters."""
        with self._lock:
            getattr(self, attr).append(item)
            self._lock.notify_all()

    def wait_for(self, predicate, timeout=10.0):
        """Wait until predicate(self) is true; return whether it became so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
            return True

    def wait_for_messages(self, n, timeout=10.0):
        """Wait for n accepted messages; return them or raise TimeoutError."""
        if not self.wait_for(lambda s: len(s._messages) >= n, timeout):
            raise TimeoutError("expected %d messages, got %d (sessions: %s)"
                               % (n, len(self._messages), self.summary()))
        return self.messages

    def wait_for_sessions(self, n, timeout=10.0, ended=False):
        """Wait for n sessions (ended ones only if ended=True); return them."""
        def ok(s):
            done = [r for r in s._sessions if not ended or r.ended is not None]
            return len(done) >= n
        if not self.wait_for(ok, timeout):
            raise TimeoutError("expected %d sessions, got: %s" % (n, self.summary()))
        return self.sessions

    def summary(self):
        """One-line-per-session text, for assertion messages."""
        return "; ".join("#%d %s tls=%s cmds=%s close=%s" % (
            s.index, s.port, s.tls_version, [c[:30] for c in s.commands], s.close_reason)
            for s in self.sessions) or "none"

    def record_dict(self):
        """The whole record as JSON-friendly dicts."""
        with self._lock:
            return _jsonable(dict(
                sessions=self._sessions, messages=self._messages,
                unacked_messages=self._unacked, connection_times=self._connection_times,
                fail_hits=self._fail_hits, **self._counters))

    # -- TLS -------------------------------------------------------------------

    def _make_contexts(self):
        """Load the contexts: default (no SNI) serves the self-signed cert, the
        SNI callback switches to the configured one for server_name."""
        if self.certdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="fakegmail-certs-")
            self.certdir = self._tmpdir
        paths = mkcerts.cert_paths(self.certdir)
        if not os.path.exists(paths["server"]):
            paths = mkcerts.make_certs(self.certdir)
        self.certs = paths
        name = {"good": "server"}.get(self.cert, self.cert)

        def ctx(pem, key):
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.load_cert_chain(pem, key)
            return c
        self._cert_ctx = ctx(paths[name], paths[name + "_key"])
        self._nosni_ctx = ctx(paths["nosni"], paths["nosni_key"])
        self._nosni_ctx.sni_callback = self._on_sni

    def set_cert(self, cert):
        """Serve another certificate from the next handshake on ("good",
        "wrongname", "untrusted", "nosni"): a certificate change at runtime."""
        if cert not in ("good", "wrongname", "untrusted", "nosni"):
            raise ValueError("cert must be good, wrongname, untrusted or nosni")
        name = {"good": "server"}.get(cert, cert)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs[name], self.certs[name + "_key"])
        self.cert, self._cert_ctx = cert, ctx

    def _on_sni(self, sslsock, server_name, _ctx):
        """SNI callback: remember the name; serve our cert only for server_name."""
        sslsock.fakegmail_sni = server_name
        if server_name is not None and server_name.lower() == self.server_name.lower():
            sslsock.context = self._cert_ctx

    @property
    def ca_file(self):
        """Path of the CA certificate clients should trust."""
        return self.certs["ca"]

    def client_context(self):
        """An SSLContext for clients: trusts our CA, verifies host names."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return ctx

    # -- lifecycle ---------------------------------------------------------------

    def start(self):
        """Bind both ports and start accepting; return self."""
        if self._acceptor is not None:
            return self
        self._make_contexts()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._stopping = False
        for kind, port in zip(("starttls", "implicit"), self._want_ports):
            ls = socket.socket(family, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.host, 0 if self.rtt > 0 else port))
            ls.listen(64)
            ls.setblocking(False)
            self._listeners.append((ls, kind))
            setattr(self, "port_" + kind, ls.getsockname()[1])
            if self.rtt > 0:
                link = _DelayLink(family, self.host, port,
                                  ls.getsockname()[1], self.rtt)
                self._links.append(link)
                setattr(self, "port_" + kind, link.port)
        self._wake = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop,
                                          name="fakegmail-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self):
        """Close the listeners and every connection; join all threads."""
        with self._lock:
            if self._acceptor is None:
                return
            self._stopping = True
        self._wake[1].send(b"x")
        self._acceptor.join(5)
        for link in self._links:
            link.stop()
        self._links = []
        with self._lock:
            live = list(self._live)
        for sess in live:
            sess.abort()
        for t in list(self._threads):
            t.join(5)
        for ls, _ in self._listeners:
            ls.close()
        for s in self._wake:
            s.close()
        self._listeners, self._acceptor = [], None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self):
        return self.start() if self._acceptor is None else self

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        """Accept on both ports until stop(); one thread per connection."""
        sel = selectors.DefaultSelector()
        for ls, kind in self._listeners:
            sel.register(ls, selectors.EVENT_READ, kind)
        sel.register(self._wake[0], selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                for key, _ in sel.select():
                    if key.data is None or self._stopping:
                        return
                    try:
                        conn, peer = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    self._spawn(conn, peer, key.data)
        finally:
            sel.close()

    def _spawn(self, conn, peer, kind):
        """Record a new connection and start its session thread."""
        conn.setblocking(True)
        # One sendall per reply: without this, Nagle holds the second reply
        # of a pipelined batch until the client's delayed ACK (40 ms), and
        # drain timings would measure that, not the client.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._counters["session_count"] += 1
            self._connection_times.append(time.monotonic())
            rec = SessionRecord(index=len(self._sessions), port=kind, peer=peer[:2],
                                trace_id=_trace_id(), started=time.monotonic())
            self._sessions.append(rec)
            sess = _Session(self, conn, rec)
            t = threading.Thread(target=sess.run, name="fakegmail-%d" % rec.index,
                                 daemon=True)
            self._live.add(sess)
            self._threads.add(t)
            self._lock.notify_all()
        t.start()

    def _session_done(self, sess):
        with self._lock:
            self._live.discard(sess)
            self._threads.discard(threading.current_thread())
            self._lock.notify_all()


# ---------------------------------------------------------------------------
# One connection
# ---------------------------------------------------------------------------

def _parse_oauth(mech, raw):
    """(user, token) from an XOAUTH2 or OAUTHBEARER client message; raises
    ValueError when it is not well formed."""
    text = raw.decode("utf-8", "replace")
    if not text.endswith("\x01\x01"):
        raise ValueError("no final ^A^A")
    if mech == "OAUTHBEARER":
        gs2, sep, text = text.partition(",\x01")
        if not sep or not gs2.startswith("n,a="):
            raise ValueError("bad GS2 header")
        user = gs2[4:].rstrip(",")
    fields = dict(f.split("=", 1) for f in text.split("\x01") if "=" in f)
    if mech == "XOAUTH2":
        user = fields.get("user")
    auth = fields.get("auth", "")
    if not auth.startswith("Bearer "):
        raise ValueError("no Bearer token")
    return user, auth[len("Bearer "):]


def _unstuff(raw):
    """Remove SMTP dot-stuffing (RFC 5321 4.5.2) from CRLF-separated lines."""
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in raw.split(b"\r\n"))


def _parse_params(text):
    """Parse ESMTP parameters "SIZE=1 SMTPUTF8" -> {"SIZE": "1", "SMTPUTF8": True}."""
    params = {}
    for word in text.split():
        k, eq, v = word.partition("=")
        params[k.upper()] = v if eq else True
    return params


class _DelayLink:
    """A WAN in front of a port: every chunk of bytes, in each direction, is
    delivered rtt/2 after it was read (a delay line).  Bytes sent together
    arrive together, so a pipelined flight of commands costs one round trip
    and each reply a client waits for costs one more, whatever the number of
    replies in the flight; TLS handshakes pay their round trips too.  Two
    threads per direction per connection (reader, then a timed writer)."""

    def __init__(self, family, host, port, target, rtt):
        self.rtt, self.target = rtt, (host, target)
        self.ls = socket.socket(family, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, port))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.stopping = False
        self.socks, self.threads = [], []
        self._spawn(self._accept)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True,
                             name="fakegmail-wan")
        self.threads.append(t)
        t.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
                u = socket.create_connection(self.target, timeout=10)
            except socket.timeout:
                continue
            except OSError:
                return
            for sock in (c, u):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks += [c, u]
            for src, dst in ((c, u), (u, c)):
                q = queue.Queue()
                self._spawn(self._reader, src, q)
                self._spawn(self._writer, dst, q)

    def _reader(self, src, q):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.rtt / 2, data))
            if not data:
                return

    def _writer(self, dst, q):
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def stop(self):
        self.stopping = True
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)
        for sock in self.socks + [self.ls]:
            sock.close()


class _Session:
    """The SMTP conversation on one connection (runs in its own thread)."""

    def __init__(self, fg, sock, rec):
        self.fg, self.sock, self.rec = fg, sock, rec
        self.id = rec.trace_id
        self.buf = bytearray()
        self.sock_lock = threading.Lock()
        self.tls = self.ehlo = self.authed = False
        self.txn = None              # Transaction in progress
        self.bdat = None             # bytearray of BDAT chunks, or None
        self.bdat_failed = False

    # -- plumbing ------------------------------------------------------------

    def run(self):
        """Thread body: run the conversation, then close and record the end."""
        reason = "ended"
        try:
            self._converse()
        except _Close as e:
            reason = e.args[0] if e.args else "closed"
        except (OSError, ssl.SSLError, ValueError) as e:
            reason = "stopped" if self.fg._stopping else "error: %s" % e
        finally:
            with self.fg._lock:
                if self.txn is not None and self.txn.outcome is None:
                    self.txn.outcome = "aborted"
                self.rec.close_reason = self.rec.close_reason or reason
                self.rec.ended = time.monotonic()
            self._close()
            self.fg._session_done(self)

    def abort(self):
        """Called by stop(): shut the socket down to unblock this thread."""
        with self.sock_lock:
            try:
                # socket.socket's own shutdown, not SSLSocket's (which would
                # tear down the TLS object under the session thread's feet).
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _close(self, reset=False):
        with self.sock_lock:
            try:
                if reset:
                    # l_onoff=1, l_linger=0: close() sends a TCP RST.
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
                self.sock.close()
            except OSError:
                pass

    def _drop(self, reason, reset=False):
        """Close the connection without a reply."""
        self._close(reset)
        raise _Close(reason)

    def _recv(self):
        """Read some bytes; on idle timeout say 451 4.4.2 and close."""
        idle = self.fg._peek_fail("idle_451_4.4.2")
        self.sock.settimeout(idle["after"] if idle else self.fg.idle_timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            self.fg._take_fail("idle_451_4.4.2", self)
            self._reply_t(T_IDLE)
            raise _Close("idle")
        if not data:
            raise _Close("stopped" if self.fg._stopping else "peer closed")
        return data

    def _readline(self):
        """Return the next command line (without CRLF), reading as needed."""
        while True:
            i = self.buf.find(b"\n")
            if i > MAX_LINE or (i < 0 and len(self.buf) > MAX_LINE):
                self._reply_t(T_LINE_TOO_LONG)
                raise _Close("line too long")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                if self.buf:
                    self.rec.pipelined += 1
                return line[:-1] if line.endswith(b"\r") else line
            self.buf += self._recv()

    def _send(self, lines):
        """Send one reply (a list of lines) and record it."""
        text = "".join(l + "\r\n" for l in lines)
        with self.fg._lock:
            self.rec.replies.append(text.rstrip("\r\n"))
        self.sock.settimeout(60)
        self.sock.sendall(text.encode("utf-8"))
        return lines[-1]

    def _reply(self, line):
        """Send a one-line reply; "{id}" is replaced by the trace id."""
        return self._send(line.replace("{id}", self.id).split("\n"))

    def _reply_t(self, template, **fmt):
        return self._send(render(template, self.id, **fmt))

    def _hang(self):
        """Stop answering: swallow input until the peer or stop() closes."""
        with self.fg._lock:
            self.rec.close_reason = "hang"
        while not self.fg._stopping:
            self.sock.settimeout(0.2)
            try:
                if not self.sock.recv(65536):
                    break
            except socket.timeout:
                continue
        raise _Close("hang")

    def _stage(self, stage):
        """Fire hang/drop/custom failures armed for this stage. Returns True
        if a custom reply was sent (the command is then not processed)."""
        at = lambda p: p["at"] == stage  # noqa: E731
        if self.fg._take_fail("hang", self, at):
            self._hang()
        p = self.fg._take_fail("drop", self, at)
        if p:
            self._drop("drop at " + stage, p["reset"])
        p = self.fg._take_fail("custom", self, at)
        if p:
            self._reply(p["reply"])
            if p["close"]:
                raise _Close("custom at " + stage)
            return True
        return False

    # -- TLS -------------------------------------------------------------------

    def _start_tls(self):
        """Do the server side of a TLS handshake on the current socket."""
        if self._stage("tls"):
            raise _Close("custom at tls")
        with self.sock_lock:
            if self.fg._stopping:
                raise _Close("stopped")
            self.sock = self.fg._nosni_ctx.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock.settimeout(self.fg.handshake_timeout)
        try:
            self.sock.do_handshake()
        except (OSError, ssl.SSLError) as e:
            with self.fg._lock:
                self.rec.sni = getattr(self.sock, "fakegmail_sni", None)
                self.rec.tls_error = str(e) or type(e).__name__
                self.rec.close_reason = "tls failed"
                self.fg._counters["tls_failures"] += 1
            raise _Close("tls failed")
        with self.fg._lock:
            self.rec.sni = getattr(self.sock, "fakegmail_sni", None)
            self.rec.tls_version = self.sock.version()
            self.rec.tls_cipher = self.sock.cipher()[0]
            self.rec.tls_active = True
            self.fg._counters["tls_handshakes"] += 1
        self.tls = True

    # -- the conversation --------------------------------------------------------

    def _converse(self):
        """Greet, then handle commands until QUIT or the connection ends."""
        if self.rec.port == "implicit":
            self._start_tls()
        if self._stage("greeting"):
            raise _Close("custom at greeting")
        if self.fg.flavor == "office365":
            self._reply("220 %s Microsoft ESMTP MAIL Service ready at %s"
                        % (O365_HOST, time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                                    time.gmtime())))
        else:
            self._reply("220 smtp.gmail.com ESMTP {id} - gsmtp")
        handlers = {
            "EHLO": self.cmd_ehlo, "HELO": self.cmd_helo, "STARTTLS": self.cmd_starttls,
            "AUTH": self.cmd_auth, "MAIL": self.cmd_mail, "RCPT": self.cmd_rcpt,
            "DATA": self.cmd_data, "BDAT": self.cmd_bdat, "RSET": self.cmd_rset,
            "NOOP": self.cmd_noop, "QUIT": self.cmd_quit, "VRFY": self.cmd_vrfy,
            "HELP": self.cmd_help,
        }
        while True:
            line = self._readline().decode("utf-8", "surrogateescape")
            with self.fg._lock:
                self.rec.commands.append(line)
            verb, _, arg = line.partition(" ")
            handler = handlers.get(verb.upper())
            if handler is None:
                self._reply_t(T_UNRECOGNIZED)
            else:
                handler(arg.strip())

    def _ehlo_lines(self):
        """Gmail's EHLO keywords for the current state."""
        keys = ["SIZE %d" % self.fg.max_size, "8BITMIME"]
        if not self.tls and self.fg.offer_starttls:
            keys.append("STARTTLS")
        if self.tls or self.fg.allow_plain_auth:
            keys.append("AUTH " + self.fg.auth_mechs)
        keys += ["ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"]
        if self.fg.offer_dsn:
            keys.append("DSN")
        return [k for k in keys if k.split()[0] not in self.fg.no_ext]

    def cmd_ehlo(self, arg, helo=False):
        """EHLO/HELO: reset the state and list the extensions."""
        if self._stage("ehlo"):
            return
        if self.fg._take_fail("ehlo_421", self):
            self._reply_t(T_EHLO_421)
            raise _Close("ehlo_421")
        if not arg:
            self._reply_t(T_EMPTY_EHLO)
            raise _Close("empty ehlo")
        with self.fg._lock:
            self.rec.ehlo_names.append(arg)
        self._abort_txn("rset")
        self.ehlo = True
        first = "smtp.gmail.com at your service, [%s]" % self.rec.peer[0]
        if self.fg.flavor == "office365":
            first = "%s Hello [%s]" % (O365_HOST, self.rec.peer[0])
        if helo:
            self._reply("250 smtp.gmail.com at your service")
            return
        lines = [first] + self._ehlo_lines()
        self._send(["250-" + l for l in lines[:-1]] + ["250 " + lines[-1]])

    def cmd_helo(self, arg):
        self.cmd_ehlo(arg, helo=True)

    def cmd_starttls(self, arg):
        """STARTTLS: 220, discard anything pipelined after it, handshake."""
        if self.tls or not self.fg.offer_starttls:
            self._reply_t(T_UNRECOGNIZED)
            return
        if self._stage("starttls"):
            return
        # RFC 3207 section 4.2 / CVE-2011-0411: plaintext that followed
        # STARTTLS must not be taken as commands after the handshake.
        with self.fg._lock:
            self.rec.starttls_injection += len(self.buf)
        self.buf.clear()
        self._reply("220 2.0.0 Ready to start TLS")
        self._start_tls()
        # RFC 3207 4.2: forget everything learnt before TLS.
        self.ehlo = self.authed = False
        self._abort_txn("rset")

    # -- AUTH ----------------------------------------------------------------------

    def _b64(self, text):
        """Decode base64 or raise ValueError."""
        return base64.b64decode(text.encode("ascii"), validate=True)

    def _auth_line(self, prompt):
        """Send a 334 prompt and read the client's answer line."""
        self._reply("334 " + prompt)
        line = self._readline().decode("ascii", "replace")
        with self.fg._lock:
            self.rec.commands.append(line)
        if line == "*":
            raise ValueError("cancelled")
        return line

    def cmd_auth(self, arg):
        """AUTH PLAIN / LOGIN / XOAUTH2, checked against fg.user/fg.password."""
        self.fg._count("auth_count")
        words = arg.split()
        mech = words[0].upper() if words else ""
        initial = words[1] if len(words) > 1 else None
        att = AuthAttempt(mechanism=mech, tls_active=self.tls)
        with self.fg._lock:
            self.rec.auth.append(att)
        if self._stage("auth"):
            return
        if not self.tls and not self.fg.allow_plain_auth:
            try:   # record credentials leaked in an initial response
                if mech == "PLAIN" and initial:
                    _, u, p = self._b64(initial).split(b"\0", 2)
                    att.username, att.password = u.decode(), p.decode()
                elif mech == "LOGIN" and initial:
                    att.username = self._b64(initial).decode()
            except ValueError:
                pass
            att.reply = self._reply_t(T_STARTTLS_FIRST)
            return
        if not self.ehlo:
            att.reply = self._reply_t(T_EHLO_FIRST)
            return
        if self.authed:
            att.reply = self._reply_t(T_ALREADY_AUTH)
            return
        try:
            ok = self._auth_exchange(mech, initial, att)
        except ValueError:
            att.reply = self._reply_t(T_CANNOT_DECODE)
            return
        if ok is None:
            return  # reply already sent
        for name, template in (("auth_535", T_BAD_CREDENTIALS),
                               ("auth_534_5.7.9", T_ASP_REQUIRED),
                               ("auth_534_5.7.14", T_WEB_LOGIN),
                               ("auth_454", T_TOO_MANY_LOGINS)):
            if self.fg._take_fail(name, self):
                att.reply = self._reply_t(template)
                return
        if ok:
            att.success = self.authed = True
            att.reply = self._reply("235 2.7.0 Accepted")
        else:
            att.reply = self._reply_t(T_BAD_CREDENTIALS)

    def _auth_exchange(self, mech, initial, att):  # noqa: C901
        """Run the mechanism's exchange, fill att; return True/False for the
        credentials, or None if a reply was already sent."""
        if self.fg.flavor == "office365" and mech in ("PLAIN", "LOGIN"):
            # Basic authentication turned off for the tenant.
            if mech == "LOGIN":
                self._auth_line("VXNlcm5hbWU6")
                self._auth_line("UGFzc3dvcmQ6")
            att.reply = self._reply(O365_BASIC_OFF)
            return None
        if mech == "PLAIN":
            resp = initial if initial is not None else self._auth_line("")
            raw = b"" if resp == "=" else self._b64(resp)
            parts = raw.split(b"\0")
            if len(parts) != 3:
                raise ValueError("bad PLAIN response")
            att.username = parts[1].decode("utf-8", "replace")
            att.password = parts[2].decode("utf-8", "replace")
        elif mech == "LOGIN":
            resp = initial if initial is not None else self._auth_line("VXNlcm5hbWU6")
            att.username = self._b64(resp).decode("utf-8", "replace")
            att.password = self._b64(self._auth_line("UGFzc3dvcmQ6")).decode(
                "utf-8", "replace")
        elif mech in ("XOAUTH2", "OAUTHBEARER"):
            if self.fg.flavor == "office365" and mech == "OAUTHBEARER":
                att.reply = self._reply_t(T_BAD_MECH)
                return None
            resp = initial if initial is not None else self._auth_line("")
            att.username, att.password = _parse_oauth(mech, self._b64(resp))
            if not self.fg._oauth_ok(att.username, att.password):
                # The error challenge; the client answers with an empty
                # line (XOAUTH2) or "AQ==" (OAUTHBEARER, RFC 7628 3.2.3),
                # then gets the 535.
                answer = self._auth_line(XOAUTH2_ERROR if mech == "XOAUTH2"
                                         else OAUTHBEARER_ERROR)
                with self.fg._lock:
                    att.challenge_answer = answer
                if self.fg.flavor == "office365":
                    att.reply = self._reply(O365_BAD_TOKEN)
                else:
                    att.reply = self._reply_t(T_BAD_CREDENTIALS)
                return None
            return True
        else:
            att.reply = self._reply_t(T_BAD_MECH)
            return None
        return att.username == self.fg.user and att.password == self.fg.password

    # -- mail transaction ------------------------------------------------------------

    def _abort_txn(self, outcome):
        """End the current transaction (if any) with the given outcome."""
        if self.txn is not None and self.txn.outcome is None:
            self.txn.outcome = outcome
        self.txn, self.bdat, self.bdat_failed = None, None, False

    def cmd_mail(self, arg):
        """MAIL FROM:<addr> [SIZE= BODY= SMTPUTF8 AUTH=]."""
        if self._stage("mail"):
            return
        if not self.tls and not self.fg.allow_plain_auth:
            return self._reply_t(T_STARTTLS_FIRST)
        if not self.ehlo:
            return self._reply_t(T_EHLO_FIRST)
        if not self.authed:
            return self._reply_t(T_AUTH_REQUIRED)
        if self.txn is not None:
            return self._reply_t(T_NESTED_MAIL)
        m = re.fullmatch(r"FROM:\s*<(%s)>(?:\s+(.*))?" % PATH_RE, arg,
                         re.I | re.S)
        if not m:
            return self._reply_t(T_SYNTAX)
        params = _parse_params(m.group(2) or "")
        if not self._params_ok(params, self.fg.offer_dsn):
            return self._reply_t(T_SYNTAX)
        if int(params.get("SIZE", 0)) > self.fg.max_size:
            return self._reply_t(T_TOO_BIG)
        for name, template in (("mail_530_starttls", T_STARTTLS_FIRST),
                               ("mail_550_5.4.5", T_DAILY_LIMIT),
                               ("mail_552_size", T_TOO_BIG)):
            if self.fg._take_fail(name, self):
                return self._reply_t(template)
        self.txn = Transaction(mail_from=m.group(1), mail_params=params)
        with self.fg._lock:
            self.rec.transactions.append(self.txn)
        self._reply("250 2.1.0 OK {id} - gsmtp")

    @staticmethod
    def _params_ok(params, dsn=False):
        """Gmail offers SIZE, 8BITMIME and SMTPUTF8 (and AUTH=) — no DSN."""
        for k, v in params.items():
            if dsn and k == "RET" and v in ("FULL", "HDRS"):
                continue
            if dsn and k == "ENVID" and isinstance(v, str) and v:
                continue
            if k == "SIZE" and not (isinstance(v, str) and v.isdigit()):
                return False
            if k == "BODY" and v not in ("7BIT", "8BITMIME"):
                return False
            if k == "SMTPUTF8" and v is not True:
                return False
            if k not in ("SIZE", "BODY", "SMTPUTF8", "AUTH"):
                return False
        return True

    def cmd_rcpt(self, arg):
        """RCPT TO:<addr> — accepted unless a limit or an injected failure."""
        if self._stage("rcpt"):
            return
        if self.txn is None:
            return self._reply_t(T_MAIL_FIRST)
        m = re.fullmatch(r"TO:\s*<(%s)>(\s+.*)?" % PATH_RE, arg, re.I | re.S)
        params = _parse_params(m.group(2) or "") if m else {}
        if not m or (params and not self.fg.offer_dsn) or \
                set(params) - {"NOTIFY", "ORCPT"}:
            return self._reply_t(T_SYNTAX)   # no DSN parameters at Gmail
        addr = m.group(1)
        local, at, domain = addr.rpartition("@")
        if not at or not local or not domain or " " in (
                domain if local.startswith('"') else addr):
            return self._reject_rcpt(addr, T_BAD_ADDRESS)
        n = len(self.txn.rcpts)
        if n >= self.fg.max_recipients or self.fg._take_fail(
                "rcpt_452_too_many", self, lambda p: n >= p["limit"]):
            return self._reject_rcpt(addr, T_TOO_MANY_RCPTS)
        listed = lambda p: p["addrs"] is None or addr.lower() in p["addrs"]  # noqa: E731
        for name, template in (("rcpt_553_5.1.3", T_BAD_ADDRESS),
                               ("rcpt_550_5.1.1", T_NO_SUCH_USER),
                               ("rcpt_450_4.2.1", T_RATE_LIMITED)):
            if self.fg._take_fail(name, self, listed):
                return self._reject_rcpt(addr, template)
        with self.fg._lock:
            self.txn.rcpts.append(addr)
            if params:
                self.txn.rcpt_params[addr] = params
        self._reply("250 2.1.5 OK {id} - gsmtp")

    def _reject_rcpt(self, addr, template):
        with self.fg._lock:
            self.txn.rejected_rcpts.append([addr, template[0]])
        self._reply_t(template, addr=addr)

    def cmd_data(self, arg):
        """DATA: 354, read up to CRLF.CRLF, then the final reply."""
        if self._stage("data"):
            return
        if self.txn is None:
            return self._reply_t(T_MAIL_FIRST)
        if not self.txn.rcpts:
            return self._reply_t(T_RCPT_FIRST)
        if self.fg._take_fail("data_550_5.4.5", self):
            self._reply_t(T_DAILY_LIMIT)
            return self._abort_txn("550")
        self._reply("354  Go ahead {id} - gsmtp")
        raw, size = self._read_data()
        self._finish(raw, _unstuff(raw) if raw is not None else None, size, "DATA")

    def _read_data(self):
        """Read DATA up to CRLF.CRLF; return (raw bytes or None if too big,
        octets received). Bytes after the terminator stay in the buffer."""
        # A virtual CRLF in front lets an empty message (".\r\n" right after
        # 354) match the same terminator.
        raw = bytearray(b"\r\n") + self.buf
        self.buf.clear()
        drop = self.fg._peek_fail("drop_mid_data")
        # offset: bytes already cut from the front of raw (message too big).
        offset, start, oversize = 0, 0, False
        bound = self.fg.max_size + 65536
        while True:
            got = offset + len(raw) - 2
            if drop and got >= drop["after_bytes"]:
                if self.fg._take_fail("drop_mid_data", self):
                    self.txn.data_bytes, self.txn.outcome = got, "dropped"
                    self._drop("drop_mid_data", drop["reset"])
            i = raw.find(b"\r\n.\r\n", start)
            if i >= 0:
                self.buf[:0] = raw[i + 5:]
                self.txn.data_bytes = offset + i
                return (None if oversize else bytes(raw[2:i + 2])), offset + i
            if len(raw) > bound:   # too big: keep counting, stop storing
                oversize = True
                offset += len(raw) - 6
                raw = raw[-6:]
            start = max(0, len(raw) - 4)
            raw += self._recv()

    def cmd_bdat(self, arg):
        """BDAT n [LAST] (RFC 3030): read n octets, reply per chunk."""
        m = re.fullmatch(r"(\d+)(\s+LAST)?", arg, re.I)
        if not m:
            return self._reply_t(T_SYNTAX)
        n, last = int(m.group(1)), bool(m.group(2))
        chunk = self._read_exact(n)
        if self.txn is None or not self.txn.rcpts or self.bdat_failed:
            self.bdat_failed = self.txn is not None
            return self._reply_t(T_MAIL_FIRST if self.txn is None else T_RCPT_FIRST)
        if self.bdat is None:
            self.bdat = bytearray()
        if len(self.bdat) <= self.fg.max_size + 65536:
            self.bdat += chunk if chunk is not None else b""
        self.txn.data_bytes += n
        if not last:
            return self._reply("250 2.0.0 OK %d octets received {id} - gsmtp" % n)
        raw = bytes(self.bdat)
        size = self.txn.data_bytes
        self.bdat = None
        self._finish(raw if size <= self.fg.max_size else None, raw, size, "BDAT")

    def _read_exact(self, n):
        """Read exactly n octets (stored only up to a bound; else None)."""
        keep = n <= self.fg.max_size + 65536
        out, got = bytearray(), 0
        while got < n:
            if not self.buf:
                self.buf += self._recv()
            take = bytes(self.buf[:n - got])
            del self.buf[:len(take)]
            got += len(take)
            if keep:
                out += take
        return bytes(out) if keep else None

    def _finish(self, raw, data, size, via):
        """Give the final reply to a complete message and record it."""
        txn = self.txn
        msg = MessageRecord(
            mail_from=txn.mail_from, mail_params=txn.mail_params, rcpts=list(txn.rcpts),
            raw_data=raw or b"", data=data if raw is not None else b"",
            session=self.rec.index, timestamp=time.time(), monotonic=time.monotonic(),
            via=via, size=size, rcpt_params=dict(txn.rcpt_params))

        def unacked(outcome):
            msg.outcome = txn.outcome = outcome
            self.fg._add("_unacked", msg)
            self._abort_txn(outcome)

        if raw is None or size > self.fg.max_size:
            unacked("552")
            return self._reply_t(T_TOO_BIG)
        at_dot = lambda p: p["at"] == "dot"  # noqa: E731
        p = self.fg._take_fail("drop_after_dot", self) or \
            self.fg._take_fail("drop", self, at_dot)
        if p:
            unacked("dropped")
            self._drop("drop after dot", p["reset"])
        if self.fg._take_fail("hang", self, at_dot):
            unacked("hang")
            self._hang()
        p = self.fg._take_fail("custom", self, at_dot)
        if p:
            unacked(p["reply"][:3])
            self._reply(p["reply"])
            if p["close"]:
                raise _Close("custom at dot")
            return
        for name, template, close in (("dot_552_size", T_TOO_BIG, False),
                                      ("dot_550_5.4.5", T_DAILY_LIMIT, False),
                                      ("dot_421_4.3.0", T_TEMP_421, True),
                                      ("dot_451_4.3.0", T_TEMP_451, False)):
            if self.fg._take_fail(name, self):
                unacked(str(template[0]))
                self._reply_t(template)
                if close:
                    raise _Close(name)
                return
        msg.outcome = txn.outcome = "250"
        self.fg._add("_messages", msg)
        self._abort_txn("250")
        self._reply("250 2.0.0 OK  %d {id} - gsmtp" % int(msg.timestamp))

    # -- the rest ------------------------------------------------------------------------

    def cmd_rset(self, arg):
        if self._stage("rset"):
            return
        self._abort_txn("rset")
        self._reply("250 2.1.5 Flushed {id} - gsmtp")

    def cmd_noop(self, arg):
        self._reply("250 2.0.0 OK {id} - gsmtp")

    def cmd_vrfy(self, arg):
        self._reply("252 2.1.5 Send some mail, I'll try my best {id} - gsmtp")

    def cmd_help(self, arg):
        self._reply("214 2.0.0  https://www.google.com/search?btnI&q=RFC+5321 {id} - gsmtp")

    def cmd_quit(self, arg):
        if self._stage("quit"):
            return
        self._reply("221 2.0.0 closing connection {id} - gsmtp")
        raise _Close("quit")


# ---------------------------------------------------------------------------
# Standalone mode
# ---------------------------------------------------------------------------

def _parse_fail(spec):
    """--fail NAME[:count=N][:key=value...]; addrs takes a ;-separated list."""
    name, *opts = spec.split(":")
    params = {}
    for opt in opts:
        k, _, v = opt.partition("=")
        if k == "addrs":
            params[k] = set(v.split(";"))
        elif k in ("count", "limit", "after_bytes"):
            params[k] = int(v)
        elif k == "after":
            params[k] = float(v)
        elif k in ("reset", "close"):
            params[k] = v.lower() in ("1", "true", "yes")
        else:
            params[k] = v
    return name, params


def main(argv=None):
    """Run until SIGTERM/SIGINT; print the ports first and the record last."""
    ap = argparse.ArgumentParser(description="fake smtp.gmail.com for tests")
    ap.add_argument("--certdir", required=True, help="made with mkcerts if empty")
    ap.add_argument("--user", default="test.user@gmail.com")
    ap.add_argument("--password", default="abcdefghijklmnop")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port-starttls", type=int, default=0)
    ap.add_argument("--port-implicit", type=int, default=0)
    ap.add_argument("--cert", default="good",
                    choices=["good", "wrongname", "untrusted", "nosni"])
    ap.add_argument("--server-name", default="localhost")
    ap.add_argument("--no-starttls", action="store_true")
    ap.add_argument("--idle-timeout", type=float, default=300.0)
    ap.add_argument("--fail", action="append", default=[], metavar="NAME[:k=v...]")
    ap.add_argument("--record", help="also write the JSON record to this file")
    ap.add_argument("--rtt", type=float, default=0.0,
                    help="round-trip time to emulate, in milliseconds")
    args = ap.parse_args(argv)

    fails = dict(_parse_fail(s) for s in args.fail)
    fg = FakeGmail(user=args.user, password=args.password, certdir=args.certdir,
                   cert=args.cert, server_name=args.server_name, host=args.host,
                   port_starttls=args.port_starttls, port_implicit=args.port_implicit,
                   offer_starttls=not args.no_starttls, idle_timeout=args.idle_timeout,
                   fail=fails, rtt=args.rtt / 1000.0)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    fg.start()
    print(json.dumps({"host": args.host, "port_starttls": fg.port_starttls,
                      "port_implicit": fg.port_implicit, "ca": fg.ca_file}), flush=True)
    while not done.wait(0.5):
        pass
    fg.stop()
    record = json.dumps(fg.record_dict(), indent=1)
    if args.record:
        with open(args.record, "w") as f:
            f.write(record)
    print(record, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
