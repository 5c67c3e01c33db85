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
import signal
import subprocess
import time

from harness import (default_signal_actions, normalise, popbridge_path,
                     small_message)

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
    c = dc.imap(user)
    try:
        typ, data = c.list('""', "*")
        assert typ == "OK", f"IMAP LIST for {user}: {typ} {data}"
        out = []
        for item in data:
            if item is None:
                continue
            if isinstance(item, tuple):
                item = item[0] + b" " + item[1]
            text = item.decode("utf-8", "replace")
            m = re.match(r'\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.*)$', text)
            assert m, f"IMAP LIST for {user}: cannot read {text!r}"
            if "\\Noselect" in m.group("attrs") or "\\NonExistent" in m.group("attrs"):
                continue
            name = m.group("name")
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            out.append(name)
        return out
    finally:
        try:
            c.logout()
        except Exception:
            pass


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
class RouteKillLoop:
    """`popbridge run` of one routed account (keep = false), killed with
    SIGKILL and rerun at once, round after round; then one clean run.

    The progress of a run is the number of messages committed into the
    destinations' INBOXes, counted in the maildirs (Dovecot.stored_count:
    no IMAP session, cheap to poll).  calibrate() times an unkilled run
    (first and last commit, end) and grows the batch until first..last
    lasts span_target s, so a fast machine gets more mail per round.
    Each kill is aimed at a random moment within first..last scaled to the
    deliveries waiting, times a speed factor every outcome corrects (as
    harness.InterruptLoop does); where it landed is measured: "before"
    (nothing committed), "mid" (some), "after" (all), "finished" (the run
    ended first).  Rounds are bounded in number, not in time.

    route(i) -> (header line, [destination labels]) decides where message
    i goes; places: {label: (dc, user)} of the destinations."""

    def __init__(self, t, cfg, src_dc, src, places, route, seed, batch=200, max_batch=1600,
                 span_target=0.4, run_timeout=300.0, session_timeout=120.0, tag=None):
        import random
        self.t, self.cfg, self.src_dc, self.src = t, cfg, src_dc, src
        self.places, self.route = places, route
        self.seed = seed
        self.rng = random.Random(seed)
        self.tag = tag or f"{t.short}{seed % 100000}"
        self.batch, self.max_batch, self.span_target = batch, max_batch, span_target
        self.run_timeout, self.session_timeout = run_timeout, session_timeout
        self.raws: list[bytes] = []
        self.where: list[list[str]] = []   # the labels of each message's places
        self.cal = None
        self.speeds = [1.0, 1.0]
        self.kills: list[dict] = []
        self.rounds = self.calibrations = self.finished_early = self.nproc = 0
        self.loaded = False
        self.bad: list[str] = []

    # ---------------------------------------------------------- counting
    def count(self):
        return sum(dc.stored_count(user) for dc, user in self.places.values())

    def deliveries(self, raws_from=0):
        return sum(len(w) for w in self.where[raws_from:])

    def mid(self, loaded=None):
        return sum(1 for k in self.kills if k["where"] == "mid"
                   and (loaded is None or k["loaded"] == loaded))

    def summary(self):
        kinds = collections.Counter(k["where"] for k in self.kills)
        return (f"{len(self.kills)} kills in {self.rounds} rounds ({dict(kinds)}), "
                f"{self.mid(False)} mid-work quiet, {self.mid(True)} loaded; "
                f"{self.finished_early} runs ended before their kill; {self.calibrations} "
                f"calibrations, batch {self.batch}, speed {self.speeds[0]:.2f}/"
                f"{self.speeds[1]:.2f}; {len(self.raws)} messages, "
                f"{self.deliveries()} deliveries; seed {self.seed}")

    def settle(self):
        """Wait until Dovecot has ended every IMAP session of the
        destinations, so that no APPEND of a killed run lands later."""
        for who, (dc, user) in self.places.items():
            if not dc.wait_sessions_ended(user, self.session_timeout, ("imap",)):
                still = dc.open_sessions(user, ("imap",))
                raise AssertionError(f"{len(still)} IMAP sessions of {who} still open "
                                     f"{self.session_timeout:.0f} s after their client "
                                     f"was gone")

    # ---------------------------------------------------------- runs
    def deliver(self, n):
        for _ in range(n):
            i = len(self.raws)
            header, where = self.route(i)
            raw = kill_message(i, self.rng, self.tag, header)
            self.raws.append(raw)
            self.where.append(where)
            self.src_dc.deliver(self.src, raw)

    def _start(self):
        self.nproc += 1
        path = self.t.tmp / f"rloop-{self.nproc % 6}.stderr"
        with open(path, "wb") as err:
            p = subprocess.Popen([popbridge_path(), "-c", self.cfg, "run"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, cwd=self.t.tmp, preexec_fn=default_signal_actions)
        return p, path

    @staticmethod
    def _err(path, limit=600):
        try:
            return path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def _fail(self, text):
        self.bad.append(text)
        raise AssertionError(f"a popbridge run that was not killed failed: {text}")

    def _wait(self, p, path, what):
        try:
            rc = p.wait(self.run_timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self._fail(f"{what}: still running after {self.run_timeout:.0f} s (killed)")
        if rc != 0:
            self._fail(f"{what}: exit {rc}: {self._err(path, 400)!r}")

    def calibrate(self):
        for _ in range(5):
            self.calibrations += 1
            self.settle()
            start = len(self.raws)
            self.deliver(self.batch)
            n = self.deliveries(start)
            self.src_dc.pop3_count(self.src)
            base = self.count()
            t0 = time.monotonic()
            p, path = self._start()
            first = last = None
            while True:
                done = p.poll() is not None
                c = self.count()
                el = time.monotonic() - t0
                if not done and el > self.run_timeout:
                    p.kill()
                    p.wait()
                    self._fail(f"calibration run: still running after {el:.0f} s (killed)")
                if first is None and c > base:
                    first = el
                if last is None and c >= base + n:
                    last = el
                if done:
                    break
                time.sleep(0.004)
            end = time.monotonic() - t0
            if p.returncode != 0:
                self._fail(f"calibration run: exit {p.returncode}: {self._err(path, 400)!r}")
            first = end / 2 if first is None else first
            last = end if last is None else last
            self.cal = {"n": n, "first": first, "last": max(last, first + 0.001), "end": end}
            self.speeds = [1.0, 1.0]
            span = self.cal["last"] - self.cal["first"]
            if span >= self.span_target or self.batch >= self.max_batch:
                break
            grow = min(4.0, max(1.5, self.span_target / max(span, 0.01)))
            self.batch = min(self.max_batch, int(self.batch * grow) + 1)
        return self.cal

    def _model(self, n):
        c = self.cal
        span = (c["last"] - c["first"]) * max(n, 1) / c["n"]
        return c["first"], c["first"] + span, c["first"] + span + (c["end"] - c["last"])

    def _pick(self, n, rerun):
        first, last, end = self._model(n)
        if self.rng.random() < 0.85:
            span = last - first
            d = self.rng.uniform(first + 0.05 * span, first + 0.8 * span)
        else:
            d = self.rng.uniform(0.01, end)
        return d * self.speeds[rerun]

    def _adapt(self, where, d, n, frac, rerun):
        first, last, end = self._model(n)
        s = self.speeds[rerun]
        if where == "finished":
            s = min(s, 0.9 * d / end)
        elif where == "after":
            s = min(s, 0.95 * d / last)
        elif where == "before":
            s = max(s, 1.05 * d / first)
        elif where == "mid" and frac is not None:
            s = 0.7 * s + 0.3 * d / (first + frac * (last - first))
        self.speeds[rerun] = min(20.0, max(0.05, s))

    def round(self):
        """Deliver a batch, start a run, kill it at the chosen moment, rerun
        at once (killed too, with probability 1/2, while enough is left),
        let the last run finish."""
        self.rounds += 1
        r = self.rounds
        self.settle()
        self.deliver(self.batch)
        base = self.count()
        target = self.count_target()
        n = target - base
        p, path = self._start()
        t0 = time.monotonic()
        for k in range(3):
            rerun = k > 0
            d = self._pick(n, rerun)
            while p.poll() is None and time.monotonic() < t0 + d:
                time.sleep(0.003)
            if p.poll() is not None:
                self.finished_early += 1
                if p.returncode != 0:
                    self._fail(f"round {r} (ended before its kill): exit {p.returncode}: "
                               f"{self._err(path, 400)!r}")
                self._adapt("finished", d, n, None, rerun)
                return
            d = time.monotonic() - t0
            p.send_signal(signal.SIGKILL)
            p.wait()
            now = self.count()
            p, path = self._start()         # at once
            t0 = time.monotonic()
            if rerun:
                # A late commit of the run before cannot be told from this
                # one's work: where it landed is not measured.
                where = "unknown"
            elif now <= base:
                where = "before"
            elif now >= target:
                where = "after"
            else:
                where = "mid"
            self.kills.append({"round": r, "chain": k, "loaded": self.loaded, "d": d,
                               "where": where})
            if where != "unknown":
                self._adapt(where, d, n, (now - base) / max(1, target - base), rerun)
            n = max(1, target - now)
            if n < 64 or self.rng.random() < 0.5:
                break
        self._wait(p, path, f"round {r}: the run after the last kill")

    def count_target(self):
        """The deliveries of every message delivered so far (each once in
        each of its places)."""
        return self.deliveries()
