"""What popbridge's log looks like where it goes (issue 13): a line on
stderr starts with the local time; under systemd (JOURNAL_STREAM names
stderr) each line starts with its priority for the journal instead, and
every level goes there, none to syslog; and the systemd timer shipped
beside the service runs `popbridge run` every 5 minutes with the
service's hardening, installed by `make install`.

A journal is not needed: what systemd does is give the process the
variable JOURNAL_STREAM=DEVICE:INODE of its stderr, which the test does
with a file of its own.
"""

import configparser
import datetime as dt
import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

from harness import REPO_ROOT, BridgeResult, free_ports, make_account, popbridge_path, \
    small_message

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) popbridge: ")
PRIO = re.compile(r"^<([0-7])>")


def dead_account(name):
    """An account whose POP3 server is a closed port: a warning."""
    (port,) = free_ports(1)
    return make_account(name,
                        {"url": f"pop3s://127.0.0.1:{port}", "user": f"{name}-user",
                         "password": "pw-log-dummy"},
                        {"url": f"imaps://127.0.0.1:{port}", "user": f"{name}-user",
                         "password": "pw-log-dummy", "mailbox": "INBOX"})


def run_to_file(t, args, journal=None, label="run"):
    """popbridge ARGS with stderr in a file; journal: True gives it
    JOURNAL_STREAM naming that file, a string gives that value.  Returns
    (exit status, stderr lines)."""
    path = t.tmp / f"{label}.stderr"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with open(path, "wb") as err:
        st = os.fstat(err.fileno())
        if journal is True:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal:
            env["JOURNAL_STREAM"] = journal
        t0 = time.monotonic()
        p = subprocess.run([popbridge_path(), *map(str, args)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=err, cwd=t.tmp, env=env,
                           timeout=120)
    text = path.read_text(errors="replace")
    t.runs.append(BridgeResult([popbridge_path(), *map(str, args), f"({label})"],
                               p.returncode, "", text, time.monotonic() - t0))
    return p.returncode, [line for line in text.splitlines() if line.strip()]


def setup(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, small_message(1, random.Random(31), t.name))
    return t.config([dc.account("home", src, dst), dead_account("down")]), dc, src


def test_stderr_lines_start_with_the_time(t):
    """Every line `run -v` writes to stderr starts with the local date and
    time ("2026-12-04 23:59:01 popbridge: ..."), within the run's span.
    Before the fix: "popbridge: home: 1 new, ..." said nothing of when."""
    cfg, _, _ = setup(t)
    before = dt.datetime.now().replace(microsecond=0)
    rc, lines = run_to_file(t, ["-c", cfg, "-v", "run"])
    after = dt.datetime.now()
    assert rc == 75, f"run with a dead account: exit {rc}, expected 75"
    assert any(re.search(r"home: 1 new, 1 imported", x) for x in lines), lines
    for line in lines:
        m = STAMP.match(line)
        assert m, f"a stderr line does not start with the date and time: {line!r}"
        when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        assert before <= when <= after, \
            f"{line!r}: the time is not the run's ({before} to {after:%H:%M:%S})"
    # A JOURNAL_STREAM that names another file (inherited, stderr
    # redirected since) changes nothing.
    rc, lines = run_to_file(t, ["-c", cfg, "-v", "run"], journal="1:1", label="other")
    assert lines and all(STAMP.match(x) for x in lines), lines[:3]


def test_journal_priorities(t):
    """With JOURNAL_STREAM naming its stderr, as systemd sets it, each line
    starts with its priority ("<4>" a warning, "<6>" the summary, "<7>"
    a message's line with -v) and no time or "popbridge: " (the journal
    has both); without -v the summary lines still reach stderr, which is
    the journal (under the timer, not a terminal).  Before the fix: no
    priority, and without -v the summaries went to syslog only."""
    cfg, dc, src = setup(t)
    rc, lines = run_to_file(t, ["-c", cfg, "run"], journal=True)
    assert rc == 75, f"exit {rc}"
    for line in lines:
        assert PRIO.match(line), f"a line without a priority prefix: {line!r}"
        assert not STAMP.search(line[3:]) and not line[3:].startswith("popbridge: "), line
    prio = {line[3:]: int(line[1]) for line in lines}
    summary = [p for text, p in prio.items() if text.startswith("home: 1 new, 1 imported")]
    assert summary == [6], f"the summary of 'home' as <6> (info), without -v: {lines}"
    warned = [p for text, p in prio.items() if text.startswith("down: ")]
    assert warned and min(warned) == 4, f"the dead account's failure as <4>: {lines}"

    dc.deliver(src, small_message(2, random.Random(32), t.name))
    rc, lines = run_to_file(t, ["-c", cfg, "-v", "run"], journal=True, label="verbose")
    assert all(PRIO.match(x) for x in lines), lines[:3]
    assert any(x.startswith("<7>") for x in lines), f"-v: no debug line as <7>: {lines}"


def _unit(path):
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read_string(Path(path).read_text())
    return cp


def test_timer_units_shipped_and_installed(t):
    """config/popbridge.timer starts config/popbridge-run.service every 5
    minutes; that service runs `popbridge run` with every hardening line
    of popbridge.service; `make install` puts both beside the others.
    Before the fix: there was no timer, only cron or the daemon."""
    conf = REPO_ROOT / "config"
    timer, run, daemon = (conf / n for n in ("popbridge.timer", "popbridge-run.service",
                                             "popbridge.service"))
    assert timer.is_file() and run.is_file(), "config/popbridge.timer or popbridge-run.service missing"
    tu, ru, du = _unit(timer), _unit(run), _unit(daemon)
    assert tu.get("Timer", "Unit", fallback="popbridge-run.service") == "popbridge-run.service"
    assert tu.get("Install", "WantedBy") == "timers.target"
    cal = tu.get("Timer", "OnCalendar", fallback=None)
    assert cal is not None, "the timer has no OnCalendar"
    if shutil.which("systemd-analyze"):
        p = subprocess.run(["systemd-analyze", "calendar", "--iterations=3", cal],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"systemd-analyze calendar {cal!r}: {p.stderr}"
        nexts = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+)", p.stdout)
        times = [dt.datetime.strptime(x, "%Y-%m-%d %H:%M:%S") for x in nexts]
        gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:])}
        assert gaps == {300.0}, f"OnCalendar={cal} fires every {gaps} s, not every 300"
    else:
        t.note("no systemd-analyze: OnCalendar not evaluated")
    assert ru.get("Service", "Type") == "oneshot"
    exe = ru.get("Service", "ExecStart")
    assert re.search(r"/popbridge\b.* run$", exe), f"ExecStart={exe}"
    skip = {"Type", "ExecStart", "ExecReload", "Restart", "RestartSec", "TimeoutStopSec"}
    for key, value in du.items("Service"):
        if key in skip:
            continue
        assert ru.get("Service", key, fallback=None) == value, \
            f"popbridge-run.service lacks {key}={value} of popbridge.service"

    root = t.tmp / "root"
    p = subprocess.run(["make", "-o", "all", "-o", "bridge/popbridge", "install",
                        f"DESTDIR={root}", "PREFIX=/usr"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"make install: {p.stdout[-300:]} {p.stderr[-300:]}"
    share = root / "usr/share/popbridge"
    for name in ("popbridge.service", "popbridge.timer", "popbridge-run.service"):
        assert (share / name).is_file(), f"make install did not install {name} in {share}"
