#!/usr/bin/python3
"""The kill -9 loop at length, for `make stress` (tests/stress.sh).

    python3 tests/stress_kill.py [--kills N] [--segment N] [--seed N]

Runs popbridge against a private Dovecot (tests/harness.py) and kills it
with SIGKILL at random moments, at least N times in all (default
$POPBRIDGE_STRESS_KILLS or 500), in segments of --segment kills (default
$POPBRIDGE_STRESS_SEGMENT or 100), each with fresh users and its own seed,
using the loop of tests/faultlib.py (the one of tests/integ/test_crash.py
with the number of kills as a parameter).  After each segment one healthy
run must leave every message in IMAP exactly once and none on POP3.

Prints one line per segment, the lost and duplicated totals (both must be
0) and ends with "N passed, N failed" (a segment is one test); exits 1 if
anything failed.  $POPBRIDGE selects the binary as for run_integ.py.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import faultlib as fl  # noqa: E402
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int,
                    default=int(os.environ.get("POPBRIDGE_STRESS_KILLS", "500")))
    ap.add_argument("--segment", type=int,
                    default=int(os.environ.get("POPBRIDGE_STRESS_SEGMENT", "100")))
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("POPBRIDGE_TEST_SEED", str(int(time.time())))))
    args = ap.parse_args()

    exe = harness.popbridge_path()
    print(f"popbridge binary: {exe}; at least {args.kills} kills in segments of "
          f"{args.segment}, first seed {args.seed}", flush=True)
    parent = os.environ.get("POPBRIDGE_TEST_TMP") or None
    root = Path(tempfile.mkdtemp(prefix="popbridge-stress-", dir=parent))
    os.chmod(root, 0o755)
    os.environ["POPBRIDGE_TEST_TMP"] = str(root)
    instances = {}
    passed = failed = 0
    kills = lost = dup = corrupt = messages = 0
    seg = 0
    t_start = time.monotonic()
    try:
        while kills < args.kills:
            seg += 1
            want = min(args.segment, args.kills - kills)
            seed = args.seed + seg
            tmp = Path(tempfile.mkdtemp(prefix=f"seg{seg}-", dir=root))
            os.chmod(tmp, 0o755)
            t = harness.TestContext(f"stress.kill_segment_{seg}", tmp, instances)
            t0 = time.monotonic()
            try:
                dc = t.dovecot()
                res = fl.kill_loop(t, dc, kills=want, seed=seed, final_timeout=600)
                kills += res["kills"]
                lost += res["lost"]
                dup += res["dup"]
                corrupt += res["corrupt"]
                messages += res["messages"]
                problems = []
                if res["lost"] or res["dup"] or res["corrupt"]:
                    problems.append(f"lost {res['lost']}, duplicated {res['dup']}, "
                                    f"changed {res['corrupt']}")
                if res["missing"] or res["left_on_pop3"]:
                    problems.append(f"{res['missing']} not in IMAP, {res['left_on_pop3']} left "
                                    f"on POP3 after the final run")
                if res["final_rc"] != 0:
                    problems.append(f"final run exited {res['final_rc']}")
                if res["bad_exits"]:
                    problems.append(f"{len(res['bad_exits'])} unkilled runs failed, e.g. "
                                    f"{res['bad_exits'][0][:200]}")
                if res["kills"] == 0:
                    problems.append("no run could be killed")
                line = (f"segment {seg} (seed {seed}): {res['kills']} kills landed "
                        f"{res['where']}, {res['finished']} runs finished, {res['messages']} "
                        f"messages; lost {res['lost']}, duplicated {res['dup']} "
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
                if kills == 0 and seg >= 3:
                    break
            sys.stdout.flush()
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
    print(f"kill -9 stress: {kills} kills, {messages} messages: lost {lost}, duplicated {dup}, "
          f"changed {corrupt} ({time.monotonic() - t_start:.0f}s)")
    if kills < args.kills:
        print(f"only {kills} of {args.kills} kills were made")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or lost or dup or corrupt else 0


if __name__ == "__main__":
    sys.exit(main())
