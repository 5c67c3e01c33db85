"""Routing (issue 16) against the real Dovecot: rules, multidrop, several
destinations.  Every verdict is read back over IMAP: the bytes, in which
user's which mailbox, the flags, the INTERNALDATE, exactly once; and what
is left on the POP3 server.

Several Dovecot users on one instance are several destinations; a second
instance is a destination on another server (one of them stopped and
started again)."""

import os
import re

from harness import CpuLoad, expected_internaldate, free_ports, normalise
from routelib import (EX_CONFIG, EX_TEMPFAIL, FAMILY, RouteKillLoop, assert_placed,
                      dest, family_map, find, label, mailboxes, routed_message)

MIN_MID = int(os.environ.get("POPBRIDGE_ROUTE_MID", "10"))


def run(t, cfg, *extra):
    return t.bridge("-c", cfg, "-v", "run", *extra)


def run_ok(t, cfg, what="popbridge run"):
    r = run(t, cfg)
    assert r.rc == 0, f"{what} exited {r.rc}, expected 0"
    return r


def summary(stderr, account):
    """(new, imported, failed, deleted) of the run's summary line."""
    m = re.search(rf"\b{re.escape(account)}: (\d+) new, (\d+) imported, (\d+) failed, "
                  rf"(\d+) deleted\b", stderr)
    assert m, f"no summary line for {account} on stderr"
    return tuple(int(x) for x in m.groups())


def lines_naming(text, *words):
    """The lines of `text` that name every one of `words` as a word of its
    own: "bob" in "destination bob:" or "bob/INBOX", not in
    "bob@family.example" (a routing line) or in a user name."""
    return [line for line in text.splitlines()
            if all(re.search(rf"(?<![\w.+@-]){re.escape(w)}(?![\w+@-])", line) for w in words)]


def account_block(text, account):
    """The lines of `status` output about `account`: its line and the
    indented lines under it."""
    out, inside = [], False
    for line in text.splitlines():
        if line[:1].strip():
            inside = line.startswith(account + ":")
        if inside:
            out.append(line)
    return out


def assert_dates_and_flags(seen, expect, flags):
    """Each message in each of its places has the INTERNALDATE of its Date
    header and exactly `flags` (a function of the message and the place,
    or a set)."""
    for raw, where in expect:
        for who, mb in where:
            m = find(seen, raw, who, mb)
            want = expected_internaldate(raw)
            assert m["internaldate"] == want, \
                f"{label(normalise(raw))} in {who}/{mb}: INTERNALDATE " \
                f"{m['internaldate_raw']} is not the message's date {want}"
            f = flags(raw, who, mb) if callable(flags) else flags
            assert m["flags"] == set(f), \
                f"{label(normalise(raw))} in {who}/{mb}: flags {sorted(m['flags'])}, " \
                f"expected {sorted(f)}"


def pop3_left(dc, user):
    return [b for _, b in dc.pop3_messages(user)]


