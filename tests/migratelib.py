"""Helpers for the `popbridge migrate` integration tests
(tests/integ/test_migrate.py).

Standard library only, built on tests/harness.py (which it does not change).

    m = Migration(t)                        # fresh POP3 and IMAP users
    m.deliver(raws)
    r = m.run("--delete", mailbox="Archive")
    m.ledger_files()                        # *.db under the test's XDG_STATE_HOME

Every run gets a private XDG_STATE_HOME and HOME under the test's temp dir,
the two passwords in the environment (unless told otherwise), no stdin and
a new session: with no controlling terminal popbridge can never stop to
ask for a password on the terminal of whoever runs the tests.
"""

from __future__ import annotations

import atexit
import base64
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import imapread
from harness import BridgeResult, popbridge_path

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_NOPERM = 77

PASSWORD_ENV = ("POPBRIDGE_POP3_PASSWORD", "POPBRIDGE_IMAP_PASSWORD")

_live: set = set()


def _kill_leftovers():
    for p in list(_live):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        except Exception:
            pass


atexit.register(_kill_leftovers)


def _text(b):
    if b is None:
        return ""
    return b.decode("utf-8", errors="replace") if isinstance(b, bytes) else b


# --------------------------------------------------------------- output parsing
SUMMARY_RE = re.compile(
    r"migrate: (\d+) to import, (\d+) imported, (\d+) failed, (\d+) deleted, "
    r"(.*?)\(([\d.]+) messages/s")
PROGRESS_RE = re.compile(r"migrate: (\d+)/(\d+) messages\b")
NOT_IMPORTED_RE = re.compile(r"migrate: not imported: .*?\(UIDL (\S+)\): (.*)$", re.M)
RESUME_RE = re.compile(r"run the same command again", re.I)


def summary(text):
    """(to_import, imported, failed, deleted) from the closing summary line
    `migrate: N to import, N imported, N failed, N deleted, ... (R messages/s ...)`."""
    found = SUMMARY_RE.findall(text)
    assert found, ("no closing summary on stderr ('migrate: N to import, N imported, "
                   "N failed, N deleted, ... (R messages/s')")
    return tuple(int(x) for x in found[-1][:4])


def not_imported(text):
    """{uidl: reason} from the closing report's `migrate: not imported:` lines."""
    return {u: why.strip() for u, why in NOT_IMPORTED_RE.findall(text)}


def password_forms(user, pw):
    """The password and the encodings a login could leak it in."""
    return [pw, base64.b64encode(pw.encode()).decode(),
            base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),
            base64.b64encode(f"{user}\0{user}\0{pw}".encode()).decode()]


def assert_no_secret(text, secrets, where):
    """None of `secrets` [(label, user, password)] appears in `text`."""
    for label, user, pw in secrets:
        leaked = [f for f in password_forms(user, pw) if f in text]
        assert not leaked, f"{where} shows the {label} ({leaked[0]!r})"


# --------------------------------------------------------------- IMAP read-back
def imap_mailboxes(dc, user):
    """Names of every mailbox of `user` (IMAP LIST "" "*")."""
    with imapread.session(dc.imap(user)) as c:
        return imapread.mailboxes(c)


def imap_count_or_none(dc, user, mailbox):
    """Messages in `mailbox`, or None when it does not exist."""
    with imapread.session(dc.imap(user)) as c:
        return imapread.count(c, mailbox)


# --------------------------------------------------------------- the migration
class Migration:
    """One POP3 user (source) and one IMAP user (target) on a private Dovecot,
    and `popbridge migrate` runs between them."""

    def __init__(self, t, dc=None, label="", **dovecot_opts):
        self.t = t
        self.dc = dc if dc is not None else t.dovecot(**dovecot_opts)
        self.src = t.user(self.dc, "s")
        self.dst = t.user(self.dc, "d")
        base = t.tmp / f"mig{label}"
        self.xdg = base / "xdg-state"
        self.home = base / "home"
        self.xdg.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.pop_pw = self.dc.users[self.src]
        self.imap_pw = self.dc.users[self.dst]
        self.pop3_port = None        # set to go through a relay (RateLimitRelay)

    # ------------------------------------------------------------ mail
    def deliver(self, raws):
        for raw in raws:
            self.dc.deliver(self.src, raw)

    # ------------------------------------------------------------ command line
    def pop3_url(self):
        if self.pop3_port is not None:
            return f"pop3s://{self.dc.host}:{self.pop3_port}"
        return self.dc.url("pop3", "tls")

    def imap_url(self, mailbox=None):
        """imaps://localhost:PORT[/MAILBOX]; `mailbox` is put in as given
        (so a test can pass it percent-encoded)."""
        u = self.dc.url("imap", "tls")
        return u if mailbox is None else f"{u}/{mailbox}"

    def args(self, *extra, mailbox=None, ca=True):
        a = ["migrate", self.pop3_url(), self.imap_url(mailbox),
             "--user-pop", self.src, "--user-imap", self.dst]
        if ca:
            a += ["--ca-file", self.dc.ca_file]
        return a + [str(x) for x in extra]

    def env(self, pop_pw=True, imap_pw=True, **more):
        """The environment additions: private XDG_STATE_HOME and HOME, and
        the passwords (True: the right one, None: unset, a str: that)."""
        e = {"XDG_STATE_HOME": str(self.xdg), "HOME": str(self.home)}
        for name, val, right in ((PASSWORD_ENV[0], pop_pw, self.pop_pw),
                                 (PASSWORD_ENV[1], imap_pw, self.imap_pw)):
            if val is True:
                e[name] = right
            elif val is not None:
                e[name] = val
        e.update(more)
        return e

    # ------------------------------------------------------------ runs
    def run(self, *extra, mailbox=None, env=None, args=None, timeout=240):
        """`popbridge migrate ...` to completion (BridgeResult, recorded for
        the failure report).  `env`: extra environment (default self.env())."""
        argv = args if args is not None else self.args(*extra, mailbox=mailbox)
        return run_bridge(self.t, argv, self.env() if env is None else env, timeout)

    def popen(self, *extra, mailbox=None, env=None, stderr_path=None):
        """Start `popbridge migrate ...` without waiting; stderr to a file.
        Returns a Running."""
        argv = self.args(*extra, mailbox=mailbox)
        return Running(self.t, argv, self.env() if env is None else env, stderr_path)

    # ------------------------------------------------------------ state
    def ledger_files(self):
        """Every SQLite ledger (*.db) under XDG_STATE_HOME."""
        return sorted(p for p in self.xdg.rglob("*.db"))

    def state_entries(self):
        return sorted(self.xdg.rglob("*"))

    def home_state_entries(self):
        """Anything written under HOME/.local/state (the fallback that must
        not be used while XDG_STATE_HOME is set)."""
        d = self.home / ".local" / "state"
        return sorted(d.rglob("*")) if d.exists() else []


