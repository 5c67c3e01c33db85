#!/usr/bin/python3
"""What routing and the Gmail API cost (issues 16 and 17), for `make bench`.

Part "route" (loopback, the private Dovecot): the same corpus imported
  - plain: an account without routing keys;
  - rules: the same account with 14 rules (12 that never match, a spam rule
    to Junk, a List-Id glob), every message matched against them;
  - multidrop: a catch-all delivered by Delivered-To to three destinations
    (three Dovecot users: three IMAP logins).
Each round runs the three in turn on fresh destinations and a fresh state
(the POP3 mailbox keeps its mail: keep = true), BENCH_ROUTE_ROUNDS rounds;
the table shows medians, and each variant's time as a share of plain's.

Part "gmail" (through bench/delayproxy.py at BENCH_DELAY_MS each way): the
same N messages into
  - the Gmail API's local fake (tests/gmailfake.py, never Google; HTTP/1.1
    keep-alive, a few requests in flight);
  - Dovecot behind the relay that makes it look like Gmail's IMAP (LITERAL-,
    no MULTIAPPEND).
The fake is Python in this process: what it can serve bounds the first
figure on a small machine, and the table says so.

Writes bench/RESULTS-route.md and prints it.  Knobs: BENCH_ROUTE_N (2000),
BENCH_ROUTE_ROUNDS (3), BENCH_GMAIL_N (300), BENCH_DELAY_MS (20).
"""

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gmailfake import GmailFake  # noqa: E402
from harness import (Dovecot, free_ports, make_account, small_message,  # noqa: E402
                     write_config)

BIN = str(ROOT / "bridge" / "popbridge")
PY = "/usr/bin/python3"


def knob(name, default):
    return int(os.environ.get(name, default))


N = knob("BENCH_ROUTE_N", 2000)
ROUNDS = knob("BENCH_ROUTE_ROUNDS", 3)
GN = knob("BENCH_GMAIL_N", 300)
DELAY = knob("BENCH_DELAY_MS", 20)


def log(msg):
    print(f"route_bench: {msg}", file=sys.stderr, flush=True)


def corpus(n):
    rng = random.Random(1616)
    out = []
    for i in range(n):
        raw = small_message(i, rng, "route-bench")
        extra = f"Delivered-To: {'abc'[i % 3]}@family.example\n"
        if i % 9 == 0:
            extra += "X-Spam-Flag: YES\n"
        if i % 5 == 0:
            extra += "List-Id: Debian devel <debian-devel.lists.debian.org>\n"
        out.append(extra.encode() + raw)
    return out


