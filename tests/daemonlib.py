"""Helpers for the daemon and status tests (tests/integ/test_daemon.py,
tests/integ/test_status.py): a `popbridge daemon -f` under test, waiting
for its log lines and for mail, and `status --json`.

Standard library only.  Everything here is built on tests/harness.py and
changes nothing in it.

    with Daemon(t, cfg) as d:              # popbridge -c CFG -v daemon -f
        d.wait_polls("t1", 1)               # its first poll of t1 is logged
        dc.deliver(src, raw)
        d.poll_now()                        # SIGUSR1
        wait_mail(d, dc, dst, 1, 10, "...")
    # leaving the block stops it (SIGTERM, then SIGKILL) and puts its
    # stderr into the test's failure report.

Signals are sent only after the daemon has logged its first poll: before
its handlers are installed, SIGUSR1 and SIGHUP would kill it.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import re
import signal
import subprocess
import time

from harness import BridgeResult, popbridge_path, write_private

EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75

_live: set = set()


def _kill_leftovers():
    for p in list(_live):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass


atexit.register(_kill_leftovers)


def summary_re(account):
    """The line that ends a poll of `account`: the summary
    `ACCOUNT: N new, N imported, N failed, N deleted, ...` (as `run` logs
    it), or `ACCOUNT: nothing new` for a poll that found nothing."""
    return re.compile(rf"(?:^|[\s:\[(]){re.escape(account)}: (?:(\d+) new, (\d+) imported, "
                      rf"(\d+) failed, (\d+) deleted\b|nothing new\b)", re.M)


def _last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(nothing on stderr)"


class Daemon:
    """`popbridge -c CFG [-v] daemon -f` started with TestContext.popen."""

    def __init__(self, t, cfg, verbose=True, label="daemon"):
        self.t = t
        self.label = label
        self.log_path = t.tmp / f"{label}.stderr"
        args = ["-c", str(cfg)] + (["-v"] if verbose else []) + ["daemon", "-f"]
        self.args = [popbridge_path(), *args]
        self.t0 = time.monotonic()
        self.proc = t.popen(*args, stderr_path=self.log_path)
        _live.add(self.proc)
        self.rc = None
        self.exit_seconds = None
        self._recorded = False

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send `sig`, wait up to `timeout` s, then SIGKILL.  Returns
        (exit status, seconds from the signal to the exit); the status is
        None if it had to be killed.  Idempotent."""
        if self.proc.poll() is None:
            sent = time.monotonic()
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
                self.rc = self.proc.returncode
                self.exit_seconds = time.monotonic() - sent
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.rc = None
                self.exit_seconds = None
        elif self.rc is None and self.exit_seconds is None:
            self.rc = self.proc.returncode
        _live.discard(self.proc)
        self._record()
        return self.rc, self.exit_seconds

    def kill9(self):
        self.proc.kill()
        self.proc.wait(5)
        self.rc = self.proc.returncode
        _live.discard(self.proc)
        self._record()

    def _record(self):
        """Put the daemon's stderr into the test's failure report."""
        if self._recorded:
            return
        self._recorded = True
        rc = self.rc if self.rc is not None else self.proc.returncode
        self.t.runs.append(BridgeResult(self.args + [f"({self.label})"], rc, "", self.log(),
                                        time.monotonic() - self.t0))

    # ------------------------------------------------------------ signals
    def signal(self, sig):
        self.check_alive(f"before {signal.Signals(sig).name} could be sent")
        self.proc.send_signal(sig)

    def poll_now(self):
        self.signal(signal.SIGUSR1)

    def reload(self):
        self.signal(signal.SIGHUP)

    # ------------------------------------------------------------ log
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def mark(self):
        """Where the log ends now: pass it as `since` to look at what is
        logged later only."""
        return len(self.log())

    def lines(self, since=0):
        return self.log()[since:].splitlines()

    def summaries(self, account, since=0):
        """[(new, imported, failed, deleted)] of every poll of `account`
        logged after `since` ("nothing new" counts as zeros)."""
        return [tuple(int(x or 0) for x in m.groups())
                for m in summary_re(account).finditer(self.log()[since:])]

    def check_alive(self, during):
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            if rc == EX_USAGE and "unknown command" in self.log():
                raise AssertionError(f"`popbridge daemon` is not implemented yet (exit {rc}: "
                                     f"{_last_line(self.log())!r}) ({during})")
            raise AssertionError(f"the daemon exited with status {rc} {during}; "
                                 f"its last line: {_last_line(self.log())!r}")

    def wait(self, cond, timeout, what, step=0.2):
        """Wait until cond() is true (returns its value) while the daemon
        keeps running; fail naming `what` if it dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            self.check_alive(f"while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s "
                                     f"(the daemon's last line: {_last_line(self.log())!r})")
            time.sleep(step)

    def wait_polls(self, account, n, timeout=10.0, since=0, what=None):
        """Wait for the n-th summary line of `account` after `since`;
        returns the summaries."""
        what = what or (f"the end of poll number {n} of account {account!r} "
                        f"('{account}: N new, N imported, ...') in the daemon's log")
        return self.wait(lambda: len(self.summaries(account, since)) >= n
                         and self.summaries(account, since), timeout, what)

    def wait_line(self, predicate, timeout, what, since=0):
        """Wait for a log line (after `since`) for which predicate(line) is
        true; returns it."""
        def find():
            for line in self.lines(since):
                if predicate(line):
                    return line
            return None
        return self.wait(find, timeout, what)


class Detached:
    """`popbridge -c CFG daemon` without -f, started in the test's folder:
    it forks, the command returns and the daemon lives on, detached, its
    log in syslog.  Found through its pid file; ready for signals once its
    state file exists (it is written by the loop, after the handlers are
    installed).  The `with` block stops it (SIGTERM, then SIGKILL)."""

    def __init__(self, t, cfg, state_dir, timeout=15.0):
        self.t = t
        self.pid = None
        r = t.bridge("-c", cfg, "daemon")
        assert r.rc == 0, f"popbridge daemon (detaching) exited {r.rc}: {r.stderr[-300:]!r}"
        pid_file = state_dir / "popbridge.pid"
        state = state_dir / "daemon.state"
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = pid_file.read_text().split()
                if text and state.exists():
                    self.pid = int(text[0])
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the detached daemon wrote no pid file and state file "
                                     f"within {timeout:g}s")
            time.sleep(0.05)
        _detached.add(self.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def signal(self, sig):
        assert self.alive(), f"the detached daemon (pid {self.pid}) is gone"
        os.kill(self.pid, sig)

    def wait(self, cond, timeout, what, step=0.2):
        """As Daemon.wait: cond() true while the daemon keeps running."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            assert self.alive(), f"the detached daemon exited while waiting for {what}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s")
            time.sleep(step)

    def stop(self, timeout=15.0):
        """SIGTERM, wait for the process to go, SIGKILL after timeout.
        True if it ended by SIGTERM."""
        if self.pid is None or not self.alive():
            return True
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            return False
        _detached.discard(self.pid)
        return True


