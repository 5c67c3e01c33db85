"""Routing seen before and after mail moves (issue 16): `check` and
`--dry-run` say where each waiting message would go, rule by rule, and
change nothing; `status` counts per destination.  Against the private
Dovecot: a spam-flagged message, a list message, one for another
destination, one kept on the POP3 server."""

import json
import re

from harness import normalise


def msg(i, tag, extra=""):
    return (f"Date: Tue, 5 Nov 2024 10:{i:02d}:00 +0000\n"
            f"From: sender{i}@example.org\n"
            f"To: me@example.org\n"
            f"Subject: [{tag}] message {i}\n"
            f"Message-ID: <rs{i}.{tag}@example.org>\n"
            f"{extra}\n"
            f"body {i}\n").encode()


def routed_setup(t):
    dc = t.dovecot()
    src, dst, other = t.user(dc, "s"), t.user(dc, "d"), t.user(dc, "o")
    raws = {
        "plain": msg(1, t.name),
        "spam": msg(2, t.name, "X-Spam-Flag: YES\n"),
        "list": msg(3, t.name, "List-Id: Debian devel <debian-devel.lists.debian.org>\n"),
        "work": msg(4, t.name, "X-To-Work: yes\n"),
        "kept": msg(5, t.name, "X-Keep: please\n"),
    }
    for raw in raws.values():
        dc.deliver(src, raw)
    acct = dc.account("routed", src, dst, keep=False)
    acct["destinations"] = [dict(dc.imap_block(other, mailbox="INBOX"), name="work")]
    acct["rules"] = [
        {"header": "X-Spam-Flag", "is": "YES", "mailbox": "Junk"},
        {"header": "List-Id", "glob": "*<debian-devel.lists.debian.org>",
         "mailbox": "debian-devel"},
        {"header": "X-To-Work", "is": "yes", "to": "work"},
        {"header": "X-Keep", "glob": "*", "action": "keep"},
    ]
    return dc, src, dst, other, raws, t.config([acct])


def line_for(out, subject):
    lines = [ln for ln in out.splitlines() if subject in ln]
    assert len(lines) == 1, f"expected one line about {subject!r}, got {lines}"
    return lines[0]


def test_check_and_dry_run_show_where_mail_goes(t):
    dc, src, dst, other, raws, cfg = routed_setup(t)

    for args in (("check",), ("run", "--dry-run")):
        r = t.bridge("-c", cfg, *args)
        out = r.stdout + r.stderr
        assert r.rc == 0, f"{' '.join(args)} exited {r.rc}"
        assert re.search(r"where the 5 waiting messages would go", out), \
            f"{args}: no preview of the 5 waiting messages"
        assert "to imap:Junk" in line_for(out, "message 2\""), "spam not shown going to Junk"
        assert "X-Spam-Flag" in line_for(out, "message 2\""), "the spam line does not say which rule"
        assert "to imap:debian-devel" in line_for(out, "message 3\"")
        assert "to work:INBOX" in line_for(out, "message 4\"")
        assert "stays on the POP3 server" in line_for(out, "message 5\"")
        assert "to imap:INBOX" in line_for(out, "message 1\"")
        assert re.search(r"would go to imap:INBOX: 1\b", out)
        assert re.search(r"would stay on the POP3 server: 1\b", out)
        if args[0] == "check":
            assert re.search(r"destination work: imap .*mailbox INBOX", out), \
                "check did not log in to the destination work"
        # Nothing moved: POP3 whole, IMAP empty everywhere.
        assert dc.pop3_count(src) == len(raws), f"{args}: POP3 changed"
        assert dc.imap_count(dst) == 0 and dc.imap_count(other) == 0, f"{args}: IMAP changed"


def test_status_counts_per_destination(t):
    dc, src, dst, other, raws, cfg = routed_setup(t)
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"run exited {r.rc}"
    assert [m["body"] for m in dc.imap_messages(dst, "Junk")] == [normalise(raws["spam"])]
    assert [m["body"] for m in dc.imap_messages(other)] == [normalise(raws["work"])]
    assert [body for _, body in dc.pop3_messages(src)] == [normalise(raws["kept"])], \
        "only the kept message should stay on POP3 (keep = false)"

    r = t.bridge("-c", cfg, "status", "--json")
    assert r.rc == 0, f"status --json exited {r.rc}"
    a = json.loads(r.stdout)["accounts"][0]
    by = {d["name"]: d for d in a["destinations"]}
    assert by["imap:INBOX"]["imported"] == 1, by
    assert by["imap:Junk"]["imported"] == 1, by
    assert by["imap:debian-devel"]["imported"] == 1, by
    assert by["work:INBOX"]["imported"] == 1, by
    kept = sum(d["kept"] for d in by.values())
    assert kept == 1, f"one message kept on the POP3 server, status says {kept}"
    assert a["imported_total"] == 4, f"imported_total {a['imported_total']}, expected 4"

    r = t.bridge("-c", cfg, "status")
    assert re.search(r"to work:INBOX: 1 imported", r.stdout), r.stdout

    # A dry run now has only the kept message waiting.
    r = t.bridge("-c", cfg, "run", "--dry-run")
    assert r.rc == 0
    assert re.search(r"where the 1 waiting message would go", r.stdout + r.stderr), \
        r.stdout + r.stderr


def test_retry_routes_kept_mail_again(t):
    """A message a rule kept stays kept while the rule says so; after the
    rule changes, `retry` lets the next run route it by the new rules."""
    dc, src, dst, other, raws, cfg = routed_setup(t)
    assert t.bridge("-c", cfg, "run").rc == 0
    assert t.bridge("-c", cfg, "run").rc == 0
    assert [b for _, b in dc.pop3_messages(src)] == [normalise(raws["kept"])]

    # The keep rule now files it in "Kept" instead.
    text = open(cfg).read()
    text2 = text.replace('action = "keep";', 'mailbox = "Kept";')
    assert text2 != text, "the test could not rewrite the keep rule"
    open(cfg, "w").write(text2)
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0
    assert [b for _, b in dc.pop3_messages(src)] == [normalise(raws["kept"])], \
        "a kept message was rerouted without retry"
    r = t.bridge("-c", cfg, "retry", "routed")
    assert r.rc == 0, f"retry exited {r.rc}"
    assert re.search(r"1 message kept on the POP3 server by a rule will be routed again",
                     r.stdout), r.stdout
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0
    assert [m["body"] for m in dc.imap_messages(dst, "Kept")] == [normalise(raws["kept"])]
    assert dc.pop3_count(src) == 0, "keep = false: the routed message should be deleted"
    assert dc.imap_count(dst) == 1 and dc.imap_count(other) == 1, "others imported twice"
