#!/usr/bin/python3
"""Small helpers for tests/bench/run.sh (standard library only).

    benchtool.py freeport
    benchtool.py blackhole PORT          listen, never accept, until killed
    benchtool.py latency PORT CLIENTS MESSAGES
    benchtool.py idle PORT CONNS PID
    benchtool.py big PORT SIZE PID
    benchtool.py ready TIMEOUT LOG PIDFILE -- DAEMON ARGS...

Every result is printed as one line of key=value pairs for run.sh to parse.
Every loop is bounded in count and time; a failure exits non-zero with one
line on stderr.
"""
import os
import signal
import socket
import sys
import threading
import time

FROM = "bench@example.org"
TO = "sink@example.net"


def die(msg):
    print("benchtool: " + msg, file=sys.stderr)
    sys.exit(1)


class Client:
    """A blocking SMTP client that waits for each reply."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), line

    def cmd(self, line, want):
        self.sock.sendall(line.encode() + b"\r\n")
        code, text = self.reply()
        if code != want:
            raise RuntimeError("%s -> %r" % (line, text))
        return text


def body_2k(i):
    """A 2 KiB message (headers + 80-column lines), unique subject."""
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: bench %d\r\n\r\n"
            % (FROM, TO, i)).encode()
    line = b"x" * 78 + b"\r\n"
    body = head
    while len(body) + len(line) <= 2048:
        body += line
    return body


def vm(pid, key):
    """VmRSS/VmHWM... of pid in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1])
    die("no %s for pid %d" % (key, pid))


def cmd_freeport():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_blackhole(port):
    """An upstream that takes TCP connections (kernel backlog) and never
    says a word: a relay waits for its greeting and delivers nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port)))
    s.listen(64)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    deadline = time.monotonic() + 6 * 3600
    while time.monotonic() < deadline:
        time.sleep(1)


def latency_worker(port, n, seed, wfd):
    """One client: n messages over one connection; writes its latencies
    (microseconds, one per line) to the pipe wfd."""
    out = []
    try:
        c = Client(port)
        code, _ = c.reply()
        if code != 220:
            raise RuntimeError("greeting %d" % code)
        c.cmd("EHLO lat%d.bench.test" % seed, 250)
        for i in range(n):
            body = body_2k(seed * 1000000 + i)
            c.cmd("MAIL FROM:<%s>" % FROM, 250)
            c.cmd("RCPT TO:<%s>" % TO, 250)
            c.cmd("DATA", 354)
            c.sock.sendall(body)
            t0 = time.perf_counter()
            c.sock.sendall(b".\r\n")
            code, text = c.reply()
            t1 = time.perf_counter()
            if code != 250:
                raise RuntimeError("end of data -> %r" % text)
            out.append("%d" % int((t1 - t0) * 1e6))
        c.cmd("QUIT", 221)
    except Exception as e:  # reported by the parent through the count
        out.append("ERR %s" % e)
    os.write(wfd, ("\n".join(out) + "\n").encode())
    os.close(wfd)


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def cmd_latency(port, clients, messages):
    port, clients, messages = int(port), int(clients), int(messages)
    pipes, pids = [], []
    for k in range(clients):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            latency_worker(port, messages, k + 1, w)
            os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    lat, errors = [], []
    for r in pipes:
        data = b""
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            data += chunk
        os.close(r)
        for ln in data.decode().splitlines():
            if ln.startswith("ERR"):
                errors.append(ln)
            elif ln:
                lat.append(int(ln) / 1000.0)
    for pid in pids:
        os.waitpid(pid, 0)
    if errors or len(lat) != clients * messages:
        die("latency: %d/%d answers; %s" % (len(lat), clients * messages,
                                             "; ".join(errors[:3])))
    lat.sort()
    print("n=%d p50=%.3f p90=%.3f p99=%.3f max=%.3f" % (
        len(lat), pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[-1]))


def cmd_idle(port, conns, pid):
    """conns connections, each past EHLO, held while RSS is measured."""
    port, conns, pid = int(port), int(conns), int(pid)
    before = vm(pid, "VmRSS")
    socks = []
    deadline = time.monotonic() + 120
    for i in range(conns):
        if time.monotonic() > deadline:
            die("idle: too slow, %d connections after 120 s" % i)
        c = Client(port)
        code, text = c.reply()
        if code != 220:
            die("idle: connection %d greeted %r" % (i, text))
        c.cmd("EHLO idle%d.bench.test" % i, 250)
        socks.append(c)
    time.sleep(1.0)
    # Every session is still alive: one NOOP on each.
    for c in socks:
        c.cmd("NOOP", 250)
    time.sleep(0.5)
    after = vm(pid, "VmRSS")
    for c in socks:
        c.sock.close()
    print("conns=%d rss_before_kib=%d rss_after_kib=%d increase_kib=%d" % (
        conns, before, after, after - before))


def cmd_big(port, size, pid):
    """Sends one message of size bytes while polling the daemon's RSS."""
    port, size, pid = int(port), int(size), int(pid)
    rss0, hwm0 = vm(pid, "VmRSS"), vm(pid, "VmHWM")
    peak = [rss0]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], vm(pid, "VmRSS"))
            except (OSError, SystemExit):
                return
            time.sleep(0.005)

    th = threading.Thread(target=poll)
    th.start()
    t0 = time.monotonic()
    try:
        c = Client(port, timeout=120)
        c.reply()
        c.cmd("EHLO big.bench.test", 250)
        c.cmd("MAIL FROM:<%s> SIZE=%d" % (FROM, size), 250)
        c.cmd("RCPT TO:<%s>" % TO, 250)
        c.cmd("DATA", 354)
        line = b"y" * 998 + b"\r\n"
        chunk = b"Subject: big\r\n\r\n" + line * 64
        sent = 0
        while sent < size:
            c.sock.sendall(chunk)
            sent += len(chunk)
        c.sock.sendall(b".\r\n")
        code, text = c.reply()
        if code != 250:
            die("big: end of data -> %r" % text)
        c.cmd("QUIT", 221)
    finally:
        time.sleep(0.3)
        stop.set()
        th.join()
    rss1, hwm1 = vm(pid, "VmRSS"), vm(pid, "VmHWM")
    print("size=%d seconds=%.2f rss_before_kib=%d rss_peak_kib=%d "
          "rss_after_kib=%d hwm_before_kib=%d hwm_after_kib=%d "
          "increase_kib=%d" % (
              sent, time.monotonic() - t0, rss0, peak[0], rss1, hwm0, hwm1,
              max(peak[0] - rss0, hwm1 - hwm0, rss1 - rss0)))


