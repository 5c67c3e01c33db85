"""Helpers for tests/integ/test_exactly_once.py (the issue "Exactly once,
whatever happens").

Standard library only, built on tests/harness.py, tests/faultlib.py,
tests/faultproxy.py and tests/fakepop3.py (none of them changed here).

* verdicts by bytes: assert_once() compares the IMAP mailbox with what
  popbridge must have stored, as a multiset of exact bytes (two
  byte-identical POP3 messages must be there twice), naming what is
  missing, doubled or changed;
* messages: a corpus with X-Fault-Seq headers (faultlib), twins that
  share their size and first 8 KiB, a message of the user's own;
* IMAP by hand: append (with flags), the messages with their flags;
* waiting on what happened, never on the clock: wait_growth() (a count
  has reached its goal or stopped growing), wait_kept_back() (a delayed
  APPEND is all in the proxy), Pop3Tap (which
  UIDLs each POP3 session asked for with RETR, read from the wire);
* status --json failure entries.
"""

from __future__ import annotations

import collections
import datetime as _dt
import email.utils
import re
import time

import faultlib as fl
from daemonlib import status_json
from faultproxy import FaultProxy, Rule
import imapread
from imapread import quote_mailbox

EX_OK = 0
EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78

APPEND_LINE = rb"^\S+ APPEND "
APPEND_OK_LINE = rb"^\S+ OK \[APPENDUID[^\r\n]*\r\n"

FAILURE_KEYS = ("uidl", "error", "date", "from", "subject", "attempts", "set_aside",
                "retry_after")


# ------------------------------------------------------------------ messages
def corpus(tag, n, seed=1, small=(600, 4000)):
    """n small messages, each with a unique `X-Fault-Seq: TAG/N` header."""
    return fl.corpus(tag, n, seed=seed, small=small)


def stored(raw: bytes) -> bytes:
    """The bytes popbridge must store for a POP3 message `raw`."""
    return fl.expected(raw)


def own_message(tag, note="the user's own, deleted but not expunged"):
    return (f"Date: Wed, 2 Oct 2024 08:00:00 +0000\r\n"
            f"From: owner@example.net\r\n"
            f"Subject: [{tag}] {note}\r\n"
            f"Message-ID: <own.{tag}@example.net>\r\n"
            f"\r\n"
            f"This message was put here by the mailbox's owner and flagged \\Deleted.\r\n"
            f"popbridge must neither expunge it nor touch its flags.\r\n").encode()


def twins(tag, prefix=10_000):
    """Two messages A and B of exactly the same size whose first `prefix`
    bytes (over 8 KiB, as stored: CRLF lines) are the same: a long common
    header (a Received chain and a long DKIM signature), then a Subject
    and a Message-ID that differ in one letter, and the same body."""
    lines = []
    j = 0
    while sum(len(x) + 2 for x in lines) < prefix:
        lines.append(f"Received: from relay{j:03d}.example.net (relay{j:03d}.example.net "
                     f"[192.0.2.{j % 250}]) by mx{j:03d}.example.org with ESMTPS id "
                     f"{j:08x}{tag[:8]}; Tue, 5 Nov 2024 10:{j % 60:02d}:00 +0000")
        j += 1
    common = "\n".join(lines) + "\n" + (
        f"Date: Tue, 5 Nov 2024 10:30:00 +0000\n"
        f"From: Digest Robot <digest@example.org>\n"
        f"To: reader@example.net\n")

    def one(letter):
        return (common
                + f"Subject: [{tag}] daily digest, edition {letter}\n"
                + f"Message-ID: <digest-{letter}.{tag}@example.org>\n"
                + "\n"
                + "Today's digest.\n" + "".join(f"item {i}: nothing new\n" for i in range(40))
                ).encode()
    a, b = one("A"), one("B")
    sa, sb = stored(a), stored(b)
    assert len(sa) == len(sb) and sa != sb and sa[:8192] == sb[:8192], \
        "twins: the two messages must be equal in size and in their first 8 KiB"
    return a, b


