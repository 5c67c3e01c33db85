"""`popbridge batch FILE`: many accounts from a CSV file, in parallel
(issue 5).

Every outcome is read back from the private Dovecot: each account's IMAP
INBOX over IMAP (every message exactly once, bytes as normalised), its POP3
mailbox over POP3; plus the --report CSV and the exit status.  Helpers are
in tests/batchlib.py.
"""

import hashlib
import os
import time

from harness import normalise
from batchlib import (EX_DATAERR, EX_OK, EX_TEMPFAIL, HEADER, assert_no_secrets,
                      csv_text, exactly_once_problems, imap_count, imap_counts,
                      imap_mailboxes, imap_messages, imap_state, ledger_files,
                      make_accounts, pop3_counts, read_report, report_rows_so_far,
                      run_batch, secret_file, start_batch, verify_imported, write_csv)

FULL_HEADER = HEADER + ["pop3_ca_file", "imap_ca_file", "flags"]
N_KILL = 80             # accounts of the kill -9 test


def secrets_of(accts):
    return [s for a in accts for s in (a.pop3_pw, a.imap_pw)]


def by_line(rows):
    out = {}
    for r in rows:
        assert r["line"] not in out, f"report has line {r['line']} twice"
        out[r["line"]] = r
    return out


def check_ok_rows(rows, accts, imported=None):
    """One `ok` row per account, matching its CSV line and users."""
    got = by_line(rows)
    want = {str(a.line): a for a in accts}
    assert set(got) == set(want), (
        f"report lines {sorted(set(got) ^ set(want), key=int)[:10]} differ "
        f"({len(got)} rows for {len(want)} accounts)")
    bad = []
    for line, a in want.items():
        r = got[line]
        n = len(a.raws) if imported is None else imported
        if (r["status"], r["imported"], r["pop3_user"], r["imap_user"]) != \
                ("ok", str(n), a.src, a.dst):
            bad.append(f"line {line}: {r['status']} imported={r['imported']} "
                       f"{r['pop3_user']}->{r['imap_user']} error={r['error']!r}")
    assert not bad, f"{len(bad)} report rows not ok/{imported}: " + " | ".join(bad[:5])


# ----------------------------------------------------------------- 1
def test_batch_200_accounts_jobs16(t):
    """200 accounts x 20 messages, --jobs 16 --per-host 16, keep=false:
    exit 0, every message in its account's INBOX exactly once, every POP3
    mailbox empty, 200 `ok` rows with imported=20 and the right bytes, and
    no password in the report or the output.  Passwords come as the secret
    itself (some needing CSV quoting), as file:PATH (under --secrets-dir)
    and as env:NAME (with --secrets-env-prefix); some rows name their CA
    files, the others get --ca-file."""
    dc = t.dovecot()
    t0 = time.monotonic()
    accts = make_accounts(t, dc, 200, 20, "a")
    t.note(f"200 accounts x 20 messages set up in {time.monotonic() - t0:.1f}s")
    env = {}
    rows = []
    for a in accts:
        if a.idx % 10 == 1:
            a.pop3_pw_field = "file:" + secret_file(t, f"pop3-{a.idx}", a.pop3_pw)
        if a.idx % 10 == 2:
            name = f"PB_BATCH_TEST_IMAP_PW_{a.idx}"
            env[name] = a.imap_pw
            a.imap_pw_field = "env:" + name
        ca = dc.ca_file if a.idx % 2 == 0 else ""
        rows.append(a.row(dc, pop3_ca_file=ca, imap_ca_file=ca, flags=""))
    csv_path = write_csv(t.tmp / "accounts.csv", rows, FULL_HEADER, accounts=accts)
    report = t.tmp / "report.csv"
    run = start_batch(t, csv_path, "--jobs", 16, "--per-host", 16, "--report", report,
                      "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file,
                      "--secrets-dir", t.tmp / "secrets",
                      "--secrets-env-prefix", "PB_BATCH_TEST_", env=env)
    r = run.wait(timeout=200)
    t.note(f"batch of 200 accounts took {r.seconds:.1f}s; at most "
           f"{run.children_max} workers seen at once")
    assert r.rc == EX_OK, f"exit {r.rc}, want 0"
    rep = read_report(report)
    check_ok_rows(rep, accts, imported=20)
    at = {str(a.line): a for a in accts}
    for row in rep:
        a = at[row["line"]]
        want_bytes = sum(len(normalise(raw)) for raw in a.raws)
        assert row["bytes"] == str(want_bytes), (
            f"line {row['line']}: bytes={row['bytes']}, want {want_bytes}")
        assert row["skipped"] == "0" and row["skipped_reasons"] == "" and \
            row["error"] == "", f"line {row['line']}: {row}"
    verify_imported(dc, accts)
    assert_no_secrets(secrets_of(accts), [("report", report.read_text()),
                                          ("stdout", r.stdout), ("stderr", r.stderr)])


