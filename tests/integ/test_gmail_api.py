"""Gmail through its API (issue 17): bridge/gmail*.c against the local fake
of tests/gmailfake.py (never Google), through tests/unit/gmail_drive.c
until the engine calls them.

What is checked is what the fake stored, read back: the bytes, the
internalDate from the Date header, the label ids (nested labels created
parent first), UNREAD, neverMarkSpam; and what reached it: retries after
429/503/403-rate that come no sooner than the Retry-After or the backoff
asks (a lower bound the protocol guarantees; no upper bounds), the daily
limit reported with when it ends, a cut connection after the import
settled by gmail_find instead of a second import, and requests in flight
never more than asked.
"""

import email.utils
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gmailfake import GmailFake  # noqa: E402
from harness import REPO_ROOT, popbridge_path  # noqa: E402

EX_OK, EX_TEMPFAIL, EX_NOPERM = 0, 75, 77
_drive_lock = threading.Lock()
_drive_path = None


def _drive():
    """tests/unit/build/gmail_drive of the tree whose popbridge is tested."""
    global _drive_path
    with _drive_lock:
        if _drive_path is None:
            root = Path(popbridge_path()).resolve().parent.parent
            if not (root / "Makefile").exists():
                root = REPO_ROOT
            p = subprocess.run(["make", "-s", "-C", str(root),
                                "tests/unit/build/gmail_drive"],
                               capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, f"building gmail_drive failed: {p.stderr[-800:]}"
            _drive_path = str(root / "tests/unit/build/gmail_drive")
    return _drive_path


class Drive:
    def __init__(self, t, fake, token_cmd=None):
        self.t, self.fake = t, fake
        if token_cmd is None:
            token_cmd = t.tmp / "token.sh"
            token_cmd.write_text(f"#!/bin/sh\necho {fake.token}\n")
            token_cmd.chmod(0o700)
        self.token_cmd = str(token_cmd)

    def run(self, *args, inflight=1, max_wait=60, rate=-1, timeout=120):
        cmd = [_drive(), "-v", "-v", "-v", "--base", self.fake.base, "--ca",
               self.fake.ca_file, "--token-command", self.token_cmd,
               "--inflight", str(inflight), "--max-wait", str(max_wait),
               "--rate", str(rate), *map(str, args)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        self.t.note(f"$ {' '.join(cmd[1:])}\nexit {p.returncode}\n{p.stdout}{p.stderr}")
        assert not any(tok in p.stdout + p.stderr for tok in self.fake.issued), \
            "a token reached the output"
        return p

    def imports(self, files, *opts, **kw):
        """{file: (status, detail, why)}, the result line, the process."""
        p = self.run("import", *opts, *files, **kw)
        out, result = {}, None
        for line in p.stdout.splitlines():
            if line.startswith("result: "):
                result = int(line.split()[1])
                continue
            f, status, detail, why = line.split("\t")
            out[f] = (status, detail, why)
        return out, result, p


def _fake(t, **kw):
    fake = GmailFake(t.tmp, **kw).start()
    t.note(f"fake on {fake.base}")
    return fake


def _message(t, name, date="Tue, 01 Aug 2023 10:00:00 +0200", body=b"Hello.\r\n",
             msgid=None, extra=b""):
    msgid = msgid or f"<{name}.{os.urandom(4).hex()}@sender.example>"
    raw = (b"From: Anna <anna@sender.example>\r\nTo: me@gmail.test\r\n"
           b"Subject: " + name.encode() + b"\r\nDate: " + date.encode() +
           b"\r\nMessage-ID: " + msgid.encode() + b"\r\n" + extra +
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
    path = t.tmp / f"{name}.eml"
    path.write_bytes(raw)
    return str(path), raw


def _date_ms(date):
    return int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)


def _stored(fake, raw):
    return [m for m in fake.messages.values() if m.raw == raw]


def test_import_bytes_date_labels_unread(t):
    fake = _fake(t)
    try:
        d = Drive(t, fake)
        dates = ["Tue, 01 Aug 2023 10:00:00 +0200", "Sun, 31 Dec 2023 23:59:59 -0800",
                 "1 Jan 2024 00:00:01 +0000"]
        bodies = [b"Hello.\r\n", "Gr\u00fc\u00dfe, \u00e9t\u00e9 \u2603\r\n".encode() +
                  bytes(range(0x80, 0x100)) + b"\r\n",
                  b"x" * 5000 + b"\r\n" + b".leading dot\r\nFrom the start\r\n"]
        msgs = [_message(t, f"m{i}", date=dt, body=b)
                for i, (dt, b) in enumerate(zip(dates, bodies))]
        out, result, p = d.imports([f for f, _ in msgs], "--label", "Family/Kids",
                                   "--label", "INBOX", inflight=3)
        assert p.returncode == EX_OK and result == 0, p.stderr
        names = [lab["name"] for lab in fake.labels]
        # The parent was created before its child.
        assert names.index("Family") < names.index("Family/Kids"), names
        kids = next(lab["id"] for lab in fake.labels if lab["name"] == "Family/Kids")
        for (f, raw), dt in zip(msgs, dates):
            status, mid, _ = out[f]
            assert status == "imported", out[f]
            m = fake.messages[mid]
            assert m.raw == raw, "the bytes were changed on the way"
            assert m.internal_date == _date_ms(dt), (m.internal_date, dt)
            assert set(m.label_ids) == {kids, "INBOX", "UNREAD"}, m.label_ids
            assert m.params["uploadType"] == "multipart"
            assert m.params["internalDateSource"] == "dateHeader"
            assert m.params["neverMarkSpam"] == "false"
            assert "processForCalendar" not in m.params or \
                m.params["processForCalendar"] == "false"
        assert len(fake.messages) == 3

        # Read, never spam, no inbox: what the options say, nothing more.
        f, raw = _message(t, "read")
        out, result, p = d.imports([f], "--read", "--never-spam", "--label", "Family")
        assert p.returncode == EX_OK, p.stderr
        m = fake.messages[out[f][1]]
        fam = next(lab["id"] for lab in fake.labels if lab["name"] == "Family")
        assert m.raw == raw and m.label_ids == [fam], m.label_ids
        assert m.params["neverMarkSpam"] == "true"
    finally:
        fake.stop()


def test_labels_found_not_created_again(t):
    fake = _fake(t)
    try:
        fake.labels.append({"id": "Label_77", "name": "work", "type": "user"})
        d = Drive(t, fake)
        p = d.run("labels", "Work", "inbox", "Work/2024")
        assert p.returncode == EX_OK, p.stderr
        got = dict(line.split("\t") for line in p.stdout.splitlines())
        assert got["Work"] == "Label_77" and got["inbox"] == "INBOX", got
        creates = [r for r in fake.requests if r["endpoint"] == "labels" and
                   r["method"] == "POST"]
        assert len(creates) == 1, creates          # Work/2024 only
        assert [lab["name"] for lab in fake.labels].count("Work/2024") == 1
        # Another run finds it: no second create.
        p = d.run("labels", "Work/2024")
        assert p.returncode == EX_OK and p.stdout.split("\t")[0] == "Work/2024"
        assert len([r for r in fake.requests if r["endpoint"] == "labels" and
                    r["method"] == "POST"]) == 1
    finally:
        fake.stop()


def test_large_message_resumable(t):
    fake = _fake(t)
    try:
        d = Drive(t, fake)
        body = b"".join(b"%07d " % i + b"y" * 70 + b"\r\n" for i in range(80000))
        f, raw = _message(t, "big", body=body)
        assert len(raw) > 5_000_000
        out, result, p = d.imports([f], "--label", "INBOX")
        assert p.returncode == EX_OK and out[f][0] == "imported", p.stdout + p.stderr
        m = fake.messages[out[f][1]]
        assert m.raw == raw and set(m.label_ids) == {"INBOX", "UNREAD"}
        imp = fake.imports()
        assert [(r["method"], r["query"]["uploadType"][0]) for r in imp] == \
            [("POST", "resumable"), ("PUT", "resumable")], imp
    finally:
        fake.stop()


def test_too_big_is_set_aside(t):
    fake = _fake(t, max_import=2000)
    try:
        d = Drive(t, fake)
        small, raw_small = _message(t, "small")
        big, _ = _message(t, "big", body=b"z" * 3000)
        out, result, p = d.imports([small, big])
        assert p.returncode == EX_OK and result == 0, p.stderr
        assert out[big][0] == "too-big" and "413" in out[big][2], out[big]
        assert out[small][0] == "imported"
        assert [m.raw for m in fake.messages.values()] == [raw_small]
    finally:
        fake.stop()


def test_rate_limits_back_off(t):
    fake = _fake(t)
    try:
        d = Drive(t, fake)
        fake.fault("import", status=429, retry_after=2, reason="rateLimitExceeded")
        fake.fault("import", status=403, retry_after=1, reason="userRateLimitExceeded")
        fake.fault("import", status=503)           # no Retry-After: backoff
        f, raw = _message(t, "rl")
        out, result, p = d.imports([f])
        assert p.returncode == EX_OK and out[f][0] == "imported", p.stdout + p.stderr
        assert len(_stored(fake, raw)) == 1
        imp = fake.imports()
        assert [r["status"] for r in imp] == [429, 403, 503, 200], imp
        # Each retry came no sooner than it was asked to.
        assert imp[1]["t"] - imp[0]["t"] >= 2.0
        assert imp[2]["t"] - imp[1]["t"] >= 1.0
        assert imp[3]["t"] - imp[2]["t"] >= 1.0     # the first backoff step

        # A wait longer than the caller allows: given back, nothing stored.
        fake.fault("import", status=429, retry_after=600)
        g, raw2 = _message(t, "rl2")
        out, result, p = d.imports([g], max_wait=5)
        assert p.returncode == EX_TEMPFAIL, p.stderr
        assert out[g][0] == "retry-after" and int(out[g][1]) >= 600, out[g]
        assert not _stored(fake, raw2)
        assert len(fake.imports()) == 5
    finally:
        fake.stop()


def test_daily_limit_reported(t):
    fake = _fake(t)
    try:
        d = Drive(t, fake)
        msgs = [_message(t, f"d{i}") for i in range(3)]
        # The second import hits the daily limit; the third is not sent.
        first, _ = msgs[0]
        out, result, p = d.imports([first])
        assert out[first][0] == "imported"
        fake.fault("import", daily=True)
        before = time.time()
        out, result, p = d.imports([f for f, _ in msgs[1:]])
        assert p.returncode == EX_TEMPFAIL, p.stderr
        for f, _ in msgs[1:]:
            status, until, _ = out[f]
            assert status == "daily-limit", out[f]
            until = int(until)
            # Midnight in California, within a day (Google's quota day).
            assert before < until <= before + 86400 + 3600
            assert (until - 8 * 3600) % 86400 == 0 or (until - 7 * 3600) % 86400 == 0
        assert "daily limit" in p.stderr
        assert len(fake.imports()) == 2 and len(fake.messages) == 1

        # With a Retry-After, that is the time given.
        fake.fault("import", daily=True, retry_after=3600)
        f, _ = _message(t, "d9")
        before = time.time()
        out, result, p = d.imports([f])
        assert out[f][0] == "daily-limit"
        assert before + 3600 - 1 <= int(out[f][1]) <= time.time() + 3600 + 1
    finally:
        fake.stop()


def test_cut_connection_settles_by_find(t):
    fake = _fake(t)
    try:
        d = Drive(t, fake)
        f, raw = _message(t, "cut", body=b"The one that was cut.\r\n")
        fake.fault("import", cut="after_store")
        out, result, p = d.imports([f], "--label", "INBOX")
        # Stored, but no reply: unknown, and the run ends temporary.
        assert out[f][0] == "unknown", out[f]
        assert p.returncode == EX_TEMPFAIL
        assert len(fake.imports()) == 1 and len(_stored(fake, raw)) == 1
        stored = _stored(fake, raw)[0].id

        # A mailing list's second copy: the same Message-ID, other bytes.
        mid = _stored(fake, raw)[0].header("Message-ID")
        twin, twin_raw = _message(t, "twin", msgid=mid, body=b"Another copy.\r\n")
        out, result, p = d.imports([twin])
        assert out[twin][0] == "imported"

        # The settle: found by Message-ID, date and content; no import.
        n = len(fake.imports())
        p = d.run("find", f)
        assert p.returncode == EX_OK and p.stdout.split() == [stored], p.stdout
        p = d.run("find", "--sha", f)
        assert p.returncode == EX_OK and p.stdout.split() == [stored], p.stdout
        assert len(fake.imports()) == n
        q = [r["query"] for r in fake.requests if r["endpoint"] == "list"]
        assert all("rfc822msgid:" in x["q"][0] and "after:" in x["q"][0] and
                   x["includeSpamTrash"] == ["true"] for x in q), q

        # A message that never got there is not found.
        g, _ = _message(t, "never")
        p = d.run("find", g)
        assert p.returncode == EX_OK and p.stdout.split() == ["none"], p.stdout

        # Filed as spam (or binned) since: still found.
        _stored(fake, raw)[0].label_ids = ["SPAM"]
        p = d.run("find", f)
        assert p.stdout.split() == [stored], p.stdout
    finally:
        fake.stop()


def test_token_refused_then_fresh(t):
    fake = _fake(t)
    try:
        old = fake.token
        new = fake.issue()
        fake.revoke(old)
        # The command prints the old token first, the fresh one after.
        state = t.tmp / "calls"
        cmd = t.tmp / "tok.sh"
        cmd.write_text(f"#!/bin/sh\nif [ -e {state} ]; then echo {new}; "
                       f"else touch {state}; echo {old}; fi\n")
        cmd.chmod(0o700)
        d = Drive(t, fake, token_cmd=cmd)
        f, raw = _message(t, "tok")
        out, result, p = d.imports([f])
        assert p.returncode == EX_OK and out[f][0] == "imported", p.stdout + p.stderr
        assert [r["status"] for r in fake.imports()] == [401, 200]
        assert old not in p.stderr and new not in p.stderr

        # Refused twice: an authentication failure, nothing stored.
        fake.revoke(new)
        g, raw2 = _message(t, "tok2")
        out, result, p = d.imports([g])
        assert p.returncode == EX_NOPERM and out[g][0] == "not-done", p.stdout
        assert not _stored(fake, raw2)
    finally:
        fake.stop()


def test_requests_in_flight_bounded(t):
    fake = _fake(t)
    try:
        d = Drive(t, fake)
        msgs = [_message(t, f"f{i}", body=b"n%d\r\n" % i) for i in range(12)]
        out, result, p = d.imports([f for f, _ in msgs], inflight=3)
        assert p.returncode == EX_OK, p.stderr
        assert all(out[f][0] == "imported" and fake.messages[out[f][1]].raw == raw
                   for f, raw in msgs)
        assert len(fake.messages) == 12
        assert fake.max_active <= 3, fake.max_active
        # Kept-alive connections, at most one per request in flight.
        peers = {r["peer"] for r in fake.imports()}
        assert len(peers) <= 3, peers
    finally:
        fake.stop()
