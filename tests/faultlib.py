"""Helpers for the fault and hostile-server tests (tests/integ/test_faults.py,
tests/integ/test_hostile.py) and the stress driver (tests/stress_kill.py).

Standard library only; built on tests/harness.py without changing it.

* corpus(): messages with a unique `X-Fault-Seq: TAG/N` header, so every
  copy found in IMAP or on POP3 can be told apart and counted;
* expected(): the bytes popbridge is documented to store for what it
  received (LF -> CRLF, a leading mbox "From " line dropped, a final CRLF
  ensured, a bare CR kept -- harness.normalise turns a bare CR into CRLF,
  which is not what popbridge does);
* Ledgerless account blocks through a FaultProxy or straight to Dovecot's
  plain ports (always host 127.0.0.1: the ledger is named after the POP3
  user@host, so both paths share it);
* check_no_loss() / check_exactly_once(): the message-by-message verdicts,
  with lost / duplicated / corrupted counts appended to the file named by
  $POPBRIDGE_STRESS_TALLY (one JSON object a line) for tests/stress.sh;
* run_measured(): a popbridge run whose peak memory (ru_maxrss) is known;
* imap_fetch_binary(): messages read back with FETCH BINARY.PEEK[] (literal8
  aware), for messages with NUL bytes;
* kill_loop(): the kill -9 loop of tests/integ/test_crash.py, with the
  number of kills as a parameter.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

from harness import BridgeResult, popbridge_path, _text

EX_OK = 0
EX_DATAERR = 65
EX_TEMPFAIL = 75

LOOPBACK = "127.0.0.1"
SEQ_RE = re.compile(rb"^X-Fault-Seq: ([A-Za-z0-9_.-]+)/(\d+)\r?$", re.M)


# ------------------------------------------------------------------ messages
def fault_message(tag, i, size=2000, rng=None, extra_headers=""):
    """A message numbered i of corpus `tag`, about `size` bytes, LF lines."""
    rng = rng or random.Random(i)
    stamp = f"{i % 24:02d}:{i % 60:02d}:{(i * 13) % 60:02d}"
    head = (f"Date: Tue, {1 + i % 28} Oct 2024 {stamp} +0000\n"
            f"From: sender{i % 11}@example.org\n"
            f"To: dest@example.net\n"
            f"Subject: [{tag}] fault corpus message {i}\n"
            f"Message-ID: <f{i}.{tag}@example.org>\n"
            f"X-Fault-Seq: {tag}/{i}\n"
            f"{extra_headers}"
            f"\n")
    lines = []
    n = len(head)
    j = 0
    words = ["alpha", "beta", ".dot-start", "gamma", "From here", "ünïcode", "z" * 70]
    while n < size:
        line = f"{i}-{j} " + " ".join(rng.choice(words) for _ in range(rng.randrange(1, 9)))
        lines.append(line)
        n += len(line.encode()) + 1
        j += 1
    return (head + "\n".join(lines) + "\n").encode("utf-8")


def corpus(tag, n, seed=1, big=(), big_size=200_000, small=(600, 6000)):
    """n messages; those numbered in `big` are about big_size bytes (over
    popbridge's 128 KiB in-memory spool), the rest between small[0] and
    small[1] bytes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = big_size if i in big else rng.randrange(*small)
        out.append(fault_message(tag, i, size, rng))
    return out


def seq_of(body: bytes):
    m = SEQ_RE.search(body[:4096])
    return (m.group(1).decode(), int(m.group(2))) if m else None


def expected(received: bytes) -> bytes:
    """What popbridge stores for a message it received as `received`
    (after dot-unstuffing): LF and CRLF become CRLF, a bare CR stays (a CR
    at the very end ends the last line), a leading "From " line goes, a
    final CRLF is ensured."""
    data = received
    if data.startswith(b"From "):
        nl = data.find(b"\n")
        data = b"" if nl < 0 else data[nl + 1:]
    data = re.sub(rb"\r?\n", b"\r\n", data)
    if data.endswith(b"\r"):
        data += b"\n"
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def first_difference(a: bytes, b: bytes):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"differ at offset {n} (expected {len(a)} bytes, got {len(b)}): expected "
            f"{a[max(0, n - 20):n + 20]!r}, got {b[max(0, n - 20):n + 20]!r}")


# ------------------------------------------------------------------ accounts
def pop3_block(dc, user, port=None, **extra):
    """A plaintext pop3 group for `user` at 127.0.0.1:port (default:
    Dovecot's own plain POP3 port)."""
    b = {"url": f"pop3://{LOOPBACK}:{port or dc.pop3_port}", "user": user,
         "password": dc.users[user], "tls": "none"}
    b.update(extra)
    return b


