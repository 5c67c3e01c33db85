#!/usr/bin/python3
"""Where popbridge's time goes on the mixed corpus: loopback, 20 ms and
100 ms round trips (the same private Dovecot, corpus and relay as
bench/bench.py, whose BENCH_* knobs it reads).

    sudo python3 bench/profile.py [NET ...]     # NET: loopback delay far gmail

For each network, two runs of `popbridge run` into a fresh user:

1. Under `perf record` with uprobes on the private copy of the binary
   (it is built with -g): every wait in conn_wait (the one poll() of
   popbridge's I/O: which connection, POLLIN or POLLOUT, how long), every
   ledger commit (ledger_commit, with the fsync/fdatasync syscalls in it),
   the batch functions, the logins (conn_open, pop3_open,
   imap_open, imap_select) and transfer_all.  From those: the run's wall
   time split into waiting for POP3 data, waiting for IMAP replies,
   waiting for the IMAP server to take data, ledger commits, and the rest
   (popbridge on the CPU, or runnable and waiting for one), before, during
   and after the transfer; the batches, and how the link looked (the
   relay's record, as in bench.py).
2. Under `perf record -F 4999` (CPU samples of popbridge alone): the share
   of its CPU time per library and the top functions.

Prints a report, and writes it as markdown to $BENCH_PROFILE_OUT (default
bench/PROFILE.local.md).  Needs root (perf, uprobes, the private Dovecot).
The probes are removed at the end.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench  # noqa: E402
import corpus  # noqa: E402

PERF = "/usr/bin/perf"
GROUP = "pbprof"        # the probe group: perf names it after the binary
PROBES = [
    "conn_wait sock=c->sock events proto=c->proto:string",
    "conn_wait%return",
    "ledger_commit", "ledger_commit%return",
    "transfer_all", "transfer_all%return",
    "request_batch", "request_batch%return",
    "finish_batch", "finish_batch%return",
    "imap_append_send", "imap_append_send%return",
    "imap_append_recv", "imap_append_recv%return",
    "conn_open", "conn_open%return",
    "pop3_open", "pop3_open%return",
    "imap_open", "imap_open%return",
    "imap_select", "imap_select%return",
    "main",
]
SYSCALLS = ["syscalls:sys_enter_fdatasync", "syscalls:sys_exit_fdatasync",
            "syscalls:sys_enter_fsync", "syscalls:sys_exit_fsync",
            "syscalls:sys_enter_exit_group"]
POLLIN, POLLOUT = 1, 4


def log(msg):
    print(f"profile: {msg}", flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class Profiler:
    def __init__(self, b: bench.Bench):
        self.b = b
        self.exe = b.work / GROUP
        shutil.copy2(b.exe, self.exe)
        sh([PERF, "probe", "-q", "-d", f"probe_{GROUP}:*"])
        for p in PROBES:
            r = sh([PERF, "probe", "-q", "-x", str(self.exe), "-a", p])
            if r.returncode != 0:
                raise SystemExit(f"profile: perf probe {p!r}: {r.stderr.strip()}")
        self.events = [e.split()[0] for e in
                       sh([PERF, "probe", "-l"]).stdout.splitlines() if f"probe_{GROUP}:" in e]
        log(f"{len(self.events)} uprobes on {self.exe}")

    def close(self):
        sh([PERF, "probe", "-q", "-d", f"probe_{GROUP}:*"])

    def conf(self, c, net):
        dst = self.b.fresh_user("prof")
        run, cfg = self.b.popbridge_conf(c["src"], dst, net)
        return dst, run, cfg

    # ------------------------------------------------------------- timeline
    def traced(self, c, net):
        dst, run, cfg = self.conf(c, net)
        data = run / "perf.data"
        mark, t_wall = self.b.stats_mark(), time.monotonic()
        cmd = [PERF, "record", "-q", "-o", str(data), "-e", f"probe_{GROUP}:*"]
        for e in SYSCALLS:
            cmd += ["-e", e]
        cmd += ["--", bench.GNU_TIME, "-f", "%e %U %S %M", "-o", str(run / "time"),
                str(self.exe), "-c", str(cfg), "run"]
        p = sh(cmd, cwd=run, timeout=bench.RUN_TIMEOUT)
        if p.returncode != 0:
            raise bench.Broken(f"perf record / popbridge: {p.returncode}: {p.stderr[-600:]}")
        self.b.verify(dst, c["count"], c["bytes"])
        link = self.b.link_stats(mark, t_wall) if net != "loopback" else None
        wall, user, sys_, rss = (run / "time").read_text().split()[-4:]
        script = sh([PERF, "script", "-i", str(data), "-F", "tid,time,event,trace"]).stdout
        self.b.drop_user(dst)
        shutil.rmtree(run, ignore_errors=True)
        res = self.analyse(script)
        res.update({"wall_time": float(wall), "cpu": float(user) + float(sys_),
                    "user": float(user), "sys": float(sys_), "rss": int(rss), "link": link})
        return res

    LINE = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")

    def analyse(self, text):
        """The run's time from the probes: waits by connection and kind,
        commits, syncs, batches, phases."""
        evs = []
        for line in text.splitlines():
            m = self.LINE.match(line)
            if m:
                tid, t, ev, rest = m.groups()
                if "/time" in rest:
                    continue
                evs.append((float(t), ev.split(":", 1)[1].rstrip(":"), rest))
        # GNU time is traced too (exit_group): keep popbridge's only, which
        # is the thread that hit `main`.
        start = next((t for t, ev, _ in evs if ev == "main"), None)
        if start is None:
            raise bench.Broken("profile: no `main` probe hit (perf script empty?)")
        end = max(t for t, ev, _ in evs if ev in ("sys_enter_exit_group",) and t >= start) \
            if any(ev == "sys_enter_exit_group" for _, ev, _ in evs) else evs[-1][0]
        wall = end - start
        waits = collections.defaultdict(lambda: [0.0, 0])      # (phase, proto, kind) -> [s, n]
        spans = collections.defaultdict(list)                  # fn -> [durations]
        opened = {}
        phase = "setup"
        wait_open = None
        sync_open = None
        syncs = [0.0, 0]
        phases = {"setup": [start, None], "transfer": [None, None], "end": [None, end]}
        timeline = []
        for t, ev, rest in evs:
            if t < start:
                continue
            if ev == "conn_wait":
                m = re.search(r'events=(\d+).*proto="([^"]*)"', rest)
                wait_open = (t, int(m.group(1)), m.group(2)) if m else (t, 0, "?")
            elif ev == "conn_wait__return" and wait_open:
                t0, events, proto = wait_open
                kind = "in" if events & POLLIN else "out"
                w = waits[(phase, proto, kind)]
                w[0] += t - t0
                w[1] += 1
                if t - t0 > 0.001:
                    timeline.append((t0 - start, t - t0, f"{proto} {kind}"))
                wait_open = None
            elif ev in ("sys_enter_fdatasync", "sys_enter_fsync"):
                sync_open = t
            elif ev in ("sys_exit_fdatasync", "sys_exit_fsync") and sync_open is not None:
                syncs[0] += t - sync_open
                syncs[1] += 1
                sync_open = None
            elif ev.endswith("__return"):
                fn = ev[:-len("__return")]
                if fn in opened:
                    t0 = opened.pop(fn)
                    spans[(phase, fn)].append(t - t0)
                    if fn in ("ledger_commit", "finish_batch", "imap_append_recv"):
                        timeline.append((t0 - start, t - t0, fn))
                if fn == "transfer_all":
                    phase = "end"
                    phases["transfer"][1] = t
                    phases["end"][0] = t
            else:
                opened[ev] = t
                if ev == "transfer_all":
                    phase = "transfer"
                    phases["setup"][1] = t
                    phases["transfer"][0] = t
        for k in phases:
            a, b = phases[k]
            phases[k] = (b - a) if a is not None and b is not None else 0.0
        return {"wall": wall, "waits": dict(waits), "spans": dict(spans), "syncs": syncs,
                "phases": phases, "timeline": timeline}

    # ------------------------------------------------------------- CPU
    def cpu_profile(self, c, net):
        dst, run, cfg = self.conf(c, net)
        data = run / "perf.cpu"
        p = sh([PERF, "record", "-q", "-F", "4999", "-o", str(data), "--",
                str(self.exe), "-c", str(cfg), "run"], cwd=run, timeout=bench.RUN_TIMEOUT)
        if p.returncode != 0:
            raise bench.Broken(f"perf record -F: {p.returncode}: {p.stderr[-600:]}")
        self.b.verify(dst, c["count"], c["bytes"])
        dsos = self.report(data, "dso")
        syms = self.report(data, "dso,sym")
        self.b.drop_user(dst)
        shutil.rmtree(run, ignore_errors=True)
        return {"dso": dsos[:8], "sym": syms[:15]}

    @staticmethod
    def report(data, keys):
        out = sh([PERF, "report", "-i", str(data), "--stdio", "--no-children", "-q",
                  "--sort", keys, "--percent-limit", "0.5"]).stdout
        rows = []
        for line in out.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
            if m:
                rows.append((float(m.group(1)), " ".join(m.group(2).split())))
        return rows


def fmt_breakdown(net, r, rtt):
    """Lines (markdown bullets) for one traced run."""
    w = r["waits"]
    wall = r["wall"]

    def get(phase, proto, kind):
        return w.get((phase, proto, kind), [0.0, 0])

    def pct(x):
        return f"{x:.2f} s ({x / wall * 100:.0f}%)"
    L = []
    sp = r["spans"]
    commits = sp.get(("transfer", "ledger_commit"), []) + sp.get(("setup", "ledger_commit"), []) \
        + sp.get(("end", "ledger_commit"), [])
    batches = len(sp.get(("transfer", "request_batch"), []))
    waited = sum(v[0] for v in w.values())
    commit_s = sum(commits)
    rest = wall - waited - commit_s
    L.append(f"wall {wall:.2f} s (GNU time {r['wall_time']:.2f} s), popbridge CPU "
             f"{r['cpu']:.2f} s (user {r['user']:.2f}, system {r['sys']:.2f}), peak RSS "
             f"{r['rss'] / 1024:.1f} MiB; round trip {rtt}")
    L.append(f"phases: setup (connect, TLS, logins, STAT/UIDL/LIST, SELECT, ledger) "
             f"{pct(r['phases']['setup'])}, transfer {pct(r['phases']['transfer'])}, "
             f"end (QUIT, LOGOUT, last commit) {pct(r['phases']['end'])}")
    for phase in ("setup", "transfer", "end"):
        parts = []
        for proto in ("pop3", "imap"):
            for kind, what in (("in", "waiting for data"), ("out", "waiting to send")):
                s, n = get(phase, proto, kind)
                if n:
                    parts.append(f"{proto.upper()} {what} {s:.2f} s ({n} waits)")
        if parts:
            L.append(f"{phase}: " + "; ".join(parts))
    L.append(f"ledger commits: {len(commits)}, {pct(commit_s)} in all (of which "
             f"fsync/fdatasync {r['syncs'][0]:.2f} s in {r['syncs'][1]} calls); batches: "
             f"{batches}; finish_batch (reading a batch's replies, recording them) "
             f"{sum(sp.get(('transfer', 'finish_batch'), [])):.2f} s, of which waiting for "
             f"IMAP replies {get('transfer', 'imap', 'in')[0]:.2f} s")
    tr = r["phases"]["transfer"]
    tr_wait = sum(v[0] for (ph, _, _), v in w.items() if ph == "transfer")
    tr_commit = sum(sp.get(("transfer", "ledger_commit"), []))
    L.append(f"in the transfer ({tr:.2f} s): waits {tr_wait:.2f} s "
             f"({tr_wait / tr * 100 if tr else 0:.0f}%), ledger commits {tr_commit:.2f} s "
             f"({tr_commit / tr * 100 if tr else 0:.0f}%), the rest (popbridge on the CPU, "
             f"or runnable and waiting for one) {tr - tr_wait - tr_commit:.2f} s "
             f"({(tr - tr_wait - tr_commit) / tr * 100 if tr else 0:.0f}%)")
    L.append(f"whole run: waits {pct(waited)}, commits {pct(commit_s)}, the rest {pct(rest)} "
             "(in the setup the rest includes the TCP and TLS handshakes, which wait inside "
             "libcurl)")
    logins = {fn: sum(sum(v) for (ph, f), v in sp.items() if f == fn)
              for fn in ("conn_open", "pop3_open", "imap_open", "imap_select")}
    L.append("setup calls: " + ", ".join(f"{fn} {s:.3f} s" for fn, s in logins.items()))
    big = sorted(r["timeline"], key=lambda x: -x[1])[:8]
    L.append("longest waits: " + ", ".join(f"{what} {d * 1000:.0f} ms at {t:.2f} s"
                                           for t, d, what in big))
    return L


def main():
    if os.geteuid() != 0:
        raise SystemExit("profile: needs root")
    nets = sys.argv[1:] or ["loopback", "delay", "far"]
    os.environ.setdefault("BENCH_QUIET_WAIT", "30")
    b = bench.Bench()
    out = []
    prof = None
    try:
        b.setup()
        prof = Profiler(b)
        seed = b.s["BENCH_SEED"]
        c = b.make_corpus("mixed", corpus.mixed_messages(seed, b.s["BENCH_MIXED"]), 0)
        rtts = {"loopback": "-", **{k: f"{v:.1f} ms" for k, v in b.rtt_ms.items()}}
        out += ["# Where popbridge's time goes (bench/profile.py)", "",
                f"popbridge {b.commit}; mixed corpus, {c['count']} messages, "
                f"{c['bytes'] / 1e6:.1f} MB; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                f"load average at the start {b.loadavg_start}.", ""]
        for net in nets:
            b.wait_quiet(f"profile/{net}")
            load = bench.Load()
            r = prof.traced(c, net)
            busy, others = load.done()
            lines = fmt_breakdown(net, r, rtts.get(net, "?"))
            lines.append(f"machine busy {busy:.0f}% (others {others:.0f}%)")
            if r["link"]:
                lines.append("relay: " + b.link_text(net, r["link"]))
            b.wait_quiet(f"profile/{net}/cpu")
            cp = prof.cpu_profile(c, net)
            lines.append("CPU samples by library: " + ", ".join(f"{n} {p:.0f}%"
                                                                 for p, n in cp["dso"]))
            lines.append("top functions: " + ", ".join(f"{n} {p:.1f}%" for p, n in cp["sym"]))
            title = f"## {b.net_label(net)}"
            out += [title, ""] + [f"- {x}" for x in lines] + [""]
            print(title)
            for x in lines:
                print("  " + x)
    finally:
        if prof:
            prof.close()
        b.teardown()
    path = os.environ.get("BENCH_PROFILE_OUT") or str(BENCH_DIR / "PROFILE.local.md")
    Path(path).write_text("\n".join(out) + "\n")
    log(f"written to {path}")


if __name__ == "__main__":
    main()
