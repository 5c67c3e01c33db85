"""Helpers for the `popbridge batch` integration tests
(tests/integ/test_batch.py).

Standard library only, built on tests/harness.py (which it does not change).

    accts = make_accounts(t, dc, 200, 20, tag="b1")    # users, mail, passwords
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts])
    r = run_batch(t, csv_path, "--jobs", 16, "--per-host", 16)
    rows = read_report(t.tmp / "report.csv")
    verify_imported(dc, accts)        # over IMAP: each message exactly once;
                                      # over POP3: the mailbox is empty

Every account gets two fresh users (POP3 source, IMAP destination) with
distinctive passwords, so a test can look for them in the report and in
popbridge's output.  Mail is written straight into the source maildirs
(Dovecot.deliver), which is fast enough for thousands of small messages.
Every run gets a private HOME and XDG_STATE_HOME under the test's temp dir,
no stdin and a new session (no controlling terminal).
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import poplib
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imapread
from harness import BridgeResult, _text, normalise, popbridge_path

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75

HEADER = ["pop3_url", "pop3_user", "pop3_password", "imap_url", "imap_user",
          "imap_password", "mailbox", "keep"]
REPORT_COLUMNS = ["line", "pop3_url", "pop3_user", "imap_url", "imap_user",
                  "mailbox", "status", "imported", "bytes", "skipped",
                  "skipped_reasons", "seconds", "error"]

_live: set = set()


def _kill_leftovers():
    for p in list(_live):
        try:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        except Exception:
            pass


atexit.register(_kill_leftovers)


# --------------------------------------------------------------- messages
def batch_message(tag, acct, i, size=0):
    """A small message with a unique X-Batch-Id header and body line."""
    head = (f"Date: Tue, {1 + i % 28} Oct 2024 {i % 24:02d}:{(i * 7) % 60:02d}:00 +0000\n"
            f"From: sender{acct}@example.org\n"
            f"To: rcpt{acct}@example.net\n"
            f"Subject: [{tag}] account {acct} message {i}\n"
            f"Message-ID: <{tag}.{acct}.{i}@batch.example.org>\n"
            f"X-Batch-Id: {tag}/{acct}/{i}\n\n")
    body = f"body of {tag}/{acct}/{i}\n"
    if size > 0:
        line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\n"
        body += line * (size // len(line))
    return (head + body).encode()


def batch_id(body: bytes):
    for line in body.split(b"\n"):
        line = line.rstrip(b"\r")
        if line.startswith(b"X-Batch-Id: "):
            return line[len(b"X-Batch-Id: "):].decode()
        if not line:
            break
    return None


# --------------------------------------------------------------- accounts
class Account:
    """One CSV row's worth: a POP3 user with mail and an IMAP user."""

    def __init__(self, idx, src, dst, pop3_pw, imap_pw, raws, tag):
        self.idx, self.src, self.dst = idx, src, dst
        self.pop3_pw, self.imap_pw = pop3_pw, imap_pw
        self.raws = raws
        self.tag = tag
        self.mailbox = "INBOX"
        self.keep = "false"
        self.pop3_pw_field = pop3_pw      # what goes into the CSV
        self.imap_pw_field = imap_pw
        self.line = None                  # the CSV line, once written

    def row(self, dc, **over):
        r = {"pop3_url": dc.url("pop3"), "pop3_user": self.src,
             "pop3_password": self.pop3_pw_field,
             "imap_url": dc.url("imap"), "imap_user": self.dst,
             "imap_password": self.imap_pw_field,
             "mailbox": self.mailbox, "keep": self.keep}
        r.update(over)
        return r

    @property
    def ids(self):
        return [batch_id(r) for r in self.raws]

    def __repr__(self):
        return f"<account {self.idx} {self.src}->{self.dst}>"


def make_accounts(t, dc, n, per, tag, big=None, first=0):
    """n accounts of `per` messages each on Dovecot `dc`.  Passwords are
    distinctive (easy to grep for) and some hold a comma or a quote, so
    the CSV needs quoting.  big: {account index: [sizes]} adds big
    messages to those accounts."""
    accts = []
    short = t.short[:6]
    for k in range(first, first + n):
        src = f"{short}{tag}s{k}x{os.getpid() % 1000}"
        dst = f"{short}{tag}d{k}x{os.getpid() % 1000}"
        odd = ',"' if k % 7 == 3 else ""
        pop3_pw = f"PopSecret{odd}-{tag}-{k}-{os.urandom(5).hex()}"
        imap_pw = f"ImapSecret-{tag}-{k}-{os.urandom(5).hex()}"
        dc.add_user(src, pop3_pw)
        dc.add_user(dst, imap_pw)
        raws = [batch_message(tag, k, i) for i in range(per)]
        for j, size in enumerate((big or {}).get(k, [])):
            raws.append(batch_message(tag, k, per + j, size))
        for raw in raws:
            dc.deliver(src, raw)
        accts.append(Account(k, src, dst, pop3_pw, imap_pw, raws, tag))
    return accts