def imap_block(dc, user, port=None, mailbox="INBOX", **extra):
    b = {"url": f"imap://{LOOPBACK}:{port or dc.imap_port}", "user": user,
         "password": dc.users[user], "tls": "none", "mailbox": mailbox}
    b.update(extra)
    return b


def account(name, pop3, imap, keep=False, flags=(), **extra):
    a = {"name": name, "pop3": pop3, "imap": imap, "keep": keep, "flags": list(flags)}
    a.update(extra)
    return a


def summary(stderr, name):
    """(new, imported, failed, deleted) of the account's summary line."""
    m = re.search(rf"\b{re.escape(name)}: (\d+) new, (\d+) imported, (\d+) failed, "
                  rf"(\d+) deleted\b", stderr)
    return tuple(int(x) for x in m.groups()) if m else None


def account_lines(stderr, name):
    """stderr lines about account `name`, without the plaintext warning
    and the summary."""
    out = []
    for line in stderr.splitlines():
        if f"{name}:" not in line:
            continue
        if "without TLS" in line or re.search(r"\d+ new, \d+ imported", line):
            continue
        if re.search(r"\) imported, \d+ bytes$", line):
            continue                        # -v progress, not an error
        out.append(line)
    return out


def assert_error(r, name, pattern, what):
    lines = account_lines(r.stderr, name)
    assert lines, f"{what}: no error line on stderr naming the account {name!r}"
    assert any(re.search(pattern, line, re.I) for line in lines), \
        f"{what}: no line says what happened (/{pattern}/): {lines[-6:]}"


def assert_rc(r, want, what):
    wants = want if isinstance(want, (tuple, list, set)) else (want,)
    assert r.rc in wants, \
        f"{what}: popbridge exited {r.rc}, expected {' or '.join(map(str, wants))}"


# ------------------------------------------------------------------ verdicts
def _tally(t, what, lost, dup, corrupt, extra=None):
    path = os.environ.get("POPBRIDGE_STRESS_TALLY")
    if not path:
        return
    rec = {"test": t.name, "check": what, "lost": lost, "dup": dup, "corrupt": corrupt}
    rec.update(extra or {})
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _index(raws):
    want = {}
    for raw in raws:
        s = seq_of(raw)
        assert s is not None, "corpus message without X-Fault-Seq"
        want[s] = raw
    return want


def census(raws, imap_bodies, pop3_bodies, received=None):
    """Count every corpus message in IMAP (exact copies only) and on POP3.

    received(raw) gives what popbridge receives for raw (default: raw
    itself; Dovecot's LF -> CRLF on the way makes no difference after
    expected())."""
    want = _index(raws)
    in_imap = collections.Counter()
    corrupt, foreign = [], []
    for body in imap_bodies:
        s = seq_of(body)
        if s not in want:
            foreign.append(body[:80])
            continue
        raw = want[s]
        exp = expected(received(raw) if received else raw)
        if body != exp:
            corrupt.append((s, first_difference(exp, body)))
            continue
        in_imap[s] += 1
    on_pop = collections.Counter()
    for body in pop3_bodies:
        s = seq_of(body)
        if s in want:
            on_pop[s] += 1
    return want, in_imap, on_pop, corrupt, foreign


def check_no_loss(t, raws, imap_bodies, pop3_bodies, keep=False, what="after the fault",
                  received=None):
    """Nothing lost (each message in IMAP or still on POP3), nothing twice
    in IMAP, nothing changed; with keep, nothing gone from POP3.  Returns
    (in_imap, on_pop) Counters keyed by (tag, n)."""
    want, in_imap, on_pop, corrupt, foreign = census(raws, imap_bodies, pop3_bodies, received)
    lost = [s for s in want if in_imap[s] == 0 and on_pop[s] == 0]
    dup = [s for s in want if in_imap[s] > 1]
    gone = [s for s in want if on_pop[s] == 0] if keep else []
    _tally(t, what, len(lost), len(dup), len(corrupt) + len(foreign),
           {"imported": sum(1 for s in want if in_imap[s]), "total": len(want)})
    problems = []
    if lost:
        problems.append(f"{len(lost)} LOST (neither in IMAP nor on POP3), e.g. "
                        f"{[n for _, n in lost[:8]]}")
    if dup:
        problems.append(f"{len(dup)} DUPLICATED in IMAP, e.g. "
                        f"{[(n, in_imap[(tg, n)]) for tg, n in dup[:8]]}")
    if corrupt:
        problems.append(f"{len(corrupt)} changed in IMAP, e.g. message {corrupt[0][0][1]}: "
                        f"{corrupt[0][1]}")
    if foreign:
        problems.append(f"{len(foreign)} unknown messages in IMAP, e.g. {foreign[0]!r}")
    if gone:
        problems.append(f"keep = true but {len(gone)} are gone from POP3")
    assert not problems, f"{what}: " + "; ".join(problems)
    return in_imap, on_pop