# --------------------------------------------------------------------------- 1
def test_spam_to_junk(t):
    """A rule sends X-Spam-Flag: YES to Junk (created, it did not exist)
    with $Junk and unread; the rest goes to INBOX; a rerun imports
    nothing more."""
    dc = t.dovecot()
    src, me = t.user(dc, "s"), t.user(dc, "m")
    tag = t.short
    spam = [routed_message(tag, 0, ["X-Spam-Flag: YES", "X-Spam-Status: Yes, score=9.1"]),
            routed_message(tag, 1, ["X-Spam-Flag: yes"]),
            routed_message(tag, 2, ["X-Spam-Level: ****", "X-Spam-Flag:   YES  "])]
    ham = [routed_message(tag, 3, ["X-Spam-Flag: NO", "X-Spam-Status: No, score=0.3"]),
           routed_message(tag, 4, []),
           routed_message(tag, 5, ["X-Spam-Flag: YES please"]),
           routed_message(tag, 6, ["Subject-Note: X-Spam-Flag: YES"])]
    for raw in spam[:2] + ham[:2] + spam[2:] + ham[2:]:
        dc.deliver(src, raw)
    acct = dc.account("spam", src, me)
    acct["rules"] = [{"header": "X-Spam-Flag", "is": "YES", "mailbox": "Junk",
                      "flags": ["$Junk"]}]
    cfg = t.config([acct])
    assert "Junk" not in mailboxes(dc, me), "Junk exists before the run"

    r1 = run_ok(t, cfg)
    places = {"me": (dc, me)}
    expect = [(raw, [("me", "Junk")]) for raw in spam] + [(raw, [("me", "INBOX")]) for raw in ham]
    seen = assert_placed(places, expect, "after the first run")
    assert_dates_and_flags(seen, expect,
                           lambda raw, who, mb: {"$Junk"} if mb == "Junk" else set())
    # Delivery order is kept within each mailbox.
    for mb, raws in (("Junk", spam), ("INBOX", ham)):
        got = [m["body"] for m in dc.imap_messages(me, mb)]
        assert got == [normalise(x) for x in raws], f"{mb}: not in POP3 order"
    assert dc.pop3_count(src) == len(spam) + len(ham), "keep = true, yet POP3 lost mail"
    new, imported, failed, _ = summary(r1.stderr, "spam")
    assert (new, imported, failed) == (7, 7, 0), \
        f"first run's summary: {new} new, {imported} imported, {failed} failed (want 7, 7, 0)"

    r2 = run_ok(t, cfg, "the rerun")
    assert_placed(places, expect, "after the rerun")
    assert summary(r2.stderr, "spam")[:2] == (0, 0), "the rerun imported something"


# --------------------------------------------------------------------------- 2
def family_setup(t, dc, dc2, keep=False, to_cc=True, bob_url=None):
    """A family's catch-all: anna and bob on `dc`, carol on `dc2` (another
    server), unknown addresses to the account's own imap user; a spam
    rule without "to" (each person's own Junk)."""
    src, me = t.user(dc, "s"), t.user(dc, "m")
    anna, bob = t.user(dc, "a"), t.user(dc, "b")
    carol = t.user(dc2, "c")
    acct = dc.account("fam", src, me, keep=keep)
    bobd = dest(dc, "bob", bob)
    if bob_url:
        bobd["url"] = bob_url
    acct["destinations"] = [dest(dc, "anna", anna), bobd, dest(dc2, "carol", carol)]
    acct["rules"] = [{"header": "X-Spam-Flag", "is": "YES", "mailbox": "Junk",
                      "flags": ["$Junk"]}]
    acct["multidrop"] = {"map": family_map(), "default": "imap", "to_cc": to_cc}
    places = {"imap": (dc, me), "anna": (dc, anna), "bob": (dc, bob), "carol": (dc2, carol)}
    return acct, src, places