_detached: set = set()


@atexit.register
def _kill_detached():
    for pid in list(_detached):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_mail(d, dc, user, n, timeout, what):
    """Wait until `user`'s maildir on `dc` holds at least n messages (the
    daemon `d` must stay alive meanwhile).  Counting the maildir files costs
    no IMAP login; the tests read the messages back over IMAP afterwards."""
    def enough():
        return dc.maildir_count(user) >= n
    try:
        d.wait(enough, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e} ({dc.maildir_count(user)} of {n} messages arrived)") from None


def wait_mid_import(d, dc, user, total, low=10, timeout=30.0):
    """Wait until `user`'s maildir holds at least `low` but fewer than
    `total` messages: the daemon is in the middle of an import.  Returns
    the count seen."""
    deadline = time.monotonic() + timeout
    while True:
        n = dc.maildir_count(user)
        if n >= total:
            raise AssertionError(f"the daemon imported all {total} messages before the test "
                                 f"could catch it in the middle (make the mailbox bigger)")
        if n >= low:
            return n
        d.check_alive("while waiting for the import to start")
        if time.monotonic() > deadline:
            raise AssertionError(f"the daemon did not start importing within {timeout:g}s "
                                 f"({n} of {total} messages arrived; its last line: "
                                 f"{_last_line(d.log())!r})")
        time.sleep(0.01)


