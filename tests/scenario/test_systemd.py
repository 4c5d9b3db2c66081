"""smartrelayd under systemd (docs/systemd.md), tested piece by piece.

There is no systemd as PID 1 here, so each piece is checked on its own:
a NOTIFY_SOCKET datagram socket collects what the daemon tells the service
manager (READY, STATUS, RELOADING, STOPPING, WATCHDOG) across start, reload,
a broken reload and stop; `systemd-socket-activate` passes listening
sockets; `systemd-analyze verify` and `security` judge the units; and
`meson install --destdir` lays out the files.
"""
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from harness import (SMARTRELAYD, SRCDIR, Daemon, SmtpRaw, free_port,
                     wait_until)

# Variables a surrounding service manager may have set for the test runner.
SYSTEMD_VARS = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
                "CREDENTIALS_DIRECTORY")


# Nothing leaves the machine: the upstream is a closed loopback port, so
# queued test messages stay queued (deferred).
DEAD_UPSTREAM = ('upstream = { host = "127.0.0.1"; port = 9; tls = "none"; '
                 'insecure_plaintext = true; };\n'
                 'retry = { initial = "1h"; max = "1h"; };')


def daemon(tmp_path, **kw):
    """A Daemon (not started) whose mail goes nowhere."""
    return Daemon(tmp_path, upstream=DEAD_UPSTREAM, **kw)


def build_root():
    """The meson build directory the binaries under test come from."""
    root = os.environ.get("BUILDDIR")
    if root:
        return root
    return os.path.dirname(os.path.dirname(os.path.abspath(SMARTRELAYD)))


def clean_env(**extra):
    env = os.environ.copy()
    for k in SYSTEMD_VARS:
        env.pop(k, None)
    env.update(extra)
    return env


