"""Servers that are down or that cannot be trusted."""

import re

from harness import free_ports, make_account, make_tls, varied_messages

EX_TEMPFAIL = 75


def test_pop3_server_down_is_temporary(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    (port,) = free_ports(1)                      # nothing listens there
    pop3 = dc.pop3_block(src, url=f"pop3s://localhost:{port}")
    cfg = t.config([make_account("down", pop3, dc.imap_block(dst))])
    r = t.bridge("-c", cfg, "-v", "run", timeout=120)
    assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, expected {EX_TEMPFAIL}"
    assert any("down" in line and str(port) in line or "down" in line and "localhost" in line
               for line in r.stderr.splitlines()), "the error does not name the account and server"


def test_imap_server_down_keeps_pop3_mail(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    for raw in raws:
        dc.deliver(src, raw)
    (port,) = free_ports(1)
    imap = dc.imap_block(dst, url=f"imaps://localhost:{port}")
    cfg = t.config([make_account("imapdown", dc.pop3_block(src), imap, keep=False)])
    r = t.bridge("-c", cfg, "-v", "run", timeout=120)
    assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, expected {EX_TEMPFAIL}"
    assert dc.pop3_count(src) == len(raws), "messages were deleted although the IMAP server was down"


def _untrusted(t, side):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    other_ca, _, _ = make_tls(t.tmp / "other-ca")          # a CA that did not sign the server
    pop3 = dc.pop3_block(src, mode="tls")
    imap = dc.imap_block(dst, mode="starttls")
    (pop3 if side == "pop3" else imap)["ca_file"] = other_ca
    cfg = t.config([make_account("untrusted", pop3, imap, keep=False)])
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc != 0, "the server's certificate is not signed by ca_file, yet exit 0"
    assert "untrusted" in r.stderr
    assert re.search(r"certif|verif|TLS|SSL|trust", r.stderr, re.I), \
        "the error does not say the certificate could not be verified"
    victim = src if side == "pop3" else dst
    attempts = dc.auth_attempts(victim)
    assert not attempts, f"credentials were sent to an unverified server: {attempts[0]}"
    assert dc.pop3_count(src) == 1


def test_untrusted_certificate_pop3s(t):
    _untrusted(t, "pop3")


def test_untrusted_certificate_imap_starttls(t):
    _untrusted(t, "imap")