def secret_file(t, name, secret, mode=0o600):
    """A password file (first line the secret) for a `file:PATH` field."""
    d = t.tmp / "secrets"
    d.mkdir(exist_ok=True, mode=0o700)
    p = d / name
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    return str(p)


# --------------------------------------------------------------- CSV files
def csv_text(rows, header=HEADER, newline="\n"):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(c, "") for c in header] if isinstance(r, dict) else r)
    return buf.getvalue()


def write_csv(path, rows, header=HEADER, accounts=None):
    """Write the CSV (header + rows, LF, quoted where needed); if accounts
    is given (same order as rows), set each account's .line (rows hold no
    newlines, so row k is on line k + 2)."""
    Path(path).write_text(csv_text(rows, header))
    if accounts is not None:
        for k, a in enumerate(accounts):
            a.line = k + 2
    return str(path)


def read_report(path):
    """The --report file as a list of dicts (and its header checked)."""
    text = Path(path).read_text()
    rd = csv.reader(io.StringIO(text))
    rows = list(rd)
    assert rows, f"report {path} is empty (not even a header)"
    assert rows[0] == REPORT_COLUMNS, f"report header is {rows[0]}, want {REPORT_COLUMNS}"
    out = []
    for r in rows[1:]:
        assert len(r) == len(REPORT_COLUMNS), f"report row with {len(r)} fields: {r}"
        out.append(dict(zip(REPORT_COLUMNS, r)))
    return out


def report_rows_so_far(path):
    """Complete rows of a report being written (tolerates a partial last line)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(text)))
    return rows[1:] if rows else []


# --------------------------------------------------------------- runs
def run_env(t, extra=None):
    home = t.tmp / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_STATE_HOME": str(home / "state")}
    env.update(extra or {})
    return env


def run_batch(t, csv_path, *args, timeout=240, env=None, record=True):
    """popbridge batch CSV ARGS..., waited for; recorded in t.runs."""
    exe = popbridge_path()
    cmd = [exe, "batch", str(csv_path), *map(str, args)]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, cwd=t.tmp, env=run_env(t, env),
                           start_new_session=True)
    except subprocess.TimeoutExpired as e:
        t.runs.append(BridgeResult(cmd, None, _text(e.stdout), _text(e.stderr),
                                   time.monotonic() - t0))
        raise AssertionError(f"popbridge batch did not finish within {timeout}s")
    res = BridgeResult(cmd, p.returncode, _text(p.stdout), _text(p.stderr),
                       time.monotonic() - t0)
    if record:
        t.runs.append(res)
    return res


class Started:
    """A batch run started in its own process group (see start_batch)."""

    def __init__(self, t, cmd, proc, out_path, err_path, t0):
        self.t, self.cmd, self.proc = t, cmd, proc
        self.out_path, self.err_path, self.t0 = out_path, err_path, t0
        self.children_max = 0
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._count_children, daemon=True)
        self._watch.start()

    def _count_children(self):
        """Sample the number of worker processes (children of the batch)."""
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        while not self._stop.is_set() and self.proc.poll() is None:
            try:
                n = len(Path(path).read_text().split())
            except OSError:
                n = 0
            self.children_max = max(self.children_max, n)
            time.sleep(0.01)

    def kill_group(self):
        """SIGKILL the batch and every worker (its process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._stop.set()
        # Workers are reaped by init; wait until none is left in the group.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(self.proc.pid):
            time.sleep(0.02)
        _live.discard(self.proc)

    def wait(self, timeout=240):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"popbridge batch did not finish within {timeout}s")
        self._stop.set()
        _live.discard(self.proc)
        res = BridgeResult(self.cmd, rc, Path(self.out_path).read_text(errors="replace"),
                           Path(self.err_path).read_text(errors="replace"),
                           time.monotonic() - self.t0)
        self.t.runs.append(res)
        return res


def _group_alive(pgid):
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def start_batch(t, csv_path, *args, env=None, name="batch"):
    """Start popbridge batch CSV ARGS... without waiting, as the leader of
    a new process group (so a test can kill it and its workers at once)."""
    exe = popbridge_path()
    cmd = [exe, "batch", str(csv_path), *map(str, args)]
    out_path, err_path = t.tmp / f"{name}.stdout", t.tmp / f"{name}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             cwd=t.tmp, env=run_env(t, env), start_new_session=True)
    _live.add(p)
    return Started(t, cmd, p, out_path, err_path, time.monotonic())


