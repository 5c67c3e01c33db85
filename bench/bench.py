#!/usr/bin/python3
"""popbridge benchmark driver (`make bench` runs it through bench/run.sh).

Starts a private Dovecot on 127.0.0.1 (tests/harness.py), generates the
corpora (bench/corpus.py), and measures, side by side in one run:

  popbridge   `popbridge -c CONF run`, keep = true, a fresh IMAP user and a
              fresh state_dir each time
  minimal     bench/minimal.py: every RETR and every LITERAL+ APPEND
              pipelined, no batches, everything in memory (issue 15's
              yardstick)
  naive       bench/naive.py: poplib + imaplib, one command at a time
  mpop        mpop over pop3s delivering through dovecot-lda
  fetchmail   fetchmail over pop3s delivering through dovecot-lda
  ceiling     bench/ceiling.py: the corpus MULTIAPPENDed through one IMAP
              connection, no POP3 side (the server's own ceiling)

on loopback and through bench/delayproxy.py (a delay added in each
direction: 20 ms and 100 ms round trips, and a Gmail-like server without
LITERAL+ or MULTIAPPEND at 20 ms); then popbridge's peak RSS on a large mailbox and on one large
message, the cost of the first-contact adoption scan on a large destination
mailbox (nothing to adopt, everything to adopt, the runs after), and a soak
of `popbridge daemon -f` polled by SIGUSR1.

It prints a table and the ratios the issue asks for, and writes the same as
markdown to bench/RESULTS.md (default settings) or bench/RESULTS.local.md
(any BENCH_* knob changed).  It is a benchmark, not a test: it exits 0
unless something broke (a client failed, or a mailbox does not hold what was
imported: a benchmark of a broken import is worthless).

Knobs (environment): see bench/README.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import corpus  # noqa: E402

PY = "/usr/bin/python3"
LDA = "/usr/lib/dovecot/dovecot-lda"
GNU_TIME = "/usr/bin/time"
RUN_TIMEOUT = 1800

DEFAULTS = {
    "BENCH_SMALL": 2000,          # messages in the small corpus (about 4 KB each)
    "BENCH_MIXED": 1000,          # messages in the mixed corpus (about 220 MB at 1000)
    "BENCH_SLOW_CAP": 200,        # naive and fetchmail at the delay: first N messages
    "BENCH_DELAY_MS": 10,         # delay added in each direction by the proxy
    "BENCH_FAR_DELAY_MS": 50,     # the same for the far network (100 ms round trip)
    "BENCH_REPEAT": 3,            # popbridge and ceiling runs per cell (median taken)
    "BENCH_MEM_COUNT": 10000,     # messages in the memory test's mailbox
    "BENCH_BIG_MB": 100,          # size of the memory test's single message (MiB)
    "BENCH_POLLS": 2000,          # daemon soak: polls triggered by SIGUSR1
    "BENCH_DELIVER_EVERY": 50,    # daemon soak: a new message before every Nth poll
    "BENCH_SAMPLE_EVERY": 100,    # daemon soak: RSS and fds sampled every N polls
    "BENCH_CEIL_BATCH": 64,       # ceiling: messages per MULTIAPPEND
    "BENCH_ADOPT_COUNT": 10000,   # adoption: messages already in the destination
    "BENCH_ADOPT_NEW": 10,        # adoption, nothing to adopt: new POP3 messages
    "BENCH_ADOPT_DELAYED": 500,   # adoption at +BENCH_DELAY_MS: messages adopted (0: skip)
    "BENCH_SEED": 1,
    "BENCH_QUIET_WAIT": 60,       # wait up to N s before each run for other work to calm down
}
PARTS = ("small", "mixed", "distance", "memory", "adopt", "soak")
CLIENTS = ("popbridge", "minimal", "naive", "mpop", "fetchmail", "ceiling")
# BENCH_ONLY=distance without naming clients: issue 15's table, no fetchmail.
DISTANCE_CLIENTS = ("popbridge", "minimal", "naive", "mpop", "ceiling")
# Networks: straight to Dovecot; through the delay proxy at BENCH_DELAY_MS
# and at BENCH_FAR_DELAY_MS each way; and at BENCH_DELAY_MS through the
# relay that rewrites IMAP's capabilities to LITERAL- without MULTIAPPEND.
NETS = ("loopback", "delay", "far", "gmail")
MPOP = "/usr/bin/mpop"


def setting(name):
    v = os.environ.get(name)
    return DEFAULTS[name] if v in (None, "") else int(v)


def log(msg):
    print(f"bench: {msg}", flush=True)


class Broken(Exception):
    """Something that makes a measurement worthless."""


def fmt_rate(x):
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


# ----------------------------------------------------------------- processes
def _stat_ticks(pid):
    """(ppid, utime + stime + cutime + cstime) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def tree_ticks(root=None):
    """CPU ticks used by this process and all its descendants (the private
    Dovecot, the proxy, the clients); children that have exited count in
    their parent's cutime/cstime once reaped."""
    root = root or os.getpid()
    procs = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                procs[int(p)] = _stat_ticks(p)
            except (OSError, ValueError, IndexError):
                pass
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
        todo.extend(kids.get(pid, ()))
    return total


def machine_ticks():
    """(busy, total) ticks of the whole machine (/proc/stat), in the same
    unit as tree_ticks (USER_HZ)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:8]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class Load:
    """How busy the machine was over an interval, and how much of that was
    not the benchmark's doing (other users of a shared machine)."""

    def __init__(self):
        self.m0, self.t0 = machine_ticks(), tree_ticks()

    def done(self):
        m1, t1 = machine_ticks(), tree_ticks()
        span = max(1, m1[1] - self.m0[1])
        busy = (m1[0] - self.m0[0]) / span * 100
        others = max(0.0, (m1[0] - self.m0[0]) - (t1 - self.t0)) / span * 100
        return busy, others


def timed(cmd, env=None, cwd=None, timeout=RUN_TIMEOUT):
    """Run cmd under GNU time.  Returns a dict: rc, out, err, seconds, rss
    (peak KiB: the largest of the process and the children it waited for;
    for fetchmail, fetchmail or one dovecot-lda), cpu (user + system s of
    the client), busy and others (% of the machine's CPU over the run: all,
    and not the benchmark's)."""
    tf = tempfile.NamedTemporaryFile("r", suffix=".time", delete=False)
    tf.close()
    full = [GNU_TIME, "-o", tf.name, "-f", "%M %U %S", *map(str, cmd)]
    load = Load()
    t0 = time.monotonic()
    try:
        p = subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True,
                           env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.unlink(tf.name)
        raise Broken(f"{Path(str(cmd[0])).name} did not finish within {timeout} s")
    secs = time.monotonic() - t0
    busy, others = load.done()
    text = Path(tf.name).read_text().strip().splitlines()
    os.unlink(tf.name)
    rss = cpu = None
    if text:
        parts = text[-1].split()
        try:
            rss = int(parts[0])
            cpu = float(parts[1]) + float(parts[2])
        except (ValueError, IndexError):
            pass
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if rss is None and p.returncode == 0:
        raise Broken(f"no GNU time figures for {Path(str(cmd[0])).name}: {text}")
    return {"rc": p.returncode, "out": out, "err": err, "seconds": secs, "rss": rss,
            "cpu": cpu, "busy": busy, "others": others}