def cmd_ready(timeout, log, pidfile, argv):
    """Time from exec to the daemon's ready line; then SIGTERM it."""
    timeout = float(timeout)
    with open(log, "ab") as lf:
        start = lf.tell()
        t0 = time.monotonic()
        p = __import__("subprocess").Popen(argv, stdout=lf, stderr=lf)
    with open(pidfile, "w") as f:
        f.write("%d\n" % p.pid)
    line, t1 = None, None
    with open(log, "rb") as f:
        f.seek(start)
        buf = b""
        while time.monotonic() - t0 < timeout:
            buf += f.read()
            i = buf.find(b"level=info ready ")
            if i >= 0:
                t1 = time.monotonic()
                line = buf[i:].split(b"\n", 1)[0].decode()
                break
            if p.poll() is not None:
                break
            time.sleep(0.001)
    p.terminate()
    try:
        p.wait(30)
    except Exception:
        p.kill()
        p.wait()
    os.unlink(pidfile)
    if t1 is None:
        die("ready: no ready line within %.0f s (exit %s)" % (timeout,
                                                             p.returncode))
    queue = [w for w in line.split() if w.startswith("queue=")]
    print("seconds=%.3f %s" % (t1 - t0, queue[0] if queue else "queue=?"))


def main(a):
    if not a:
        die("usage: see the top of this file")
    cmd, args = a[0], a[1:]
    if cmd == "freeport":
        cmd_freeport()
    elif cmd == "blackhole":
        cmd_blackhole(*args)
    elif cmd == "latency":
        cmd_latency(*args)
    elif cmd == "idle":
        cmd_idle(*args)
    elif cmd == "big":
        cmd_big(*args)
    elif cmd == "ready":
        i = args.index("--")
        cmd_ready(*args[:i], args[i + 1:])
    else:
        die("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
