#!/usr/bin/python3
"""The interrupt loop at length, for `make stress` (tests/stress.sh).

    python3 tests/stress_kill.py [--signal KILL|TERM|INT|HUP] [--kills N]
                                 [--segment N] [--seed N]

Runs popbridge against a private Dovecot (tests/harness.py) and interrupts
it with the signal (default SIGKILL) at least N times in all (default
$POPBRIDGE_STRESS_KILLS or 500), each time starting the next run at once,
in segments of --segment signals (default $POPBRIDGE_STRESS_SEGMENT or 50),
each segment with a fresh Dovecot, fresh users and its own seed.  The loop
is harness.InterruptLoop, the one of tests/integ/test_crash.py: the
moments are chosen within the working time measured on this machine (more
mail per round on a fast one), where each signal landed is measured, and
the second half of every segment runs with two CPU-bound processes beside
it (this script's own, killed by PID when the segment ends).  After each
segment, once Dovecot has ended every session of the user, one healthy run
must leave every message in IMAP exactly once and none on POP3.

For TERM, INT and HUP every signalled run must also exit by itself (75
with work left undone and a log line saying it is stopping), not be killed
by the signal.

Prints one line per segment, the lost / duplicated / changed totals (all
must be 0; each segment's verdict also goes to $POPBRIDGE_STRESS_TALLY)
and ends with "N passed, N failed" (a segment is one test); exits 1 if
anything failed.  $POPBRIDGE selects the binary as for run_integ.py.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


def segment(t, dc, sig, want, seed):
    """One segment: `want` signals, the second half with CPU load.
    Returns (InterruptLoop, verdict dict)."""
    loop = harness.InterruptLoop(t, dc, sig, seed=seed, name="stress")
    load = harness.CpuLoad(2)
    max_rounds = 3 * want + 20
    try:
        loop.calibrate()
        while len(loop.kills) < want // 2 and loop.rounds < max_rounds // 2:
            loop.round()
        load.start()
        loop.loaded = True
        loop.calibrate()
        while len(loop.kills) < want and loop.rounds < max_rounds:
            loop.round()
    finally:
        load.stop()
    return loop, loop.finish(final_timeout=900)


def problems_of(loop, res, want):
    out = []
    if res["lost"] or res["dup"] or res["changed"] or res["foreign"]:
        out.append(f"lost {res['lost']} (e.g. {res['lost_e']}), duplicated {res['dup']} "
                   f"(e.g. {res['dup_e']}), changed {res['changed'] + res['foreign']}")
    if res["missing"] or res["pop3_left"]:
        out.append(f"{res['missing']} not in IMAP, {res['pop3_left']} left on POP3 after the "
                   f"final run")
    if res["final"].rc != 0:
        out.append(f"final run exited {res['final'].rc}")
    out += loop.session_waits
    if loop.bad_exits:
        out.append(f"{len(loop.bad_exits)} unsignalled runs failed, e.g. "
                   f"{loop.bad_exits[0][:200]}")
    if loop.signal_deaths:
        out.append(f"{len(loop.signal_deaths)} of {len(loop.kills)} runs were killed by the "
                   f"signal instead of stopping by themselves")
    out += loop.hung[:2]
    if loop.term_problems:
        out.append(f"{len(loop.term_problems)} exits that do not fit, e.g. "
                   f"{loop.term_problems[0][:200]}")
    if len(loop.kills) < want:
        out.append(f"only {len(loop.kills)} of {want} signals in {loop.rounds} rounds")
    if loop.mid() * 4 < len(loop.kills):
        out.append(f"only {loop.mid()} of {len(loop.kills)} signals landed mid-work")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--signal", default="KILL", choices=["KILL", "TERM", "INT", "HUP"])
    ap.add_argument("--kills", type=int,
                    default=int(os.environ.get("POPBRIDGE_STRESS_KILLS", "500")))
    ap.add_argument("--segment", type=int,
                    default=int(os.environ.get("POPBRIDGE_STRESS_SEGMENT", "50")))
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("POPBRIDGE_TEST_SEED", str(int(time.time())))))
    args = ap.parse_args()
    sig = getattr(signal, "SIG" + args.signal)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    # A CI timeout's SIGTERM unwinds like ^C: CPU load and Dovecot are stopped.
    signal.signal(signal.SIGTERM, on_term)

    exe = harness.popbridge_path()
    print(f"popbridge binary: {exe}; at least {args.kills} SIG{args.signal} in segments of "
          f"{args.segment}, half of each with two CPU-bound processes beside it; first seed "
          f"{args.seed}", flush=True)
    parent = os.environ.get("POPBRIDGE_TEST_TMP") or None
    root = Path(tempfile.mkdtemp(prefix="popbridge-stress-", dir=parent))
    os.chmod(root, 0o755)
    os.environ["POPBRIDGE_TEST_TMP"] = str(root)
    instances = {}
    passed = failed = 0
    kills = mid = lost = dup = changed = messages = 0
    seg = empty = 0
    t_start = time.monotonic()
    try:
        while kills < args.kills:
            seg += 1
            want = min(args.segment, args.kills - kills)
            seed = args.seed + seg
            tmp = Path(tempfile.mkdtemp(prefix=f"seg{seg}-", dir=root))
            os.chmod(tmp, 0o755)
            t = harness.TestContext(f"stress.sig{args.signal.lower()}_segment_{seg}", tmp,
                                    instances)
            t0 = time.monotonic()
            seg_kills = 0
            try:
                dc = t.dovecot()
                loop, res = segment(t, dc, sig, want, seed)
                seg_kills = len(loop.kills)
                kills += seg_kills
                mid += loop.mid()
                lost += res["lost"]
                dup += res["dup"]
                changed += res["changed"] + res["foreign"]
                messages += len(loop.raws)
                problems = problems_of(loop, res, want)
                line = (f"segment {seg} (seed {seed}): {loop.summary()}; lost {res['lost']}, "
                        f"duplicated {res['dup']}, changed {res['changed']} "
                        f"({time.monotonic() - t0:.0f}s)")
                if problems:
                    failed += 1
                    print(f"FAIL {line}: " + "; ".join(problems))
                    print(t.report(), end="")
                else:
                    passed += 1
                    print(f"PASS {line}")
            except Exception as exc:
                failed += 1
                print(f"FAIL segment {seg} (seed {seed}): {type(exc).__name__}: {exc}")
                print("".join(traceback.format_exception(exc))[-2000:])
                print(t.report(), end="")
            sys.stdout.flush()
            empty = 0 if seg_kills else empty + 1
            if empty >= 3:
                print("three segments in a row without a signal sent; stopping")
                failed += 1
                break
            shutil.rmtree(tmp, ignore_errors=True)
            for dc in list(instances.values()):
                dc.cleanup()
            instances.clear()
    except KeyboardInterrupt:
        print("interrupted")
        failed += 1
    finally:
        for dc in instances.values():
            dc.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    print(f"SIG{args.signal} stress: {kills} signals ({mid} mid-work), {messages} messages: "
          f"lost {lost}, duplicated {dup}, changed {changed} "
          f"({time.monotonic() - t_start:.0f}s)")
    if kills < args.kills:
        print(f"only {kills} of {args.kills} signals were sent")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or lost or dup or changed else 0


if __name__ == "__main__":
    sys.exit(main())