def check_exactly_once(t, raws, imap_bodies, pop3_bodies, keep=False, what="final run",
                       received=None, expect_on_pop=()):
    """Every message in IMAP exactly once and unchanged; with keep=false
    none left on POP3 (except those in expect_on_pop, by number)."""
    want, in_imap, on_pop, corrupt, foreign = census(raws, imap_bodies, pop3_bodies, received)
    missing = [s for s in want if in_imap[s] == 0]
    dup = [s for s in want if in_imap[s] > 1]
    lost = [s for s in missing if on_pop[s] == 0]
    left = [] if keep else [s for s in want if on_pop[s] > 0 and s[1] not in expect_on_pop]
    _tally(t, what, len(lost), len(dup), len(corrupt) + len(foreign),
           {"missing": len(missing), "left_on_pop3": len(left), "total": len(want)})
    problems = []
    if missing:
        problems.append(f"{len(missing)} not in IMAP ({len(lost)} of them not on POP3 "
                        f"either: LOST), e.g. {[n for _, n in missing[:8]]}")
    if dup:
        problems.append(f"{len(dup)} DUPLICATED in IMAP, e.g. "
                        f"{[(n, in_imap[(tg, n)]) for tg, n in dup[:8]]}")
    if corrupt:
        problems.append(f"{len(corrupt)} changed in IMAP, e.g. message {corrupt[0][0][1]}: "
                        f"{corrupt[0][1]}")
    if foreign:
        problems.append(f"{len(foreign)} unknown messages in IMAP")
    if left:
        problems.append(f"keep = false but {len(left)} still on POP3, e.g. "
                        f"{[n for _, n in left[:8]]}")
    assert not problems, f"{what}: " + "; ".join(problems)


def imap_bodies(dc, user, mailbox="INBOX"):
    return [m["body"] for m in dc.imap_messages(user, mailbox)]


def pop3_bodies(dc, user):
    return [b for _, b in dc.pop3_messages(user)]


# ------------------------------------------------------------------ runs
def _hwm_kb(pid):
    """VmHWM (peak resident set) of a live process, in kB, or 0."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_measured(t, *args, timeout=120, env=None):
    """Run popbridge like TestContext.bridge, also learning its peak
    resident memory (BridgeResult.maxrss_kb).

    ru_maxrss from wait4 will not do: a child forked from this (large)
    Python process inherits its resident size as the high-water mark
    across exec.  So VmHWM of popbridge's own address space is sampled
    from /proc every 10 ms while it runs (it only grows)."""
    exe = popbridge_path()
    cmd = [exe, *map(str, args)]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=t.tmp,
                         env={**os.environ, **(env or {})})
    bufs = {"out": bytearray(), "err": bytearray()}

    def reader(f, key):
        for chunk in iter(lambda: f.read(65536), b""):
            if len(bufs[key]) < 4 << 20:
                bufs[key] += chunk
    threads = [threading.Thread(target=reader, args=(p.stdout, "out"), daemon=True),
               threading.Thread(target=reader, args=(p.stderr, "err"), daemon=True)]
    for th in threads:
        th.start()
    status = None
    timed_out = False
    deadline = t0 + timeout
    hwm = 0
    while True:
        hwm = max(hwm, _hwm_kb(p.pid))
        pid, st, usage = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            status = st
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.kill(p.pid, signal.SIGKILL)
            _, status, _ = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    for th in threads:
        th.join(5)
    res = BridgeResult(cmd, None if timed_out else p.returncode, _text(bytes(bufs["out"])),
                       _text(bytes(bufs["err"])), time.monotonic() - t0)
    res.maxrss_kb = hwm
    t.runs.append(res)
    if timed_out:
        raise AssertionError(f"popbridge {' '.join(map(str, args))} did not finish within "
                             f"{timeout}s")
    return res


# ------------------------------------------------------------------ IMAP BINARY
class _RawImap:
    """A minimal IMAP client on Dovecot's plain port that reads literal8."""

    def __init__(self, port, user, password, timeout=30):
        self.s = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.buf = bytearray()
        self.n = 0
        self._line()                        # greeting
        self.cmd(f'LOGIN "{user}" "{password}"')

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("IMAP server closed the connection")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def cmd(self, text):
        """Send a command; returns [(line parts, [literals])] of untagged
        responses and the tagged line."""
        self.n += 1
        tag = f"r{self.n}"
        self.s.sendall(f"{tag} {text}\r\n".encode())
        out = []
        while True:
            line = self._line()
            lits, parts = [], [line]
            while True:
                m = re.search(rb"~?\{(\d+)\}$", line)
                if not m:
                    break
                lits.append(self._exact(int(m.group(1))))
                line = self._line()
                parts.append(line)
            if parts[0].startswith(tag.encode() + b" "):
                if not parts[0].split(b" ", 2)[1] == b"OK":
                    raise AssertionError(f"IMAP {text}: {parts[0]!r}")
                return out
            out.append((parts, lits))

    def close(self):
        try:
            self.cmd("LOGOUT")
        except Exception:
            pass
        self.s.close()