def header(raw: bytes, name: str):
    m = re.search(rb"^" + name.encode() + rb":[ \t]*(.*?)\r?$", raw, re.M | re.I)
    return m.group(1).decode("utf-8", "replace") if m else None


def label(body: bytes) -> str:
    s = fl.seq_of(body)
    if s:
        return f"{s[0]}/{s[1]}"
    subj = header(body[:20000], "Subject")
    return subj if subj else repr(body[:40])


# ------------------------------------------------------------------ verdicts
def assert_once(what, raws, bodies, others=()):
    """`bodies` (what IMAP holds) is exactly stored(raw) for each of `raws`
    plus `others` (bytes as they are in IMAP), as a multiset: nothing
    missing, nothing twice, nothing changed, nothing else."""
    want = collections.Counter(stored(r) for r in raws) + collections.Counter(others)
    got = collections.Counter(bodies)
    missing = want - got
    extra = got - want
    if not missing and not extra:
        return
    problems = []
    doubled = [b for b in extra if b in want]
    strange = [b for b in extra if b not in want]
    if missing:
        problems.append(f"{sum(missing.values())} missing (e.g. "
                        f"{[label(b) for b in list(missing)[:6]]})")
    if doubled:
        problems.append(f"{sum(extra[b] for b in doubled)} DUPLICATED (e.g. "
                        f"{[(label(b), got[b]) for b in doubled[:6]]})")
    if strange:
        first = strange[0]
        close = next((b for b in missing if label(b) == label(first)), None)
        detail = f": {fl.first_difference(close, first)}" if close else ""
        problems.append(f"{len(strange)} changed or unknown (e.g. {label(first)}{detail})")
    raise AssertionError(f"{what}: {len(bodies)} messages in IMAP for "
                         f"{sum(want.values())} expected: " + "; ".join(problems))


# ------------------------------------------------------------------ IMAP by hand
def imap_plain(dc, user, timeout=30):
    return dc.imap(user, timeout=timeout, tls=False)


def imap_append(dc, user, raws, flags="", mailbox="INBOX", create=False):
    """APPEND each of `raws` (bytes as they are to be stored) with `flags`
    (e.g. r"(\\Deleted)"), as another mail client would."""
    with imapread.session(imap_plain(dc, user)) as c:
        if create:
            c.create(quote_mailbox(mailbox))
        for raw in raws:
            typ, data = c.append(quote_mailbox(mailbox), flags or None, None, raw)
            assert typ == "OK", f"IMAP APPEND by hand for {user}: {typ} {data}"


def bodies(dc, user, mailbox="INBOX"):
    return [m["body"] for m in dc.imap_messages(user, mailbox)]


def with_body(dc, user, body, mailbox="INBOX"):
    """The IMAP messages whose bytes are `body` (dicts of imap_messages)."""
    return [m for m in dc.imap_messages(user, mailbox) if m["body"] == body]


# ------------------------------------------------------------------ fault proxy
def strip_caps(*caps):
    """s2c rules that hide capabilities (e.g. MULTIAPPEND, LITERAL+)."""
    return [Rule("s2c", rb" " + re.escape(c.encode()) + rb"(?=[ \]\r])", nth=0,
                 action="replace", data=b"", once=False, name=f"hide {c}") for c in caps]


def kept_back_messages(px):
    """How many messages the proxy keeps back in complete APPEND commands."""
    return sum(len(c.literals) for c in px.delayed_commands() if c.verb == "APPEND")


def wait_growth(count, n, proc, timeout=60, quiet=5.0, interval=0.05):
    """Wait until count() reaches `n`, or `proc` has stopped making it
    grow (it ended, or the count has not changed for `quiet` s after it
    began to grow: it is waiting for replies).  Returns the last count."""
    deadline = time.monotonic() + timeout
    last, changed = -1, time.monotonic()
    while True:
        got = count()
        now = time.monotonic()
        if got >= n or proc.poll() is not None or now > deadline:
            return got
        if got != last:
            last, changed = got, now
        elif got > 0 and now - changed > quiet:
            return got
        time.sleep(interval)


