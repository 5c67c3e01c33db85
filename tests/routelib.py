"""Helpers for tests/integ/test_routing.py (issue 16: rules, multidrop,
several destinations).

Standard library only, built on tests/harness.py (not changed here).

* messages: routed_message() (a message with the headers that route it
  and a unique X-Route-Seq), kill_message() (small_message() of the
  harness with a routing header put in its header section);
* destinations: dest() (a `destinations` entry for a Dovecot user),
  family() (the routing of a family's catch-all account);
* verdicts read back over IMAP: census() lists every message of every
  mailbox of the users named; assert_placed() says that each message is
  in exactly the places it was routed to, once each, byte for byte, and
  nowhere else;
* RouteKillLoop: popbridge run (keep = false, routed across several
  destinations) killed with SIGKILL at moments chosen within the working
  time measured on this machine, rerun at once, then one clean run.
"""

from __future__ import annotations

import collections
import re

import imapread
from harness import InterruptLoop, normalise, small_message

EX_OK = 0
EX_TEMPFAIL = 75
EX_CONFIG = 78

FAMILY = "family.example"


# ------------------------------------------------------------------ messages
def routed_message(tag, i, headers, date=None, size=0):
    """A message numbered i: `headers` (a list of "Name: value" lines) come
    first, as a mail server's delivery headers do; X-Route-Seq makes it
    unique; `size` pads the body to about that many bytes."""
    date = date or f"Tue, {1 + i % 28} Oct 2024 {8 + i % 12:02d}:{i % 60:02d}:{(i * 7) % 60:02d} +0200"
    lines = list(headers) + [
        f"Date: {date}",
        f"From: Sender {i} <sender{i}@example.org>",
        f"Subject: [{tag}] routed message {i}",
        f"Message-ID: <r{i}.{tag}@example.org>",
        f"X-Route-Seq: {tag}/{i}",
        "",
        f"Message {i} of {tag}.",
        "A line with a dot follows.",
        ".",
        "Grüße, ünïcode in the body.",
    ]
    text = "\n".join(lines) + "\n"
    if size > len(text):
        pad = "padding " + "=" * 70 + "\n"
        text += pad * ((size - len(text)) // len(pad) + 1)
    return text.encode("utf-8")


def kill_message(i, rng, tag, header):
    """harness.small_message() with `header` ("Delivered-To: ...") put at
    the top of its header section (after an mbox From line, if any), in
    the message's own line endings."""
    raw = small_message(i, rng, tag)
    nl = b"\r\n" if b"\r\n" in raw else b"\n"
    line = header.encode() + nl
    if raw.startswith(b"From "):
        first, sep, rest = raw.partition(nl)
        return first + sep + line + rest
    return line + raw


_SEQ_RE = re.compile(rb"^X-(?:Route|Harness)-Seq: ([^\r\n]+)\r?$", re.M)


def label(body: bytes) -> str:
    m = _SEQ_RE.search(body[:8192])
    return m.group(1).decode("utf-8", "replace") if m else repr(body[:40])


# ------------------------------------------------------------------ config
def dest(dc, name, user, **extra):
    """A `destinations` entry: `user` on the Dovecot instance `dc`."""
    d = {"name": name}
    d.update(dc.imap_block(user))
    d.update(extra)
    return d


def family_map():
    """The multidrop map of a family: an address, a glob and a regex."""
    return [
        {"address": f"anna@{FAMILY}", "to": "anna"},
        {"glob": f"bob*@{FAMILY}", "to": "bob"},
        {"regex": r"^carol(\+.*)?@family\.example$", "to": "carol"},
    ]


# ------------------------------------------------------------------ reading back
def mailboxes(dc, user):
    """Every selectable mailbox of `user` (IMAP LIST)."""
    with imapread.session(dc.imap(user)) as c:
        return imapread.mailboxes(c, selectable=True)


def census(places):
    """places: {label: (dc, user)}.  Every message of every mailbox of
    those users: [(label, mailbox, message dict of imap_messages)]."""
    out = []
    for who, (dc, user) in places.items():
        for mb in mailboxes(dc, user):
            for m in dc.imap_messages(user, mb):
                out.append((who, mb, m))
    return out


def assert_placed(places, expect, what=""):
    """expect: [(raw, [(label, mailbox), ...])]: each raw message (as
    popbridge is to store it) is in each of its places exactly once and in
    no other mailbox of the users of `places`; nothing else is there.
    Mailbox names compare as IMAP's INBOX does (any case).  Returns the
    census, so that flags and dates can be checked."""
    def key(who, mb):
        return (who, "INBOX" if mb.upper() == "INBOX" else mb)

    seen = census(places)
    got = collections.Counter((m["body"], key(who, mb)) for who, mb, m in seen)
    want = collections.Counter()
    for raw, where in expect:
        for who, mb in where:
            want[(normalise(raw), key(who, mb))] += 1
    missing = want - got
    extra = got - want
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{sum(missing.values())} missing: " + ", ".join(
                f"{label(b)} in {w}/{mb}" for (b, (w, mb)) in list(missing)[:8]))
        if extra:
            problems.append(f"{sum(extra.values())} extra (duplicated or misplaced): " + ", ".join(
                f"{label(b)} in {w}/{mb} x{extra[(b, (w, mb))]}" for (b, (w, mb)) in list(extra)[:8]))
        raise AssertionError(f"{what}{': ' if what else ''}" + "; ".join(problems))
    return seen


def find(seen, raw, who, mailbox):
    """The message dict of `raw` in who/mailbox (assert_placed said it is
    there once)."""
    want = normalise(raw)
    for w, mb, m in seen:
        if w == who and mb.upper() == mailbox.upper() and m["body"] == want:
            return m
    raise AssertionError(f"{label(want)} is not in {who}/{mailbox}")


# ------------------------------------------------------------------ the kill loop
class RouteKillLoop(InterruptLoop):
    """harness.InterruptLoop (SIGKILL) on one routed account (keep = false)
    whose mail goes to several destinations: progress is the number of
    messages committed into the destinations' INBOXes (each message once in
    each of its places), counted in the maildirs.  Rounds are bounded in
    number, not in time; the caller makes the verdict (assert_placed).

    route(i) -> (header line, [destination labels]) decides where message
    i goes; places: {label: (dc, user)} of the destinations."""

    def __init__(self, t, cfg, src_dc, src, places, route, seed, batch=200, max_batch=1600,
                 span_target=0.4, run_timeout=300.0, session_timeout=120.0, tag=None):
        self.route = route
        self.places_of: list[list[str]] = []   # the labels of each message's places
        super().__init__(t, src_dc, seed=seed, tag=tag, batch=batch, max_batch=max_batch,
                         span_target=span_target, chain=0.5, max_chain=3,
                         run_timeout=run_timeout, session_timeout=session_timeout,
                         big_share=0.0, calibrate_stat=True, account=(cfg, src, places))

    def message(self, i):
        header, where = self.route(i)
        self.places_of.append(where)
        return kill_message(i, self.rng, self.tag, header)

    def deliveries(self, raws_from=0):
        return sum(len(w) for w in self.places_of[raws_from:])

    def settle(self):
        """As InterruptLoop's, but a session still open is a failure here."""
        if not super().settle():
            raise AssertionError(self.session_waits[-1])
        return True
