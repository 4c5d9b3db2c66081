"""The fake Gmail's records of what it saw (fakegmail.py): AUTH attempts,
transactions, accepted messages and sessions, as dataclasses that tests read
and that the standalone mode dumps as JSON (_jsonable)."""

import base64
import dataclasses


@dataclasses.dataclass
class AuthAttempt:
    """One AUTH command as the fake saw it."""
    mechanism: str
    username: str = None        # None when the client never sent one
    password: str = None        # (or the XOAUTH2 token)
    success: bool = False
    tls_active: bool = False
    reply: str = ""             # first line of the final reply
    challenge_answer: str = None  # the client's answer to a 334 error challenge


@dataclasses.dataclass
class Transaction:
    """One MAIL transaction (MAIL .. final reply, RSET or connection end)."""
    mail_from: str
    mail_params: dict
    rcpts: list = dataclasses.field(default_factory=list)           # accepted
    rejected_rcpts: list = dataclasses.field(default_factory=list)  # [addr, code]
    rcpt_params: dict = dataclasses.field(default_factory=dict)     # addr -> {NOTIFY..}
    data_bytes: int = 0          # raw DATA/BDAT bytes received, even partial
    outcome: str = None          # "250", "552", ..., "rset", "dropped", "hang",
                                 # "aborted" (connection ended mid-transaction)


@dataclasses.dataclass
class MessageRecord:
    """A complete message (accepted ones go to `messages`)."""
    mail_from: str
    mail_params: dict            # {"SIZE": "429", "BODY": "8BITMIME", "SMTPUTF8": True}
    rcpts: list
    raw_data: bytes              # bytes after 354 up to, not including, the
                                 # final ".\r\n" line: still dot-stuffed, ends
                                 # with CRLF unless empty (BDAT: the chunks)
    data: bytes                  # raw_data dot-unstuffed
    session: int                 # index into FakeGmail.sessions
    timestamp: float             # time.time()
    monotonic: float             # time.monotonic()
    outcome: str = "250"         # or the failure reply code / "dropped" / "hang"
    via: str = "DATA"            # or "BDAT"
    size: int = 0                # octets received (also when not stored)
    rcpt_params: dict = dataclasses.field(default_factory=dict)  # offer_dsn only


@dataclasses.dataclass
class SessionRecord:
    """Everything about one TCP connection."""
    index: int
    port: str                    # "starttls" | "implicit"
    peer: tuple
    trace_id: str
    started: float               # time.monotonic()
    ended: float = None
    sni: str = None              # server name the client sent, None = no SNI
    tls_version: str = None      # e.g. "TLSv1.3" once a handshake succeeded
    tls_cipher: str = None
    tls_error: str = None        # why the handshake failed (client rejected us...)
    tls_active: bool = False
    starttls_injection: int = 0  # plaintext bytes pipelined after STARTTLS (discarded)
    ehlo_names: list = dataclasses.field(default_factory=list)
    auth: list = dataclasses.field(default_factory=list)          # AuthAttempt
    commands: list = dataclasses.field(default_factory=list)      # lines, in order
    replies: list = dataclasses.field(default_factory=list)       # full replies sent
    transactions: list = dataclasses.field(default_factory=list)  # Transaction
    failures: list = dataclasses.field(default_factory=list)      # names that fired
    pipelined: int = 0           # commands that arrived before the previous reply
    close_reason: str = None     # "quit", "peer closed", "idle", "tls failed", ...

    @property
    def authed(self):
        """True if an AUTH succeeded in this session."""
        return any(a.success for a in self.auth)

    @property
    def auth_without_tls(self):
        """True if the client tried AUTH before TLS was active."""
        return any(not a.tls_active for a in self.auth)


def _jsonable(obj):
    """Turn records into JSON-friendly values (bytes -> utf-8 text + base64)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, bytes):
                out[f.name] = v.decode("utf-8", "replace")
                out[f.name + "_b64"] = base64.b64encode(v).decode()
            else:
                out[f.name] = _jsonable(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return obj