def run(cfg):
    """One `popbridge run`: wall seconds and its max RSS (MiB)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M", BIN, "-c", str(cfg), "run"],
                       capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"route_bench: popbridge exited {p.returncode}: {p.stderr[-600:]}")
    secs, kib = p.stderr.strip().splitlines()[-1].split()
    return float(secs), int(kib) / 1024.0


NEVER = [{"header": f"X-Never-{k}", "glob": f"*never-{k}*"} for k in range(12)]


def route_part(dc, work):
    src = "rsrc"
    dc.add_user(src, "pw-src")
    raws = corpus(N)
    for raw in raws:
        dc.deliver(src, raw)
    times = {"plain": [], "rules": [], "multidrop": []}
    rss = {k: [] for k in times}
    for rnd in range(ROUNDS):
        for kind in times:
            tag = f"{kind[0]}{rnd}"
            dst = f"rd{tag}"
            dc.add_user(dst, "pw-d")
            acct = make_account(kind, dc.pop3_block(src), dc.imap_block(dst), keep=True)
            if kind == "rules":
                acct["rules"] = [dict(r, mailbox="Never") for r in NEVER] + [
                    {"header": "X-Spam-Flag", "is": "YES", "mailbox": "Junk"},
                    {"header": "List-Id", "glob": "*<debian-devel.lists.debian.org>",
                     "mailbox": "debian-devel"}]
            elif kind == "multidrop":
                dests = []
                for who in "abc":
                    u = f"r{who}{tag}"
                    dc.add_user(u, "pw-" + who)
                    dests.append(dict(dc.imap_block(u), name=who))
                acct["destinations"] = dests
                acct["multidrop"] = {"map": [{"address": f"{w}@family.example", "to": w}
                                             for w in "abc"], "default": "imap"}
            state = work / f"state-{tag}"
            state.mkdir()
            cfg = write_config(work / f"{tag}.conf", [acct], state)
            secs, mib = run(cfg)
            times[kind].append(secs)
            rss[kind].append(mib)
            log(f"round {rnd + 1}: {kind}: {N} messages in {secs:.2f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [f"| {k} | {N} | {med[k]:.2f} s | {N / med[k]:.0f} | "
            f"{100 * med[k] / med['plain']:.0f} % | {max(rss[k]):.1f} MiB |"
            for k in times]
    return ("| account | messages | time (median of %d) | msg/s | of plain's time | "
            "max RSS |\n|---|---|---|---|---|---|\n" % ROUNDS) + "\n".join(rows)


def gmail_part(dc, work):
    fake = GmailFake(work / "fake")
    fake.start()
    tok = work / "token.sh"
    tok.write_text(f"#!/bin/sh\necho {fake.token}\n")
    tok.chmod(0o700)
    pg, pi = free_ports(2)
    proxy = subprocess.Popen(
        [PY, str(ROOT / "bench" / "delayproxy.py"), "--delay-ms", str(DELAY),
         "--tls-cert", str(dc.cert_file), "--tls-key", str(dc.key_file),
         f"{pg}:{fake.port}", f"{pi}:{dc.imap_port}:{DELAY}:rewrite"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if proxy.stdout.readline().decode().strip() != "ready":
            raise SystemExit("route_bench: the delay proxy did not start")
        out = []
        api = {"url": f"gmail-api:https://127.0.0.1:{pg}", "user": fake.address,
               "oauth2_token_command": str(tok), "ca_file": fake.ca_file}
        dc.add_user("gdst", "pw-gdst")
        imap = dict(dc.imap_block("gdst"), url=f"imaps://localhost:{pi}")
        first, later = corpus(2 * GN)[:GN], corpus(2 * GN)[GN:]
        for name, block in (("Gmail API (fake)", api), ("Gmail-like IMAP", imap)):
            src = f"gsrc{len(out)}"
            dc.add_user(src, "pw-g")
            for raw in first:
                dc.deliver(src, raw)
            state = work / f"gstate-{len(out)}"
            state.mkdir()
            cfg = write_config(work / f"g{len(out)}.conf",
                               [make_account("g", dc.pop3_block(src), block, keep=True)],
                               state)
            # First contact looks for each message in the destination
            # (Gmail: a search each); later runs import new mail only.
            secs, mib = run(cfg)
            out.append(f"| {name}, first contact | {GN} | {DELAY} ms | {secs:.2f} s | "
                       f"{GN / secs:.1f} | {mib:.1f} MiB |")
            log(f"{name}: first contact, {GN} messages in {secs:.2f} s")
            for raw in later:
                dc.deliver(src, raw)
            secs, mib = run(cfg)
            out.append(f"| {name}, new mail | {GN} | {DELAY} ms | {secs:.2f} s | "
                       f"{GN / secs:.1f} | {mib:.1f} MiB |")
            log(f"{name}: new mail, {GN} messages in {secs:.2f} s")
        if len(fake.messages) != 2 * GN:
            raise SystemExit(f"route_bench: the fake holds {len(fake.messages)} of {2 * GN}")
        return ("| destination | messages | delay each way | time | msg/s | max RSS |\n"
                "|---|---|---|---|---|---|\n" + "\n".join(out))
    finally:
        proxy.terminate()
        proxy.wait()
        fake.stop()


def main():
    if not os.access(BIN, os.X_OK):
        raise SystemExit("route_bench: bridge/popbridge is not built")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"route-bench-{os.getpid()}"
    work.mkdir()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    load = os.getloadavg()[0]
    with Dovecot() as dc:
        dc.start()
        route = route_part(dc, work)
        gmail = gmail_part(dc, work)
    text = (f"# Routing and the Gmail API (issues 16, 17)\n\n"
            f"Measured {started}, popbridge {rev}, `sh bench/run.sh` (bench/route_bench.py), "
            f"{os.cpu_count()} CPUs, load average {load:.1f} at the start.\n\n"
            f"## What routing costs (loopback)\n\n{route}\n\n"
            "The rules are matched on the header already in memory; multidrop adds three "
            "IMAP logins and three destinations' intents per batch.\n\n"
            f"## Gmail: the API (local fake) and Gmail-like IMAP, at {DELAY} ms each way\n\n"
            f"{gmail}\n\n"
            "Through the API popbridge paces itself to Google's per-user quota (250 "
            "units a second; a messages.import costs 25): about 10 messages a second "
            "however short the round trip, with a few requests in flight so that the "
            "round trip does not lower it further. On first contact each message is "
            "also looked up (messages.list, and messages.get of a candidate), so that mail "
            "Gmail's own fetcher imported is not imported twice. Gmail's IMAP has no such "
            "pacing but caps uploads at about 500 MB a day. The fake is Python in the "
            "benchmark's process (HTTP/1.1 keep-alive): no measure of Google's servers.\n")
    (ROOT / "bench" / "RESULTS-route.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