# --------------------------------------------------------------- checking
def imap_messages(dc, user, mailbox="INBOX"):
    """[body bytes] of every message in `mailbox`, in UID order, over IMAP."""
    with imapread.session(dc.imap(user, tls=False)) as c:
        return [m["body"] for m in imapread.messages(c, mailbox, user, imapread.BODIES)]


def imap_count(dc, user, mailbox="INBOX"):
    """Messages in `mailbox` over IMAP; None if it does not exist."""
    with imapread.session(dc.imap(user, tls=False)) as c:
        return imapread.count(c, mailbox)


def pop3_count(dc, user):
    """Messages in the user's POP3 mailbox, over POP3 (plain port)."""
    c = poplib.POP3(dc.host, dc.pop3_port, timeout=30)
    try:
        c.user(user)
        c.pass_(dc.users[user])
        return c.stat()[0]
    finally:
        try:
            c.quit()
        except Exception:
            pass


def _each(fn, accts, threads):
    with ThreadPoolExecutor(threads) as ex:
        return dict(zip([a.idx for a in accts], ex.map(fn, accts)))


def imap_state(dc, accts, threads=6):
    """{account idx: [message bodies]} over IMAP (a few clients at once)."""
    return _each(lambda a: imap_messages(dc, a.dst, a.mailbox), accts, threads)


def imap_counts(dc, accts, threads=6):
    return _each(lambda a: imap_count(dc, a.dst, a.mailbox), accts, threads)


def pop3_counts(dc, accts, threads=6):
    return _each(lambda a: pop3_count(dc, a.src), accts, threads)


def exactly_once_problems(a, msgs):
    """What is wrong with account a's IMAP mailbox: [] if every message of
    a.raws is there exactly once (bytes as normalised) and nothing else."""
    want = {batch_id(r): normalise(r) for r in a.raws}
    seen = {}
    problems = []
    for body in msgs:
        bid = batch_id(body)
        seen[bid] = seen.get(bid, 0) + 1
        if bid in want and body != want[bid]:
            problems.append(f"{bid}: bytes differ")
    dup = sorted(b for b, n in seen.items() if n > 1)
    missing = sorted(b for b in want if b not in seen)
    foreign = sorted(str(b) for b in seen if b not in want)
    if dup:
        problems.append(f"{len(dup)} duplicated (e.g. {dup[:3]})")
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if foreign:
        problems.append(f"{len(foreign)} foreign (e.g. {foreign[:3]})")
    return problems


def verify_imported(dc, accts, pop3_empty=True):
    """Assert: every account's messages are in its IMAP mailbox exactly
    once (and nothing else is); with pop3_empty its POP3 mailbox is empty."""
    state = imap_state(dc, accts)
    bad = []
    for a in accts:
        p = exactly_once_problems(a, state[a.idx])
        if p:
            bad.append(f"account {a.idx} ({a.src}): {len(state[a.idx])} messages for "
                       f"{len(a.raws)}: " + "; ".join(p))
    assert not bad, f"{len(bad)} of {len(accts)} accounts wrong over IMAP: " + " | ".join(bad[:5])
    if pop3_empty:
        counts = pop3_counts(dc, accts)
        left = {a.idx: counts[a.idx] for a in accts if counts[a.idx] != 0}
        assert not left, (f"keep=false but {len(left)} POP3 mailboxes are not empty "
                          f"(account: messages left) {dict(list(left.items())[:8])}")


def assert_no_secrets(secrets, texts):
    """None of the secrets appears in any of the (name, text) pairs."""
    hits = []
    for name, text in texts:
        for s in secrets:
            if s and s in text:
                hits.append(f"{s!r} in {name}")
    assert not hits, f"{len(hits)} secret(s) leaked: {hits[:5]}"


def imap_mailboxes(dc, user):
    """Names of the user's IMAP mailboxes."""
    with imapread.session(dc.imap(user, tls=False)) as c:
        return imapread.mailboxes(c)


def ledger_files(*dirs):
    """*.db files (ledgers) anywhere under the given directories."""
    out = []
    for d in dirs:
        d = Path(d)
        if d.exists():
            out += [str(p) for p in d.rglob("*.db*")]
    return out


__all__ = ["EX_OK", "EX_USAGE", "EX_DATAERR", "EX_TEMPFAIL", "HEADER", "Account",
           "batch_message", "batch_id", "make_accounts", "secret_file", "csv_text",
           "write_csv", "read_report", "report_rows_so_far", "run_batch", "start_batch",
           "imap_state", "imap_counts", "pop3_counts", "imap_messages", "imap_count",
           "pop3_count", "exactly_once_problems",
           "verify_imported", "assert_no_secrets", "imap_mailboxes", "ledger_files"]