def test_multidrop_family(t):
    """A catch-all for anna, bob and carol (carol on another server):
    each message in the right person's mailbox by Delivered-To,
    X-Original-To or Envelope-To, To/Cc only where no envelope header
    names a person (to_cc); an unknown address in the default; a message
    for two people reaches both, once each; a forwarded message's older
    Delivered-To does not count; all deleted from POP3 after."""
    dc = t.dovecot()
    dc2 = t.dovecot(name=f"pbroute{os.getpid()}b")
    acct, src, places = family_setup(t, dc, dc2)
    cfg = t.config([acct])
    tag = t.short
    F = FAMILY
    cases = [
        (["Delivered-To: anna@" + F, "To: Anna <anna@" + F + ">"], ["anna"]),
        (["X-Original-To: bob+shop@" + F, "To: shop-news@example.com"], ["bob"]),
        (["Envelope-To: carol@" + F], ["carol"]),
        (["To: Carol <carol+school@" + F + ">"], ["carol"]),            # to_cc
        (["Delivered-To: dave@" + F, "To: dave@" + F], ["imap"]),     # unknown
        (["Envelope-To: anna@" + F + ", bob@" + F], ["anna", "bob"]),
        (["Delivered-To: anna@" + F, "X-Original-To: anna@" + F,
          "To: anna@" + F + ", Anna Again <ANNA@Family.Example>"], ["anna"]),
        (["To: Anna <anna@" + F + ">", "Cc: Bob <bob@" + F + ">"], ["anna", "bob"]),  # to_cc
        # A forwarded message: the topmost Delivered-To is carol's; anna's
        # further down is older and must not send it to her again.
        (["Delivered-To: carol@" + F, "Received: from mx by relay; Mon, 7 Oct 2024 10:00:00 +0000",
          "Delivered-To: anna@" + F], ["carol"]),
        # The catch-all's own address in Delivered-To (qmail, Postfix): the
        # decision falls to X-Original-To.
        (["Delivered-To: catchall@" + F, "X-Original-To: bob@" + F], ["bob"]),
        # Envelope header for bob, Cc anna: To/Cc are not read then.
        (["Delivered-To: bob@" + F, "To: bob@" + F, "Cc: anna@" + F], ["bob"]),
        (["Delivered-To: nobody@elsewhere.example"], ["imap"]),
    ]
    expect = []
    for i, (headers, who) in enumerate(cases):
        raw = routed_message(tag, i, headers)
        expect.append((raw, [(w, "INBOX") for w in who]))
    spam_bob = routed_message(tag, 50, ["Delivered-To: bob@" + F, "X-Spam-Flag: YES"])
    spam_both = routed_message(tag, 51, ["Envelope-To: anna@" + F + ", carol@" + F,
                                         "X-Spam-Flag: YES"])
    expect.append((spam_bob, [("bob", "Junk")]))
    expect.append((spam_both, [("anna", "Junk"), ("carol", "Junk")]))
    for raw, _ in expect:
        dc.deliver(src, raw)

    r1 = run_ok(t, cfg)
    seen = assert_placed(places, expect, "after the run")
    assert_dates_and_flags(seen, expect,
                           lambda raw, who, mb: {"$Junk"} if mb == "Junk" else set())
    left = pop3_left(dc, src)
    assert not left, f"keep = false, yet {len(left)} messages are left on POP3: " \
                     f"{[label(b) for b in left[:5]]}"
    new, imported, failed, deleted = summary(r1.stderr, "fam")
    assert (new, failed, deleted) == (len(expect), 0, len(expect)), \
        f"summary: {new} new, {failed} failed, {deleted} deleted"

    r2 = run_ok(t, cfg, "the rerun")
    assert_placed(places, expect, "after the rerun")
    assert summary(r2.stderr, "fam")[:2] == (0, 0), "the rerun imported something"


def test_multidrop_to_cc_off(t):
    """Without to_cc, To and Cc are not read: a message without an
    envelope header goes to the default, once."""
    dc = t.dovecot()
    dc2 = t.dovecot(name=f"pbroute{os.getpid()}b")
    acct, src, places = family_setup(t, dc, dc2, to_cc=False)
    cfg = t.config([acct])
    F = FAMILY
    expect = [(routed_message(t.short, 0, ["To: anna@" + F, "Cc: bob@" + F]), [("imap", "INBOX")]),
              (routed_message(t.short, 1, ["Delivered-To: bob@" + F, "Cc: anna@" + F]),
               [("bob", "INBOX")])]
    for raw, _ in expect:
        dc.deliver(src, raw)
    run_ok(t, cfg)
    assert_placed(places, expect)
    assert dc.pop3_count(src) == 0


