"""kill -9 at random moments while clients send (docs/spool.md).

Each round starts smartrelayd on the same spool, lets several clients send
messages as fast as they can, and kills the daemon with SIGKILL at a random
moment.  Every client remembers, per message, whether it had sent the whole
DATA and whether it got "250 ... queued as ID".  After all rounds one more
start recovers the spool, and then:

- every message that got a 250 is in the queue exactly once and intact
  (its body carries its own SHA-256);
- every message in the queue is one whose final dot had been sent (a
  message never completed by its client leaves no trace);
- nothing is left in tmp/ and nothing went to corrupt/.

A message may be queued without its client seeing the 250 when the kill
falls between the commit and the reply; such messages are counted and
reported, not treated as losses (the client retries; RFC 5321 §6.1 allows
that duplicate).
"""
import hashlib
import os
import random
import socket
import threading
import time

from harness import Daemon, SmtpRaw

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "40"))
CLIENTS = 4


def message(token):
    body = ("token %s\r\n" % token + "x" * random.randint(10, 5000) +
            "\r\n")
    digest = hashlib.sha256(body.encode()).hexdigest()
    return ("Subject: %s\r\nX-Digest: %s\r\n\r\n%s" % (token, digest, body)
            ).encode()


def client(port, name, states, stop):
    """Sends messages until the connection dies; records what happened."""
    n = 0
    try:
        c = SmtpRaw(port, timeout=5)
        c.reply()
        c.cmd("EHLO crash")
        while not stop.is_set():
            token = "%s-%d" % (name, n)
            n += 1
            states[token] = "started"
            c.cmd("MAIL FROM:<a@example.org>")
            c.cmd("RCPT TO:<b@example.org>")
            c.cmd("DATA")
            c.send(message(token) + b".\r\n")
            states[token] = "sent"
            code, text = c.reply()
            if code == 250:
                states[token] = "acked:" + text.rsplit(" ", 1)[1]
    except (OSError, EOFError):
        pass


def check_record(d, qid):
    """Returns the token of a record after checking its body digest."""
    _, body = d.record(qid)
    head, _, content = body.partition(b"X-Digest: ")
    digest, _, rest = content.partition(b"\r\n")
    text = rest.split(b"\r\n\r\n", 1)[1]
    assert hashlib.sha256(text).hexdigest() == digest.decode(), qid
    return head.split(b"Subject: ")[1].split(b"\r\n")[0].decode()


def test_kill9_loses_nothing(tmp_path):
    d = Daemon(tmp_path)
    states = {}
    rng = random.Random(os.environ.get("CRASH_SEED", "smartrelay"))
    deadline = time.monotonic() + 240
    rounds = 0
    for r in range(ROUNDS):
        if time.monotonic() > deadline:
            break
        d.start()
        stop = threading.Event()
        threads = [threading.Thread(target=client,
                                    args=(d.port, "r%dc%d" % (r, i), states,
                                          stop))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.4))
        d.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        rounds += 1
    d.start()          # recovery
    d.stop()

    queued = {}
    for qid in d.messages():
        token = check_record(d, qid)
        assert token not in queued, "message %s queued twice" % token
        queued[token] = qid
    acked = {t: s[6:] for t, s in states.items() if s.startswith("acked:")}
    lost = [t for t in acked if t not in queued]
    wrong_id = [t for t, qid in acked.items() if queued.get(t) != qid]
    unfinished = [t for t in queued if states.get(t) == "started"]
    window = [t for t in queued if states.get(t) == "sent"]
    print("crash test: rounds=%d acked=%d queued=%d lost=%d "
          "committed-before-reply=%d" % (rounds, len(acked), len(queued),
                                         len(lost), len(window)))
    assert rounds >= 10
    assert len(acked) > 100
    assert lost == []
    assert wrong_id == []
    assert unfinished == []
    assert os.listdir(os.path.join(d.spool, "tmp")) == []
    corrupt = os.path.join(d.spool, "corrupt")
    assert not os.path.isdir(corrupt) or os.listdir(corrupt) == []
