"""Helpers for scenario tests: run the real smartrelayd on loopback.

`Daemon` writes a configuration into a temporary directory, starts the
binary named by $SMARTRELAYD in the foreground, waits until it logs
"ready", and keeps its stderr in a file that tests can read (`log()`).
`SmtpRaw` is a raw socket client for byte-exact dialogues. `wait_until` is
the one way a test waits for something: poll a predicate until it holds or
a deadline passes. `upstream_conf` and `dsn_of` are for tests that relay
to the fake Gmail (tests/fakegmail). The pytest fixtures live in
conftest.py.
"""
import contextlib
import grp
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

SMARTRELAYD = os.environ.get("SMARTRELAYD", "build/daemon/smartrelayd")
SMARTRELAY = os.environ.get("SMARTRELAY", "build/daemon/tool/smartrelay")
SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__),
                                               "..", ".."))


SENDER = "alice@example.net"     # the envelope sender relay tests use

# Runs a command as nobody (the tests of the setgid tool).
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@contextlib.contextmanager
def setgid_spool(prefix):
    """For the tests of the tool as a normal user (root only): a test group,
    a directory TOP outside pytest's 0700 tree (so that nobody can reach
    it), TOP/spool and its maildrop only that group may reach, and a setgid
    copy of the tool in TOP/bin with its sendmail and mailq links.  Yields
    (TOP, TOP/bin); a Daemon(TOP) uses that spool.  Removes it all after."""
    if os.getuid() != 0:
        pytest.skip("needs root: a test group and a setgid copy of the tool")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    group = "%s%d" % (prefix, os.getpid())
    subprocess.run(["groupadd", group], check=True)
    top = tempfile.mkdtemp(prefix=prefix + ".")
    try:
        gid = grp.getgrnam(group).gr_gid
        os.chmod(top, 0o755)
        spool = os.path.join(top, "spool")
        os.mkdir(spool, 0o710)
        os.chown(spool, 0, gid)
        os.mkdir(os.path.join(spool, "maildrop"))
        os.chown(os.path.join(spool, "maildrop"), 0, gid)
        bindir = os.path.join(top, "bin")
        os.mkdir(bindir, 0o755)
        exe = os.path.join(bindir, "smartrelay")
        shutil.copy(SMARTRELAY, exe)
        os.chown(exe, 0, gid)
        os.chmod(exe, 0o2755)
        for name in ("sendmail", "mailq"):
            os.symlink("smartrelay", os.path.join(bindir, name))
        probe = subprocess.run(NOBODY + [exe, "--version"],
                               capture_output=True, timeout=30)
        if probe.returncode != 0 and b"Sanitizer" in probe.stderr:
            pytest.skip("a sanitizer build cannot run setgid (LeakSanitizer "
                        "needs a dumpable process)")
        yield top, bindir
    finally:
        shutil.rmtree(top)
        subprocess.run(["groupdel", group])


def upstream_conf(tmp, fg, port=None, tls="starttls", password=None,
                  initial=1, rmax=4, give_up="1h", conns=2, mpc=100,
                  timeout=10, ca=None, extra="", host="localhost"):
    """The upstream/retry part of a config pointing at fake Gmail fg."""
    pw = os.path.join(str(tmp), "app-password")
    with open(pw, "w") as f:
        # Google shows App Passwords in groups of four; cfg strips spaces.
        f.write((password if password is not None else
                 " ".join(fg.password[i:i + 4] for i in range(0, 16, 4)))
                + "\n")
    os.chmod(pw, 0o600)
    if port is None:
        port = fg.port_implicit if tls == "implicit" else fg.port_starttls
    return ('upstream = { host = "%s"; port = %d; tls = "%s"; '
            'ca_file = "%s"; username = "%s"; password_file = "%s"; '
            'connections = %d; messages_per_connection = %d; '
            'timeout = %d; };\n'
            'retry = { initial = %d; max = %d; give_up_after = "%s"; };\n%s'
            % (host, port, tls, ca or fg.ca_file, fg.user, pw, conns, mpc,
               timeout, initial, rmax, give_up, extra))


def dsn_of(fg, n):
    """The notifications among the fake's messages, waiting for n."""
    fg.wait_for(lambda f: len([m for m in f.messages if m.mail_from == ""])
                >= n, timeout=20)
    return [m for m in fg.messages if m.mail_from == ""]