def _clean_env(add):
    env = {k: v for k, v in os.environ.items()
           if k not in PASSWORD_ENV and k not in ("XDG_STATE_HOME",)}
    env.update({k: str(v) for k, v in add.items()})
    return env


def run_bridge(t, argv, env_add, timeout=240):
    """Run popbridge ARGV in a new session (no controlling terminal) with no
    stdin; record it in t.runs like TestContext.bridge."""
    exe = popbridge_path()
    if os.sep in exe and not os.access(exe, os.X_OK):
        raise AssertionError(f"popbridge binary not found at {exe} "
                             "(build it with `make`, or set POPBRIDGE)")
    cmd = [exe, *map(str, argv)]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, cwd=t.tmp, env=_clean_env(env_add),
                           start_new_session=True)
    except subprocess.TimeoutExpired as e:
        t.runs.append(BridgeResult(cmd, None, _text(e.stdout), _text(e.stderr),
                                   time.monotonic() - t0))
        raise AssertionError(f"popbridge {' '.join(map(str, argv))} did not finish "
                             f"within {timeout}s")
    res = BridgeResult(cmd, p.returncode, _text(p.stdout), _text(p.stderr),
                       time.monotonic() - t0)
    t.runs.append(res)
    return res


class Running:
    """A popbridge process started in its own session, stderr to a file."""

    def __init__(self, t, argv, env_add, stderr_path=None):
        self.t = t
        exe = popbridge_path()
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise AssertionError(f"popbridge binary not found at {exe}")
        self.cmd = [exe, *map(str, argv)]
        self.stderr_path = Path(stderr_path or t.tmp / f"running-{len(t.runs)}.stderr")
        self.t0 = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         cwd=t.tmp, env=_clean_env(env_add),
                                         start_new_session=True)
        _live.add(self.proc)
        self.rc = None
        self.recorded = False

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern, timeout):
        """Wait until stderr matches `pattern` (True) or the process ends or
        the time is up (False)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rx.search(self.stderr()):
                return True
            if self.proc.poll() is not None:
                return bool(rx.search(self.stderr()))
            time.sleep(0.02)
        return False

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """The exit status, or None if it is still running after `timeout` s
        (then it is killed)."""
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.rc = None
        _live.discard(self.proc)
        self.record()
        return self.rc

    def record(self):
        if not self.recorded:
            self.recorded = True
            self.t.runs.append(BridgeResult(self.cmd, self.rc, "", self.stderr(),
                                            time.monotonic() - self.t0))


class PtyRun:
    """The outcome of run_on_pty: exit code (None if it had to be killed),
    everything written to the terminal, when each scripted answer was
    written and when the process ended (time.monotonic())."""

    def __init__(self, code, out, fired, ended):
        self.code, self.out, self.fired, self.ended = code, out, fired, ended

    @property
    def text(self):
        return self.out.decode("utf-8", errors="replace")


def run_on_pty(t, argv, env_add, timeout=120, script=()):
    """Run popbridge ARGV with stdin, stdout and stderr on a new pseudo-
    terminal (its controlling terminal).  `script`: [(pattern, bytes)]:
    when the output so far matches the regex `pattern` (bytes), `bytes` is
    typed on the terminal, each step once and in order (b"\x03" is Ctrl-C:
    the terminal sends SIGINT).  Returns a PtyRun."""
    exe = popbridge_path()
    if os.sep in exe and not os.access(exe, os.X_OK):
        raise AssertionError(f"popbridge binary not found at {exe}")
    env = _clean_env(env_add)
    cmd = [exe, *map(str, argv)]
    steps = [(re.compile(p), data) for p, data in script]
    fired = []
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(t.tmp)
            os.execve(exe, cmd, env)
        finally:
            os._exit(127)
    out = b""
    deadline = t0 + timeout
    killed = False
    status = None
    while True:
        if time.monotonic() > deadline and not killed:
            os.kill(pid, signal.SIGKILL)
            killed = True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:          # EIO: no process has the terminal open
                chunk = b""
            if not chunk:
                break
            out += chunk
            while steps and steps[0][0].search(out):
                os.write(fd, steps.pop(0)[1])
                fired.append(time.monotonic())
        elif status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
    if status is None:
        _, status = os.waitpid(pid, 0)
    ended = time.monotonic()
    os.close(fd)
    code = None if killed else os.waitstatus_to_exitcode(status)
    t.runs.append(BridgeResult(cmd, code, "", _text(out), ended - t0))
    return PtyRun(code, out, fired, ended)