def write_text_config(path, text):
    """Write a config file as given (mode 0600), e.g. a broken one."""
    return write_private(path, text)


# ------------------------------------------------------------------ status
STATUS_KEYS = {
    "name": (str,),
    "last_poll": (str, type(None)),
    "last_result": (str, type(None)),
    "last_error": (str, type(None)),
    "imported_last_run": (int,),
    "imported_total": (int,),
    "on_server": (int,),
    "waiting": (int,),
    "failed": (int,),
    "failures": (list,),
    "next_poll": (str, type(None)),
    "daemon": (bool,),
}
RESULTS = {"ok", "failed messages", "temporary failure", "authentication failure",
           "configuration error", None}


def status_json(t, cfg, *accounts, timeout=30):
    """`popbridge -c CFG status --json [ACCOUNT...]`: exit 0 and one JSON
    document on stdout of the specified shape.  Returns {name: account}."""
    r = t.bridge("-c", cfg, "status", "--json", *accounts, timeout=timeout)
    if r.rc == EX_USAGE and "unknown command" in r.stderr:
        raise AssertionError(f"`popbridge status` is not implemented yet (exit {r.rc})")
    try:
        doc = json.loads(r.stdout)
    except ValueError as e:
        raise AssertionError(f"status --json printed no valid JSON ({e}): "
                             f"{r.stdout[:200]!r}") from None
    assert isinstance(doc, dict) and isinstance(doc.get("accounts"), list), \
        'status --json: the document is not {"accounts": [...]}'
    # The exit status is the worst last poll's (0, 65, 75, 77, 78), so that
    # monitoring sees a failing account; an unreadable ledger is 75.
    rank = {None: 0, "ok": 0, "failed messages": 65, "temporary failure": 75,
            "authentication failure": 77, "configuration error": 78}
    order = [0, 65, 75, 77, 78]
    want = 0
    for a in doc["accounts"]:
        code = 75 if a.get("ledger_error") else rank.get(a.get("last_result"), 0)
        want = max(want, code, key=order.index)
    assert r.rc == want, f"status --json exited {r.rc}, expected {want} from the last results"
    out = {}
    for a in doc["accounts"]:
        assert isinstance(a, dict), f"status --json: an account entry is not an object: {a!r}"
        for key, types in STATUS_KEYS.items():
            assert key in a, f"status --json: account entry without {key!r}: {sorted(a)}"
            v = a[key]
            ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
            assert ok, (f"status --json: {a.get('name')}.{key} = {v!r}, expected "
                        + " or ".join("null" if ty is type(None) else ty.__name__ for ty in types))
        assert a["last_result"] in RESULTS, \
            f"status --json: {a['name']}.last_result = {a['last_result']!r}, not one of the specified"
        for k in ("last_poll", "next_poll"):
            if a[k] is not None:
                parse_time(a[k], f"{a['name']}.{k}")
        for f in a["failures"]:
            assert isinstance(f, dict) and isinstance(f.get("uidl"), str) \
                and isinstance(f.get("error"), str), \
                f"status --json: {a['name']}.failures entry is not {{uidl, error}}: {f!r}"
        assert a["name"] not in out, f"status --json lists {a['name']!r} twice"
        out[a["name"]] = a
    return out


def parse_time(s, what="time"):
    """'2026-11-25T21:52:43Z' (ISO 8601, UTC or with an offset) -> aware
    datetime."""
    try:
        d = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise AssertionError(f"status --json: {what} = {s!r} is not an ISO 8601 time") from None
    assert d.tzinfo is not None, f"status --json: {what} = {s!r} has no zone (expected ...Z)"
    return d


def utcnow():
    return _dt.datetime.now(_dt.timezone.utc)