class Notify:
    """A NOTIFY_SOCKET: records every datagram with its arrival time."""

    def __init__(self):
        # sun_path is short (108 bytes): not under pytest's long tmp path.
        self.dir = tempfile.mkdtemp(prefix="srnotify")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.msgs = []          # (monotonic seconds, {key: value})
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1)
                          for line in data.decode().split("\n") if "=" in line)
            with self.cond:
                self.msgs.append((time.monotonic(), fields))
                self.cond.notify_all()

    def env(self, **extra):
        return clean_env(NOTIFY_SOCKET=self.path, **extra)

    def wait(self, key, start=0, timeout=15):
        """Index of the first message from start on that has key."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.msgs)):
                    if key in self.msgs[i][1]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s notification in %r" %
                                         (key, self.keys()))
                self.cond.wait(left)

    def keys(self, start=0):
        """The notifications as a list of their key sets (no WATCHDOG)."""
        with self.cond:
            return [sorted(m) for _, m in self.msgs[start:]
                    if m != {"WATCHDOG": "1"}]

    def wait_ready(self, d, start=0, timeout=15):
        """Waits for READY=1 from d; fails with its log if it exits."""
        def ready():
            try:
                # +1: index 0 is a valid answer.
                return self.wait("READY", start=start, timeout=0.1) + 1
            except AssertionError:
                if d.proc.poll() is not None:
                    raise AssertionError("smartrelayd exited %s before "
                                         "READY=1:\n%s" %
                                         (d.proc.returncode, d.log()))
                return None
        return wait_until(ready, timeout, lambda: "READY=1 in %r:\n%s" %
                          (self.keys(), d.log()), interval=0) - 1

    def count(self):
        with self.cond:
            return len(self.msgs)

    def get(self, i):
        with self.cond:
            return self.msgs[i][1]

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    n = Notify()
    yield n
    n.close()


def send_mail(port, host="127.0.0.1", rcpts=("b@example.net",)):
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.sendmail("a@example.org", list(rcpts),
                   b"Subject: t\r\n\r\nhello\r\n")


def rcpt_replies(port, n):
    """Reply codes to n RCPT commands in one transaction."""
    c = SmtpRaw(port)
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
        return [c.cmd("RCPT TO:<r%d@example.net>" % i)[0] for i in range(n)]
    finally:
        c.close()


def sighup(d):
    d.proc.send_signal(signal.SIGHUP)


# --- sd_notify -------------------------------------------------------------

def test_ready_after_recovery_and_listening(tmp_path, notify):
    d = daemon(tmp_path)
    # One message in the spool, so recovery has something to find.
    d.start(env=clean_env())
    send_mail(d.port)
    assert d.stop() == 0
    assert len(d.messages()) == 1

    d.start(wait=False, env=notify.env())
    i = notify.wait_ready(d)
    # The sockets accept as soon as READY=1 has been sent...
    c = SmtpRaw(d.port)
    assert c.reply()[0] == 220
    c.close()
    c = SmtpRaw(d.port, host="::1")
    assert c.reply()[0] == 220
    c.close()
    # ...and the queue was recovered before it.
    log = d.log()
    assert log.rindex("recovered messages=1") < log.rindex("level=info ready")
    ready = notify.get(i)
    assert ready["READY"] == "1"
    assert re.fullmatch(r"queue=1 upstream=\S+", ready["STATUS"]), ready
    # Nothing claimed readiness earlier.
    assert not any("READY" in k for k in notify.keys()[:i])

    # STATUS= follows the queue.
    send_mail(d.port)

    def statuses():
        return [m.get("STATUS", "") for m in
                (notify.get(k) for k in range(notify.count()))]
    wait_until(lambda: any(s.startswith("queue=2 ") for s in statuses()), 5,
               lambda: "STATUS=queue=2 in %r" % statuses())

    n = notify.count()
    assert d.stop() == 0
    k = notify.wait("STOPPING", start=n)
    assert notify.get(k)["STOPPING"] == "1"
    assert len(d.messages()) == 2


def test_reload_applies_a_new_config(tmp_path, notify):
    d = daemon(tmp_path, extra="limits = { recipients = 2; };")
    d.start(env=notify.env())
    notify.wait("READY")
    assert rcpt_replies(d.port, 3) == [250, 250, 452]

    d.extra = "limits = { recipients = 5; };"
    d.write_config()
    n = notify.count()
    before = time.monotonic()
    sighup(d)
    r = notify.wait("RELOADING", start=n)
    msg = notify.get(r)
    assert msg["RELOADING"] == "1"
    # MONOTONIC_USEC is CLOCK_MONOTONIC, the clock of time.monotonic().
    usec = int(msg["MONOTONIC_USEC"])
    assert before * 1e6 - 1e6 < usec < time.monotonic() * 1e6 + 1e6
    k = notify.wait("READY", start=r + 1)
    assert notify.keys(n)[0] == sorted(["RELOADING", "MONOTONIC_USEC",
                                        "STATUS"])
    assert notify.get(k)["STATUS"].startswith("queue=0 ")
    d.wait_log("reloaded config=")
    assert rcpt_replies(d.port, 5) == [250] * 5
    assert rcpt_replies(d.port, 6)[5] == 452

    n = notify.count()
    assert d.stop() == 0
    notify.wait("STOPPING", start=n)


def test_reload_with_a_broken_config_keeps_the_old_one(tmp_path, notify):
    d = daemon(tmp_path, extra="limits = { recipients = 2; };")
    d.start(env=notify.env())
    notify.wait("READY")

    # A wrong type, on a line of its own.
    d.extra = 'limits = {\n  recipients = "lots";\n};'
    d.write_config()
    with open(d.conf) as f:
        line = f.read().split("\n").index('  recipients = "lots";') + 1
    n = notify.count()
    sighup(d)
    r = notify.wait("RELOADING", start=n)
    notify.wait("READY", start=r + 1)
    d.wait_log("reload failed")
    log = d.log()
    assert re.search(r"level=err reload error=\"%s:%d: [^\"]*recipients" %
                     (re.escape(d.conf), line), log), log
    assert re.search(r"level=err reload failed config=\S+ kept=previous", log)
    assert d.proc.poll() is None
    # The old limit is still in force and mail still flows.
    assert rcpt_replies(d.port, 3) == [250, 250, 452]
    send_mail(d.port)
    assert len(d.messages()) == 1

    # A syntax error is reported with its line too.
    with open(d.conf, "a") as f:
        f.write("this is not libconfig\n")
    n = notify.count()
    sighup(d)
    notify.wait("READY", start=notify.wait("RELOADING", start=n) + 1)
    d.wait_log("reload failed", start_at=len(log))
    assert re.search(r"reload error=\"%s:\d+: " % re.escape(d.conf),
                     d.log()[len(log):])

    n = notify.count()
    assert d.stop() == 0
    notify.wait("STOPPING", start=n)


def test_reload_rebinds_changed_listen_addresses(tmp_path, notify):
    d = daemon(tmp_path)
    d.start(env=notify.env())
    notify.wait("READY")
    old = d.port
    new = free_port()
    d.listen = ["127.0.0.1:%d" % new, "[::1]:%d" % new]
    d.write_config()
    n = notify.count()
    sighup(d)
    notify.wait("READY", start=n)
    d.wait_log("reloaded config=")
    send_mail(new)
    send_mail(new, host="::1")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old), timeout=5)

    # An address that cannot be bound: the old sockets and config stay.
    d.listen = ["192.0.2.1:%d" % new]
    d.write_config()
    n = notify.count()
    sighup(d)
    notify.wait("READY", start=n)
    d.wait_log("reload failed")
    send_mail(new)
    assert len(d.messages()) == 3
    assert d.stop() == 0


def test_sigterm_sends_stopping_and_exits_0(tmp_path, notify):
    d = daemon(tmp_path)
    d.start(env=notify.env())
    notify.wait("READY")
    # A client in the middle of a transaction does not hold the stop up.
    c = SmtpRaw(d.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    n = notify.count()
    d.proc.send_signal(signal.SIGTERM)
    k = notify.wait("STOPPING", start=n)
    assert notify.get(k)["STOPPING"] == "1"
    assert d.proc.wait(15) == 0
    assert c.reply()[0] == 421
    c.close()
    assert [m for m in notify.keys(n) if "READY" in m] == []


def test_watchdog_pings_at_half_the_period(tmp_path, notify):
    d = daemon(tmp_path)
    d.start(env=notify.env(WATCHDOG_USEC="600000"))
    notify.wait("READY")
    d.wait_log("watchdog interval=300ms")
    time.sleep(2.2)
    with notify.cond:
        pings = [t for t, m in notify.msgs if m.get("WATCHDOG") == "1"]
    assert len(pings) >= 5, pings
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    gaps.sort()
    assert 0.2 < gaps[len(gaps) // 2] < 0.45, gaps
    assert d.stop() == 0


def test_no_watchdog_for_another_pid(tmp_path, notify):
    # WATCHDOG_PID names another process: the watchdog is not ours.
    d = daemon(tmp_path)
    d.start(env=notify.env(WATCHDOG_USEC="200000", WATCHDOG_PID="1"))
    notify.wait("READY")
    time.sleep(0.6)
    with notify.cond:
        assert not any("WATCHDOG" in m for _, m in notify.msgs)
    assert d.stop() == 0


def test_without_notify_socket_nothing_breaks(tmp_path):
    d = daemon(tmp_path)
    d.start(env=clean_env(WATCHDOG_USEC="200000"))
    send_mail(d.port)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reloaded config=")
    send_mail(d.port)
    assert d.stop() == 0
    assert len(d.messages()) == 2


# --- RestrictSUIDSGID= ------------------------------------------------------

def restrict_suid_sgid():
    """In the child: a seccomp filter like systemd's RestrictSUIDSGID=yes.

    chmod, fchmod, fchmodat, mkdir, mkdirat, mknod and mknodat fail with
    EPERM when the mode has S_ISUID or S_ISGID, as under the unit (x86-64
    numbers; the caller skips elsewhere).
    """
    mode_arg = {90: 1, 91: 1, 268: 2, 83: 1, 258: 2, 133: 1, 259: 2}
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06

    def insn(code, k, jt=0, jf=0):
        return struct.pack("HBBI", code, jt, jf, k)
    body = []
    for nr, arg in mode_arg.items():
        body += [insn(ld, 0), insn(jeq, nr, 0, 3),
                 insn(ld, 16 + 8 * arg), insn(jset, 0o6000, 0, 1),
                 insn(ret, 0x00050000 | 1)]     # SECCOMP_RET_ERRNO | EPERM
    allow = insn(ret, 0x7FFF0000)
    prog = b"".join([insn(ld, 4), insn(jeq, 0xC000003E, 0, len(body))] +
                    body + [allow])
    buf = ctypes.create_string_buffer(prog, len(prog))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = SockFprog(len(prog) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if (libc.prctl(38, 1, 0, 0, 0) != 0 or       # PR_SET_NO_NEW_PRIVS
            libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0):
        os._exit(99)                            # PR_SET_SECCOMP, FILTER


def test_runs_under_restrict_suid_sgid(tmp_path, notify):
    """With the spool as tmpfiles.d makes it, the daemon needs no setgid.

    The unit has RestrictSUIDSGID=yes, so the daemon may not give a
    directory the setgid bit, not even the one it already has: the
    maildrop's 3730 directories come from tmpfiles.d, and the daemon must
    leave their mode alone.
    """
    if platform.machine() != "x86_64":
        pytest.skip("the test filter knows x86-64 system call numbers only")
    d = daemon(tmp_path)
    drop = os.path.join(d.spool, "maildrop")
    os.makedirs(os.path.join(drop, "tmp"))
    os.chmod(d.spool, 0o710)
    for path in (drop, os.path.join(drop, "tmp")):
        os.chmod(path, 0o3730)
    # The filter works: setting setgid fails, plain modes do not.
    r = subprocess.run(["chmod", "2700", str(tmp_path)],
                       preexec_fn=restrict_suid_sgid, capture_output=True)
    assert r.returncode != 0
    d.start(wait=False, env=notify.env(), preexec=restrict_suid_sgid)
    notify.wait_ready(d)
    send_mail(d.port)
    assert len(d.messages()) == 1
    assert os.stat(drop).st_mode & 0o7777 == 0o3730
    assert d.stop() == 0


# --- socket activation -----------------------------------------------------

def test_socket_activation(tmp_path, notify):
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed")
    ignored = free_port()
    d = daemon(tmp_path, listen=["127.0.0.1:%d" % ignored,
                                 "[::1]:%d" % ignored])
    port = d.port
    log = open(d.logpath, "ab")
    # Without --accept, it listens, then execs smartrelayd on the first
    # connection with LISTEN_FDS=2 (the same pid, as systemd does).
    d.proc = subprocess.Popen(
        [activate, "-l", "127.0.0.1:%d" % port, "-l", "[::1]:%d" % port,
         "-E", "NOTIFY_SOCKET", SMARTRELAYD, "-c", d.conf],
        stdout=log, stderr=log, env=notify.env())
    log.close()
    try:
        def sent():
            try:
                send_mail(port)
                return True
            except (ConnectionRefusedError, smtplib.SMTPServerDisconnected):
                return False
        wait_until(sent, 10, "a message accepted on the activated socket")
        send_mail(port, host="::1")
        d.wait_log("level=info ready")
        assert "listening sockets=2 from=systemd" in d.log()
        assert "sockets=2" in d.log()
        notify.wait("READY")
        # `listen` of the file was ignored.
        for host in ("127.0.0.1", "::1"):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, ignored), timeout=5)
        # A reload keeps the passed sockets whatever `listen` now says.
        d.listen = ["127.0.0.1:%d" % free_port()]
        d.write_config()
        n = notify.count()
        sighup(d)
        notify.wait("READY", start=n)
        d.wait_log("reloaded config=")
        send_mail(port, host="::1")
        send_mail(port)
        ids = d.messages()
        assert len(ids) == 4
        clients = sorted(d.record(i)[1].split(b"\r\n")[0] for i in ids)
        assert clients[0].endswith(b"([127.0.0.1])")
        assert clients[-1].endswith(b"([::1])")
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


# --- the units and the install ---------------------------------------------

def meson_options():
    r = subprocess.run(["meson", "introspect", "--buildoptions",
                        build_root()], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        pytest.skip("meson introspect failed: %s" % r.stderr.strip())
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def join(prefix, d):
    return d if os.path.isabs(d) else os.path.join(prefix, d)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A `meson install --destdir` of the build under test."""
    if shutil.which("meson") is None:
        pytest.skip("meson is not installed")
    destdir = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["meson", "install", "-C", build_root(), "--no-rebuild",
                        "--destdir", str(destdir)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    opts = meson_options()
    prefix = opts["prefix"]
    paths = {
        "prefix": prefix,
        "bindir": join(prefix, opts["bindir"]),
        "sbindir": join(prefix, opts["sbindir"]),
        "sysconfdir": join(prefix, opts["sysconfdir"]),
        "unitdir": os.path.join(prefix, "lib", "systemd", "system"),
        "sysusersdir": os.path.join(prefix, "lib", "sysusers.d"),
        "tmpfilesdir": os.path.join(prefix, "lib", "tmpfiles.d"),
    }
    return str(destdir), paths


def under(destdir, path):
    return os.path.join(destdir, path.lstrip("/"))


def test_meson_install_layout(installed):
    destdir, p = installed
    sbin = under(destdir, p["sbindir"])
    bindir = under(destdir, p["bindir"])
    assert os.access(os.path.join(sbin, "smartrelayd"), os.X_OK)
    assert os.access(os.path.join(bindir, "smartrelay"), os.X_OK)
    # sendmail and mailq are the CLI under other names.
    sendmail = os.path.join(sbin, "sendmail")
    mailq = os.path.join(bindir, "mailq")
    assert os.path.islink(sendmail) and os.path.islink(mailq)
    target = os.readlink(sendmail)
    if os.path.isabs(target):
        assert target == os.path.join(p["bindir"], "smartrelay")
        target = under(destdir, target)
    else:
        target = os.path.join(sbin, target)
    assert os.path.samefile(target, os.path.join(bindir, "smartrelay"))
    assert os.path.samefile(mailq, os.path.join(bindir, "smartrelay"))
    # The example config, the units, sysusers.d and tmpfiles.d.
    conf = under(destdir, os.path.join(p["sysconfdir"], "smartrelay",
                                       "smartrelay.conf"))
    with open(conf) as f, open(os.path.join(SRCDIR, "conf",
                                            "smartrelay.conf")) as g:
        assert f.read() == g.read()
    unitdir = under(destdir, p["unitdir"])
    with open(os.path.join(unitdir, "smartrelay.service")) as f:
        service = f.read()
    assert "\nExecStart=%s/smartrelayd\n" % p["sbindir"] in service
    assert ("\nLoadCredential=upstream-password:%s/smartrelay/app-password\n"
            % p["sysconfdir"]) in service
    assert not re.search(r"@[a-z_]+@", service), service
    with open(os.path.join(unitdir, "smartrelay.socket")) as f:
        sock = f.read()
    assert "\nListenStream=127.0.0.1:25\n" in sock
    assert "\nListenStream=[::1]:25\n" in sock
    with open(under(destdir, os.path.join(p["sysusersdir"],
                                          "smartrelay.conf"))) as f:
        assert re.search(r"(?m)^u smartrelay ", f.read())
    with open(under(destdir, os.path.join(p["tmpfilesdir"],
                                          "smartrelay.conf"))) as f:
        tmpfiles = f.read()
    # The spool of the shipped config, private to the smartrelay user.
    assert re.search(r"(?m)^d /var/spool/smartrelay 0710 smartrelay "
                     r"smartrelay -$", tmpfiles)
    assert re.search(r"(?m)^d /var/spool/smartrelay/maildrop 3730 "
                     r"smartrelay smartrelay -$", tmpfiles)
    with open(os.path.join(SRCDIR, "conf", "smartrelay.conf")) as f:
        assert '\nspool = "/var/spool/smartrelay";' in f.read()
    assert "\nReadWritePaths=/var/spool/smartrelay\n" in service


def test_sysusers_and_tmpfiles_parse(installed, tmp_path):
    destdir, p = installed
    sysusers = shutil.which("systemd-sysusers")
    tmpfiles = shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers/systemd-tmpfiles are not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "spool").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         if name == "passwd" else
                                         "root:x:0:\n" if name == "group"
                                         else "root:*::::::\n"
                                         if name == "shadow" else
                                         "root:*::\n")
    conf = under(destdir, os.path.join(p["sysusersdir"], "smartrelay.conf"))
    r = subprocess.run([sysusers, "--root", str(root), conf],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"(?m)^smartrelay:x:\d+:\d+:", passwd), passwd
    if os.geteuid() != 0:
        return  # creating a directory owned by another user needs root
    conf = under(destdir, os.path.join(p["tmpfilesdir"], "smartrelay.conf"))
    r = subprocess.run([tmpfiles, "--root", str(root), "--create", conf],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    uid = int(re.search(r"(?m)^smartrelay:x:(\d+):", passwd).group(1))
    gid = int(re.search(r"(?m)^smartrelay:x:(\d+):", (
        root / "etc" / "group").read_text()).group(1))
    spool = root / "var" / "spool" / "smartrelay"
    for path, mode in ((spool, 0o710), (spool / "maildrop", 0o3730),
                       (spool / "maildrop" / "tmp", 0o3730)):
        st = os.stat(path)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == \
            (mode, uid, gid), path


def test_systemd_analyze_verify(installed, tmp_path):
    """The installed units pass `systemd-analyze verify` without a word.

    verify checks that ExecStart= exists on this machine, so the units are
    verified from a copy whose ExecStart= points into the destdir tree (the
    installed binary) instead of its final place.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    destdir, p = installed
    unitdir = under(destdir, p["unitdir"])
    for name in ("smartrelay.service", "smartrelay.socket"):
        with open(os.path.join(unitdir, name)) as f:
            text = f.read()
        text = text.replace("\nExecStart=%s/" % p["sbindir"],
                            "\nExecStart=%s/" % under(destdir, p["sbindir"]))
        (tmp_path / name).write_text(text)
    r = subprocess.run([analyze, "verify", "--man=no",
                        str(tmp_path / "smartrelay.service"),
                        str(tmp_path / "smartrelay.socket")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == "", r.stdout + r.stderr


def test_systemd_analyze_security_exposure():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = os.path.join(build_root(), "systemd", "smartrelay.service")
    r = subprocess.run([analyze, "security", "--offline=true",
                        "--no-pager", unit],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Overall exposure level for smartrelay\.service: "
                  r"(\d+\.\d+)", r.stdout)
    assert m, r.stdout
    exposure = float(m.group(1))
    print("systemd-analyze security exposure: %.1f" % exposure)
    assert exposure <= 2.0, r.stdout
    # Everything the unit file lists is understood (none "ignored").
    assert "Unknown key" not in r.stderr, r.stderr