# ----------------------------------------------------------------- 1b
def test_batch_per_host_counts_connections_per_server(t):
    """--jobs 12 --per-host 12 with every POP3 and IMAP server on one host
    name: the batch runs up to 12 accounts at once (each holds one POP3 and
    one IMAP connection, to two different servers), not 6."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, 24, 2, "p")
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts], accounts=accts)
    run = start_batch(t, csv_path, "--jobs", 12, "--per-host", 12, "--state-dir",
                      t.tmp / "state", "--ca-file", dc.ca_file)
    r = run.wait(timeout=120)
    t.note(f"at most {run.children_max} workers seen at once")
    assert r.rc == EX_OK, f"exit {r.rc}, want 0"
    verify_imported(dc, accts)
    assert run.children_max > 6, (
        f"--jobs 12 --per-host 12, every server on host localhost: never more than "
        f"{run.children_max} accounts ran at once (want up to 12)")


# ----------------------------------------------------------------- 2
def test_batch_kill9_half_way_then_rerun(t):
    """80 accounts x 20 (keep=false): SIGKILL to the batch and its workers
    (the whole process group) when about half of the accounts are reported
    done; the same command again: exit 0, every message exactly once, every
    POP3 mailbox empty, every account `ok` in the rerun's report."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, N_KILL, 20, "k")
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts], accounts=accts)
    report = t.tmp / "report.csv"
    args = ("--jobs", 16, "--per-host", 16, "--report", report,
            "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file)
    run = start_batch(t, csv_path, *args, name="killed")
    deadline = time.monotonic() + 150
    done = 0
    while time.monotonic() < deadline and run.proc.poll() is None:
        done = len(report_rows_so_far(report))
        if done >= N_KILL // 2:
            break
        time.sleep(0.02)
    assert run.proc.poll() is None, (
        f"the batch ended (exit {run.proc.returncode}) before it could be killed")
    assert done >= N_KILL // 2, f"not {N_KILL // 2} report rows within 150 s"
    run.kill_group()
    counts = imap_counts(dc, accts)
    total = sum(counts.values())
    partial = sum(1 for n in counts.values() if 0 < n < 20)
    full = sum(1 for n in counts.values() if n >= 20)
    # Imported but not yet reported: were they deleted from POP3 yet?
    reported = {r[2] for r in report_rows_so_far(report)}
    unreported = [a for a in accts if counts[a.idx] >= 20 and a.src not in reported]
    on_pop3 = sum(1 for n in pop3_counts(dc, unreported).values() if n > 0)
    t.note(f"killed with {done} rows reported: {total} of {20 * N_KILL} messages in IMAP, "
           f"{full} accounts complete ({len(unreported)} of them not reported yet, "
           f"{on_pop3} of those still on POP3), {partial} part-way")
    assert 0 < total < 20 * N_KILL and full < N_KILL, "the kill did not land half way"
    r = run_batch(t, csv_path, *args, timeout=200)
    assert r.rc == EX_OK, f"rerun exit {r.rc}, want 0"
    rep = read_report(report)
    bad = [x for x in rep if x["status"] != "ok"]
    assert len(rep) == N_KILL and not bad, (
        f"rerun report: {len(rep)} rows, not ok: {bad[:3]}")
    verify_imported(dc, accts)


# ----------------------------------------------------------------- 3
def test_batch_broken_rows(t):
    """A CSV with good rows and broken ones (too few columns, an http://
    URL, env: of an unset variable, keep=maybe (across two lines, in
    quotes), the same POP3 mailbox twice, 65 fields, an unclosed quote):
    the good rows import, the bad ones touch nothing, exit 65, and each bad
    row is named on stderr as FILE:LINE: and in the report as `invalid`
    with its line.  Every problem found is listed in one failure."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, 10, 3, "r")
    good = accts[:5]
    a_scheme, a_env, a_keep, a_dup_dst, a_many = accts[5:]
    envname = "PB_BATCH_TEST_SURELY_UNSET_VAR"
    os.environ.pop(envname, None)
    good[1].imap_pw_field = "env:PB_BATCH_TEST_IMAP_B"
    env = {"PB_BATCH_TEST_IMAP_B": good[1].imap_pw}
    good[2].pop3_pw_field = "file:" + secret_file(t, "pop3-c", good[2].pop3_pw)
    rows_text = csv_text([]).splitlines(keepends=True)           # header, line 1
    lines = {}

    def add(text, label):
        lines[label] = sum(x.count("\n") for x in rows_text) + 1
        rows_text.append(text)

    def row(a, **over):
        return csv_text([a.row(dc, **over)]).split("\n", 1)[1]

    add(row(good[0]), "good0")
    add(f"{dc.url('pop3')},{a_scheme.src},x\n", "too few columns")
    add(row(good[1]), "good1")
    add(row(a_scheme, pop3_url=f"http://localhost:{dc.pop3_port}"), "bad scheme")
    add(row(a_env, imap_password="env:" + envname), "unset env")
    add(row(a_keep, keep="maybe\nnot"), "keep maybe")
    add(row(good[2]), "good2")
    add(row(good[0], imap_user=a_dup_dst.dst, imap_password=a_dup_dst.imap_pw),
        "same POP3 mailbox")
    add(row(a_many).rstrip("\n") + "," * 57 + "\n", "65 fields")
    add(row(good[3]), "good3")
    add(row(good[4]), "good4")
    add(f'{dc.url("pop3")},"{a_scheme.src},pw,{dc.url("imap")},x,y,INBOX,true\n',
        "unclosed quote")
    csv_path = t.tmp / "accounts.csv"
    csv_path.write_text("".join(rows_text))
    assert "\nnot" in csv_path.read_text()          # keep=maybe spans two lines
    for k, a in enumerate(good):
        a.line = lines[f"good{k}"]
    bad_lines = {label: n for label, n in lines.items() if not label.startswith("good")}
    t.note("CSV lines: " + ", ".join(f"{n}={label}" for label, n in lines.items()))

    report = t.tmp / "report.csv"
    r = run_batch(t, csv_path, "--jobs", 4, "--per-host", 8, "--report", report,
                  "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file,
                  "--secrets-dir", t.tmp / "secrets",
                  "--secrets-env-prefix", "PB_BATCH_TEST_", env=env)
    problems = []
    # The good rows ran and imported.
    state = imap_state(dc, good)
    for k, a in enumerate(good):
        p = exactly_once_problems(a, state[a.idx])
        if p:
            problems.append(f"good row at line {a.line}: IMAP has {len(state[a.idx])} of "
                            f"{len(a.raws)}: " + "; ".join(p))
    rep = read_report(report)
    got = {x["line"]: x for x in rep}
    for a in good:
        x = got.get(str(a.line))
        if x is None or (x["status"], x["pop3_user"], x["imported"]) != ("ok", a.src, "3"):
            problems.append(f"report for good line {a.line} ({a.src}): "
                            + ("no row" if x is None else
                               f"{x['status']} {x['pop3_user']} imported={x['imported']}"))
    # Nothing of the bad rows ran.
    left = pop3_counts(dc, [a_scheme, a_env, a_keep, a_many])
    problems += [f"{a.src} (invalid row) lost mail on POP3"
                 for a in (a_scheme, a_env, a_keep, a_many) if left[a.idx] != 3]
    counts = imap_counts(dc, [a_scheme, a_env, a_keep, a_dup_dst, a_many])
    problems += [f"{a.dst} (invalid row) got mail"
                 for a in (a_scheme, a_env, a_keep, a_dup_dst, a_many) if counts[a.idx] != 0]
    # Each bad row is named by its line, on stderr and in the report.
    missing = [f"{label} (line {n})" for label, n in bad_lines.items()
               if f"{csv_path}:{n}:" not in r.stderr]
    if missing:
        problems.append(f"not on stderr as FILE:LINE: {missing}")
    invalid = {x["line"] for x in rep if x["status"] == "invalid"}
    want = {str(n) for n in bad_lines.values()}
    if invalid != want:
        problems.append(f"report invalid lines {sorted(invalid, key=int)}, "
                        f"want {sorted(want, key=int)}")
    if r.rc != EX_DATAERR:
        problems.append(f"exit {r.rc}, want 65")
    # The unclosed quote alone after one bad row (the file ends with a
    # newline, so it has 3 lines): it is named by the line it starts on.
    small = t.tmp / "unclosed.csv"
    small.write_text(csv_text([]) + "a,b\n" + f'{dc.url("pop3")},"{a_scheme.src},pw\n')
    r2 = run_batch(t, small, "--report", t.tmp / "unclosed-report.csv",
                   "--state-dir", t.tmp / "state")
    lines2 = sorted((x["line"] for x in read_report(t.tmp / "unclosed-report.csv")), key=int)
    if r2.rc != EX_DATAERR or f"{small}:3:" not in r2.stderr or lines2 != ["2", "3"]:
        problems.append(f"3-line CSV, unclosed quote on line 3: exit {r2.rc}, report "
                        f"lines {lines2} (want 2, 3), stderr: {r2.stderr.strip()[-200:]!r}")
    assert not problems, f"{len(problems)} problem(s): " + " | ".join(problems)
    assert_no_secrets(secrets_of(accts), [("report", report.read_text()),
                                          ("stdout", r.stdout), ("stderr", r.stderr)])


# ----------------------------------------------------------------- 4
def test_batch_retry_failed(t):
    """One account with a wrong IMAP password among good ones: exit 75 and
    that account `failed`; with the password fixed, --retry-failed runs
    only that account (one report row, no login to the others) and imports
    its mail; exit 0."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, 5, 4, "f")
    bad = accts[2]
    wrong = "WrongImapSecret-" + os.urandom(5).hex()
    bad.imap_pw_field = wrong
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts], accounts=accts)
    report = t.tmp / "report.csv"
    args = ("--jobs", 4, "--per-host", 8, "--report", report,
            "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file)
    r = run_batch(t, csv_path, *args)
    assert r.rc == EX_TEMPFAIL, f"first run exit {r.rc}, want 75"
    rep = by_line(read_report(report))
    assert rep[str(bad.line)]["status"] == "failed" and rep[str(bad.line)]["error"], (
        f"the wrong-password account: {rep[str(bad.line)]}")
    check_ok_rows([x for x in rep.values() if x["line"] != str(bad.line)],
                  [a for a in accts if a is not bad])
    assert imap_counts(dc, [bad])[bad.idx] == 0 and pop3_counts(dc, [bad])[bad.idx] == 4
    assert_no_secrets(secrets_of(accts) + [wrong], [
        ("report", report.read_text()), ("stdout", r.stdout), ("stderr", r.stderr)])

    bad.imap_pw_field = bad.imap_pw
    write_csv(csv_path, [a.row(dc) for a in accts], accounts=accts)
    log_from = dc.log_size()
    r = run_batch(t, csv_path, *args, "--retry-failed")
    assert r.rc == EX_OK, f"--retry-failed exit {r.rc}, want 0"
    rep = read_report(report)
    assert [(x["line"], x["status"], x["imported"]) for x in rep] == \
        [(str(bad.line), "ok", "4")], f"--retry-failed report: {rep}"
    with open(dc.log_path, "rb") as f:
        f.seek(log_from)
        log = f.read().decode("utf-8", "replace")
    others = [a.src for a in accts if a is not bad and f"user=<{a.src}>" in log]
    assert not others, f"--retry-failed logged in to finished accounts {others}"
    verify_imported(dc, accts)


# ----------------------------------------------------------------- 5
def test_batch_three_shards_concurrently(t):
    """--shard 0/3, 1/3 and 2/3 as three processes at once on one CSV of 60
    accounts, one state dir: every account run by exactly one shard (report
    lines: union all, pairwise disjoint), every message imported exactly
    once.  The shards depend on (pop3_url, pop3_user) only: some of the
    accounts in the reverse order get the same shards again.  A bad --shard
    is a usage error (64)."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, 60, 5, "s")
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts], accounts=accts)
    state = t.tmp / "state"

    def shards(csv_file, tag):
        runs = [start_batch(t, csv_file, "--shard", f"{k}/3", "--jobs", 4, "--per-host", 8,
                            "--report", t.tmp / f"{tag}-{k}.csv", "--state-dir", state,
                            "--ca-file", dc.ca_file, name=f"{tag}-{k}")
                for k in range(3)]
        results = [x.wait(timeout=200) for x in runs]
        for k, x in enumerate(results):
            assert x.rc == EX_OK, f"{tag}: shard {k}/3 exit {x.rc}"
        return [read_report(t.tmp / f"{tag}-{k}.csv") for k in range(3)]

    reps = shards(csv_path, "shard")
    users = [{x["pop3_user"] for x in rep} for rep in reps]
    t.note("accounts per shard: " + ", ".join(str(len(u)) for u in users))
    overlap = (users[0] & users[1]) | (users[0] & users[2]) | (users[1] & users[2])
    every = {a.src for a in accts}
    assert not overlap, f"accounts run by two shards: {sorted(overlap)[:5]}"
    assert set().union(*users) == every, (
        f"accounts run by no shard: {sorted(every - set().union(*users))[:5]}")
    assert sum(len(rep) for rep in reps) == 60, "an account has two rows in one report"
    assert all(users), "a shard got no account at all (60 accounts, 3 shards)"
    check_ok_rows([x for rep in reps for x in rep], accts)
    verify_imported(dc, accts)

    # Stable: 15 of the accounts (all done, so each run is a POP3 login)
    # in the reverse order, at other lines, land in the same shards.
    some = accts[:15]
    rev = write_csv(t.tmp / "reversed.csv", [a.row(dc) for a in reversed(some)])
    again = [{x["pop3_user"] for x in rep} for rep in shards(rev, "reversed")]
    want = [u & {a.src for a in some} for u in users]
    assert again == want, (
        "the same accounts in another order went to other shards: "
        + "; ".join(f"shard {k}: {sorted(want[k] ^ again[k])[:3]}" for k in range(3)
                    if want[k] != again[k]))
    verify_imported(dc, some)

    for bad in ("3/3", "1/0", "-1/3", "a/b"):
        r = run_batch(t, csv_path, "--shard", bad, "--state-dir", state)
        assert r.rc == 64, f"--shard {bad}: exit {r.rc}, want 64"


# ----------------------------------------------------------------- 6
def test_batch_dry_run_changes_nothing(t):
    """--dry-run logs in and lists; IMAP stays empty (no mailbox created),
    POP3 keeps every message, no ledger is written anywhere; exit 0."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, 4, 3, "y")
    accts[1].mailbox = "Archive/2024"
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts], accounts=accts)
    state = t.tmp / "state"
    r = run_batch(t, csv_path, "--dry-run", "--jobs", 4, "--per-host", 8, "--state-dir",
                  state, "--report", t.tmp / "report.csv", "--ca-file", dc.ca_file)
    assert r.rc == EX_OK, f"exit {r.rc}, want 0"
    assert all(n == 3 for n in pop3_counts(dc, accts).values()), "POP3 changed"
    counts = imap_counts(dc, accts)
    assert counts[accts[1].idx] is None, "--dry-run created the mailbox Archive/2024"
    assert all(counts[a.idx] == 0 for a in accts if a is not accts[1]), f"IMAP: {counts}"
    assert "Archive/2024" not in imap_mailboxes(dc, accts[1].dst)
    leds = ledger_files(state, t.tmp / "home")
    assert not leds, f"--dry-run wrote ledgers: {leds}"
    missing = [a.src for a in accts if a.src not in r.output]
    assert not missing, f"--dry-run output does not mention {missing}"


