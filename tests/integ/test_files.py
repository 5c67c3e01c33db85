"""Files as a careful root daemon opens them (issue 12, points 1 to 3):
popbridge never writes through a link planted where it keeps state, keeps
state only in a folder nobody else can write to, and leaves no core dump
with the passwords in it.

Refusals of an unsafe folder or file exit 77 (EX_NOPERM), as for a
password file others can read, and say the fix.  The account of every
config here points at a closed port on 127.0.0.1: what is tested happens
before any connection (the ledger is opened first), so no server is
started.  A "root-only file" is a file the test owns, written with a
known text: that it is unchanged is what is checked.
"""

import hashlib
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

from daemonlib import Daemon
from harness import (BridgeResult, default_signal_actions, free_ports, make_account,
                     popbridge_path, write_config)

EX_NOPERM = 77
PRECIOUS = "root-only: must never change\n"
NOBODY = 65534
SETTLE = 30        # s: at most, for what the test waits on (exit, a file)


# ------------------------------------------------------------------ helpers
def closed_account(name="files", password="pw-files-dummy"):
    """An account whose servers are a closed port on 127.0.0.1."""
    port = free_ports(1)[0]
    return make_account(
        name,
        {"url": f"pop3s://127.0.0.1:{port}", "user": f"{name}-user", "password": password},
        {"url": f"imaps://127.0.0.1:{port}", "user": f"{name}-user", "password": password,
         "mailbox": "INBOX"})


def config(t, state, extra="", name="popbridge.conf", account=None):
    return write_config(t.tmp / name, [account or closed_account()], state,
                        "interval = 3600;\n" + extra)


def ledger_name(account):
    """The ledger's file name, as ledger_path() makes it."""
    ident = f"{account['pop3']['user']}@127.0.0.1"
    safe = re.sub(r"[^A-Za-z0-9@.\-_]", "_", ident)[:100]
    return f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}.db"


def precious(path):
    Path(path).write_text(PRECIOUS)
    os.chmod(path, 0o600)
    return Path(path)


def unchanged(path):
    return Path(path).read_text() == PRECIOUS