# ----------------------------------------------------------------- the bench
class Bench:
    def __init__(self):
        self.s = {k: setting(k) for k in DEFAULTS}
        only = os.environ.get("BENCH_ONLY", "").strip()
        self.parts = [p for p in only.split(",") if p] if only else list(PARTS)
        for p in self.parts:
            if p not in PARTS:
                raise SystemExit(f"bench: BENCH_ONLY: unknown part {p!r} (known: {', '.join(PARTS)})")
        clients = os.environ.get("BENCH_CLIENTS", "").strip()
        if clients:
            self.clients = [c for c in clients.split(",") if c]
        elif "distance" in self.parts and not {"small", "mixed"} & set(self.parts):
            self.clients = list(DISTANCE_CLIENTS)
        else:
            self.clients = list(CLIENTS)
        for c in self.clients:
            if c not in CLIENTS:
                raise SystemExit(f"bench: BENCH_CLIENTS: unknown client {c!r}")
        self.mpop_note = None
        if "mpop" in self.clients and not os.access(MPOP, os.X_OK):
            # bench/run.sh installs it (Debian 12 has mpop 1.4.18).
            self.mpop_note = f"mpop is not installed ({MPOP} missing): its rows are left out"
            self.clients.remove("mpop")
        self.default_settings = (not only and not clients and all(
            os.environ.get(k) in (None, "", str(v)) for k, v in DEFAULTS.items()))
        parent = os.environ.get("BENCH_TMP") or None
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="popbridge-bench-", dir=parent))
        os.chmod(self.work, 0o755)
        self.rows: list[dict] = []
        self.failures: list[str] = []
        self.memory: list[dict] = []
        self.soak: dict | None = None
        self.adopt: dict | None = None
        self.seq = 0
        self.noisy = 0
        self.dc = None
        self.proxy = None
        self.rtt_ms = {}
        self.corpus_counts = {}
        self.stats_path = None
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self.t0 = time.monotonic()
        self.load_all = Load()
        self.loadavg_start = Path("/proc/loadavg").read_text().split()[0]

    # ------------------------------------------------------------- setup
    def setup(self):
        # BENCH_POPBRIDGE: another build to measure (e.g. one made in a git
        # worktree of another commit); its checkout names the commit.
        src = Path(os.environ.get("BENCH_POPBRIDGE") or REPO / "bridge" / "popbridge").resolve()
        if not os.access(src, os.X_OK):
            raise SystemExit(f"bench: {src} is not built (run `make`)")
        # Others may rebuild bridge/popbridge while we run: use a private copy.
        self.exe = self.work / "popbridge"
        shutil.copy2(src, self.exe)
        tree = src.parent.parent
        self.commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "bridge"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            self.commit += " (bridge/ has uncommitted changes)"
        log(f"work folder {self.work}; popbridge copied from {src} ({self.commit})")
        self.dc = harness.Dovecot(tmp=str(self.work)).start()
        log(f"private Dovecot on 127.0.0.1: imaps {self.dc.imaps_port}, "
            f"pop3s {self.dc.pop3s_port}")
        # One relay process for every network (one run at a time uses it):
        # delay and far relay pop3s and imaps; gmail relays IMAP only (its
        # POP3 side is delay's), ending TLS itself to rewrite capabilities.
        d, far = self.s["BENCH_DELAY_MS"], self.s["BENCH_FAR_DELAY_MS"]
        p = harness.free_ports(5)
        self.proxy_ports = {("delay", "pop3"): p[0], ("delay", "imap"): p[1],
                            ("far", "pop3"): p[2], ("far", "imap"): p[3],
                            ("gmail", "pop3"): p[0], ("gmail", "imap"): p[4]}
        self.port_net = {p[0]: ("delay", "pop3"), p[1]: ("delay", "imap"),
                         p[2]: ("far", "pop3"), p[3]: ("far", "imap"),
                         p[4]: ("gmail", "imap")}
        self.stats_path = self.work / "relay-stats.jsonl"
        self.proxy = subprocess.Popen(
            [PY, str(BENCH_DIR / "delayproxy.py"), "--delay-ms", str(d),
             "--stats", str(self.stats_path),
             "--tls-cert", str(self.dc.cert_file), "--tls-key", str(self.dc.key_file),
             f"{p[0]}:{self.dc.pop3s_port}", f"{p[1]}:{self.dc.imaps_port}",
             f"{p[2]}:{self.dc.pop3s_port}:{far}", f"{p[3]}:{self.dc.imaps_port}:{far}",
             f"{p[4]}:{self.dc.imap_port}:{d}:rewrite"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=open(self.work / "relay.log", "wb"))
        line = self.proxy.stdout.readline().decode().strip()
        if line != "ready":
            raise SystemExit(f"bench: the delay proxy did not start: {line}")
        log(f"delay proxy: +{d} ms each way (pop3s {p[0]}, imaps {p[1]}), +{far} ms each way "
            f"(pop3s {p[2]}, imaps {p[3]}), Gmail-like IMAP at +{d} ms (imaps {p[4]})")
        self.dc.add_user("probe", "probe-pw")
        for net in ("delay", "far", "gmail"):
            self.check_proxy(net)

    def check_proxy(self, net):
        """Measure the round trip through the proxy (a NOOP over IMAP), and
        for the Gmail-like relay check what it says it can do."""
        import imaplib
        c = imaplib.IMAP4_SSL("localhost", self.proxy_ports[(net, "imap")],
                              ssl_context=self.dc.ssl_context(), timeout=30)
        c.login("probe", "probe-pw")
        typ, data = c.capability()          # after the login: the full list
        caps = set((data[0] or b"").decode().upper().split()) if typ == "OK" else set()
        t = time.monotonic()
        for _ in range(10):
            c.noop()
        self.rtt_ms[net] = (time.monotonic() - t) / 10 * 1000
        c.logout()
        log(f"round trip through the proxy ({net}): {self.rtt_ms[net]:.1f} ms")
        if net == "gmail":
            if "LITERAL+" in caps or "MULTIAPPEND" in caps or "LITERAL-" not in caps:
                raise SystemExit(f"bench: the Gmail-like relay offers {sorted(caps)}")
            log("Gmail-like relay: capabilities after login: " + " ".join(sorted(caps)))

    def net_label(self, net):
        return {"loopback": "loopback",
                "delay": f"+{self.s['BENCH_DELAY_MS']} ms",
                "far": f"+{self.s['BENCH_FAR_DELAY_MS']} ms",
                "gmail": f"+{self.s['BENCH_DELAY_MS']} ms, Gmail-like"}[net]

    # ------------------------------------------------------------- relay stats
    def stats_mark(self):
        try:
            return self.stats_path.stat().st_size
        except (OSError, AttributeError):
            return 0

    def link_stats(self, since, t0):
        """What the relay saw of the connections opened after monotonic
        time t0 (its stats file from byte `since`), summed per protocol:
        {"imap": {...}, "pop3": {...}}, each with the "up" (client to
        server) and "down" flows: bytes, span (first to last arrival),
        idle (gaps over 2 ms), gaps and gap_time by length, sessions."""
        # The relay writes a line when a connection opens and another,
        # with the same id, once both its directions have ended (a delay or
        # two after the client exits): wait for every one opened since t0.
        deadline = time.monotonic() + 5
        while True:
            opened, recs = set(), []
            try:
                with open(self.stats_path, "rb") as f:
                    f.seek(since)
                    for line in f.read().decode().splitlines():
                        rec = json.loads(line)
                        if rec["opened"] < t0 - 0.01:
                            continue
                        if "closed" in rec:
                            recs.append(rec)
                        else:
                            opened.add(rec["id"])
            except OSError:
                pass
            if opened <= {r["id"] for r in recs} or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        out = {}
        for rec in recs:
            _, proto = self.port_net.get(rec["listen"], (None, "?"))
            agg = out.setdefault(proto, {"sessions": 0})
            agg["sessions"] += 1
            for way in ("up", "down"):
                fl = rec[way]
                a = agg.setdefault(way, {"bytes": 0, "first": None, "last": None, "gaps": []})
                a["bytes"] += fl["bytes"]
                if fl["first"] is not None:
                    a["first"] = fl["first"] if a["first"] is None else min(a["first"], fl["first"])
                    a["last"] = fl["last"] if a["last"] is None else max(a["last"], fl["last"])
                    a["gaps"] += [(fl["first"] + st, ln) for st, ln in fl["gaps"]]
        for agg in out.values():
            for a in (agg.get("up"), agg.get("down")):
                if a:
                    a["span"] = (a["last"] - a["first"]) if a["first"] is not None else 0.0
        return out

    def stalls(self, net, a):
        """(seconds, count) of the times flow `a`'s link sat empty (over
        2 ms), and (seconds, count) of those that lasted a one-way delay
        or longer (the sender waited for the far side, or was held up as
        long)."""
        one_way = (self.s["BENCH_FAR_DELAY_MS"] if net == "far" else self.s["BENCH_DELAY_MS"])
        big = [ln for _, ln in a["gaps"] if ln >= one_way / 1000]
        return sum(ln for _, ln in a["gaps"]), len(a["gaps"]), sum(big), len(big)

    def teardown(self):
        if self.proxy and self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                self.proxy.wait(5)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait(5)
        if self.dc:
            self.dc.stop()
        if os.environ.get("BENCH_KEEP_TMP"):
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------- helpers
    def endpoint(self, proto, net):
        if net == "loopback":
            port = self.dc.pop3s_port if proto == "pop3" else self.dc.imaps_port
        else:
            port = self.proxy_ports[(net, proto)]
        return "localhost", port

    def fresh_user(self, prefix):
        self.seq += 1
        name = f"{prefix}{self.seq}"
        self.dc.add_user(name, "pw-" + os.urandom(6).hex())
        return name

    def drop_user(self, user):
        """Free the disk space of a destination mailbox once it is checked."""
        shutil.rmtree(self.dc.maildir(user), ignore_errors=True)
        shutil.rmtree(self.dc.home_dir / user, ignore_errors=True)

    def imap_sizes(self, user):
        """RFC822.SIZE of every message in user's INBOX, in UID order."""
        c = self.dc.imap(user, timeout=300)
        try:
            typ, data = c.select("INBOX", readonly=True)
            if typ != "OK":
                raise Broken(f"SELECT INBOX of {user}: {typ} {data}")
            if int(data[0] or 0) == 0:
                return []
            typ, data = c.uid("FETCH", "1:*", "(RFC822.SIZE)")
            if typ != "OK":
                raise Broken(f"FETCH of {user}: {typ} {data}")
            out = []
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                m = re.search(rb"RFC822\.SIZE (\d+)", line or b"")
                if m:
                    out.append(int(m.group(1)))
            return out
        finally:
            try:
                c.logout()
            except Exception:
                pass

    def verify(self, user, count, nbytes, exact=True):
        """The IMAP mailbox holds `count` messages (of `nbytes` in total when
        exact: fetchmail adds a Received header, so only the count is
        checked for it)."""
        sizes = self.imap_sizes(user)
        if len(sizes) != count:
            raise Broken(f"IMAP mailbox {user} holds {len(sizes)} messages, expected {count}")
        if exact and sum(sizes) != nbytes:
            raise Broken(f"IMAP mailbox {user} holds {sum(sizes)} bytes, expected {nbytes}")
        if not exact and sum(sizes) < nbytes:
            raise Broken(f"IMAP mailbox {user} holds {sum(sizes)} bytes, less than the "
                         f"{nbytes} imported")

    # ------------------------------------------------------------- corpora
    def make_corpus(self, name, messages, subset):
        """Deliver the messages into a POP3 user (and the first `subset` into a
        second user), write the CRLF copies and manifest for the ceiling
        client.  Returns a dict describing the corpus."""
        t = time.monotonic()
        cdir = self.work / f"corpus-{name}"
        cdir.mkdir()
        full = f"{name}src"
        self.dc.add_user(full, f"pw-{name}-src")
        sub = None
        if subset:
            sub = f"{name}sub"
            self.dc.add_user(sub, f"pw-{name}-sub")
        sizes = []
        with open(cdir / "manifest.tsv", "w") as man:
            for i, raw in enumerate(messages):
                stored = corpus.crlf(raw)
                fn = f"{i:06d}.eml"
                (cdir / fn).write_bytes(stored)
                man.write(f"{fn}\t{len(stored)}\t{corpus.imap_date(raw)}\n")
                sizes.append(len(stored))
                self.dc.deliver(full, raw)
                if sub and i < subset:
                    self.dc.deliver(sub, raw)
        self.corpus_counts[name] = len(sizes)
        c = {"name": name, "dir": cdir, "src": full, "sub": sub, "count": len(sizes),
             "bytes": sum(sizes), "sizes": sizes,
             "sub_count": min(subset, len(sizes)) if sub else 0,
             "sub_bytes": sum(sizes[:subset]) if sub else 0}
        self.warm(full, sizes)
        if sub:
            self.warm(sub, sizes[:subset])
        log(f"corpus {name}: {c['count']} messages, {c['bytes'] / 1e6:.1f} MB, "
            f"largest {max(sizes) / 1e6:.1f} MB"
            + (f"; first {c['sub_count']}: {c['sub_bytes'] / 1e6:.1f} MB" if sub else "")
            + f" ({time.monotonic() - t:.0f} s)")
        return c

    def warm(self, user, sizes):
        """Read the POP3 mailbox once: Dovecot indexes it and caches the sizes,
        and marks every message seen, so that the first measured client does
        not pay for that.  Checks the mailbox serves exactly the corpus."""
        p = self.dc.pop3(user, timeout=300)
        try:
            n, _ = p.stat()
            if n != len(sizes):
                raise Broken(f"POP3 {user}: {n} messages, corpus has {len(sizes)}")
            listed = [int(x.split()[1]) for x in p.list()[1]]
            if listed != sizes:
                raise Broken(f"POP3 {user}: LIST sizes differ from the corpus")
            p.uidl()
            for i in range(1, n + 1):
                p.retr(i)
        finally:
            p.quit()

    # ------------------------------------------------------------- clients
    def popbridge_conf(self, src, dst, net, extra=""):
        run = self.work / f"pb{self.seq}-{dst}"
        run.mkdir()
        state = run / "state"
        state.mkdir()
        ph, pp = self.endpoint("pop3", net)
        ih, ip = self.endpoint("imap", net)
        acct = self.dc.account("bench", src, dst, keep=True,
                               pop3_extra={"url": f"pop3s://{ph}:{pp}"},
                               imap_extra={"url": f"imaps://{ih}:{ip}"})
        return run, harness.write_config(run / "popbridge.conf", [acct], state, extra)

    def run_popbridge(self, src, count, nbytes, net, again=False):
        """One `popbridge run` into a fresh user; with again, a second run
        with the same ledger (nothing new: one poll of a kept mailbox) is
        timed as well, as r["again"]."""
        dst = self.fresh_user("pbdst")
        run, cfg = self.popbridge_conf(src, dst, net)
        r = timed([self.exe, "-c", cfg, "run"], cwd=run)
        if r["rc"] != 0:
            raise Broken(f"popbridge run exited {r['rc']}: {(r['out'] + r['err']).strip()[-800:]}")
        self.verify(dst, count, nbytes)
        if again:
            r2 = timed([self.exe, "-c", cfg, "run"], cwd=run)
            if r2["rc"] != 0:
                raise Broken(f"second popbridge run exited {r2['rc']}: "
                             f"{(r2['out'] + r2['err']).strip()[-800:]}")
            self.verify(dst, count, nbytes)
            r["again"] = r2
        self.drop_user(dst)
        shutil.rmtree(run, ignore_errors=True)
        return r

    def run_naive(self, src, count, nbytes, net):
        dst = self.fresh_user("nvdst")
        ph, pp = self.endpoint("pop3", net)
        ih, ip = self.endpoint("imap", net)
        env = {**os.environ, "NAIVE_POP3_PASSWORD": self.dc.users[src],
               "NAIVE_IMAP_PASSWORD": self.dc.users[dst]}
        r = timed(
            [PY, BENCH_DIR / "naive.py", "--pop3", f"{ph}:{pp}", "--pop3-user", src,
             "--imap", f"{ih}:{ip}", "--imap-user", dst, "--ca-file", self.dc.ca_file],
            env=env)
        if r["rc"] != 0:
            raise Broken(f"naive.py exited {r['rc']}: {(r['out'] + r['err']).strip()[-800:]}")
        res = json.loads(r["out"].strip().splitlines()[-1])
        if res["messages"] != count:
            raise Broken(f"naive.py copied {res['messages']} messages, expected {count}")
        self.verify(dst, count, nbytes)
        self.drop_user(dst)
        return r

    def run_minimal(self, src, count, nbytes, net, limit=0):
        dst = self.fresh_user("mndst")
        ph, pp = self.endpoint("pop3", net)
        ih, ip = self.endpoint("imap", net)
        env = {**os.environ, "MINIMAL_POP3_PASSWORD": self.dc.users[src],
               "MINIMAL_IMAP_PASSWORD": self.dc.users[dst]}
        r = timed(
            [PY, BENCH_DIR / "minimal.py", "--pop3", f"{ph}:{pp}", "--pop3-user", src,
             "--imap", f"{ih}:{ip}", "--imap-user", dst, "--ca-file", self.dc.ca_file,
             "--limit", limit], env=env)
        if r["rc"] != 0:
            raise Broken(f"minimal.py exited {r['rc']}: {(r['out'] + r['err']).strip()[-800:]}")
        res = json.loads(r["out"].strip().splitlines()[-1])
        if res["messages"] != count or res["bytes"] != nbytes:
            raise Broken(f"minimal.py copied {res['messages']} messages of {res['bytes']} "
                         f"bytes, expected {count} of {nbytes}")
        want = "sync" if net == "gmail" else "literal+"
        if res["mode"] != want:
            raise Broken(f"minimal.py used {res['mode']} literals, expected {want}")
        r["note"] = ("synchronising literals (one round trip a message)" if want == "sync"
                     else "")
        self.verify(dst, count, nbytes)
        self.drop_user(dst)
        return r

    def run_mpop(self, src, count, nbytes, net):
        """mpop over pop3s delivering each message through dovecot-lda, like
        fetchmail: keep on, only_new off (everything, every run), no Received
        header (so the import can be checked byte for byte)."""
        dst = self.fresh_user("mpdst")
        d = self.work / f"mp{self.seq}"
        d.mkdir()
        ph, pp = self.endpoint("pop3", net)
        rc_file = d / "mpoprc"
        rc_file.write_text(
            "defaults\n"
            "account bench\n"
            f"host {ph}\nport {pp}\ntimeout 300\n"
            "tls on\ntls_starttls off\n"
            f"tls_trust_file {self.dc.ca_file}\n"
            f"user {src}\npassword {self.dc.users[src]}\nauth user\n"
            "keep on\nonly_new off\nreceived_header off\npipelining auto\n"
            f"uidls_file {d / 'uidls'}\n"
            f"delivery mda {LDA} -c {self.dc.conf_path} -d {dst}\n")
        os.chmod(rc_file, 0o600)
        env = {**os.environ, "HOME": str(d)}
        r = timed([MPOP, "-C", rc_file, "--half-quiet", "bench"], env=env, cwd=d)
        if r["rc"] != 0:
            raise Broken(f"mpop exited {r['rc']}: {(r['out'] + r['err']).strip()[-800:]}")
        self.verify(dst, count, nbytes)
        self.drop_user(dst)
        shutil.rmtree(d, ignore_errors=True)
        return r

    def run_fetchmail(self, src, count, nbytes, net):
        dst = self.fresh_user("fmdst")
        d = self.work / f"fm{self.seq}"
        d.mkdir()
        ph, pp = self.endpoint("pop3", net)
        rc_file = d / "fetchmailrc"
        rc_file.write_text(
            "set no syslog\n"
            f"poll {ph} port {pp} proto pop3 timeout 300\n"
            f'  user "{src}" there with password "{self.dc.users[src]}" is "root" here\n'
            f'  ssl sslcertck sslcertfile "{self.dc.ca_file}"\n'
            "  keep fetchall\n"
            f'  mda "{LDA} -c {self.dc.conf_path} -d {dst}"\n')
        os.chmod(rc_file, 0o600)
        env = {**os.environ, "FETCHMAILHOME": str(d), "HOME": str(d)}
        r = timed(
            ["fetchmail", "--nodetach", "--nosyslog", "--silent", "-f", rc_file,
             "-i", d / "fetchids", "--pidfile", d / "fetchmail.pid"], env=env, cwd=d)
        # 0: mail was retrieved.
        if r["rc"] != 0:
            raise Broken(f"fetchmail exited {r['rc']}: {(r['out'] + r['err']).strip()[-800:]}")
        self.verify(dst, count, nbytes, exact=False)
        self.drop_user(dst)
        shutil.rmtree(d, ignore_errors=True)
        return r

    def run_ceiling(self, cdir, count, nbytes, net, mode="multiappend"):
        dst = self.fresh_user("cedst")
        ih, ip = self.endpoint("imap", net)
        env = {**os.environ, "CEILING_IMAP_PASSWORD": self.dc.users[dst]}
        r = timed(
            [PY, BENCH_DIR / "ceiling.py", "--imap", f"{ih}:{ip}", "--user", dst,
             "--ca-file", self.dc.ca_file, "--corpus", cdir, "--mode", mode,
             "--batch", self.s["BENCH_CEIL_BATCH"], "--limit", count], env=env)
        if r["rc"] != 0:
            raise Broken(f"ceiling.py exited {r['rc']}: {(r['out'] + r['err']).strip()[-800:]}")
        res = json.loads(r["out"].strip().splitlines()[-1])
        if res["mode"] != mode:
            r["note"] = f"server lacks {mode}: {res['mode']}"
        self.verify(dst, count, nbytes)
        self.drop_user(dst)
        return r

    # ------------------------------------------------------------- measuring
    def wait_quiet(self, label):
        """On a shared machine, wait (at most BENCH_QUIET_WAIT s) until work
        that is not the benchmark's uses under 25% of the CPUs over half a
        second, so that a run does not start in the middle of someone
        else's burst.  The `others` column still says what happened."""
        limit = self.s["BENCH_QUIET_WAIT"]
        if limit <= 0:
            return
        if self.noisy >= 2:
            # The machine stayed busy twice in a row: it is shared with
            # steady work, and waiting longer only makes the run longer.
            limit = 2
        t0 = time.monotonic()
        while True:
            load = Load()
            time.sleep(0.5)
            _, others = load.done()
            if others < 25:
                self.noisy = 0
                break
            if time.monotonic() - t0 > limit:
                log(f"{label}: other work still uses {others:.0f}% of the CPUs after "
                    f"{limit} s; measuring anyway")
                self.noisy += 1
                break
        waited = time.monotonic() - t0
        if waited > 5:
            log(f"{label}: waited {waited:.0f} s for other work to calm down")

    def measure(self, scenario, net, client, count, nbytes, fn, repeat=1, note=""):
        """Run fn() `repeat` times, keep the median by time; record a row."""
        return self.measure_group(scenario, net, [(client, count, nbytes, fn, note)],
                                  repeat)[0]

    def measure_group(self, scenario, net, specs, repeat=1):
        """Run the clients of `specs` ((client, count, nbytes, fn, note)
        each) in turns, `repeat` rounds of one run each, so that a busy
        spell of the machine falls on all of them alike; record a row per
        client (the median run by time; runs in round order in
        "round_msg_s", for paired ratios).  Returns the rows (None for a
        client that failed)."""
        runs = {sp[0]: [] for sp in specs}
        failed = set()
        for _ in range(repeat):
            for client, count, nbytes, fn, note in specs:
                if client in failed:
                    continue
                label = f"{scenario}/{net}/{client}"
                self.wait_quiet(label)
                mark, t0 = self.stats_mark(), time.monotonic()
                try:
                    r = fn()
                    if net != "loopback":
                        r["link"] = self.link_stats(mark, t0)
                except Broken as e:
                    log(f"FAILED {label}: {e}")
                    self.failures.append(f"{label}: {e}")
                    failed.add(client)
                    continue
                except Exception as e:  # noqa: BLE001 - a broken client must not hide the rest
                    log(f"FAILED {label}: {type(e).__name__}: {e}")
                    traceback.print_exc()
                    self.failures.append(f"{label}: {type(e).__name__}: {e}")
                    failed.add(client)
                    continue
                runs[client].append(r)
                log(f"{label}: {count} messages in {r['seconds']:.2f} s "
                    f"({count / r['seconds']:.1f} msg/s, {nbytes / 1e6 / r['seconds']:.1f} MB/s), "
                    f"peak RSS {r['rss'] / 1024:.1f} MiB, client CPU {r['cpu']:.2f} s, "
                    f"machine busy {r['busy']:.0f}% (others {r['others']:.0f}%)"
                    + (f"; {self.link_text(net, r['link'])}" if r.get("link") else ""))
        rows = []
        for client, count, nbytes, fn, note in specs:
            got = runs[client]
            if client in failed or not got:
                rows.append(None)
                continue
            in_order = [count / r["seconds"] for r in got]
            got = sorted(got, key=lambda r: r["seconds"])
            med = got[len(got) // 2]
            row = {"scenario": scenario, "net": net, "client": client, "messages": count,
                   "bytes": nbytes, "seconds": med["seconds"],
                   "rss": max(r["rss"] for r in got),
                   "cpu": med["cpu"], "busy": med["busy"], "others": med["others"],
                   "note": "; ".join(x for x in (note, med.get("note", "")) if x),
                   "all_seconds": [r["seconds"] for r in got], "again": med.get("again"),
                   "link": med.get("link"), "repeat": len(got),
                   "all_msg_s": sorted(in_order), "round_msg_s": in_order,
                   "all_others": [r["others"] for r in got]}
            if len(got) > 1:
                row["note"] = (row["note"] + "; " if row["note"] else "") + \
                    f"median of {len(got)}: " + "/".join(f"{r['seconds']:.2f}" for r in got) + " s"
            row["msg_s"] = count / row["seconds"]
            row["mb_s"] = nbytes / 1e6 / row["seconds"]
            self.rows.append(row)
            rows.append(row)
        return rows

    def link_text(self, net, link):
        """One line on the relay's view of a run: per link, how long the
        sender left it empty for a one-way delay or longer."""
        out = []
        for proto, way, what in (("imap", "up", "IMAP up"), ("pop3", "down", "POP3 down")):
            a = link.get(proto, {}).get(way)
            if not a or not a["span"]:
                continue
            secs, n, bsecs, bn = self.stalls(net, a)
            out.append(f"{what} {a['bytes'] / 1e6:.1f} MB in {a['span']:.2f} s, link empty "
                       f"{secs:.2f} s ({secs / a['span'] * 100:.0f}%) in {n} gaps, {bn} of them "
                       f"a one-way delay or longer ({bsecs:.2f} s)")
        return "; ".join(out)

    def scenario(self, c, nets=("loopback", "delay")):
        """The clients on corpus c, network by network: the whole corpus for
        popbridge, minimal and the ceiling (BENCH_REPEAT rounds, the
        clients taking turns), the first BENCH_SLOW_CAP messages for the
        one-at-a-time clients (and for popbridge beside them) through the
        relay."""
        rep = self.s["BENCH_REPEAT"]
        name = c["name"]
        full = (c["src"], c["count"], c["bytes"])
        sub = (c["sub"], c["sub_count"], c["sub_bytes"])
        for net in nets:
            group = []
            if "popbridge" in self.clients:
                group.append(("popbridge", c["count"], c["bytes"],
                              lambda net=net: self.run_popbridge(*full, net), ""))
            if "minimal" in self.clients:
                group.append(("minimal", c["count"], c["bytes"],
                              lambda net=net: self.run_minimal(*full, net),
                              "every RETR and APPEND pipelined, all in memory"))
            if "ceiling" in self.clients and net != "gmail":
                group.append(("ceiling", c["count"], c["bytes"],
                              lambda net=net: self.run_ceiling(c["dir"], c["count"], c["bytes"],
                                                               net),
                              "MULTIAPPEND, no POP3"))
                if net == "loopback":
                    group.append(("ceiling (LITERAL+ APPEND)", c["count"], c["bytes"],
                                  lambda net=net: self.run_ceiling(c["dir"], c["count"],
                                                                   c["bytes"], net, "append"),
                                  "pipelined single LITERAL+ APPENDs, no POP3"))
            if net != "loopback" and net != "gmail" and "popbridge" in self.clients:
                note = f"first {sub[1]} messages only"
                group.append(("popbridge (subset)", sub[1], sub[2],
                              lambda net=net: self.run_popbridge(*sub, net),
                              note + ", same messages as the slow clients"))
            if group:
                self.measure_group(name, net, group, rep)
            if net == "gmail":
                continue
            if net == "loopback":
                src, cnt, nb = full
                note = ""
            else:
                src, cnt, nb = sub
                note = f"first {cnt} messages only"
            if "naive" in self.clients:
                self.measure(name, net, "naive", cnt, nb,
                             lambda: self.run_naive(src, cnt, nb, net), note=note)
            if "mpop" in self.clients and net == "delay":
                self.measure(name, net, "mpop+dovecot-lda", cnt, nb,
                             lambda: self.run_mpop(src, cnt, nb, net),
                             note=(note + "; " if note else "") + "RSS: mpop or one dovecot-lda")
            if "fetchmail" in self.clients and net in ("loopback", "delay"):
                self.measure(name, net, "fetchmail+dovecot-lda", cnt, nb,
                             lambda: self.run_fetchmail(src, cnt, nb, net),
                             note=(note + "; " if note else "") + "RSS: fetchmail or one dovecot-lda")

    # ------------------------------------------------------------- memory
    def memory_part(self):
        n = self.s["BENCH_MEM_COUNT"]
        t = time.monotonic()
        user = "memsrc"
        self.dc.add_user(user, "pw-memsrc")
        sizes = []
        for raw in corpus.small_messages(self.s["BENCH_SEED"], n, tag="mem"):
            sizes.append(len(corpus.crlf(raw)))
            self.dc.deliver(user, raw)
        self.warm(user, sizes)
        log(f"memory mailbox: {n} messages, {sum(sizes) / 1e6:.1f} MB ({time.monotonic() - t:.0f} s)")
        row = self.measure("memory", "loopback", "popbridge", n, sum(sizes),
                           lambda: self.run_popbridge(user, n, sum(sizes), "loopback",
                                                      again=True),
                           note=f"a {n}-message mailbox")
        if row:
            self.memory.append({"what": f"{n:,} messages of about 4 KB", "rss": row["rss"],
                                "seconds": row["seconds"]})
            a = row["again"]
            self.memory.append({"what": f"the same {n:,} kept messages again: nothing new "
                                        "(one poll)", "rss": a["rss"], "seconds": a["seconds"],
                                "cpu": a["cpu"]})

        mb = self.s["BENCH_BIG_MB"]
        user = "bigsrc"
        self.dc.add_user(user, "pw-bigsrc")
        raw = corpus.big_message(self.s["BENCH_SEED"], mb * 1024 * 1024)
        size = len(corpus.crlf(raw))
        self.dc.deliver(user, raw)
        del raw
        self.warm(user, [size])
        row = self.measure("memory", "loopback", "popbridge", 1, size,
                           lambda: self.run_popbridge(user, 1, size, "loopback"),
                           note=f"one message of {size / 1e6:.0f} MB")
        if row:
            self.memory.append({"what": f"one message of {size / 1e6:.0f} MB", "rss": row["rss"],
                                "seconds": row["seconds"]})

    # ------------------------------------------------------------- adoption
    _IMAP_LOGIN_RE = re.compile(r"\bimap-login: Info: Login: user=<([^>]*)>")
    _IMAP_END_RE = re.compile(r"\bimap\(([^)]*)\)<\d+><[^>]*>: Info: (.*?)\bin=(\d+) out=(\d+)(.*)$")

    def imap_traffic(self, user, since, timeout=60.0):
        """What Dovecot said at the end of each IMAP session of `user` that
        logged in after byte `since` of its log ("Disconnected: Logged out
        in=.. out=.. hdr_count=.. body_count=.. body_bytes=.."), summed:
        {sessions, in, out, hdr_count, body_count, body_bytes, ...}.  in and
        out are the bytes of the IMAP protocol (inside TLS) received from and
        sent to the client.  Waits until every such session has logged its
        end (Dovecot's log process may lag behind the client: seconds, on a
        loaded machine)."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.dc.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
            logins, tot, how = 0, {"in": 0, "out": 0, "sessions": 0}, []
            for line in text.splitlines():
                m = self._IMAP_LOGIN_RE.search(line)
                if m:
                    logins += m.group(1) == user
                    continue
                m = self._IMAP_END_RE.search(line)
                if m and m.group(1) == user:
                    tot["sessions"] += 1
                    tot["in"] += int(m.group(3))
                    tot["out"] += int(m.group(4))
                    for key, val in re.findall(r"\b(\w+)=(\d+)", m.group(5)):
                        tot[key] = tot.get(key, 0) + int(val)
                    how.append(m.group(2).strip().rstrip(":"))
            if tot["sessions"] >= logins:
                break
            if time.monotonic() > deadline:
                raise Broken(f"Dovecot logged {logins} IMAP logins of {user} but the end of "
                             f"only {tot['sessions']} within {timeout:.0f} s")
            time.sleep(0.05)
        tot["how"] = how
        return tot

    def dest_list(self, user):
        """[(uid, RFC822.SIZE)] of user's INBOX, in UID order."""
        c = self.dc.imap(user, timeout=300)
        try:
            typ, data = c.select("INBOX", readonly=True)
            if typ != "OK":
                raise Broken(f"SELECT INBOX of {user}: {typ} {data}")
            if int(data[0] or 0) == 0:
                return []
            typ, data = c.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
            if typ != "OK":
                raise Broken(f"FETCH of {user}: {typ} {data}")
            out = []
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                u = re.search(rb"UID (\d+)", line or b"")
                z = re.search(rb"RFC822\.SIZE (\d+)", line or b"")
                if u and z:
                    out.append((int(u.group(1)), int(z.group(1))))
            return sorted(out)
        finally:
            harness._logout(c)

    def dest_trim(self, user, last_uid):
        """Expunge every message of user's INBOX above UID last_uid (what a
        measured run appended), so that the mailbox is as before."""
        c = self.dc.imap(user, timeout=300)
        try:
            typ, data = c.select("INBOX")
            if typ != "OK":
                raise Broken(f"SELECT INBOX of {user}: {typ} {data}")
            typ, data = c.uid("SEARCH", f"UID {last_uid + 1}:*")
            uids = [u for u in map(int, (data[0] or b"").split()) if u > last_uid]
            if uids:
                typ, data = c.uid("STORE", ",".join(map(str, uids)), "+FLAGS.SILENT",
                                  r"(\Deleted)")
                if typ != "OK":
                    raise Broken(f"STORE \\Deleted in {user}: {typ} {data}")
                c.expunge()
            return len(uids)
        finally:
            harness._logout(c)

    def pop3_trim(self, user, keep, sizes):
        """DELE every POP3 message of user after the first `keep` (checked
        to be the corpus, by size)."""
        p = self.dc.pop3(user, timeout=300)
        try:
            listed = [int(x.split()[1]) for x in p.list()[1]]
            if listed[:keep] != sizes[:keep]:
                raise Broken(f"POP3 {user}: its first {keep} messages are not the corpus")
            for i in range(keep + 1, len(listed) + 1):
                p.dele(i)
        finally:
            p.quit()

    def adopt_fill(self, cdir, dst, lo, hi):
        """MULTIAPPEND corpus messages lo..hi-1 (as popbridge would store
        them) into dst with ceiling.py; returns the seconds it took."""
        part = self.work / f"adopt-fill-{lo}-{hi}"
        part.mkdir()
        with open(cdir / "manifest.tsv") as f:
            lines = f.read().splitlines()[lo:hi]
        with open(part / "manifest.tsv", "w") as f:
            for line in lines:
                name, rest = line.split("\t", 1)
                f.write(f"{cdir / name}\t{rest}\n")
        ih, ip = self.endpoint("imap", "loopback")
        env = {**os.environ, "CEILING_IMAP_PASSWORD": self.dc.users[dst]}
        t = time.monotonic()
        p = subprocess.run(
            [PY, str(BENCH_DIR / "ceiling.py"), "--imap", f"{ih}:{ip}", "--user", dst,
             "--ca-file", self.dc.ca_file, "--corpus", str(part),
             "--batch", str(self.s["BENCH_CEIL_BATCH"])],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT)
        secs = time.monotonic() - t
        shutil.rmtree(part, ignore_errors=True)
        if p.returncode != 0:
            raise Broken(f"filling {dst} with ceiling.py: exit {p.returncode}: "
                         f"{(p.stdout + p.stderr).decode('utf-8', 'replace')[-600:]}")
        return secs

    def adopt_popbridge(self, src, dst, label, cfg=None, run=None, net="loopback"):
        """One `popbridge run` from POP3 user src into dst, with a fresh
        state_dir (a first contact) unless cfg/run of an earlier one are
        given.  Returns timed()'s figures plus the IMAP traffic of the run
        (imap_traffic) and popbridge's own counts (new, imported, adopted)."""
        if cfg is None:
            self.seq += 1
            run = self.work / f"adopt-run{self.seq}"
            run.mkdir()
            (run / "state").mkdir()
            ph, pp = self.endpoint("pop3", net)
            ih, ip = self.endpoint("imap", net)
            acct = self.dc.account("bench", src, dst, keep=True,
                                   pop3_extra={"url": f"pop3s://{ph}:{pp}"},
                                   imap_extra={"url": f"imaps://{ih}:{ip}"})
            cfg = harness.write_config(run / "popbridge.conf", [acct], run / "state")
        self.wait_quiet(label)
        since = self.dc.log_size()
        # -v: the summary and the adoption lines go to stderr (without a
        # terminal they would go to syslog), with one line per message.
        r = timed([self.exe, "-c", cfg, "-v", "run"], cwd=run)
        text = (r["out"] + r["err"]).strip()
        if r["rc"] != 0:
            raise Broken(f"{label}: popbridge run exited {r['rc']}: {text[-800:]}")
        r["imap"] = self.imap_traffic(dst, since)
        m = re.search(r"\bbench: (\d+) new, (\d+) imported, (\d+) failed", text)
        if not m:
            raise Broken(f"{label}: no summary line from popbridge: {text[-800:]}")
        r["new"], r["imported"], r["failed"] = map(int, m.groups())
        m = re.search(r"\bbench: (\d+) messages? already in ", text)
        r["adopted"] = int(m.group(1)) if m else 0
        m = re.search(r"\bbench: first contact with .*?: (\d+) messages? there already", text)
        r["scanned"] = int(m.group(1)) if m else None
        r["cfg"], r["run"] = cfg, run
        im = r["imap"]
        log(f"{label}: {r['seconds']:.2f} s, peak RSS {r['rss'] / 1024:.1f} MiB, "
            f"CPU {r['cpu']:.2f} s; {r['new']} new, {r['imported']} imported, "
            f"{r['adopted']} adopted, scan: "
            f"{'none' if r['scanned'] is None else str(r['scanned']) + ' messages'}; "
            f"IMAP: {im['sessions']} session(s), server sent "
            f"{im['out']:,} bytes, received {im['in']:,}, bodies fetched "
            f"{im.get('body_count', 0)} ({im.get('body_bytes', 0):,} bytes); "
            f"machine busy {r['busy']:.0f}% (others {r['others']:.0f}%)")
        return r

    def adopt_row(self, key, what, dest, pop3, runs, note=""):
        """The median run (by time) of a case; RSS is the largest of all."""
        runs = sorted(runs, key=lambda r: r["seconds"])
        med = runs[len(runs) // 2]
        row = {"key": key, "what": what, "dest": dest, "pop3": pop3,
               "seconds": med["seconds"], "all": [r["seconds"] for r in runs],
               "rss": max(r["rss"] for r in runs), "cpu": med["cpu"], "busy": med["busy"],
               "others": med["others"], "imap": med["imap"], "imported": med["imported"],
               "adopted": med["adopted"], "scanned": med["scanned"], "note": note,
               "out_all": [r["imap"]["out"] for r in runs]}
        self.adopt["rows"].append(row)
        return row

    def adopt_problem(self, msg):
        msg = "adopt: " + msg
        self.adopt["problems"].append(msg)
        self.failures.append(msg)
        log("FAILED " + msg)

    def adopt_part(self):
        """The first-contact adoption scan (see bench/README.md): its cost
        when there is nothing to adopt, the cost of adopting a whole
        mailbox, and the runs after.  A broken step ends this part only."""
        t_all = time.monotonic()
        load_all = Load()
        self.adopt = A = {"n": self.s["BENCH_ADOPT_COUNT"], "k": self.s["BENCH_ADOPT_NEW"],
                          "rows": [], "problems": [], "fill": [], "bytes": 0,
                          "started": _dt.datetime.now(_dt.timezone.utc),
                          "loadavg": Path("/proc/loadavg").read_text().split()[0]}
        try:
            self._adopt_part()
        except Broken as e:
            self.adopt_problem(f"broken, the scenario stopped: {e}")
        finally:
            A["seconds"] = time.monotonic() - t_all
            A["busy"], A["others"] = load_all.done()
        A["findings"] = self.adopt_findings()
        for line in A["findings"]:
            log(f"adopt: {line}")

    def _adopt_part(self):
        A = self.adopt
        n, k = A["n"], A["k"]
        rep, seed = self.s["BENCH_REPEAT"], self.s["BENCH_SEED"]
        slow = min(self.s["BENCH_ADOPT_DELAYED"], n)
        # The first `slow` messages also go to a second POP3 user, adoptsub.
        c = self.make_corpus("adopt", corpus.small_messages(seed, n, tag="adopt"), slow)
        fresh = self.make_corpus("adoptnew", corpus.small_messages(seed, k, tag="adoptnew"), 0)
        late = [corpus.small_message(seed, i, tag="adoptlate") for i in range(k)]
        src, newsrc = c["src"], fresh["src"]
        A["bytes"], A["new_bytes"] = c["bytes"], fresh["bytes"]
        dst = "adoptdst"
        self.dc.add_user(dst, "pw-adoptdst")

        def same_as_corpus(listing, m):
            return [z for _, z in listing] == c["sizes"][:m]

        # 1. First contact, nothing to adopt: k new messages into an empty
        # destination, then into one holding n/4 and n unrelated messages.
        runs = []
        for _ in range(rep):
            e = self.fresh_user("adempty")
            r = self.adopt_popbridge(newsrc, e, "adopt/nothing-there")
            if r["imported"] != k:
                self.adopt_problem(f"into an empty mailbox: {r['imported']} imported, not {k}")
            if r["scanned"] not in (None, 0):
                self.adopt_problem(f"into an empty mailbox: the scan saw {r['scanned']} messages")
            self.verify(e, k, fresh["bytes"])
            self.drop_user(e)
            shutil.rmtree(r["run"], ignore_errors=True)
            runs.append(r)
        self.adopt_row("empty", f"{k} new messages, empty destination (first contact: no scan "
                       "needed)", 0, k, runs)
        have = 0
        quarter = n // 4
        for m in ([quarter, n] if 0 < quarter < n else [n]):
            A["fill"].append({"from": have, "to": m,
                              "seconds": self.adopt_fill(c["dir"], dst, have, m)})
            have = m
            base = self.dest_list(dst)
            if not same_as_corpus(base, m):
                raise Broken(f"adopt: {dst} holds {len(base)} messages after MULTIAPPEND, "
                             f"not the {m} of the corpus")
            last = base[-1][0]
            runs = []
            for _ in range(rep):
                r = self.adopt_popbridge(newsrc, dst, f"adopt/first-contact-{m}")
                now = self.dest_list(dst)
                if r["scanned"] != m:
                    self.adopt_problem(f"first contact with {m} unrelated messages: popbridge "
                                       f"reported a scan of {r['scanned']}")
                if r["imported"] != k or r["adopted"] != 0 or len(now) != m + k:
                    self.adopt_problem(
                        f"{k} new messages, {m} unrelated ones in the destination: "
                        f"{r['imported']} imported, {r['adopted']} adopted, the destination "
                        f"holds {len(now)} (expected {m + k})")
                self.dest_trim(dst, last)
                shutil.rmtree(r["run"], ignore_errors=True)
                runs.append(r)
            self.adopt_row(f"scan{m}", f"{k} new messages, {m:,} unrelated messages in the "
                           "destination (first contact: the scan)", m, k, runs)

        # 2. First contact, everything there already; 3. the runs after it.
        base = self.dest_list(dst)
        if not same_as_corpus(base, n):
            raise Broken(f"adopt: {dst} holds {len(base)} messages, not the {n} of the corpus")
        last = base[-1][0]
        runs2, runs3, runs4 = [], [], []
        for _ in range(rep):
            r = self.adopt_popbridge(src, dst, "adopt/everything-there")
            now = self.dest_list(dst)
            if len(now) != n or r["imported"] != 0 or r["adopted"] != n:
                self.adopt_problem(
                    f"first contact with all {n:,} messages in the destination already: "
                    f"popbridge imported {r['imported']} and adopted {r['adopted']}; the "
                    f"destination holds {len(now):,} messages, expected exactly {n:,} "
                    f"({len(now) - n:+,} appended)")
                self.dest_trim(dst, last)
            if r["scanned"] != n:
                self.adopt_problem(f"first contact with all {n} messages there: popbridge "
                                   f"reported a scan of {r['scanned']}")
            runs2.append(r)
            r3 = self.adopt_popbridge(src, dst, "adopt/second-run", cfg=r["cfg"], run=r["run"])
            now = self.dest_list(dst)
            if len(now) != n or r3["imported"] != 0:
                self.adopt_problem(f"the run after the adoption: {r3['imported']} imported, "
                                   f"the destination holds {len(now):,}, expected {n:,}")
                self.dest_trim(dst, last)
            if r3["scanned"] is not None:
                self.adopt_problem(f"the run after the adoption scanned the destination again "
                                   f"({r3['scanned']} messages)")
            runs3.append(r3)
            for raw in late:
                self.dc.deliver(src, raw)
            r4 = self.adopt_popbridge(src, dst, "adopt/second-run-new-mail", cfg=r["cfg"],
                                      run=r["run"])
            now = self.dest_list(dst)
            if len(now) != n + k or r4["imported"] != k or r4["adopted"] != 0:
                self.adopt_problem(f"{k} new messages after the adoption: {r4['imported']} "
                                   f"imported, {r4['adopted']} adopted, the destination holds "
                                   f"{len(now):,}, expected {n + k:,}")
            if r4["scanned"] is not None:
                self.adopt_problem(f"new mail after the adoption: the destination was scanned "
                                   f"again ({r4['scanned']} messages)")
            self.dest_trim(dst, last)
            self.pop3_trim(src, n, c["sizes"])
            runs4.append(r4)
            shutil.rmtree(r["run"], ignore_errors=True)
        self.adopt_row("adopt", f"{n:,} messages, all of them in the destination already "
                       "(first contact: the scan, and one body fetched per message adopted)",
                       n, n, runs2)
        self.adopt_row("again", "the next run of the same: nothing new (no scan)", n, n, runs3)
        self.adopt_row("again-new", f"the next run with {k} new POP3 messages (no scan)",
                       n, n + k, runs4)

        # The same messages imported normally, into an empty mailbox.
        runs = []
        for _ in range(rep):
            e = self.fresh_user("adnormal")
            r = self.adopt_popbridge(src, e, "adopt/normal-import")
            if r["imported"] != n:
                self.adopt_problem(f"normal import: {r['imported']} imported, not {n}")
            self.verify(e, n, c["bytes"])
            self.drop_user(e)
            shutil.rmtree(r["run"], ignore_errors=True)
            runs.append(r)
        self.adopt_row("normal", f"for comparison: the same {n:,} messages imported into an "
                       "empty destination", 0, n, runs)
        # Through the delay proxy: the scan is one command, but each message
        # adopted costs a round trip of its own.
        if slow:
            d = self.s["BENCH_DELAY_MS"]
            for label, key, what, who, count in (
                    ("empty", "empty-delay", f"+{d} ms each way: {k} new messages, empty "
                     "destination", newsrc, 0),
                    ("scan", "scan-delay", f"+{d} ms each way: {k} new messages, {n:,} "
                     "unrelated messages in the destination (the scan)", newsrc, n)):
                runs = []
                for _ in range(rep):
                    e = self.fresh_user("adempty") if count == 0 else dst
                    r = self.adopt_popbridge(who, e, f"adopt/{label}-delay", net="delay")
                    if r["imported"] != k or r["adopted"] != 0:
                        self.adopt_problem(f"{what}: {r['imported']} imported, "
                                           f"{r['adopted']} adopted")
                    if count:
                        self.dest_trim(dst, last)
                    else:
                        self.verify(e, k, fresh["bytes"])
                        self.drop_user(e)
                    shutil.rmtree(r["run"], ignore_errors=True)
                    runs.append(r)
                self.adopt_row(key, what, count, k, runs)
            runs, runs_n = [], []
            for _ in range(rep):
                r = self.adopt_popbridge(c["sub"], dst, "adopt/everything-there-delay",
                                         net="delay")
                now = self.dest_list(dst)
                if len(now) != n or r["imported"] != 0 or r["adopted"] != slow:
                    self.adopt_problem(
                        f"+{d} ms, first contact with {slow} messages all in the destination "
                        f"already: {r['imported']} imported, {r['adopted']} adopted; the "
                        f"destination holds {len(now):,}, expected exactly {n:,}")
                    self.dest_trim(dst, last)
                shutil.rmtree(r["run"], ignore_errors=True)
                runs.append(r)
                e = self.fresh_user("adnormal")
                r = self.adopt_popbridge(c["sub"], e, "adopt/normal-import-delay", net="delay")
                if r["imported"] != slow:
                    self.adopt_problem(f"+{d} ms, normal import: {r['imported']} imported, "
                                       f"not {slow}")
                self.verify(e, slow, c["sub_bytes"])
                self.drop_user(e)
                shutil.rmtree(r["run"], ignore_errors=True)
                runs_n.append(r)
            self.adopt_row("adopt-delay", f"+{d} ms each way: {slow:,} messages, all in the "
                           f"destination already (of its {n:,})", n, slow, runs)
            self.adopt_row("normal-delay", f"+{d} ms each way, for comparison: the same "
                           f"{slow:,} imported into an empty destination", 0, slow, runs_n)
        shutil.rmtree(c["dir"], ignore_errors=True)
        shutil.rmtree(fresh["dir"], ignore_errors=True)
        self.drop_user(dst)

    def adopt_findings(self):
        """What the rows say, and anything that looks wrong (also listed
        as failures of the scenario)."""
        A = self.adopt
        rows = {r["key"]: r for r in A["rows"]}
        n, k = A["n"], A["k"]
        out = []
        empty, full = rows.get("empty"), rows.get(f"scan{n}")
        quarter = next((r for key, r in rows.items()
                        if key.startswith("scan") and key != f"scan{n}"), None)
        if empty and full:
            d_s = full["seconds"] - empty["seconds"]
            d_out = full["imap"]["out"] - empty["imap"]["out"]
            d_rss = (full["rss"] - empty["rss"]) / 1024
            out.append(f"the scan of {n:,} messages: {d_s:+.2f} s, +{d_out / 1e6:.2f} MB sent "
                       f"by the server ({d_out / n:.0f} bytes a message, {d_out / A['bytes'] * 100:.1f}% "
                       f"of the mailbox's {A['bytes'] / 1e6:.1f} MB), peak RSS "
                       f"{d_rss:+.1f} MiB, against the same run into an empty destination")
            bodies = full["imap"].get("body_count", 0)
            if bodies:
                self.adopt_problem(f"the scan with nothing to adopt fetched {bodies} bodies "
                                   "(expected none)")
            if quarter:
                q_n = quarter["dest"]
                q_out = quarter["imap"]["out"] - empty["imap"]["out"]
                q_rss = (quarter["rss"] - empty["rss"]) / 1024
                per_q, per_n = q_out / q_n, d_out / n
                out.append(f"scaling: {per_q:.0f} server bytes a message at {q_n:,} messages, "
                           f"{per_n:.0f} at {n:,}; peak RSS above the empty-destination run "
                           f"{q_rss:+.1f} MiB at {q_n:,}, {d_rss:+.1f} MiB at {n:,}; "
                           f"time {quarter['seconds'] - empty['seconds']:+.2f} s and "
                           f"{d_s:+.2f} s")
                if per_n > per_q * 1.5:
                    self.adopt_problem(f"the scan's bytes grow faster than the mailbox: "
                                       f"{per_q:.0f} bytes a message at {q_n:,}, {per_n:.0f} "
                                       f"at {n:,}")
                if d_rss > max(q_rss, 0) * n / q_n * 1.5 + 2:
                    self.adopt_problem(f"the scan's memory grows faster than the mailbox: "
                                       f"{q_rss:+.1f} MiB at {q_n:,} messages, {d_rss:+.1f} "
                                       f"MiB at {n:,}")
        adopt, normal = rows.get("adopt"), rows.get("normal")
        if adopt:
            im = adopt["imap"]
            out.append(f"adopting all {n:,}: {adopt['seconds']:.2f} s, the server sent "
                       f"{im['out'] / 1e6:.1f} MB (the mailbox is {A['bytes'] / 1e6:.1f} MB: "
                       f"one body fetched per message adopted, by design: "
                       f"{im.get('body_count', 0):,} bodies, {im.get('body_bytes', 0) / 1e6:.1f} MB)"
                       + (f"; a normal import of the same into an empty mailbox: "
                          f"{normal['seconds']:.2f} s, so adopting takes "
                          f"{adopt['seconds'] / normal['seconds'] * 100:.0f}% of its time"
                          if normal else ""))
            if im.get("body_count", 0) > n:
                self.adopt_problem(f"adopting {n} messages fetched {im['body_count']} bodies "
                                   "(expected one per message)")
            if adopt["rss"] > 32 * 1024:
                self.adopt_problem(f"adopting {n:,} messages peaked at "
                                   f"{adopt['rss'] / 1024:.1f} MiB (target under 32 MiB)")
        ed, sd = rows.get("empty-delay"), rows.get("scan-delay")
        ad, nd = rows.get("adopt-delay"), rows.get("normal-delay")
        d = self.s["BENCH_DELAY_MS"]
        if ed and sd:
            out.append(f"at +{d} ms each way the scan of {n:,} messages adds "
                       f"{sd['seconds'] - ed['seconds']:+.2f} s to a run of {k} new messages "
                       f"({ed['seconds']:.2f} s into an empty destination, {sd['seconds']:.2f} s "
                       "with the scan): one command, streamed")
        if ad and nd and ad["adopted"]:
            m = ad["adopted"]
            per = (ad["seconds"] - (sd["seconds"] - ed["seconds"] if ed and sd else 0)) / m
            out.append(f"at +{d} ms each way, adopting {m:,} messages took {ad['seconds']:.2f} s "
                       f"({per * 1000:.1f} ms a message, about one IMAP round trip of "
                       f"{self.rtt_ms['delay']:.1f} ms each: the body fetches that confirm a match go "
                       f"one at a time), where importing the same {m:,} into an empty "
                       f"destination took {nd['seconds']:.2f} s (pipelined); so adopting a "
                       f"whole {n:,}-message mailbox at this distance would take about "
                       f"{per * n:.0f} s")
        again, again_new = rows.get("again"), rows.get("again-new")
        scan_out = (full["imap"]["out"] - empty["imap"]["out"]) if (empty and full) else None
        for row in (again, again_new):
            if not row:
                continue
            im = row["imap"]
            if scan_out and im["out"] - (empty["imap"]["out"] if empty else 0) > scan_out / 2:
                self.adopt_problem(f"{row['what']}: the server sent {im['out']:,} bytes: "
                                   "the mailbox looks scanned again")
        if again:
            out.append(f"the run after: {again['seconds']:.2f} s, {again['imap']['sessions']} "
                       f"IMAP session(s), {again['imap']['out']:,} bytes from the server"
                       + (f"; with {k} new messages: {again_new['seconds']:.2f} s, "
                          f"{again_new['imap']['out']:,} bytes (no scan: an empty destination "
                          f"took {empty['imap']['out']:,} for the same {k})"
                          if again_new and empty else ""))
        return out

    def adopt_lines(self, md=False):
        """The adoption scenario's table and findings (markdown: a section
        of its own, with its date and the machine's load)."""
        A = self.adopt
        s = self.s
        hdr = ["case", "in the destination", "POP3 messages", "scan saw", "imported", "adopted",
               "seconds",
               "peak RSS MiB", "CPU s", "IMAP sessions", "server sent bytes",
               "server received bytes", "bodies fetched", "busy (others)", "runs (s)"]
        rows = []
        for r in A["rows"]:
            im = r["imap"]
            rows.append([r["what"], f"{r['dest']:,}", f"{r['pop3']:,}",
                         "no scan" if r["scanned"] is None else f"{r['scanned']:,}",
                         f"{r['imported']:,}",
                         f"{r['adopted']:,}", f"{r['seconds']:.2f}", f"{r['rss'] / 1024:.1f}",
                         f"{r['cpu']:.2f}", str(im["sessions"]), f"{im['out']:,}",
                         f"{im['in']:,}", f"{im.get('body_count', 0):,}",
                         f"{r['busy']:.0f}% ({r['others']:.0f}%)",
                         "/".join(f"{x:.2f}" for x in r["all"])])
        fills = ", ".join(f"{f['to'] - f['from']:,} in {f['seconds']:.1f} s" for f in A["fill"])
        if not md:
            lines = [f"First-contact adoption scan, {A['n']:,}-message destination "
                     f"({A['seconds'] / 60:.1f} min; CPUs {A['busy']:.0f}% busy, others "
                     f"{A['others']:.0f}%):"]
            for x in rows:
                lines.append(f"  {x[0]}: {x[6]} s, peak RSS {x[7]} MiB, server sent {x[10]} "
                             f"bytes in {x[9]} session(s), {x[12]} bodies; scan: {x[3]}, "
                             f"imported {x[4]}, adopted {x[5]}")
            lines += [f"  {x}" for x in A.get("findings", [])]
            lines += [f"  PROBLEM: {x}" for x in A["problems"]]
            return lines
        L = [f"## First-contact adoption scan ({A['n']:,}-message destination)", "",
             f"Measured {A['started']:%Y-%m-%d %H:%M} UTC, popbridge {self.commit}, "
             f"{A['seconds'] / 60:.1f} min"
             + ("" if self.parts == list(PARTS) else
                f", in a run of `BENCH_ONLY={','.join(self.parts)}`")
             + f". Load: load average {A['loadavg']} at its start; "
             f"over the scenario the CPUs were {A['busy']:.0f}% busy, {A['others']:.0f}% of it "
             "with work that was not the benchmark's (the waits for it to calm down included; "
             "per run in the column `busy (others)`). "
             f"Settings: BENCH_ADOPT_COUNT={s['BENCH_ADOPT_COUNT']}, "
             f"BENCH_ADOPT_NEW={s['BENCH_ADOPT_NEW']}, "
             f"BENCH_ADOPT_DELAYED={s['BENCH_ADOPT_DELAYED']}, "
             f"BENCH_DELAY_MS={s['BENCH_DELAY_MS']} (measured IMAP round trip "
             f"{self.rtt_ms['delay']:.1f} ms), BENCH_REPEAT={s['BENCH_REPEAT']}, "
             f"BENCH_CEIL_BATCH={s['BENCH_CEIL_BATCH']}, BENCH_SEED={s['BENCH_SEED']}.", "",
             "`popbridge -v run`, keep = true, on loopback unless said, each run with a fresh `state_dir` (a "
             "first contact) except the runs after the adoption, which reuse its ledger. The "
             f"destination's {A['n']:,} messages (small corpus, about 4 KB, "
             f"{A['bytes'] / 1e6:.1f} MB) were put there with MULTIAPPEND ({fills}) as "
             "popbridge would have stored them; what a run appended is expunged after it. "
             "Seconds, CPU and bytes are those of the median run (by time), peak RSS the "
             "largest of all (GNU time `%M`). Bytes are Dovecot's own count for the run's "
             "IMAP sessions (`in=`/`out=` of its \"Disconnected: Logged out\" lines: IMAP "
             "protocol bytes, TLS framing not included); bodies fetched: its `body_count`.",
             "", "| " + " | ".join(hdr) + " |",
             "|---|" + "|".join("---:" for _ in hdr[1:]) + "|"]
        L += ["| " + " | ".join(x) + " |" for x in rows]
        L.append("")
        if A.get("findings"):
            L += [f"- {x}" for x in A["findings"]]
        if A["problems"]:
            L += [f"- **PROBLEM: {x}**" for x in A["problems"]]
        else:
            L.append(f"- Checked: no run appended a message that was there already (with all "
                     f"{A['n']:,} there, the destination still held exactly {A['n']:,} after "
                     "every first contact), and every new message was imported once.")
        L.append("")
        return L

    # ------------------------------------------------------------- soak
    def soak_part(self):
        polls = self.s["BENCH_POLLS"]
        every = self.s["BENCH_DELIVER_EVERY"]
        sample_every = self.s["BENCH_SAMPLE_EVERY"]
        src = "soaksrc"
        self.dc.add_user(src, "pw-soaksrc")
        dst = self.fresh_user("soakdst")
        run, cfg = self.popbridge_conf(src, dst, "loopback", extra="interval = 3600;\n")
        logf = run / "daemon.stderr"
        self.wait_quiet("soak")
        with open(logf, "wb") as err:
            proc = subprocess.Popen([self.exe, "-c", cfg, "-v", "daemon", "-f"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, cwd=run)
        summary = re.compile(r"\bbench: (?:(\d+) new, (\d+) imported, (\d+) failed|nothing new)")
        known = re.compile(r"\bbench: (?:\d+ new, \d+ imported|nothing new|polling \(pid \d+\)|message \d+ .*imported)"
                           r"|polling every account now|stopping: finishing|daemon (?:started|stopped)"
                           # -v: adopt.c's note on the first poll (nothing there yet)
                           r"|\bbench: first contact with .*: \d+ messages? there already")
        state = {"pos": 0, "buf": "", "polls": 0, "imported": 0, "failed": 0, "odd": []}

        def read_log():
            with open(logf, "rb") as f:
                f.seek(state["pos"])
                data = f.read()
            state["pos"] += len(data)
            state["buf"] += data.decode("utf-8", "replace")
            *lines, state["buf"] = state["buf"].split("\n")
            for line in lines:
                m = summary.search(line)
                if m:
                    state["polls"] += 1
                    if m.group(2):
                        state["imported"] += int(m.group(2))
                        state["failed"] += int(m.group(3))
                elif line.strip() and not known.search(line):
                    state["odd"].append(line.strip())

        def wait_polls(n, timeout=60):
            deadline = time.monotonic() + timeout
            while state["polls"] < n:
                if proc.poll() is not None:
                    raise Broken(f"the daemon exited with {proc.returncode}: "
                                 f"{logf.read_text()[-600:]}")
                if time.monotonic() > deadline:
                    raise Broken(f"poll {n} did not finish within {timeout} s")
                time.sleep(0.002)
                read_log()

        def sample_once():
            st = Path(f"/proc/{proc.pid}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", st).group(1))
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            kids = 0
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        if _stat_ticks(p)[0] == proc.pid:
                            kids += 1
                    except (OSError, ValueError, IndexError):
                        pass
            return {"rss": rss, "fds": fds, "children": kids}

        def sample(i):
            """The daemon's figures once it is idle again: the summary line
            comes before its last bookkeeping (the state file), so wait a
            little, and look again if the fd count differs from the first
            sample's (a file open for a moment is not a leak)."""
            time.sleep(0.1)
            x = sample_once()
            for _ in range(5):
                if not samples or (x["fds"] == samples[0]["fds"] and x["children"] == 0):
                    break
                time.sleep(0.2)
                x = sample_once()
            x["poll"] = i
            return x

        samples = []
        durations = []
        delivered = 0
        t0 = time.monotonic()
        try:
            wait_polls(1, timeout=30)           # the first poll, at start
            samples.append(sample(0))
            ts = time.monotonic()
            load = Load()
            for i in range(1, polls + 1):
                if i % every == 0:
                    self.dc.deliver(src, corpus.small_message(self.s["BENCH_SEED"], i, tag="soak"))
                    delivered += 1
                tp = time.monotonic()
                proc.send_signal(signal.SIGUSR1)
                wait_polls(i + 1)
                durations.append(time.monotonic() - tp)
                if i % sample_every == 0 or i == polls:
                    samples.append(sample(i))
            loop_secs = time.monotonic() - ts
            busy, others = load.done()
        except Broken as e:
            self.failures.append(f"soak: {e}")
            log(f"FAILED soak: {e}")
            return
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        read_log()
        count = self.dc.imap_count(dst)
        if count != delivered or state["imported"] != delivered or state["failed"]:
            msg = (f"soak: {delivered} delivered, the daemon logged {state['imported']} "
                   f"imported and {state['failed']} failed, IMAP holds {count}")
            self.failures.append(msg)
            log("FAILED " + msg)
        if proc.returncode not in (0, None):
            self.failures.append(f"soak: the daemon exited {proc.returncode} on SIGTERM")
        rss = [s["rss"] for s in samples]
        fds = [s["fds"] for s in samples]
        # Flat: the fd count never moves, and the RSS after the first
        # sample grows by less than 1 MiB (page-cache noise of a few pages
        # is normal; a leak of even 100 bytes a poll would show as 200 KB).
        rss_growth = rss[-1] - rss[0]
        flat = max(fds) == min(fds) and max(rss) - rss[0] < 1024
        self.soak = {"polls": polls, "delivered": delivered, "imported": state["imported"],
                     "imap": count, "seconds": time.monotonic() - t0, "loop_secs": loop_secs,
                     "samples": samples, "rss_first": rss[0], "rss_max": max(rss),
                     "rss_last": rss[-1], "rss_growth": rss_growth, "fds_first": fds[0],
                     "fds_max": max(fds), "fds_last": fds[-1], "flat": flat,
                     "children_max": max(s["children"] for s in samples),
                     "poll_median": statistics.median(durations),
                     "poll_p95": sorted(durations)[int(len(durations) * 0.95)],
                     "busy": busy, "others": others,
                     "odd": state["odd"][:10], "odd_count": len(state["odd"])}
        log(f"soak: {polls} polls in {loop_secs:.1f} s (median {self.soak['poll_median'] * 1000:.0f} ms, "
            f"95th percentile {self.soak['poll_p95'] * 1000:.0f} ms a poll; machine busy "
            f"{busy:.0f}%, others {others:.0f}%), "
            f"{delivered} imported; daemon RSS {rss[0]}/{max(rss)}/{rss[-1]} KiB "
            f"(first/max/last), fds {fds[0]}/{max(fds)}/{fds[-1]}: "
            f"{'flat' if flat else 'NOT flat'}")
        if state["odd"]:
            log(f"soak: {len(state['odd'])} unexpected log lines, e.g. {state['odd'][:3]}")

    # ------------------------------------------------------------- report
    def find(self, scenario, net, client):
        for r in self.rows:
            if (r["scenario"], r["net"], r["client"]) == (scenario, net, client):
                return r
        return None

    def ratios(self):
        out = []
        d = self.s["BENCH_DELAY_MS"]
        for sc in ("small", "mixed"):
            pb_full = self.find(sc, "delay", "popbridge")
            pb_sub = self.find(sc, "delay", "popbridge (subset)")
            for peer, target in (("naive", 30.0), ("fetchmail+dovecot-lda", 10.0)):
                pr = self.find(sc, "delay", peer)
                if not pr or not pb_full:
                    continue
                ratio = pb_full["msg_s"] / pr["msg_s"]
                like = pb_sub["msg_s"] / pr["msg_s"] if pb_sub else None
                out.append({"corpus": sc, "what": f"+{d} ms each way: popbridge / {peer}",
                            "ratio": ratio, "like": like, "target": target,
                            "kind": "times", "met": ratio >= target})
            pb = self.find(sc, "loopback", "popbridge")
            ce = self.find(sc, "loopback", "ceiling")
            if pb and ce:
                ratio = pb["msg_s"] / ce["msg_s"]
                out.append({"corpus": sc, "what": "loopback: popbridge / server ceiling",
                            "ratio": ratio, "like": None, "target": 0.8, "kind": "share",
                            "met": ratio >= 0.8})
        return out

    def distance_ratios(self):
        """Issue 15's targets, on the mixed corpus."""
        out = []
        sc = "mixed"
        pb = {net: self.find(sc, net, "popbridge") for net in NETS}
        pbs = {net: self.find(sc, net, "popbridge (subset)") for net in NETS}

        def add(what, num, den, target, kind, like=None, note=""):
            if num and den:
                ratio = num["msg_s"] / den["msg_s"]
                pairs = None
                if (num["messages"] == den["messages"] and num["repeat"] > 1
                        and num["repeat"] == den["repeat"]):
                    # Runs of the same round were side by side in time.
                    pairs = sorted(a / b for a, b in zip(num["round_msg_s"],
                                                         den["round_msg_s"]))
                    ratio = statistics.median(pairs)
                out.append({"corpus": sc, "what": what, "ratio": ratio, "pairs": pairs,
                            "like": like["msg_s"] / den["msg_s"] if like else None,
                            "target": target, "kind": kind,
                            "met": None if target is None else ratio >= target, "note": note})
        for net in ("delay", "far"):
            rtt = self.net_label(net)
            add(f"{rtt} each way: popbridge / minimal pipelined bridge", pb[net],
                self.find(sc, net, "minimal"), 0.9, "share")
            add(f"{rtt} each way: popbridge / naive", pb[net], self.find(sc, net, "naive"),
                30.0, "times", like=pbs[net])
        add("loopback: popbridge / server's append ceiling (pipelined LITERAL+ APPEND)",
            pb["loopback"], self.find(sc, "loopback", "ceiling (LITERAL+ APPEND)"), 0.8, "share")
        add("loopback: popbridge / MULTIAPPEND ceiling (stricter where the server has it)",
            pb["loopback"], self.find(sc, "loopback", "ceiling"), 0.8, "share")
        add(f"{self.net_label('gmail')}: popbridge / minimal with synchronising literals",
            pb["gmail"], self.find(sc, "gmail", "minimal"), None, "share")
        add(f"{self.net_label('delay')} each way: popbridge / mpop+dovecot-lda", pb["delay"],
            self.find(sc, "delay", "mpop+dovecot-lda"), None, "times", like=pbs["delay"])
        rss = [r for r in (pb["delay"], pb["far"], pbs["delay"], pbs["far"]) if r]
        if rss:
            top = max(r["rss"] for r in rss) / 1024
            out.append({"corpus": sc, "what": "popbridge's peak RSS at 20 and 100 ms",
                        "ratio": top, "like": None, "target": 32, "kind": "mib",
                        "met": top < 32, "note": ""})
        return out

    def cell(self, r, mb=True):
        if not r:
            return "-"
        lo, hi = r["all_msg_s"][0], r["all_msg_s"][-1]
        txt = fmt_rate(r["msg_s"])
        if r.get("repeat", 1) > 1:
            txt += f" ({fmt_rate(lo)}-{fmt_rate(hi)})"
        if mb:
            txt += f", {r['mb_s']:.1f} MB/s" if r["mb_s"] < 10 else f", {r['mb_s']:.0f} MB/s"
        if r["messages"] != self.find_count("mixed"):
            txt += f" [first {r['messages']}]"
        return txt

    def find_count(self, sc):
        return self.corpus_counts.get(sc, 0)

    def distance_lines(self, md=False):
        """Issue 15's table (mixed corpus): one row a client, one column a
        network, msg/s median (range of the runs), MB/s, peak RSS."""
        if not any(r["scenario"] == "mixed" and r["net"] in ("far", "gmail") for r in self.rows):
            return []
        clients = [("naive", "naive one-at-a-time Python client"),
                   ("mpop+dovecot-lda", "mpop -> dovecot-lda"),
                   ("fetchmail+dovecot-lda", "fetchmail -> dovecot-lda"),
                   ("popbridge", "popbridge"),
                   ("minimal", "minimal pipelined Python bridge (bench/minimal.py)"),
                   ("ceiling (LITERAL+ APPEND)", "pipelined LITERAL+ APPEND alone, no POP3 "
                    "(the server's append ceiling)"),
                   ("ceiling", "MULTIAPPEND alone, no POP3")]
        nets = ("delay", "far", "loopback", "gmail")
        hdr = ["client"] + [self.net_label(n).replace(" ms", " ms each way")
                            .replace("loopback", "loopback") for n in nets] + ["peak RSS MiB"]
        rows = []
        for key, label in clients:
            found = [self.find("mixed", n, key) for n in nets]
            if not any(found):
                continue
            allr = [r for r in self.rows if r["scenario"] == "mixed" and r["client"] == key]
            rss = max(r["rss"] for r in allr) / 1024
            rows.append([label] + [self.cell(r, mb=key not in ("naive",)) for r in found]
                        + [f"{rss:.1f}"])
        if md:
            L = ["| " + " | ".join(hdr) + " |", "|---|" + "|".join("---:" for _ in hdr[1:]) + "|"]
            return L + ["| " + " | ".join(x) + " |" for x in rows]
        L = []
        for x in rows:
            L.append(f"  {x[0]}:")
            for h, v in zip(hdr[1:], x[1:]):
                if v != "-":
                    L.append(f"      {h}: {v}")
        return L

    def ratio_text(self, q):
        if q["kind"] == "times":
            val = f"{q['ratio']:.1f}x"
            if q["target"] is not None:
                val += f" (target >= {q['target']:.0f}x)"
            if q["like"] is not None:
                val += (f"; popbridge on the same {self.s['BENCH_SLOW_CAP']} messages: "
                        f"{q['like']:.1f}x")
        elif q["kind"] == "mib":
            val = f"{q['ratio']:.1f} MiB (target < {q['target']} MiB)"
        else:
            val = f"{q['ratio'] * 100:.0f}%"
            if q.get("pairs"):
                val += (f", the median of {len(q['pairs'])} rounds run side by side "
                        f"({q['pairs'][0] * 100:.0f}-{q['pairs'][-1] * 100:.0f}%)")
            if q["target"] is not None:
                val += f" (target >= {q['target'] * 100:.0f}%)"
        return val

    def observations(self):
        """A few derived figures that say where the time goes."""
        out = []
        for sc in ("small", "mixed"):
            pl, pd = self.find(sc, "loopback", "popbridge"), self.find(sc, "delay", "popbridge")
            cl, cd = self.find(sc, "loopback", "ceiling"), self.find(sc, "delay", "ceiling")
            nl, nd = self.find(sc, "loopback", "naive"), self.find(sc, "delay", "naive")
            if pl and pd:
                out.append(f"{sc}: popbridge at +{self.s['BENCH_DELAY_MS']} ms runs at "
                           f"{pd['msg_s'] / pl['msg_s'] * 100:.0f}% of its loopback rate"
                           + (f" (the ceiling client: {cd['msg_s'] / cl['msg_s'] * 100:.0f}%)"
                              if cl and cd else "")
                           + (f"; the naive client at {nd['msg_s'] / nl['msg_s'] * 100:.0f}%"
                              if nl and nd else ""))
            if pl and cl:
                out.append(f"{sc}, loopback: client CPU per MB: popbridge "
                           f"{pl['cpu'] / (pl['bytes'] / 1e6):.3f} s, ceiling client "
                           f"{cl['cpu'] / (cl['bytes'] / 1e6):.3f} s (popbridge also reads "
                           "POP3: TLS both ways, dot-unstuffing, normalising; the ceiling is a "
                           "Python process, ~0.1 s of it start-up)")
        return out

    def table_lines(self, md=False):
        hdr = ["scenario", "network", "client", "messages", "MB", "seconds", "msg/s", "MB/s",
               "peak RSS MiB", "client CPU s", "busy (others)", "link empty up / down", "note"]
        rows = []
        for r in self.rows:
            rows.append([r["scenario"], self.net_label(r["net"]), r["client"],
                         f"{r['messages']:,}",
                         f"{r['bytes'] / 1e6:.1f}", f"{r['seconds']:.2f}", fmt_rate(r["msg_s"]),
                         f"{r['mb_s']:.1f}", f"{r['rss'] / 1024:.1f}",
                         f"{r['cpu']:.2f}", f"{r['busy']:.0f}% ({r['others']:.0f}%)",
                         self.idle_cell(r["net"], r.get("link")), r["note"]])
        if md:
            lines = ["| " + " | ".join(hdr) + " |",
                     "|" + "|".join("---" if i in (0, 1, 2, 12) else "---:"
                                    for i in range(len(hdr))) + "|"]
            lines += ["| " + " | ".join(x) + " |" for x in rows]
            return lines
        hdr = hdr[:-1]
        widths = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h)
                  for i, h in enumerate(hdr)]
        lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w)
                           for i, (h, w) in enumerate(zip(hdr, widths)))]
        for x in rows:
            lines.append("  ".join(v.ljust(w) if i < 3 else v.rjust(w)
                                   for i, (v, w) in enumerate(zip(x[:-1], widths)))
                         + (f"  ({x[-1]})" if x[-1] else ""))
        return lines

    def idle_cell(self, net, link):
        """The share of the run in which the IMAP upload and the POP3
        download were stalled ("up / down"), relay runs only."""
        if not link:
            return "-"
        out = []
        for proto, way in (("imap", "up"), ("pop3", "down")):
            a = link.get(proto, {}).get(way)
            out.append(f"{self.stalls(net, a)[0] / a['span'] * 100:.0f}%"
                       if a and a["span"] else "-")
        return " / ".join(out)

    def ratio_lines(self, md=False, which=None):
        lines = []
        for q in (which if which is not None else self.ratios()):
            val = self.ratio_text(q)
            if q["met"] is None:
                lines.append(("- " if md else "  ") + f"{q['corpus']}: {q['what']}: {val} "
                             "(no target)")
                continue
            verdict = "met" if q["met"] else "NOT met"
            lines.append(("- " if md else "  ") + f"{q['corpus']}: {q['what']}: {val}: "
                         + (f"**{verdict}**" if md else verdict))
        return lines

    def rtt_text(self):
        d, far = self.s["BENCH_DELAY_MS"], self.s["BENCH_FAR_DELAY_MS"]
        r = self.rtt_ms
        return (f"+{d} ms each way, measured IMAP round trip {r.get('delay', 0):.1f} ms; "
                f"+{far} ms each way, {r.get('far', 0):.1f} ms; Gmail-like relay at +{d} ms, "
                f"{r.get('gmail', 0):.1f} ms")

    def facts(self):
        def out(cmd):
            try:
                return subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=30).stdout.strip()
            except Exception:
                return "?"
        cpu = "?"
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        fm = out(["fetchmail", "--version"]).splitlines()
        fm = next((x for x in fm if "release" in x), "?")
        m = re.search(r"release (\S+?)\+", fm)
        return {"nproc": out(["nproc"]), "kernel": platform.release(), "cpu": cpu,
                "memory": out(["sh", "-c", "free -g | awk '/^Mem:/ {print $2\" GiB\"}'"]),
                "dovecot": out(["dovecot", "--version"]),
                "fetchmail": m.group(1) if m else fm,
                "mpop": (out([MPOP, "--version"]).splitlines() or ["?"])[0].replace(
                    "mpop version ", "") if os.access(MPOP, os.X_OK) else "not installed",
                "python": platform.python_version(),
                "libcurl": out(["sh", "-c", "curl-config --version 2>/dev/null || "
                                "pkg-config --modversion libcurl"]).replace("libcurl ", "")}

    def report(self):
        f = self.facts()
        total = time.monotonic() - self.t0
        self.busy_all, self.others_all = self.load_all.done()
        print()
        print("=" * 78)
        print(f"popbridge benchmark, {self.started:%Y-%m-%d %H:%M} UTC, {f['nproc']} cores, "
              f"kernel {f['kernel']}, Dovecot {f['dovecot']}, popbridge {self.commit}")
        print(f"machine: load average {self.loadavg_start} at the start; over the run the CPUs were "
              f"{self.busy_all:.0f}% busy, {self.others_all:.0f}% with work not the benchmark's")
        print(f"delay proxy: {self.rtt_text()}; MB = 10^6 bytes of message data; RSS of the "
              "client process (GNU time)")
        if self.mpop_note:
            print(self.mpop_note)
        print()
        for line in self.table_lines():
            print(line)
        print()
        if self.rows:
            print("Ratios (msg/s; at the delay, naive and fetchmail ran on the first "
                  f"{self.s['BENCH_SLOW_CAP']} messages only):")
            for line in self.ratio_lines():
                print(line)
            print()
            obs = self.observations()
            if obs:
                print("Observations:")
                for line in obs:
                    print(f"  {line}")
                print()
        dist = self.distance_lines()
        if dist:
            print("Speed at a distance (issue 15), mixed corpus, msg/s median (range), MB/s:")
            for line in dist:
                print(line)
            print("Targets (issue 15):")
            for line in self.ratio_lines(which=self.distance_ratios()):
                print(line)
            print()
        if self.memory:
            print("Memory (popbridge run, peak RSS, target < 32 MiB):")
            for m in self.memory:
                ok = "met" if m["rss"] < 32 * 1024 else "NOT met"
                print(f"  {m['what']}: {m['rss'] / 1024:.1f} MiB in {m['seconds']:.2f} s"
                      + (f" ({m['cpu']:.2f} s CPU)" if "cpu" in m else "") + f": {ok}")
            print()
        if self.adopt:
            for line in self.adopt_lines():
                print(line)
            print()
        if self.soak:
            s = self.soak
            print(f"Daemon soak: {s['polls']} polls by SIGUSR1 in {s['loop_secs']:.0f} s "
                  f"(median {s['poll_median'] * 1000:.0f} ms a poll), a message every "
                  f"{self.s['BENCH_DELIVER_EVERY']} polls ({s['imported']} imported, IMAP holds "
                  f"{s['imap']})")
            print(f"  daemon RSS KiB first/max/last: {s['rss_first']}/{s['rss_max']}/"
                  f"{s['rss_last']}; open fds first/max/last: {s['fds_first']}/{s['fds_max']}/"
                  f"{s['fds_last']}; children at a sample, max: {s['children_max']}: "
                  + ("flat" if s["flat"] else "NOT flat"))
            if s["odd_count"]:
                print(f"  {s['odd_count']} unexpected daemon log lines, e.g.: {s['odd'][:3]}")
            print()
        if self.failures:
            print("FAILURES (these numbers are not to be trusted):")
            for x in self.failures:
                print(f"  {x}")
            print()
        print(f"total time {total / 60:.1f} min")
        self.write_md(f, total)

    def write_md(self, f, total):
        path = os.environ.get("BENCH_RESULTS") or str(
            BENCH_DIR / ("RESULTS.md" if self.default_settings else "RESULTS.local.md"))
        s = self.s
        L = ["# popbridge benchmark results", "",
             "Written by `make bench` (bench/bench.py); see bench/README.md for what each "
             "scenario means.", "",
             f"- Date: {self.started:%Y-%m-%d %H:%M} UTC; whole run {total / 60:.1f} min",
             f"- Machine: {f['nproc']} cores ({f['cpu']}), {f['memory']}, kernel {f['kernel']}",
             f"- Dovecot {f['dovecot']} (private instance on 127.0.0.1, default `mail_fsync`), "
             f"fetchmail {f['fetchmail']}, mpop {f['mpop']}, libcurl {f['libcurl']}, Python {f['python']}",
             f"- popbridge {self.commit}",
             f"- Load: load average {self.loadavg_start} at the start; over the whole run the "
             f"CPUs were {self.busy_all:.0f}% busy, {self.others_all:.0f}% of it with work that "
             "was not the benchmark's (the column `busy (others)` gives the same per run; "
             "a high `others` means a noisy neighbour and a number to take with salt)",
             f"- Settings: " + ", ".join(f"{k}={v}" for k, v in s.items())
             + ("" if self.default_settings else " (not the defaults)"),
             f"- Delay proxy: {self.rtt_text()}",
             "- Link empty up / down (relay runs): the share of the run (first byte to last, "
             "logins included) in which the IMAP upload (client to server) / the POP3 "
             "download (server to client) had nothing in flight: the relay held nothing for "
             "the receiver and its kernel send queue was empty, until the sender's next "
             "bytes (pauses over 2 ms). A sender held back by a slow receiver keeps its link "
             "full; one waiting for a reply, or busy, leaves it empty.",
             "- All clients: pop3s and imaps with certificate checks, keep the POP3 messages, "
             "a fresh IMAP user each run; every run is checked afterwards (message count, and "
             "total size except for fetchmail, which adds a Received header).",
             "- MB = 10^6 bytes of message data; peak RSS of the client process (GNU time "
             "`%M`), in MiB; client CPU = user + system seconds; machine busy = share of "
             "both cores in use during the run (/proc/stat).", ""]
        if self.failures:
            L += ["## FAILURES", "", "These runs broke; their numbers are missing or not to "
                  "be trusted:", ""] + [f"- {x}" for x in self.failures] + [""]
        if self.mpop_note:
            L += [f"- {self.mpop_note}", ""]
        dist = self.distance_lines(md=True)
        if dist:
            d, far = s["BENCH_DELAY_MS"], s["BENCH_FAR_DELAY_MS"]
            L += ["## Speed at a distance (issue 15)", "",
                  f"The mixed corpus ({self.find_count('mixed'):,} messages). Messages/s, the "
                  f"median of BENCH_REPEAT={s['BENCH_REPEAT']} runs with their range in "
                  "brackets for popbridge, minimal and the ceilings (one run for naive and "
                  "mpop), and MB/s; peak RSS the largest of the client's runs. Round trips "
                  f"measured through the relay: {self.rtt_text()}. Gmail-like: IMAP through a "
                  "relay that rewrites the server's capabilities to LITERAL- without "
                  "MULTIAPPEND (Dovecot behind it still accepts everything). The slow "
                  f"clients run on the first {s['BENCH_SLOW_CAP']} messages ([first N]).", ""]
            L += dist + ["", "Targets:", ""]
            L += self.ratio_lines(md=True, which=self.distance_ratios()) + [""]
        L += ["## Throughput", ""] + self.table_lines(md=True) + [""]
        if self.rows:
            L += ["## Targets (issue 4)", "",
                  f"Ratios of messages/s. At the delay the naive client and fetchmail ran on "
                  f"the first {s['BENCH_SLOW_CAP']} messages of each corpus only (they take "
                  f"minutes for the whole); the primary ratio compares them with popbridge on "
                  f"the whole corpus, the second with popbridge on those same messages "
                  f"(a few fixed round trips for the logins weigh more there).", ""]
            L += self.ratio_lines(md=True) + [""]
            obs = self.observations()
            if obs:
                L += ["Observations:", ""] + [f"- {x}" for x in obs] + [""]
        if self.memory:
            L += ["## Memory (target: peak RSS under 32 MiB)", "",
                  "| import | peak RSS MiB | seconds | target |", "|---|---:|---:|---|"]
            for m in self.memory:
                L.append(f"| {m['what']} | {m['rss'] / 1024:.1f} | {m['seconds']:.2f} | "
                         + ("met" if m["rss"] < 32 * 1024 else "**NOT met**") + " |")
            L.append("")
        if self.adopt:
            L += self.adopt_lines(md=True)
        if self.soak:
            sk = self.soak
            L += ["## Daemon soak (issue 3: memory and file descriptors stay flat)", "",
                  f"`popbridge daemon -f`, `interval = 3600`, one account; {sk['polls']} polls "
                  f"triggered by SIGUSR1, each awaited in the daemon's log; a new message "
                  f"before every {s['BENCH_DELIVER_EVERY']}th poll ({sk['imported']} imported, "
                  f"the IMAP mailbox holds {sk['imap']}). {sk['loop_secs']:.0f} s; a poll "
                  f"(SIGUSR1 to its summary line) took {sk['poll_median'] * 1000:.0f} ms "
                  f"(median), {sk['poll_p95'] * 1000:.0f} ms (95th percentile); machine busy "
                  f"{sk['busy']:.0f}%, others {sk['others']:.0f}%.", "",
                  "| | first | max | last |", "|---|---:|---:|---:|",
                  f"| daemon VmRSS KiB | {sk['rss_first']} | {sk['rss_max']} | {sk['rss_last']} |",
                  f"| daemon open fds | {sk['fds_first']} | {sk['fds_max']} | {sk['fds_last']} |",
                  "",
                  f"Verdict: **{'flat' if sk['flat'] else 'NOT flat'}** (flat: the fd count "
                  "never changes and VmRSS never rises more than 1 MiB above the first "
                  f"sample). Children of the daemon at a sample, at most: {sk['children_max']}.",
                  "", "Samples (poll: VmRSS KiB / fds): "
                  + ", ".join(f"{x['poll']}: {x['rss']}/{x['fds']}" for x in sk["samples"]), ""]
            if sk["odd_count"]:
                L += [f"{sk['odd_count']} unexpected daemon log lines, for example:", ""]
                L += [f"    {x}" for x in sk["odd"][:5]] + [""]
        Path(path).write_text("\n".join(L))
        log(f"results written to {path}")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (the private Dovecot delivers as uid 5000)")
    b = Bench()
    log("settings: " + ", ".join(f"{k}={v}" for k, v in b.s.items())
        + f"; parts: {','.join(b.parts)}; clients: {','.join(b.clients)}")
    try:
        b.setup()
        seed = b.s["BENCH_SEED"]
        cap = b.s["BENCH_SLOW_CAP"]
        if "small" in b.parts:
            c = b.make_corpus("small", corpus.small_messages(seed, b.s["BENCH_SMALL"]), cap)
            b.scenario(c)
        if "mixed" in b.parts or "distance" in b.parts:
            c = b.make_corpus("mixed", corpus.mixed_messages(seed, b.s["BENCH_MIXED"]), cap)
            b.scenario(c, NETS if "distance" in b.parts else ("loopback", "delay"))
            shutil.rmtree(c["dir"], ignore_errors=True)
        if "memory" in b.parts:
            b.memory_part()
        if "adopt" in b.parts:
            b.adopt_part()
        if "soak" in b.parts:
            b.soak_part()
        b.report()
    except Broken as e:
        b.failures.append(str(e))
        log(f"FAILED: {e}")
    finally:
        b.teardown()
    if b.failures:
        log(f"{len(b.failures)} failure(s): see above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