# ----------------------------------------------------------------- 7
def test_batch_refused_message_is_partial(t):
    """Dovecot with quota_max_mail_size = 100K: one account has a 150 KB
    message among small ones.  That account is `partial` (imported 4,
    skipped 1, the server's reason in skipped_reasons), the big message stays
    on POP3; the others are ok; exit 0 (partial counts as finished)."""
    dc = t.dovecot(quota_max_mail_size="100K")
    accts = make_accounts(t, dc, 3, 4, "q", big={1: [150_000]})
    csv_path = write_csv(t.tmp / "accounts.csv", [a.row(dc) for a in accts], accounts=accts)
    report = t.tmp / "report.csv"
    r = run_batch(t, csv_path, "--jobs", 3, "--per-host", 8, "--report", report,
                  "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file)
    rep = by_line(read_report(report))
    p = rep[str(accts[1].line)]
    assert (p["status"], p["imported"], p["skipped"]) == ("partial", "4", "1"), (
        f"the account with the big message: {p}")
    assert "LIMIT" in p["skipped_reasons"] or "maximum size" in p["skipped_reasons"], (
        f"skipped_reasons does not give the server's reason: {p['skipped_reasons']!r}")
    check_ok_rows([x for x in rep.values() if x["line"] != str(accts[1].line)],
                  [accts[0], accts[2]])
    big = accts[1].raws.pop()
    verify_imported(dc, [accts[0], accts[2]])
    verify_imported(dc, [accts[1]], pop3_empty=False)
    left = pop3_counts(dc, [accts[1]])[accts[1].idx]
    assert left == 1, f"{left} messages left on POP3, want the big one only"
    assert len(big) > 100_000
    assert r.rc == EX_OK, f"exit {r.rc}, want 0 (partial is finished)"


# ----------------------------------------------------------------- 8
def old_shard(url, user, n):
    """The shard the code before issue 7 gave a row: the first 64 bits of
    SHA-256("pop3_url\\npop3_user"), as written in the CSV, mod n."""
    return int(hashlib.sha256(f"{url}\n{user}".encode()).hexdigest()[:16], 16) % n


def spellings_over_old_shards(dc, user, n=2):
    """URLs of one POP3 mailbox: pop3s://localhost:PORT, the same with "/"
    and in capitals, pop3://localhost:PLAIN (STARTTLS), and more case
    variants until the old rule put them into every one of n shards (so a
    test of the old code cannot pass by luck)."""
    port = dc.pop3s_port
    urls = [f"pop3s://localhost:{port}", f"pop3s://localhost:{port}/",
            f"pop3s://LOCALHOST:{port}", f"pop3://localhost:{dc.pop3_port}"]
    extra = (f"pop3s://{h}:{port}{s}" for h in ("Localhost", "localHost", "LocalHost",
                                                "lOcalhost", "locaLhost", "LOCALhost")
             for s in ("", "/"))
    while len({old_shard(u, user, n) for u in urls}) < n:
        urls.append(next(extra))
    return urls


def test_batch_one_mailbox_spelled_many_ways_two_shards(t):
    """Issue "Exactly once", case 7.  One POP3 mailbox in 4+ rows, spelled
    pop3s://localhost:PORT, .../, pop3s://LOCALHOST:PORT, pop3://localhost:
    PLAIN (STARTTLS: the same mailbox) and so on, all to one IMAP INBOX,
    keep = true, among three ordinary accounts; run as --shard 0/2 and
    --shard 1/2 at once, each with its own --state-dir as on two machines.
    The destination holds every message exactly once; exactly one shard has
    the mailbox's rows: its first row is `ok`, every other one `invalid`
    ("the same POP3 mailbox and IMAP destination as line 2", on stderr as
    FILE:LINE: too), and that shard exits 65; the other shard has none of
    them.  Every ordinary account is `ok` in exactly one shard.  No secret
    anywhere.

    Before the fix: the rows were sharded by the URL as written, so both
    shards imported the mailbox and the INBOX held every message twice
    (the spellings are chosen so that the old rule splits them)."""
    dc = t.dovecot()
    accts = make_accounts(t, dc, 4, 6, "w")
    a, others = accts[0], accts[1:]
    a.keep = "true"
    urls = spellings_over_old_shards(dc, a.src)
    rows = [a.row(dc, pop3_url=u) for u in urls] + [o.row(dc) for o in others]
    csv_path = write_csv(t.tmp / "accounts.csv", rows)
    first, dups = 2, list(range(3, 2 + len(urls)))
    for k, o in enumerate(others):
        o.line = 2 + len(urls) + k
    t.note(f"{len(urls)} spellings, old shards "
           f"{[old_shard(u, a.src, 2) for u in urls]}: {urls}")

    runs = [start_batch(t, csv_path, "--shard", f"{k}/2", "--jobs", 4, "--per-host", 8,
                        "--report", t.tmp / f"report-{k}.csv", "--state-dir",
                        t.tmp / f"state-{k}", "--ca-file", dc.ca_file, name=f"shard-{k}")
             for k in range(2)]
    results = [x.wait(timeout=120) for x in runs]
    reps = [read_report(t.tmp / f"report-{k}.csv") for k in range(2)]

    # First what matters most: every message in the INBOX exactly once.
    p = exactly_once_problems(a, imap_state(dc, [a])[a.idx])
    assert not p, f"the mailbox spelled {len(urls)} ways: " + "; ".join(p)
    assert pop3_counts(dc, [a])[a.idx] == 6, "keep = true, but POP3 lost mail"

    mine = [k for k in range(2) if any(x["pop3_user"] == a.src for x in reps[k])]
    assert len(mine) == 1, f"the mailbox's rows are in shards {mine}, want one"
    k = mine[0]
    got = by_line(x for x in reps[k] if x["pop3_user"] == a.src)
    assert got[str(first)]["status"] == "ok" and got[str(first)]["imported"] == "6", (
        f"line {first}: {got[str(first)]}")
    bad = []
    for n in dups:
        x = got.get(str(n))
        want = f"the same POP3 mailbox and IMAP destination as line {first}"
        if x is None or (x["status"], x["error"]) != ("invalid", want):
            bad.append(f"line {n}: {x}")
        if f"{csv_path}:{n}: row skipped: {want}" not in results[k].stderr:
            bad.append(f"line {n} not on stderr")
    assert not bad, "duplicate rows: " + " | ".join(bad)
    assert set(got) == {str(n) for n in [first] + dups}, f"lines {sorted(got)}"
    assert results[k].rc == EX_DATAERR, f"shard {k}/2 exit {results[k].rc}, want 65"
    assert results[1 - k].rc == EX_OK and not any(
        x["status"] == "invalid" for x in reps[1 - k]), (
        f"shard {1 - k}/2: exit {results[1 - k].rc}, report {reps[1 - k]}")

    seen = [x for rep in reps for x in rep if x["pop3_user"] != a.src]
    check_ok_rows(seen, others)
    verify_imported(dc, others)
    texts = [(f"report {n}", (t.tmp / f"report-{n}.csv").read_text()) for n in range(2)]
    texts += [(f"shard {n} stderr", results[n].stderr) for n in range(2)]
    assert_no_secrets(secrets_of(accts), texts)


# ----------------------------------------------------------------- 9
def test_batch_one_mailbox_two_destinations(t):
    """One POP3 mailbox of 30 messages in three rows, keep = true, spelled
    three ways, into three destinations: user A's INBOX, user B's INBOX and
    user A's "Copy".  Every destination gets every message exactly once,
    the three rows are `ok` with imported=30, POP3 keeps all 30; exit 0.
    With --jobs 4 all three could start at once, but they share the
    mailbox's ledger (and its lock): the batch runs them one after the
    other, so none ends "another popbridge process is working on this
    mailbox"."""
    dc = t.dovecot()
    a = make_accounts(t, dc, 1, 30, "t")[0]
    b = make_accounts(t, dc, 1, 0, "t", first=1)[0]      # a destination only
    a.keep = "true"
    port = dc.pop3s_port
    rows = [a.row(dc),
            a.row(dc, pop3_url=f"pop3s://localhost:{port}/", imap_user=b.dst,
                  imap_password=b.imap_pw),
            a.row(dc, pop3_url=f"pop3s://LOCALHOST:{port}", mailbox="Copy", keep="yes")]
    csv_path = write_csv(t.tmp / "accounts.csv", rows)
    report = t.tmp / "report.csv"
    r = run_batch(t, csv_path, "--jobs", 4, "--per-host", 8, "--report", report,
                  "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file)
    rep = by_line(read_report(report))
    bad = [f"line {n}: {x['status']} imported={x['imported']} error={x['error']!r}"
           for n, x in rep.items() if (x["status"], x["imported"]) != ("ok", "30")]
    assert set(rep) == {"2", "3", "4"} and not bad, f"report: {bad or sorted(rep)}"
    problems = []
    for user, mailbox in ((a.dst, "INBOX"), (b.dst, "INBOX"), (a.dst, "Copy")):
        p = exactly_once_problems(a, imap_messages(dc, user, mailbox))
        if p:
            problems.append(f"{user} {mailbox}: " + "; ".join(p))
    assert not problems, " | ".join(problems)
    assert pop3_counts(dc, [a])[a.idx] == 30, "keep = true, but POP3 lost mail"
    assert r.rc == EX_OK, f"exit {r.rc}, want 0"
    assert_no_secrets(secrets_of([a, b]), [("report", report.read_text()),
                                           ("stdout", r.stdout), ("stderr", r.stderr)])


# ----------------------------------------------------------------- 10
def test_batch_one_mailbox_keep_must_agree(t):
    """Two destinations of one POP3 mailbox need keep = true in both rows.
    Mailbox 1: line 2 keep = true into A, line 3 (spelled with "/") keep =
    false into B: line 3 is `invalid` ("keep differs from line 2 for the
    same POP3 mailbox"); A gets every message, B nothing, POP3 keeps all.
    Mailbox 2: lines 4 and 5 (spelled LOCALHOST) both keep = false into C
    and D: line 5 is `invalid` (line 4 would delete what it still needs);
    C gets every message, D nothing, POP3 is emptied.  Exit 65."""
    dc = t.dovecot()
    m1, m2 = make_accounts(t, dc, 2, 5, "v")
    b, d = make_accounts(t, dc, 2, 0, "v", first=2)       # destinations only
    m1.keep = "true"
    port = dc.pop3s_port
    rows = [m1.row(dc),
            m1.row(dc, pop3_url=f"pop3s://localhost:{port}/", keep="false",
                   imap_user=b.dst, imap_password=b.imap_pw),
            m2.row(dc),
            m2.row(dc, pop3_url=f"pop3s://LOCALHOST:{port}", imap_user=d.dst,
                   imap_password=d.imap_pw)]
    csv_path = write_csv(t.tmp / "accounts.csv", rows)
    report = t.tmp / "report.csv"
    r = run_batch(t, csv_path, "--jobs", 4, "--per-host", 8, "--report", report,
                  "--state-dir", t.tmp / "state", "--ca-file", dc.ca_file)
    rep = by_line(read_report(report))
    assert sorted(rep) == ["2", "3", "4", "5"], f"report lines {sorted(rep)}"
    assert (rep["2"]["status"], rep["4"]["status"]) == ("ok", "ok"), (
        f"line 2: {rep['2']}; line 4: {rep['4']}")
    want3 = "keep differs from line 2 for the same POP3 mailbox"
    assert (rep["3"]["status"], rep["3"]["error"]) == ("invalid", want3), rep["3"]
    assert rep["5"]["status"] == "invalid" and "line 4" in rep["5"]["error"] and \
        "keep" in rep["5"]["error"], rep["5"]
    assert f"{csv_path}:3: row skipped: {want3}" in r.stderr, r.stderr[-500:]
    assert f"{csv_path}:5: row skipped: " in r.stderr, r.stderr[-500:]
    verify_imported(dc, [m1], pop3_empty=False)
    verify_imported(dc, [m2])
    assert pop3_counts(dc, [m1])[m1.idx] == 5, "keep = true, but POP3 lost mail"
    got = {u: imap_count(dc, u) for u in (b.dst, d.dst)}
    assert all(n in (0, None) for n in got.values()), f"invalid rows imported: {got}"
    assert r.rc == EX_DATAERR, f"exit {r.rc}, want 65"
    assert_no_secrets(secrets_of([m1, m2, b, d]), [
        ("report", report.read_text()), ("stdout", r.stdout), ("stderr", r.stderr)])