def wait_for(cond, what, timeout=SETTLE):
    """Wait until cond() is true (its value); the timeout is only a safety
    net against a hang."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def state_files(d):
    return sorted(p.name for p in Path(d).iterdir()) if Path(d).is_dir() else []


def assert_refused(r, what, *words):
    assert r.rc == EX_NOPERM, f"{what}: exit {r.rc}, want {EX_NOPERM} (refused)"
    for w in words:
        assert w in r.stderr, f"{what}: the message does not say {w!r}: {r.stderr.strip()[:300]!r}"


def daemon_refused(t, cfg, what, *words, label="daemon", harm=None):
    """`daemon -f` must exit 77 at once with these words.  harm = (cond,
    text): cond() true means it did what it must not; the wait is on that
    or the exit, never on a time."""
    cond, text = harm or (lambda: False, "")
    with Daemon(t, cfg, label=label) as d:
        wait_for(lambda: not d.alive() or cond(), f"{what}: the daemon's exit")
        assert not cond(), f"{what}: the daemon {text}"
        assert not d.alive(), f"{what}: the daemon runs (it was not refused)"
        rc, log = d.proc.returncode, d.log()
    assert rc == EX_NOPERM, f"{what}: the daemon exited {rc}, want {EX_NOPERM}: {log[-300:]!r}"
    for w in words:
        assert w in log, f"{what}: the daemon's message does not say {w!r}: {log[-300:]!r}"


# ------------------------------------------------------------------ 1. pid file
def test_pid_file_link_refused(t):
    """popbridge.pid replaced by a symbolic link (or a hard link) to a file
    the daemon's user cannot write: the daemon refuses to start and the
    file is unchanged.  Before the fix: the daemon opened the pid file
    through the link, truncated the target and wrote its pid into it (as
    root: any file of the system)."""
    for kind in ("symbolic link", "hard link"):
        state = t.tmp / f"state-{kind[0]}"
        state.mkdir(mode=0o700)
        cfg = config(t, state, name=f"{kind[0]}.conf")
        target = precious(t.tmp / f"root-only-{kind[0]}")
        pid_file = state / "popbridge.pid"
        (os.symlink if kind == "symbolic link" else os.link)(target, pid_file)
        daemon_refused(t, cfg, f"pid file a {kind}", str(pid_file), kind,
                       label=f"daemon-{kind[0]}",
                       harm=(lambda: not unchanged(target), "wrote into the link's target"))
        assert unchanged(target), f"the daemon wrote through a {kind} at its pid file"
        if kind == "symbolic link":
            assert pid_file.is_symlink(), "the link at the pid file was replaced"


# ------------------------------------------------------------------ 2. folders
def test_state_dir_writable_by_others_refused(t):
    """A state_dir others (or the group) can write to: `run` and the daemon
    refuse it, say "chmod 700 DIR", and make no ledger; the same for the
    pid file's folder; as root, a state_dir of another user.  Before the
    fix: it was used without a word (the ledger made, the daemon
    started)."""
    for mode, who in ((0o777, "everyone"), (0o770, "its group")):
        state = t.tmp / f"state-{mode:o}"
        state.mkdir()
        os.chmod(state, mode)
        cfg = config(t, state, name=f"{mode:o}.conf")
        r = t.bridge("-c", cfg, "run")
        assert_refused(r, f"run, state_dir mode {mode:o}", f"chmod 700 {state}", who)
        assert state_files(state) == [], f"run made {state_files(state)} in a {mode:o} state_dir"
        daemon_refused(t, cfg, f"daemon, state_dir mode {mode:o}", f"chmod 700 {state}",
                       label=f"daemon-{mode:o}",
                       harm=(lambda: state_files(state), "made files in it"))
        assert state_files(state) == [], \
            f"the daemon made {state_files(state)} in a {mode:o} state_dir"

    state = t.tmp / "state-ok"
    state.mkdir(mode=0o700)
    piddir = t.tmp / "run-777"
    piddir.mkdir()
    os.chmod(piddir, 0o777)
    pid_file = piddir / "popbridge.pid"
    cfg = config(t, state, f'pid_file = "{pid_file}";\n', name="piddir.conf")
    daemon_refused(t, cfg, "pid file in a 0777 folder", f"chmod 700 {os.path.realpath(piddir)}",
                   label="daemon-piddir",
                   harm=(pid_file.exists, "made its pid file there"))
    assert not pid_file.exists(), "the daemon made its pid file in a 0777 folder"

    if os.geteuid() == 0:
        other = t.tmp / "state-nobody"
        other.mkdir(mode=0o700)
        os.chown(other, NOBODY, NOBODY)
        cfg = config(t, other, name="nobody.conf")
        r = t.bridge("-c", cfg, "run")
        assert_refused(r, "root's run in a state_dir of another user", f"chown root {other}")
        assert state_files(other) == [], f"root's run made {state_files(other)} in nobody's folder"
    else:
        t.note("not root: a state_dir of another user not tried")


def test_state_dir_link_refused(t):
    """state_dir a symbolic link to a good folder: refused by `run` and the
    daemon, nothing made behind the link.  Before the fix: followed (the
    ledger made in the folder it points to)."""
    real = t.tmp / "real-state"
    real.mkdir(mode=0o700)
    state = t.tmp / "state"
    os.symlink(real, state)
    cfg = config(t, state)
    r = t.bridge("-c", cfg, "run")
    assert_refused(r, "run, state_dir a link", str(state), "symbolic link")
    assert state_files(real) == [], f"run made {state_files(real)} behind the link"
    daemon_refused(t, cfg, "daemon, state_dir a link", "symbolic link",
                   harm=(lambda: state_files(real), "made files behind the link"))
    assert state_files(real) == [], f"the daemon made {state_files(real)} behind the link"


# ------------------------------------------------------------------ state files
def test_state_file_temp_link_not_followed(t):
    """A link planted at daemon.state.tmp (the temporary name the state file
    was written under): the daemon's state file is written, the link's
    target is unchanged.  Before the fix: the daemon opened
    daemon.state.tmp with fopen("w"), truncated the target, wrote the
    schedule into it, then renamed the link over daemon.state."""
    state = t.tmp / "state"
    state.mkdir(mode=0o700)
    acct = closed_account("tmplink")
    cfg = config(t, state, account=acct)
    target = precious(t.tmp / "root-only")
    os.symlink(target, state / "daemon.state.tmp")
    path = state / "daemon.state"
    with Daemon(t, cfg) as d:
        d.wait(lambda: os.path.lexists(path) or not unchanged(target), SETTLE,
               "the daemon's state file")
        d.wait_polls("tmplink", 1, SETTLE)
        d.poll_now()
        d.wait_polls("tmplink", 2, SETTLE)
        assert unchanged(target), "the daemon wrote its state through a planted link"
        assert not path.is_symlink() and path.is_file(), "daemon.state is not a regular file"
        assert "tmplink\t" in path.read_text(), "daemon.state does not list the account"
    assert unchanged(target), "the daemon wrote its state through a planted link"


def test_ledger_links_refused(t):
    """The ledger file, or its lock file, a symbolic link to a file of
    someone else: `run` refuses (77, naming the file) and the target is
    unchanged.  Before the fix: SQLite opened the ledger through the link
    (the target became a ledger), and the lock was taken through the link
    (the run went on and made the ledger)."""
    for which in ("ledger", "lock"):
        state = t.tmp / f"state-{which}"
        state.mkdir(mode=0o700)
        acct = closed_account(f"l{which}")
        cfg = config(t, state, name=f"{which}.conf", account=acct)
        db = state / ledger_name(acct)
        planted = db if which == "ledger" else Path(f"{db}.lock")
        target = t.tmp / f"root-only-{which}"
        if which == "ledger":
            target.write_bytes(b"")          # an empty file SQLite would fill
        else:
            precious(target)
        before = target.read_bytes()
        os.symlink(target, planted)
        r = t.bridge("-c", cfg, "run")
        assert_refused(r, f"run, the {which} file a link", str(planted), "symbolic link")
        assert target.read_bytes() == before, f"run wrote through a link at the {which} file"
        assert planted.is_symlink(), f"the link at the {which} file was replaced"
        if which == "lock":
            assert not db.exists(), "run made the ledger although its lock file is a link"


# ------------------------------------------------------------------ 3. core dumps
def _core_pattern():
    try:
        return Path("/proc/sys/kernel/core_pattern").read_text().strip()
    except OSError:
        return ""


def _core_limit(pid):
    """The soft limit on core files of process pid, as /proc says it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4]
    raise AssertionError(f"no core file size in /proc/{pid}/limits")


