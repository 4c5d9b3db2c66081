#!/usr/bin/python3
"""Hostile load against the real daemon while a good client is measured.

docs/reliability.md has the figures.  The daemon listens on 127.0.0.1 with
allow = ["127.0.0.1/32"].  Up to N hostile connections are kept open at
once (each slot reconnects when its attack is over), spread over seven
kinds, each checked for the reply docs/smtp.md documents:

  slowdrip   "EHLO" and NOOPs one byte at a time: normal replies, slowly
  endless    lines of 64 KiB without an end, then CRLF: 500 5.5.2 each,
             421 4.7.0 after 20 errors
  garbage    random bytes in lines: 500 5.5.1 each, then 421 4.7.0
  nul        a message with a NUL byte: 554 5.6.0, nothing queued
  smuggle    a message with LF.CRLF, LF.LF, CR.CR... and a hidden MAIL
             inside: one 250 for the whole DATA, one message queued
  pregreet   a whole transaction written before the greeting: 220, then
             the replies in order, one 250
  denied     from 127.0.0.2 (a second loopback address): 554 5.7.1, closed

Meanwhile a well-behaved client (its own thread, blocking sockets) sends
2 KiB messages one after another on one connection and measures each
message's accept latency (MAIL sent to "250 queued" read), and the
connect latency (connect to the 220) on fresh connections, first on a
quiet daemon (the baseline), then under the hostile load.

Run it:  tests/soak/hostile.py --connections 1000 --messages 300
tests/soak/test_hostile.py asserts the correctness part in the suite.
"""
import argparse
import asyncio
import collections
import json
import os
import random
import resource
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scenario"))

from harness import Daemon, SmtpRaw  # noqa: E402

KINDS = ("slowdrip", "endless", "garbage", "nul", "smuggle", "pregreet",
         "denied")
BODY = b"Subject: good\r\n\r\n" + (b"z" * 76 + b"\r\n") * 26   # ~2 KiB


def raise_nofile(n=16384):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(n, hard) if hard != resource.RLIM_INFINITY else n
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def start_daemon(tmpdir, clients):
    d = Daemon(tmpdir, listen=None, extra=(
        'allow = [ "127.0.0.1/32" ];\n'
        'limits = { clients = %d; idle_timeout = "60s"; };\n' % clients))
    d.listen = ["127.0.0.1:%d" % d.port]
    d.write_config()
    return d.start(preexec=raise_nofile)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(1000 * v[min(len(v) - 1, int(len(v) * p / 100))], 2)


# ---- the good client ------------------------------------------------------

def good_client(port, n, out):
    """n messages, one at a time; latencies in seconds into out."""
    c = SmtpRaw(port, timeout=30)
    t0 = time.monotonic()
    c.reply()
    out["connect"].append(time.monotonic() - t0)
    c.cmd("EHLO good.example")
    for i in range(n):
        t = time.monotonic()
        c.send("MAIL FROM:<good@example.org>\r\n")
        assert c.reply()[0] == 250
        c.send("RCPT TO:<rcpt@example.org>\r\n")
        assert c.reply()[0] == 250
        c.send("DATA\r\n")
        assert c.reply()[0] == 354
        c.send(BODY + b".\r\n")
        code, text = c.reply()
        assert code == 250 and "queued as" in text, text
        out["accept"].append(time.monotonic() - t)
        out["ok"] += 1
        if i % 20 == 19:        # a fresh connection now and then
            c.cmd("QUIT")
            c.close()
            t0 = time.monotonic()
            c = SmtpRaw(port, timeout=30)
            c.reply()
            out["connect"].append(time.monotonic() - t0)
            c.cmd("EHLO good.example")
    c.cmd("QUIT")
    c.close()


# ---- the hostile ones -----------------------------------------------------