def wait_until(pred, timeout=15, what="condition", interval=0.05):
    """Polls pred() until it returns a true value and returns that value.

    After `timeout` seconds it fails with "timed out waiting for WHAT";
    `what` may be a callable, evaluated then (e.g. to show the latest log).
    Exceptions from pred() propagate at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for %s" %
                                 (what() if callable(what) else what))
        time.sleep(interval)


def free_port():
    """A TCP port free on 127.0.0.1 and ::1 at the time of asking."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def local_non_loopback_address():
    """This host's address on its default route, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.connect(("192.0.2.1", 9))
            ip = u.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def can_unshare():
    return subprocess.run(["unshare", "-rm", "true"],
                          capture_output=True).returncode == 0


def with_hosts(tmp, program, hosts):
    """A wrapper script that runs program with `hosts` as its /etc/hosts
    (a private mount namespace, unshare -rm); returns its path."""
    path = os.path.join(str(tmp), "hosts")
    with open(path, "w") as f:
        f.write(hosts)
    wrapper = os.path.join(str(tmp), "with-hosts-" +
                           os.path.basename(program))
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nexec unshare -rm sh -c \'mount --bind '
                '"$0" /etc/hosts && exec "$@"\' %s %s "$@"\n'
                % (path, os.path.abspath(program)))
    os.chmod(wrapper, 0o755)
    return wrapper


def spool_messages(spool):
    """Ids of the committed records in a spool (msg/ files without '.')."""
    d = os.path.join(spool, "msg")
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if "." not in f)


def read_record(spool, qid):
    """Returns (envelope dict, body bytes) of a committed record."""
    with open(os.path.join(spool, "msg", qid), "rb") as f:
        data = f.read()
    head, sep, body = data.partition(b"\nbody\n")
    assert sep, "record without a body marker"
    env = {"rcpt": []}
    for line in head.split(b"\n"):
        key, _, val = line.partition(b" ")
        if key == b"rcpt":
            env["rcpt"].append(val.decode())
        else:
            env[key.decode()] = val.decode()
    return env, body


class Daemon:
    """One smartrelayd process with its own config, spool and port."""

    def __init__(self, tmpdir, extra="", listen=None, upstream=None,
                 debug=False):
        self.dir = str(tmpdir)
        self.port = free_port()
        self.spool = os.path.join(self.dir, "spool")
        self.conf = os.path.join(self.dir, "smartrelay.conf")
        self.logpath = os.path.join(self.dir, "daemon.log")
        self.debug = debug
        if listen is None:
            listen = ['127.0.0.1:%d' % self.port, '[::1]:%d' % self.port]
        self.listen = listen
        self.upstream = upstream or ""
        self.extra = extra
        self.proc = None
        self.write_config()

    def write_config(self):
        lst = ", ".join('"%s"' % a for a in self.listen)
        with open(self.conf, "w") as f:
            f.write('listen = [ %s ];\n' % lst)
            f.write('hostname = "relay.test";\n')
            f.write('spool = "%s";\n' % self.spool)
            f.write(self.upstream + "\n")
            f.write(self.extra + "\n")

    def start(self, wait=True, env=None, preexec=None, exe=None):
        """Starts SMARTRELAYD (read now: a test may replace it), or exe, a
        copy of it for a daemon that drops privileges in preexec and may
        not reach the build tree."""
        offset = len(self.log())
        log = open(self.logpath, "ab")
        args = [exe or SMARTRELAYD, "-c", self.conf]
        if self.debug:
            args.append("-d")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log,
                                     env=env or os.environ.copy(),
                                     preexec_fn=preexec)
        log.close()
        if wait:
            self.wait_log("level=info ready", start_at=offset)
        return self

    def wait_log(self, text, timeout=20, start_at=0):
        """Waits until text is in the log (from offset start_at on)."""
        def seen():
            if text in self.log()[start_at:]:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("smartrelayd exited %s:\n%s" %
                                     (self.proc.returncode, self.log()))
            return False
        wait_until(seen, timeout, lambda: "%r in log:\n%s" %
                   (text, self.log()), interval=0.02)

    def wait_log_re(self, pattern, timeout=15, count=1):
        """Waits until the regex matches count times; returns the matches."""
        rx = re.compile(pattern)
        wait_until(lambda: len(rx.findall(self.log())) >= count, timeout,
                   lambda: "%r in log:\n%s" % (pattern, self.log()[-4000:]))
        return rx.findall(self.log())

    def log(self):
        try:
            with open(self.logpath, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def restart(self):
        self.stop()
        return self.start()

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("smartrelayd did not stop on SIGTERM")

    def messages(self):
        return spool_messages(self.spool)

    def record(self, qid):
        return read_record(self.spool, qid)


class SmtpRaw:
    """A byte-level SMTP client: send exactly what the test says."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """Reads one (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