def _uid(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])       # the effective uid
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def _cores_allowed():
    """For preexec_fn: core files as big as the hard limit allows."""
    default_signal_actions()
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


def _start(t, args, cwd, log, preexec):
    with open(log, "wb") as err:
        return subprocess.Popen([popbridge_path(), *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, cwd=cwd,
                                preexec_fn=preexec)


def _stop(t, p, args, log, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(SETTLE)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    t.runs.append(BridgeResult(["popbridge", *map(str, args)], p.returncode, "",
                               Path(log).read_text(errors="replace"), 0))
    return p.returncode


def _assert_not_dumpable(pid, what):
    """A process that is not dumpable has its /proc/PID files owned by
    root, whoever runs it; so this shows only for a process not run by
    root."""
    uid = _uid(pid)
    owner = os.stat(f"/proc/{pid}/status").st_uid
    assert uid == 0 or owner == 0, (f"{what} (uid {uid}) is dumpable: its /proc files belong "
                                    f"to uid {owner}, not root (PR_SET_DUMPABLE 0 not in force)")
    return uid != 0


def test_no_core_dump(t):
    """`daemon -f` with a password in the config, started with core files
    allowed (ulimit -c unlimited), then SIGQUIT: no core file, and none
    with the password, the plain one or the config's escaped spelling;
    while it ran, /proc showed a core limit of 0 and the process not
    dumpable.  As root the daemon is started as nobody, so that
    "dumpable" shows in the owner of its /proc files.  Before the fix:
    a 2 MB core in the daemon's folder held both spellings of the
    password, the core limit was unlimited and /proc/PID/status belonged
    to the daemon's user."""
    pw = 'Pw-core"Zq8-' + os.urandom(6).hex()
    spellings = [pw.encode(), pw.replace('"', '\\"').encode()]
    work = t.tmp / "work"
    work.mkdir(mode=0o700)
    cfg = config(t, work / "state", account=closed_account("core", password=pw))
    cfg = Path(cfg).rename(work / "popbridge.conf")
    as_root = os.geteuid() == 0
    if as_root:
        for p in (work, cfg):
            os.chown(p, NOBODY, NOBODY)

    def preexec():
        _cores_allowed()
        if as_root:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

    args = ["-c", cfg, "-v", "daemon", "-f"]
    log = t.tmp / "core-daemon.stderr"
    p = _start(t, args, work, log, preexec)
    wrong = []          # what /proc showed while it ran, said after the core
    try:
        wait_for(lambda: "daemon started" in log.read_text(errors="replace")
                 or p.poll() is not None, "the daemon's start")
        assert p.poll() is None, f"the daemon exited {p.returncode} at its start"
        if _core_limit(p.pid) != "0":
            wrong.append(f"the daemon's core file size limit was {_core_limit(p.pid)}, not 0")
        try:
            if not _assert_not_dumpable(p.pid, "the daemon"):
                t.note("the daemon ran as root: its dumpable flag not seen")
        except AssertionError as e:
            wrong.append(str(e))
        before = set(os.listdir(work))
    finally:
        rc = _stop(t, p, args, log, signal.SIGQUIT)
    assert rc == -signal.SIGQUIT, f"the daemon ended with {rc}, not by SIGQUIT"

    pattern = _core_pattern()
    if pattern.startswith("|") or not pattern:
        t.note(f"core_pattern {pattern!r}: cores go to a program; the limit and the dumpable "
               f"flag were checked, not a core file")
    else:
        where = work if "/" not in pattern else Path(pattern).parent
        new = sorted(set(os.listdir(where)) - before) if where == work else sorted(
            n for n in os.listdir(where) if str(p.pid) in n)
        for name in new:
            data = (Path(where) / name).read_bytes()
            held = [s.decode() for s in spellings if s in data]
            assert not held, (f"SIGQUIT left {where}/{name} ({len(data)} bytes) with the "
                              f"password in it as {held}; " + "; ".join(wrong))
        prefix = Path(pattern).name.split("%")[0] or "core"
        cores = [n for n in new if n.startswith(prefix)]
        assert not cores, f"SIGQUIT left a core file: {cores} in {where}; " + "; ".join(wrong)
    assert not wrong, "; ".join(wrong)


def test_no_core_dump_after_dropping_root(t):
    """Root's daemon with user = "nobody": after it drops root, its core
    limit is still 0 and it is still not dumpable (a change of uid sets
    "dumpable" to fs.suid_dumpable, which may be 1).  Root only.  Before
    the fix: the core limit was what the daemon was started with
    (unlimited here)."""
    if os.geteuid() != 0:
        t.note("not root: nothing to drop")
        return
    state = t.tmp / "state"
    state.mkdir(mode=0o700)
    cfg = config(t, state, 'user = "nobody";\n', account=closed_account("drop"))
    args = ["-c", cfg, "-v", "daemon", "-f"]
    log = t.tmp / "drop-daemon.stderr"
    p = _start(t, args, t.tmp, log, _cores_allowed)
    try:
        wait_for(lambda: "daemon started" in log.read_text(errors="replace")
                 or p.poll() is not None, "the daemon's start")
        assert p.poll() is None, f"the daemon exited {p.returncode} at its start"
        assert _uid(p.pid) == NOBODY, f"the daemon runs as uid {_uid(p.pid)}, not nobody"
        assert _core_limit(p.pid) == "0", \
            f"after dropping root the daemon's core limit is {_core_limit(p.pid)}, not 0"
        _assert_not_dumpable(p.pid, "the daemon after dropping root")
    finally:
        rc = _stop(t, p, args, log)
    assert rc == 0, f"the daemon exited {rc} on SIGTERM"