def imap_fetch_binary(dc, user, mailbox="INBOX"):
    """[(uid, bytes)] of the mailbox read with UID FETCH BINARY.PEEK[]
    (RFC 3516), so NUL bytes come back as they are stored."""
    c = _RawImap(dc.imap_port, user, dc.users[user])
    try:
        c.cmd(f'EXAMINE "{mailbox}"')
        out = []
        for parts, lits in c.cmd("UID FETCH 1:* (UID BINARY.PEEK[])"):
            m = re.search(rb"\bUID (\d+)", b" ".join(parts))
            if m and lits:
                out.append((int(m.group(1)), lits[0]))
        out.sort()
        return out
    finally:
        c.close()


# ------------------------------------------------------------------ kill -9
def kill_loop(t, dc, kills, total=None, seed=None, tag=None, max_rounds=None,
              final_timeout=300, per_round=40):
    """The kill -9 loop of test_crash.py with `kills` SIGKILLs: mail is
    delivered in rounds, a `popbridge run` (keep = false) is started and
    killed at a random moment within its expected duration (learnt from
    the runs that finish); at the end one healthy run must leave every
    message in IMAP exactly once and none on POP3.  Returns a dict of
    counts (kills, where they landed, lost, dup, ...)."""
    seed = int(os.environ.get("POPBRIDGE_TEST_SEED", "20241029")) if seed is None else seed
    rng = random.Random(seed)
    tag = tag or f"k{t.short}{seed % 100000}"
    max_rounds = max_rounds or kills * 3 + 20
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = []
    cfg = t.config([dc.account("crash", src, dst, keep=False)], name=f"kill-{seed}.conf")
    pending = []
    batch = per_round
    est = None                          # seconds a run takes, from finished runs
    killed = finished = rounds = 0
    where = collections.Counter()       # before any APPEND / mid-way / after all
    delivered = in_inbox = 0
    bad_exits = []
    while killed < kills and rounds < max_rounds and (total is None or len(raws) < total):
        rounds += 1
        # per_round new messages (two batches and a bit: a kill can land
        # between the APPENDs of one run).
        for _ in range(batch):
            raws.append(fault_message(tag, len(raws), rng.randrange(300, 9000), rng))
            pending.append(raws[-1])
        chunk = pending[:batch]
        for raw in chunk:
            dc.deliver(src, raw)
        delivered += len(chunk)
        pending = pending[len(chunk):]
        t0 = time.monotonic()
        p = t.popen("-c", cfg, "run", stderr_path=t.tmp / "kill-run.stderr")
        if est is None:
            # The first run calibrates: let it finish.
            p.wait()
        else:
            time.sleep(rng.uniform(0.1 * est, 1.1 * est))
        if p.poll() is None:
            p.kill()
            p.wait()
            killed += 1
            now_in = dc.imap_count(dst)
            where["before" if now_in == in_inbox else
                  "after" if now_in >= delivered else "mid"] += 1
            in_inbox = now_in
        else:
            finished += 1
            took = time.monotonic() - t0
            est = took if est is None else 0.7 * est + 0.3 * took
            in_inbox = dc.imap_count(dst)
            if p.returncode != 0:
                err = (t.tmp / "kill-run.stderr").read_text(errors="replace")
                bad_exits.append(f"round {rounds}: exit {p.returncode}: {err[-400:]}")
    for raw in pending:
        dc.deliver(src, raw)
    r = t.bridge("-c", cfg, "run", timeout=final_timeout)
    bodies = imap_bodies(dc, dst)
    pop = pop3_bodies(dc, src)
    want, in_imap, on_pop, corrupt, foreign = census(raws, bodies, pop)
    lost = sum(1 for s in want if in_imap[s] == 0 and on_pop[s] == 0)
    dup = sum(1 for s in want if in_imap[s] > 1)
    missing = sum(1 for s in want if in_imap[s] == 0)
    res = {"kills": killed, "finished": finished, "rounds": rounds,
           "mid_work": where["mid"], "where": dict(where), "est": est or 0.0,
           "messages": len(raws), "lost": lost, "dup": dup, "missing": missing,
           "corrupt": len(corrupt) + len(foreign), "left_on_pop3": len(pop),
           "final_rc": r.rc, "bad_exits": bad_exits, "seed": seed,
           "raws": raws, "bodies": bodies, "pop": pop}
    _tally(t, f"kill loop seed {seed}", lost, dup, len(corrupt) + len(foreign),
           {"kills": killed, "missing": missing})
    return res
