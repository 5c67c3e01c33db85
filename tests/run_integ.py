#!/usr/bin/python3
"""Run popbridge's integration tests.

    python3 tests/run_integ.py [-k PATTERN] [-x] [--keep-tmp] [-l]

Discovers tests/integ/test_*.py and runs every function named test_* in
file order.  Each test gets a TestContext (tests/harness.py) with a fresh
temp dir; the Dovecot instances a file asks for are shared by its tests and
stopped after the file.  Prints "PASS name" or "FAIL name: reason" (with
popbridge's output and the Dovecot log tail) and ends with one line
"N passed, N failed"; exits 1 if anything failed.

The binary comes from $POPBRIDGE (default bridge/popbridge in the repo).
"""

import argparse
import fnmatch
import importlib.util
import inspect
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


def discover(pattern):
    tests = []
    for path in sorted((HERE / "integ").glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"integ_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            tests.append((path.stem, None, traceback.format_exc()))
            continue
        funcs = [f for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f)
                 and f.__module__ == mod.__name__]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            name = f"{path.stem}.{f.__name__}"
            if pattern and not _matches(pattern, name):
                continue
            tests.append((path.stem, name, f))
    return tests


def _matches(pattern, name):
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, f"*{pattern}*")
    return pattern in name


def reason_of(exc):
    """One line: the exception and where in a test file it was raised."""
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else ""
    kind = type(exc).__name__
    text = first if isinstance(exc, AssertionError) and first else f"{kind}: {first}"
    where = ""
    for fs in reversed(traceback.extract_tb(exc.__traceback__)):
        if "/integ/" in fs.filename:
            where = f" [{Path(fs.filename).name}:{fs.lineno}]"
            if not first and fs.line:
                text = f"{kind}: {fs.line.strip()}"
            break
    return (text or kind) + where


# Files that take longest go first, so that the parallel run ends evenly.
SLOW_FIRST = ["test_crash", "test_batch", "test_exactly_once", "test_fakepop3",
              "test_daemon", "test_cyrus", "test_courier", "test_faults", "test_signals",
              "test_hostile", "test_migrate", "test_secrets", "test_tls",
              "test_oauth2", "test_network"]


def run_parallel(args):
    """Each test file in a child process of this runner, args.jobs at a
    time; their output is printed whole as each file ends, and the counts
    are summed into the one closing line."""
    import subprocess
    stems = []
    for stem, _, _ in discover(args.k):
        if stem not in stems:
            stems.append(stem)
    stems.sort(key=lambda s: SLOW_FIRST.index(s) if s in SLOW_FIRST else len(SLOW_FIRST))
    exe = harness.popbridge_path()
    print(f"popbridge binary: {exe}; {len(stems)} files, {args.jobs} at a time")
    sys.stdout.flush()
    passed = failed = 0
    t_start = time.monotonic()
    running = []
    pending = list(stems)
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                stem = pending.pop(0)
                cmd = [sys.executable, str(Path(__file__).resolve()), "--file", stem]
                if args.k:
                    cmd += ["-k", args.k]
                if args.keep_tmp:
                    cmd.append("--keep-tmp")
                out = tempfile.TemporaryFile(mode="w+")
                p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
                running.append((stem, p, out))
            time.sleep(0.2)
            for item in list(running):
                stem, p, out = item
                if p.poll() is None:
                    continue
                running.remove(item)
                out.seek(0)
                text = out.read()
                out.close()
                counts = None
                for line in text.splitlines():
                    if line.startswith(("popbridge binary:", "total time ")):
                        continue
                    if line.endswith(" failed") and " passed, " in line:
                        counts = line
                        continue
                    print(line)
                if counts is None:
                    print(f"FAIL {stem}: the file's runner ended without a summary "
                          f"(exit {p.returncode})")
                    failed += 1
                else:
                    a, b = counts.split(" passed, ")
                    passed += int(a)
                    failed += int(b.split()[0])
                sys.stdout.flush()
    except KeyboardInterrupt:
        for _, p, _ in running:
            p.terminate()
        for _, p, _ in running:
            p.wait()
        print("interrupted")
        failed += 1
    print(f"total time {time.monotonic() - t_start:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not stems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", metavar="PATTERN",
                    help="run only tests whose name (file.function) contains "
                         "PATTERN (or matches it as a glob)")
    ap.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    ap.add_argument("-l", "--list", action="store_true", help="list the tests and exit")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dirs of failed tests")
    ap.add_argument("-j", "--jobs", type=int,
                    default=int(os.environ.get("POPBRIDGE_TEST_JOBS", "1")),
                    help="run this many test files at once, each in its own "
                         "process with its own servers (default 1, or "
                         "$POPBRIDGE_TEST_JOBS)")
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.jobs > 1 and not args.list and not args.file:
        return run_parallel(args)

    # A TERM or HUP (CI timeout, closed terminal) unwinds like ^C, so the
    # private Dovecot instances are stopped and the temp dirs removed.
    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    tests = discover(args.k)
    if args.file:
        tests = [t for t in tests if t[0] == args.file]
    if args.list:
        for _, name, f in tests:
            print(name if name else f"(import error in {_})")
        return 0

    exe = harness.popbridge_path()
    print(f"popbridge binary: {exe}"
          + ("" if os.access(exe, os.X_OK) else "  (MISSING: tests that run it will fail)"))
    sys.stdout.flush()
    parent = os.environ.get("POPBRIDGE_TEST_TMP") or None
    if parent:
        os.makedirs(parent, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="popbridge-integ-", dir=parent))
    # Dovecot's mail processes (uid 5000) must traverse it.
    os.chmod(root, 0o755)
    os.environ["POPBRIDGE_TEST_TMP"] = str(root)

    passed = failed = 0
    t_start = time.monotonic()
    instances = {}
    current_file = None
    keep_root = False

    def close_file_instances():
        for dc in instances.values():
            dc.cleanup()
        instances.clear()

    try:
        for stem, name, f in tests:
            if stem != current_file:
                close_file_instances()
                current_file = stem
            if name is None:
                failed += 1
                print(f"FAIL {stem}: import error\n{f}")
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f"{name.split('.')[-1][:40]}-", dir=root))
            os.chmod(tmp, 0o755)
            ctx = harness.TestContext(name, tmp, instances)
            t0 = time.monotonic()
            try:
                f(ctx)
            except Exception as exc:
                failed += 1
                dt = time.monotonic() - t0
                print(f"FAIL {name}: {reason_of(exc)} ({dt:.1f}s)")
                if not isinstance(exc, AssertionError):
                    print("".join("  tb| " + line + "\n" for line in
                                  "".join(traceback.format_exception(exc)).splitlines()[-12:]), end="")
                print(ctx.report(), end="")
                if args.keep_tmp:
                    keep_root = True
                    print(f"  kept: {tmp}")
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
                sys.stdout.flush()
                if args.exitfirst:
                    break
            else:
                passed += 1
                dt = time.monotonic() - t0
                print(f"PASS {name} ({dt:.1f}s)")
                for n in ctx.notes:
                    print(f"  note: {n}")
                shutil.rmtree(tmp, ignore_errors=True)
                sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted")
        failed += 1
    finally:
        close_file_instances()
        if keep_root:
            print(f"temp dirs of failed tests kept under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if not tests:
        print("no tests matched")
    print(f"total time {time.monotonic() - t_start:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
