"""Reusable pytest fixtures and client helpers for the fake Gmail upstream.

A conftest.py loads them as a plugin (tests/fakegmail must be on sys.path):

    pytest_plugins = ["fakegmail_fixtures"]

Fixtures
  fakegmail_certs    (session) dict of certificate paths made once by
                     mkcerts.make_certs in a pytest tmp dir; "dir" is the dir.
  fakegmail          a started FakeGmail with default options (user
                     test.user@gmail.com, password abcdefghijklmnop); stopped
                     after the test.
  fakegmail_factory  call it with FakeGmail keyword arguments to get more
                     started servers (other certs, hosts, failures...); all are
                     stopped after the test.

Client helpers (for tests of the fake itself, and handy elsewhere)
  SMTP, SMTP_SSL     smtplib classes that connect to an address but send SNI
                     (and check the certificate against) `sni`, default
                     "localhost".
  RawSMTP            a line-level client that returns replies as lists of lines,
                     for asserting Gmail's exact texts.
"""

import os
import re
import socket
import smtplib
import ssl
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakegmail import FakeGmail  # noqa: E402
from mkcerts import make_certs   # noqa: E402

GREETING_RE = re.compile(
    r"220 smtp\.gmail\.com ESMTP ([0-9a-f]{13}-[0-9a-f]{11}sm[0-9a-f]{10}\.\d{1,3}) - gsmtp")


@pytest.fixture(scope="session")
def fakegmail_certs(tmp_path_factory):
    """Certificates for the whole test session: {name: path, "dir": dir}."""
    d = str(tmp_path_factory.mktemp("fakegmail-certs"))
    paths = make_certs(d)
    paths["dir"] = d
    return paths


@pytest.fixture
def fakegmail_factory(fakegmail_certs):
    """Factory: make(**FakeGmail kwargs) -> started FakeGmail; all stopped after."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("certdir", fakegmail_certs["dir"])
        fg = FakeGmail(**kwargs).start()
        made.append(fg)
        return fg
    yield make
    for fg in made:
        fg.stop()


@pytest.fixture
def fakegmail(fakegmail_factory):
    """A started FakeGmail with default options."""
    return fakegmail_factory()


def client_context(ca_file):
    """A client SSLContext that trusts only our test CA and checks names."""
    return ssl.create_default_context(cafile=ca_file)


class _SNIMixin:
    """Connect to the given address but use `sni` as TLS server name."""

    def __init__(self, *args, sni="localhost", **kwargs):
        self._sni = sni
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        # smtplib uses self._host as server_hostname for SNI and checking.
        self._host = self._sni
        return super()._get_socket(host, port, timeout)


class SMTP(_SNIMixin, smtplib.SMTP):
    """smtplib.SMTP whose starttls() sends SNI `sni` (default localhost)."""


class SMTP_SSL(_SNIMixin, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL sending SNI `sni` (default localhost)."""


class RawSMTP:
    """A minimal line-level SMTP client that returns replies as line lists.

    RawSMTP(fg) connects to the STARTTLS port, RawSMTP(fg, implicit=True)
    to the implicit port (handshake with `ctx` and `sni`). `greeting` holds
    the greeting lines and `trace_id` Gmail's id parsed from it.
    """

    def __init__(self, fg, implicit=False, ctx=None, sni="localhost", timeout=5.0):
        self.fg, self.sni = fg, sni
        self.ctx = ctx or client_context(fg.ca_file)
        port = fg.port_implicit if implicit else fg.port_starttls
        self.sock = socket.create_connection((fg.host, port), timeout=timeout)
        self.buf = b""
        if implicit:
            self.sock = self.ctx.wrap_socket(self.sock, server_hostname=sni)
        self.greeting = self.read_reply()
        m = GREETING_RE.fullmatch(self.greeting[0])
        self.trace_id = m.group(1) if m else None

    def send(self, data):
        """Send raw bytes (str is encoded as UTF-8)."""
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_line(self):
        """One reply line without CRLF; raises EOFError on close."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def read_reply(self):
        """A whole (possibly multi-line) reply as a list of lines."""
        lines = [self.read_line()]
        while lines[-1][3:4] == "-":
            lines.append(self.read_line())
        return lines

    def cmd(self, line):
        """Send one command line and return its reply."""
        self.send(line + "\r\n")
        return self.read_reply()

    def starttls(self, ctx=None, sni="localhost"):
        """STARTTLS and handshake (raises ssl errors if the client rejects)."""
        reply = self.cmd("STARTTLS")
        assert reply == ["220 2.0.0 Ready to start TLS"], reply
        self.sock = (ctx or self.ctx).wrap_socket(self.sock, server_hostname=sni)
        return reply

    def login(self, user=None, password=None):
        """AUTH PLAIN with an initial response; return the reply."""
        import base64
        user = self.fg.user if user is None else user
        password = self.fg.password if password is None else password
        token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        return self.cmd("AUTH PLAIN " + token)

    def ready(self, ehlo="client.example"):
        """EHLO, STARTTLS (unless already TLS), EHLO, AUTH: ready for MAIL."""
        self.cmd("EHLO " + ehlo)
        if not isinstance(self.sock, ssl.SSLSocket):
            self.starttls()
            self.cmd("EHLO " + ehlo)
        reply = self.login()
        assert reply == ["235 2.7.0 Accepted"], reply
        return self

    def expect_closed(self):
        """Assert the server closed the connection (EOF or reset)."""
        try:
            data = self.sock.recv(1)
        except (ConnectionError, ssl.SSLError):
            return
        assert data == b"", data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