class Conn:
    """An asyncio SMTP connection that reads whole replies."""

    def __init__(self, r, w):
        self.r, self.w = r, w

    async def reply(self, timeout=30):
        lines = []
        while True:
            line = await asyncio.wait_for(self.r.readline(), timeout)
            if not line:
                raise EOFError("closed after %r" % lines)
            lines.append(line.decode(errors="replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    async def cmd(self, line):
        self.w.write(line if isinstance(line, bytes) else line.encode())
        await self.w.drain()
        return await self.reply()

    async def closed(self, timeout=30):
        """True when the daemon closes the connection within timeout."""
        try:
            while await asyncio.wait_for(self.r.read(65536), timeout):
                pass
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self):
        self.w.close()


async def connect(port, src="127.0.0.1"):
    r, w = await asyncio.open_connection("127.0.0.1", port,
                                         local_addr=(src, 0), limit=1 << 20)
    return Conn(r, w)


async def expect(c, want, what):
    code, text = await c.reply()
    if code != want:
        raise AssertionError("%s: %d %s" % (what, code, text))
    return text


async def slowdrip(port, stop):
    c = await connect(port)
    await expect(c, 220, "greeting")
    while not stop.is_set():
        for b in b"NOOP\r\n":
            c.w.write(bytes([b]))
            await c.w.drain()
            await asyncio.sleep(0.2)
        await expect(c, 250, "slow NOOP")
    await c.cmd("QUIT\r\n")
    c.close()


async def endless(port, stop):
    c = await connect(port)
    await expect(c, 220, "greeting")
    for i in range(25):
        c.w.write(b"X" * 65536 + b"\r\n")
        await c.w.drain()
        code, text = await c.reply()
        if code == 421:
            break
        if code != 500 or "5.5.2" not in text:
            raise AssertionError("long line: %d %s" % (code, text))
    else:
        raise AssertionError("no 421 after 25 errors")
    if not await c.closed():
        raise AssertionError("not closed after 421")
    c.close()


async def garbage(port, stop):
    c = await connect(port)
    await expect(c, 220, "greeting")
    rng = random.Random()
    for i in range(25):
        junk = bytes(rng.choice(b"ABCXYZ@<>:;\x01\x7f\xff 123")
                     for _ in range(rng.randint(1, 200)))
        code, text = await c.cmd(b"Q" + junk + b"\r\n")
        if code == 421:
            break
        if code != 500 or "5.5.1" not in text:
            raise AssertionError("garbage: %d %s" % (code, text))
    else:
        raise AssertionError("no 421 after 25 errors")
    c.close()


async def transaction(c, data):
    for line, want in (("EHLO h\r\n", 250), ("MAIL FROM:<h@example.org>\r\n",
                                             250),
                       ("RCPT TO:<h@example.org>\r\n", 250),
                       ("DATA\r\n", 354)):
        code, text = await c.cmd(line)
        if code != want:
            raise AssertionError("%s: %d %s" % (line.strip(), code, text))
    return await c.cmd(data)


async def nul(port, stop):
    c = await connect(port)
    await expect(c, 220, "greeting")
    code, text = await transaction(c, b"Subject: n\r\n\r\na\0b\r\n.\r\n")
    if code != 554 or "5.6.0" not in text:
        raise AssertionError("NUL: %d %s" % (code, text))
    await c.cmd("QUIT\r\n")
    c.close()


SMUGGLE = (b"Subject: s\r\n\r\nbefore\n.\r\nMAIL FROM:<x@example.org>\r\n"
           b"RCPT TO:<y@example.org>\r\nDATA\r\nsmuggled\r\n\n.\n"
           b"a\r.\rb\r\n.\rc\r\n")


async def smuggle(port, stop):
    c = await connect(port)
    await expect(c, 220, "greeting")
    code, text = await transaction(c, SMUGGLE + b".\r\n")
    if code != 250:
        raise AssertionError("smuggling: %d %s" % (code, text))
    code, text = await c.cmd("NOOP\r\n")      # no hidden replies queued
    if code != 250 or "Ok" not in text:
        raise AssertionError("after smuggling: %d %s" % (code, text))
    await c.cmd("QUIT\r\n")
    c.close()


async def pregreet(port, stop):
    c = await connect(port)
    c.w.write(b"EHLO early\r\nMAIL FROM:<e@example.org>\r\n"
              b"RCPT TO:<e@example.org>\r\nDATA\r\n")
    await c.w.drain()
    for want in (220, 250, 250, 250, 354):
        await expect(c, want, "pregreet")
    code, text = await c.cmd(b"Subject: e\r\n\r\nearly\r\n.\r\n")
    if code != 250:
        raise AssertionError("pregreet data: %d %s" % (code, text))
    c.close()


async def denied(port, stop):
    c = await connect(port, "127.0.0.2")
    code, text = await c.reply()
    if code != 554 or "5.7.1" not in text:
        raise AssertionError("denied: %d %s" % (code, text))
    if not await c.closed():
        raise AssertionError("denied but not closed")
    c.close()


ATTACKS = dict(slowdrip=slowdrip, endless=endless, garbage=garbage, nul=nul,
               smuggle=smuggle, pregreet=pregreet, denied=denied)


async def slot(kind, port, stop, stats):
    """One hostile connection slot: attacks again until stop."""
    while not stop.is_set():
        try:
            await ATTACKS[kind](port, stop)
            stats[kind + ":ok"] += 1
        except Exception as e:              # noqa: BLE001 (counted)
            stats[kind + ":bad"] += 1
            if len(stats["errors"]) < 20:
                stats["errors"].append("%s: %r" % (kind, e))
            await asyncio.sleep(0.1)


def hostile_load(port, n, stop, stats, started):
    async def main():
        aio_stop = asyncio.Event()
        tasks = []
        for i in range(n):
            tasks.append(asyncio.ensure_future(
                slot(KINDS[i % len(KINDS)], port, aio_stop, stats)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        aio_stop.set()
        await asyncio.wait(tasks, timeout=60)
    stats["errors"] = []
    asyncio.run(main())


# ---- the run ----------------------------------------------------------------

def run(workdir, connections=1000, messages=300, log=print):
    raise_nofile()
    d = start_daemon(workdir, connections + 100)
    out = {}
    try:
        time.sleep(0.5)
        out["rss_kb_idle"] = rss_kb(d.proc.pid)
        base = collections.defaultdict(list)
        base["ok"] = 0
        good_client(d.port, messages, base)
        out["rss_kb_after_baseline"] = rss_kb(d.proc.pid)
        stats = collections.Counter()
        stop, started = threading.Event(), threading.Event()
        t = threading.Thread(target=hostile_load,
                             args=(d.port, connections, stop, stats, started))
        t.start()
        started.wait(120)
        time.sleep(2)
        peak = [rss_kb(d.proc.pid)]
        under = collections.defaultdict(list)
        under["ok"] = 0
        sampler_stop = threading.Event()

        def sampler():
            while not sampler_stop.wait(0.2):
                peak.append(rss_kb(d.proc.pid))
                out["open_fds_max"] = max(out.get("open_fds_max", 0), len(
                    os.listdir("/proc/%d/fd" % d.proc.pid)))
        st = threading.Thread(target=sampler)
        st.start()
        try:
            good_client(d.port, messages, under)
        finally:
            sampler_stop.set()
            st.join()
            stop.set()
            t.join(120)
        alive = d.proc.poll() is None
        out.update(
            connections=connections, messages=messages,
            daemon_alive=alive,
            baseline=dict(ok=base["ok"],
                          accept_p50_ms=pct(base["accept"], 50),
                          accept_p99_ms=pct(base["accept"], 99),
                          connect_p50_ms=pct(base["connect"], 50),
                          connect_p99_ms=pct(base["connect"], 99)),
            under_load=dict(ok=under["ok"],
                            accept_p50_ms=pct(under["accept"], 50),
                            accept_p99_ms=pct(under["accept"], 99),
                            connect_p50_ms=pct(under["connect"], 50),
                            connect_p99_ms=pct(under["connect"], 99)),
            rss_kb_peak=max(peak),
            hostile={k: v for k, v in stats.items() if k != "errors"},
            hostile_errors=stats["errors"])
        if alive:
            out["rss_kb_after"] = rss_kb(d.proc.pid)
    finally:
        d.stop(timeout=60)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--report", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smartrelay-hostile-") as tmp:
        out = run(tmp, a.connections, a.messages)
    text = json.dumps(out, indent=1, sort_keys=True)
    print(text)
    if a.report:
        with open(a.report, "w") as f:
            f.write(text + "\n")
    return 0 if out["daemon_alive"] and not out["hostile_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