# --------------------------------------------------------------------------- 3
def test_keep_rule_leaves_message_on_pop3(t):
    """action = "keep" (size_over): the message stays on POP3 and is not
    imported, while keep = false deletes the others; the run exits 0 and
    says it kept one; status counts it; a rerun leaves it as it is."""
    dc = t.dovecot()
    src, me = t.user(dc, "s"), t.user(dc, "m")
    small = [routed_message(t.short, 0, []), routed_message(t.short, 1, ["X-Note: small"])]
    big = routed_message(t.short, 2, ["X-Note: big"], size=6000)
    for raw in (small[0], big, small[1]):
        dc.deliver(src, raw)
    acct = dc.account("kp", src, me, keep=False)
    acct["rules"] = [{"size_over": "3k", "action": "keep"}]
    cfg = t.config([acct])

    untold = []         # what the output should say and does not: asserted last
    for n, what in ((1, "the first run"), (2, "the rerun")):
        r = run_ok(t, cfg, what)
        assert_placed({"me": (dc, me)}, [(raw, [("me", "INBOX")]) for raw in small], what)
        left = pop3_left(dc, src)
        assert left == [normalise(big)], \
            f"{what}: POP3 holds {[label(b) for b in left]}, expected only the kept message"
        if not any(re.search(r"\bkept\b|\bkeeps?\b", line)
                   for line in lines_naming(r.stderr, "kp")):
            untold.append(f"no line of {what}'s output says that a rule kept a message on "
                          f"the server")
        st = t.bridge("-c", cfg, "status")
        assert st.rc == 0, f"status exited {st.rc} after {what}"
        if not any(re.search(r"\b1 kept\b|\bkept\D{0,24}\b1\b", line)
                   for line in account_block(st.output, "kp")):
            untold.append(f"status after {what} does not count the kept message: "
                          f"{st.output.strip()!r}")
    assert not untold, "; ".join(untold)


# --------------------------------------------------------------------------- 4
def destination_down(t, down_host, up_url_of):
    """bob's destination is a closed port on `down_host`: anna, carol and
    the default get their mail, the run exits 75 naming bob, bob's
    messages (one of them also anna's) stay on POP3 although keep =
    false; once bob's URL is up_url_of(dc), a rerun delivers them exactly
    once and deletes them."""
    dc = t.dovecot()
    dc2 = t.dovecot(name=f"pbroute{os.getpid()}b")
    port = free_ports(1)[0]
    acct, src, places = family_setup(t, dc, dc2, bob_url=f"imaps://{down_host}:{port}")
    cfg = t.config([acct])
    F = FAMILY
    m_anna = routed_message(t.short, 0, ["Delivered-To: anna@" + F])
    m_bob = routed_message(t.short, 1, ["Delivered-To: bob@" + F])
    m_both = routed_message(t.short, 2, ["Envelope-To: anna@" + F + ", bob@" + F])
    m_other = routed_message(t.short, 3, ["Delivered-To: zed@" + F])
    m_carol = routed_message(t.short, 4, ["Delivered-To: carol@" + F])
    for raw in (m_anna, m_bob, m_both, m_other, m_carol):
        dc.deliver(src, raw)

    r = run(t, cfg)
    assert r.rc == EX_TEMPFAIL, f"a run with bob's server down exited {r.rc}, expected 75"
    # Said last: what the run did matters more than how it says it.
    named = bool(lines_naming(r.stderr, "bob"))
    partial = [(m_anna, [("anna", "INBOX")]), (m_both, [("anna", "INBOX")]),
               (m_other, [("imap", "INBOX")]), (m_carol, [("carol", "INBOX")])]
    assert_placed(places, partial, "with bob down")
    left = sorted(label(b) for b in pop3_left(dc, src))
    assert left == sorted(label(normalise(x)) for x in (m_bob, m_both)), \
        f"with bob down, POP3 holds {left}; expected bob's two messages only"

    r = run(t, cfg)
    assert r.rc == EX_TEMPFAIL, f"a second run with bob down exited {r.rc}, expected 75"
    assert_placed(places, partial, "after a second run with bob down")

    acct["destinations"][1]["url"] = up_url_of(dc)
    cfg = t.config([acct])
    run_ok(t, cfg, "the run with bob back")
    full = partial[:1] + [(m_bob, [("bob", "INBOX")]),
                          (m_both, [("anna", "INBOX"), ("bob", "INBOX")])] + partial[2:]
    assert_placed(places, full, "with bob back")
    assert dc.pop3_count(src) == 0, "bob has his mail, yet it is still on POP3"
    r = run_ok(t, cfg, "the last run")
    assert summary(r.stderr, "fam")[:2] == (0, 0)
    assert_placed(places, full, "after the last run")
    assert named, "no line of the run's output names the destination that is down (bob)"


