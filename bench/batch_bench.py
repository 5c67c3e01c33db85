#!/usr/bin/python3
"""The batch scenario of `make bench` (issue 5): BENCH_BATCH_ACCOUNTS
accounts (default 1,000) of BENCH_BATCH_MESSAGES small messages (default
10) imported by one `popbridge batch --jobs 16 --per-host 16` against the
private Dovecot on 127.0.0.1.

Reports accounts per minute and messages per second, and the peak memory
and file descriptors of the batch process itself (its worker children
come and go: their count at the peak is shown too), sampled from /proc.
Every message is checked in IMAP afterwards; a broken import fails the
benchmark.  Appends its table to bench/RESULTS.md (default settings) or
bench/RESULTS.local.md.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402

ACCOUNTS = int(os.environ.get("BENCH_BATCH_ACCOUNTS", "1000"))
MESSAGES = int(os.environ.get("BENCH_BATCH_MESSAGES", "10"))
JOBS = int(os.environ.get("BENCH_BATCH_JOBS", "16"))
DEFAULTS = ACCOUNTS == 1000 and MESSAGES == 10 and JOBS == 16


def proc_sample(pid):
    """(VmRSS KiB, open fds, children) of pid, or None once it is gone."""
    try:
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        kids = 0
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[1] == str(pid):
                            kids += 1
                except OSError:
                    pass
        return rss, fds, kids
    except OSError:
        return None


def main():
    exe = Path(tempfile.mkdtemp(prefix="popbridge-bbench-")) / "popbridge"
    shutil.copy(ROOT / "bridge" / "popbridge", exe)
    dc = harness.Dovecot()
    dc.start()
    work = Path(tempfile.mkdtemp(prefix="popbridge-bbench-work-"))
    try:
        print(f"batch bench: {ACCOUNTS} accounts x {MESSAGES} messages, --jobs {JOBS}")
        rows = ["pop3_url,pop3_user,pop3_password,imap_url,imap_user,imap_password,mailbox,keep"]
        t = time.monotonic()
        for a in range(ACCOUNTS):
            src, dst = f"bs{a}", f"bd{a}"
            dc.add_user(src, "pw-s")
            dc.add_user(dst, "pw-d")
            for i in range(MESSAGES):
                dc.deliver(src, (f"From: a{a}@example.org\r\nSubject: m{i}\r\n"
                                 f"Message-ID: <{a}.{i}@bench>\r\n\r\n"
                                 + "body line\r\n" * 30).encode())
            rows.append(f"{dc.url('pop3')},{src},env:BB_PW_S,{dc.url('imap')},{dst},"
                        f"env:BB_PW_D,INBOX,true")
        print(f"  set-up {time.monotonic() - t:.0f} s")
        csv = work / "accounts.csv"
        csv.write_text("\n".join(rows) + "\n")
        env = dict(os.environ, BB_PW_S="pw-s", BB_PW_D="pw-d")
        cmd = [str(exe), "batch", str(csv), "--secrets-env-prefix", "BB_PW_",
               "--jobs", str(JOBS), "--per-host", str(JOBS),
               "--ca-file", dc.ca_file, "--state-dir", str(work / "state"),
               "--report", str(work / "report.csv")]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                             stderr=open(work / "batch.log", "w"))
        peak = (0, 0, 0)
        fds_max = 0
        while p.poll() is None:
            s = proc_sample(p.pid)
            if s:
                if s[0] > peak[0]:
                    peak = s
                fds_max = max(fds_max, s[1])
            time.sleep(0.2)
        secs = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"batch exited {p.returncode}; see {work / 'batch.log'}")
        got = sum(dc.imap_count(f"bd{a}") for a in range(0, ACCOUNTS, max(1, ACCOUNTS // 50)))
        want = MESSAGES * len(range(0, ACCOUNTS, max(1, ACCOUNTS // 50)))
        if got != want:
            sys.exit(f"checked accounts hold {got} messages, expected {want}")
        apm = ACCOUNTS / secs * 60
        table = (f"\n## Batch (issue 5)\n\n"
                 f"`popbridge batch` of {ACCOUNTS} accounts x {MESSAGES} messages, "
                 f"`--jobs {JOBS} --per-host {JOBS}`, all on the one private Dovecot; "
                 f"one account in {max(1, ACCOUNTS // 50)} checked over IMAP. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
                 f"| accounts | messages | seconds | accounts/min | msg/s | batch process peak RSS MiB | its open fds, max | workers at the peak |\n"
                 f"|---:|---:|---:|---:|---:|---:|---:|---:|\n"
                 f"| {ACCOUNTS} | {ACCOUNTS * MESSAGES} | {secs:.1f} | {apm:.0f} | "
                 f"{ACCOUNTS * MESSAGES / secs:.0f} | {peak[0] / 1024:.1f} | {fds_max} | {peak[2]} |\n")
        print(table)
        out = HERE / ("RESULTS.md" if DEFAULTS else "RESULTS.local.md")
        with open(out, "a") as f:
            f.write(table)
    finally:
        dc.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(exe.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