def wait_kept_back(px, proc, n, timeout=60, quiet=5.0):
    """Wait until the proxy's "delay" rule keeps back complete APPENDs of
    `n` messages, or the client has stopped sending.  Returns the number
    of messages kept back."""
    return wait_growth(lambda: kept_back_messages(px), n, proc, timeout, quiet)


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class Pop3Tap:
    """A FaultProxy with no rules in front of Dovecot's plain POP3 port,
    read back from the wire: which UIDLs each session asked for with RETR
    (from the session's own UIDL listing and its RETR commands)."""

    def __init__(self, dc):
        self.px = FaultProxy(dc.pop3_port, name="pop3tap", keep_bytes=1 << 22).start()
        self.port = self.px.port

    def sessions(self):
        with self.px.lock:
            return len(self.px.sessions)

    def retrieved(self, since=0):
        """UIDLs asked for with RETR in sessions after the first `since`
        (read once those sessions have ended: call it after the run)."""
        self.px.wait_idle(10)
        with self.px.lock:
            ss = [s for s in self.px.sessions if s.num > since]
        out = []
        for s in ss:
            c2s = bytes(s.transcript["c2s"])
            s2c = bytes(s.transcript["s2c"])
            # The multi-line listings answer LIST and UIDL (without an
            # argument) in the order they were sent.
            asked = re.findall(rb"^(LIST|UIDL)\r\n", c2s, re.M)
            listings = re.finditer(rb"^\+OK[^\r\n]*\r\n((?:\d+ [^\r\n ]+\r\n)*)\.\r\n",
                                   s2c, re.M)
            nums = {}
            for verb, listing in zip(asked, listings):
                if verb == b"UIDL":
                    nums = {int(k): v.decode() for k, v in
                            re.findall(rb"^(\d+) ([^\r\n ]+)\r\n", listing.group(1), re.M)}
            for n in re.findall(rb"^RETR (\d+)\r\n", c2s, re.M):
                out.append(nums.get(int(n), f"#{int(n)}"))
        return out

    def stop(self):
        self.px.stop()


# ------------------------------------------------------------------ status
def failure_entry(t, cfg, name, uidl):
    """The `failures` entry of `status --json` for `uidl`, checked for the
    specified fields."""
    st = status_json(t, cfg)
    assert name in st, f"status --json does not list the account {name!r}"
    entries = [f for f in st[name]["failures"] if f.get("uidl") == uidl]
    assert entries, (f"status --json: {name}.failures has no entry for UIDL {uidl!r}: "
                     f"{st[name]['failures']}")
    f = entries[0]
    missing = [k for k in FAILURE_KEYS if k not in f]
    assert not missing, f"status --json: the failure entry lacks {missing}: {f}"
    assert isinstance(f["set_aside"], bool), f"status --json: set_aside = {f['set_aside']!r}"
    assert isinstance(f["attempts"], int) and not isinstance(f["attempts"], bool), \
        f"status --json: attempts = {f['attempts']!r}"
    for k in ("date", "from", "subject"):
        assert f[k] is None or isinstance(f[k], str), f"status --json: {k} = {f[k]!r}"
    if f["retry_after"] is not None:
        try:
            when = _dt.datetime.fromisoformat(str(f["retry_after"]).replace("Z", "+00:00"))
        except ValueError:
            when = None
        assert when is not None and when.tzinfo is not None, \
            f"status --json: retry_after = {f['retry_after']!r} is not an ISO time (or null)"
    return f


def same_instant(value, raw_date):
    """Does the status field `value` name the instant of the Date header
    `raw_date` (RFC 5322 or ISO 8601 accepted)?"""
    want = email.utils.parsedate_to_datetime(raw_date)
    for parse in (lambda s: _dt.datetime.fromisoformat(s.replace("Z", "+00:00")),
                  email.utils.parsedate_to_datetime):
        try:
            got = parse(value)
        except (TypeError, ValueError):
            continue
        if got.tzinfo is None:
            continue
        return got == want
    return False