def test_destination_down_closed_port(t):
    """bob's server is down (a closed port), then up at the same host on
    its right port."""
    destination_down(t, "localhost", lambda dc: dc.url("imap"))


def test_destination_host_corrected(t):
    """bob's URL names the wrong host (127.0.0.1, with a closed port);
    the user corrects it to the server's name (localhost), the same
    login and mailbox: the message routed to anna and bob, which anna
    already has, must still reach bob, not be deleted from POP3 as if
    done."""
    destination_down(t, "127.0.0.1", lambda dc: dc.url("imap"))


def test_destination_server_stopped(t):
    """carol's server (another Dovecot instance) is stopped: the others
    get their mail, the run exits 75 naming carol, her messages stay on
    POP3; once her server is up again a rerun delivers each exactly once
    and deletes it from POP3."""
    dc = t.dovecot()
    dc2 = t.dovecot(name=f"pbroute{os.getpid()}stop")
    acct, src, places = family_setup(t, dc, dc2)
    F = FAMILY
    m_carol = routed_message(t.short, 0, ["Delivered-To: carol@" + F])
    m_two = routed_message(t.short, 1, ["Envelope-To: bob@" + F + ", carol@" + F])
    m_anna = routed_message(t.short, 2, ["Delivered-To: anna@" + F])
    for raw in (m_carol, m_two, m_anna):
        dc.deliver(src, raw)
    dc2.stop()
    try:
        cfg = t.config([acct])
        r = run(t, cfg)
        assert r.rc == EX_TEMPFAIL, f"a run with carol's server stopped exited {r.rc}, " \
                                    f"expected 75"
        named = bool(lines_naming(r.stderr, "carol"))
        up = {k: v for k, v in places.items() if k != "carol"}
        assert_placed(up, [(m_two, [("bob", "INBOX")]), (m_anna, [("anna", "INBOX")])],
                      "with carol's server stopped")
        left = sorted(label(b) for b in pop3_left(dc, src))
        assert left == sorted(label(normalise(x)) for x in (m_carol, m_two)), \
            f"with carol's server stopped, POP3 holds {left}; expected her two messages"
    finally:
        dc2.start()
    # Its ports may have changed on restart.
    acct["destinations"][2].update(dest(dc2, "carol", places["carol"][1]))
    cfg = t.config([acct])
    run_ok(t, cfg, "the run with carol's server back")
    full = [(m_carol, [("carol", "INBOX")]), (m_two, [("bob", "INBOX"), ("carol", "INBOX")]),
            (m_anna, [("anna", "INBOX")])]
    assert_placed(places, full, "with carol's server back")
    assert dc.pop3_count(src) == 0, "every place has its mail, yet it is still on POP3"
    assert named, "no line of the run's output names the destination that is down (carol)"


# --------------------------------------------------------------------------- 5
def test_kill9_loop_routed(t):
    """Routed mail (three destinations, anna and bob on one server, carol
    on another; one message in four to two of them), keep = false, runs
    killed with SIGKILL at moments chosen within the working time
    measured on this machine and rerun at once, quiet and then beside two
    CPU-bound processes; rounds bounded in number, not in time.  Then one
    clean run: every message exactly once in each place it was routed
    to, nowhere else, none left on POP3."""
    import random
    dc = t.dovecot()
    dc2 = t.dovecot(name=f"pbroute{os.getpid()}b")
    acct, src, places = family_setup(t, dc, dc2, to_cc=False)
    cfg = t.config([acct], name="kill.conf")
    seed = int(os.environ.get("POPBRIDGE_TEST_SEED", "20241216"))
    pick = random.Random(seed + 1)
    F = FAMILY
    singles = ["anna", "bob", "carol"]
    pairs = [("anna", "bob"), ("bob", "carol"), ("anna", "carol")]

    def route(i):
        if pick.random() < 0.25:
            a, b = pick.choice(pairs)
            return f"Envelope-To: {a}@{F}, {b}@{F}", [a, b]
        who = pick.choice(singles)
        return f"Delivered-To: {who}@{F}", [who]

    loop = RouteKillLoop(t, cfg, dc, src, {k: v for k, v in places.items() if k != "imap"},
                         route, seed)
    t.note(f"random seed {seed} (POPBRIDGE_TEST_SEED replays another)")
    load = CpuLoad(2)
    quiet_goal = (MIN_MID + 1) // 2
    try:
        loop.calibrate()
        t.note(f"calibrated (quiet): {loop.cal}")
        rounds = 0
        while loop.mid(False) < quiet_goal and rounds < 3 * quiet_goal + 10:
            loop.round()
            rounds += 1
        load.start()
        loop.loaded = True
        loop.calibrate()
        t.note(f"calibrated (loaded): {loop.cal}")
        rounds = 0
        loaded_goal = MIN_MID - loop.mid(False)
        while loop.mid(True) < loaded_goal and rounds < 3 * loaded_goal + 10:
            loop.round()
            rounds += 1
    finally:
        load.stop()
        t.note(loop.summary())
    loop.settle()
    final = t.bridge("-c", cfg, "run", timeout=600)
    assert final.rc == 0, f"the clean run exited {final.rc}"
    expect = [(raw, [(w, "INBOX") for w in where]) for raw, where in zip(loop.raws, loop.places_of)]
    assert_placed(places, expect, f"after {len(loop.kills)} kills")
    left = pop3_left(dc, src)
    assert not left, f"keep = false, yet {len(left)} messages are left on POP3"
    assert loop.mid() >= MIN_MID, \
        f"only {loop.mid()} kills landed mid-work (wanted {MIN_MID}): {loop.summary()}"
    assert loop.mid(True) >= 1, "no kill landed mid-work while the machine was loaded"


# --------------------------------------------------------------------------- 6
def test_check_names_destinations(t):
    """check -n and check accept a routed config and name its
    destinations; they move no mail."""
    dc = t.dovecot()
    dc2 = t.dovecot(name=f"pbroute{os.getpid()}b")
    acct, src, places = family_setup(t, dc, dc2)
    cfg = t.config([acct])
    raw = routed_message(t.short, 0, ["Delivered-To: anna@" + FAMILY])
    dc.deliver(src, raw)

    untold = []
    for args in (("check", "-n"), ("check",)):
        r = t.bridge("-c", cfg, *args)
        assert r.rc == 0, f"{' '.join(args)} exited {r.rc} on a routed config"
        missing = [n for n in ("anna", "bob", "carol") if not lines_naming(r.output, n)]
        if missing:
            untold.append(f"{' '.join(args)} does not name the destinations {missing}: "
                          f"{r.output.strip()[-300:]!r}")
    for who, (d, user) in places.items():
        assert d.imap_count(user) == 0, f"check delivered mail to {who}"
    assert dc.pop3_count(src) == 1, "check changed the POP3 mailbox"
    assert not untold, "; ".join(untold)


def test_rule_naming_unknown_destination(t):
    """A rule whose "to" names no destination is a config error: exit 78,
    naming the account, the rule and the name, for check -n and run."""
    dc = t.dovecot()
    src, me, anna = t.user(dc, "s"), t.user(dc, "m"), t.user(dc, "a")
    dc.deliver(src, routed_message(t.short, 0, ["X-Work: yes"]))
    acct = dc.account("badroute", src, me)
    acct["destinations"] = [dest(dc, "anna", anna)]
    acct["rules"] = [{"header": "X-Spam-Flag", "is": "YES", "mailbox": "Junk"},
                     {"header": "X-Work", "is": "yes", "to": "nobody"}]
    cfg = t.config([acct])
    for args in (("check", "-n"), ("-v", "run")):
        r = t.bridge("-c", cfg, *args)
        assert r.rc == EX_CONFIG, f"{' '.join(args)} exited {r.rc}, expected 78"
        assert re.search(r'badroute[^\n]*rule 2[^\n]*nobody', r.output), \
            f"{' '.join(args)}: the error does not name the account, the rule (2) and " \
            f"'nobody': {r.output.strip()[:300]!r}"
    assert dc.imap_count(me) == 0 and dc.imap_count(anna) == 0
    assert dc.pop3_count(src) == 1

