"""TLS: certificates with a wrong host name, expired, not yet valid or
self-signed are refused before any credentials are sent, with a message
that says which problem it is and how to fix it; public key pins.

The refused certificates are served by private Dovecot instances of their
own (tests/tlslib.py); ca_file is the instance's CA, which signed each bad
certificate except the self-signed one, so each has exactly one problem.
"No credentials sent" is read from the serving Dovecot's log: no line
names the user (no login, failed or aborted, no passdb lookup).
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import make_account, varied_messages  # noqa: E402
from secretlib import assert_no_secrets  # noqa: E402
from tlslib import cert_dovecot, cert_subject_names, make_cert, pin_of_cert, pin_of_key  # noqa: E402

EX_CONFIG = 78

# For each kind: what the message must say the problem is, and the fix.
PROBLEM = {
    "wronghost": (r"host ?name", r"\burl\b|host name in|connect to"),
    "expired": (r"expired", r"renew"),
    "notyet": (r"not (yet )?valid|valid yet", r"clock"),
    "selfsigned": (r"self-signed|not trusted|not signed by a (trusted )?CA|trust",
                   r"ca_file"),
}


def _message_lines(output, account):
    return [line for line in output.splitlines() if account in line]


def _assert_says(kind, output, account, cmd):
    problem, fix = PROBLEM[kind]
    lines = _message_lines(output, account)
    text = "\n".join(lines)
    assert lines, f"{kind}: `{cmd}` printed no line naming the account {account!r}"
    assert re.search(r"certificate", text, re.I), \
        f"{kind}: `{cmd}` does not say the problem is the server's certificate: {text[:400]!r}"
    assert re.search(problem, text, re.I), \
        f"{kind}: `{cmd}` does not say which problem it is (want /{problem}/): {text[:400]!r}"
    assert re.search(fix, text, re.I), \
        f"{kind}: `{cmd}` does not say how to fix it (want /{fix}/): {text[:400]!r}"


def _refused(t, kind, side, mode="tls"):
    """An account whose `side` ("pop3" or "imap") is on the instance serving
    the bad certificate of `kind` (mode "tls": pop3s/imaps, "starttls":
    pop3://, imap://); the other side on the good instance.  check and run
    must fail, say what and how to fix, and send no credentials."""
    good = t.dovecot()
    bad = cert_dovecot(t, kind)
    raws = [raw for _, raw in varied_messages(f"{t.name}{side}{mode}")[:2]]
    if side == "pop3":
        user = t.user(bad, "s")
        dst = t.user(good, "d")
        for raw in raws:
            bad.deliver(user, raw)
        acct = make_account("tls" + kind, bad.pop3_block(user, mode), good.imap_block(dst),
                            keep=False)
        secrets = [(bad.users[user], user), (good.users[dst], dst)]
    else:
        src = t.user(good, "s")
        user = t.user(bad, "d")
        for raw in raws:
            good.deliver(src, raw)
        acct = make_account("tls" + kind, good.pop3_block(src), bad.imap_block(user, mode),
                            keep=False)
        secrets = [(good.users[src], src), (bad.users[user], user)]
    cfg = t.config([acct])
    for args in (("check",), ("run",), ("-vv", "run")):
        cmd = " ".join(args)
        r = t.bridge("-c", cfg, *args)
        assert r.rc != 0, f"{kind} certificate on the {side} side ({mode}): `{cmd}` exited 0"
        _assert_says(kind, r.output, acct["name"], cmd)
        assert_no_secrets(r.output, secrets, f"`{cmd}`")
        attempts = bad.auth_attempts(user)
        assert not attempts, (f"{kind} certificate on the {side} side ({mode}): credentials "
                              f"were sent after `{cmd}`: {attempts[0]}")
    if side == "pop3":
        assert bad.maildir_count(user) == len(raws), "POP3 messages were deleted"
        assert good.imap_count(dst) == 0, "messages were imported"
    else:
        assert good.pop3_count(src) == len(raws), "POP3 messages were deleted"
        assert bad.maildir_count(user) == 0, "messages were imported"
    return bad, r


def test_tls_wrong_host_pop3s(t):
    _refused(t, "wronghost", "pop3")


def test_tls_wrong_host_imap_starttls(t):
    _refused(t, "wronghost", "imap", "starttls")


def test_tls_wrong_host_message_names_the_certificate(t):
    """The fix offered for a wrong host name is to use the name the
    certificate is for; the message must then show that name (here the
    certificate is for wrong.example only), or the user cannot follow it
    without openssl s_client."""
    bad, _ = _refused(t, "wronghost", "pop3")
    names = cert_subject_names(bad.cert_file)
    assert names == ["wrong.example"]
    check, run = t.runs[-3], t.runs[-2]       # `check`, `run` (not the -vv trace)
    for r in (check, run):
        assert "wrong.example" in r.output, \
            ("the wrong-host-name message tells the user to use the name the certificate "
             "shows but does not show it (the certificate is for wrong.example): "
             + next((line for line in r.output.splitlines() if "host name" in line), "")[:400])


def test_tls_expired_pop3s(t):
    _refused(t, "expired", "pop3")


def test_tls_expired_imaps(t):
    _refused(t, "expired", "imap")


def test_tls_expired_pop3_starttls(t):
    _refused(t, "expired", "pop3", "starttls")


def test_tls_not_yet_valid_imaps(t):
    _refused(t, "notyet", "imap")


def test_tls_self_signed_pop3s(t):
    _refused(t, "selfsigned", "pop3")


def test_tls_self_signed_imap_starttls(t):
    _refused(t, "selfsigned", "imap", "starttls")


def test_tls_self_signed_fix_ca_file(t):
    """The fix the message offers first: ca_file = the certificate (a
    self-signed certificate is its own CA).  Then it works."""
    good = t.dovecot()
    bad = cert_dovecot(t, "selfsigned")
    src, dst = t.user(bad, "s"), t.user(good, "d")
    raw = varied_messages(t.name)[0][1]
    bad.deliver(src, raw)
    acct = make_account("tlsfix", bad.pop3_block(src, ca_file=bad.cert_file),
                        good.imap_block(dst))
    cfg = t.config([acct])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"with ca_file = the self-signed certificate, run exited {r.rc}"
    assert good.imap_count(dst) == 1


def test_tls_self_signed_fix_pin_as_advised(t):
    """The message for a certificate not signed by a trusted CA says "set
    ca_file to the CA that signed it, or pin its key with pin = ...".  Pin
    the key as advised (and nothing else): the advice must work, or the
    message must not give it."""
    good = t.dovecot()
    bad = cert_dovecot(t, "selfsigned")
    src, dst = t.user(bad, "s"), t.user(good, "d")
    bad.deliver(src, varied_messages(t.name)[0][1])
    cfg = t.config([make_account("tlspinfix", bad.pop3_block(src), good.imap_block(dst))])
    r = t.bridge("-c", cfg, "check")
    assert r.rc != 0
    offers_pin = re.search(r"\bpin\b", r.output) is not None
    pinned = bad.pop3_block(src, pin=pin_of_cert(bad.cert_file))
    cfg = t.config([make_account("tlspinfix", pinned, good.imap_block(dst))])
    r2 = t.bridge("-c", cfg, "check")
    assert r2.rc == 0 or not offers_pin, \
        ("the message for a self-signed certificate advises 'pin its key with pin = "
         "\"sha256//...\"', but with the right pin check still exits "
         f"{r2.rc}: {r2.output.strip().splitlines()[0][:300]!r}")


# ------------------------------------------------------------------ pins
def test_tls_pin_right(t):
    """pin = the good server's key on both sides, also among several pins."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    for raw in raws:
        dc.deliver(src, raw)
    pin = pin_of_cert(dc.cert_file)
    assert pin == pin_of_key(dc.key_file)
    other = pin_of_key(dc.dir / "tls" / "ca.key")
    acct = make_account("pinok", dc.pop3_block(src, pin=pin),
                        dc.imap_block(dst, "starttls", pin=f"{other};{pin}"))
    cfg = t.config([acct])
    r = t.bridge("-c", cfg, "check")
    assert r.rc == 0, f"check with the right pins exited {r.rc}"
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"run with the right pins exited {r.rc}"
    assert dc.imap_count(dst) == len(raws)


def _wrong_pin(t, side, mode):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    # The pin of another key: the CA's (valid syntax, valid key, not the server's).
    wrong = pin_of_key(dc.dir / "tls" / "ca.key")
    pop3 = dc.pop3_block(src, mode if side == "pop3" else "tls")
    imap = dc.imap_block(dst, mode if side == "imap" else "tls")
    (pop3 if side == "pop3" else imap)["pin"] = wrong
    cfg = t.config([make_account("pinbad", pop3, imap, keep=False)])
    user = src if side == "pop3" else dst
    for args in (("check",), ("-vv", "run")):
        cmd = " ".join(args)
        r = t.bridge("-c", cfg, *args)
        assert r.rc != 0, f"a wrong pin on the {side} side: `{cmd}` exited 0"
        lines = "\n".join(_message_lines(r.output, "pinbad"))
        assert re.search(r"\bpin\b", lines), \
            f"a wrong pin on the {side} side: `{cmd}` does not mention the pin: {lines[:400]!r}"
        assert_no_secrets(r.output, [(dc.users[src], src), (dc.users[dst], dst)], f"`{cmd}`")
        attempts = dc.auth_attempts(user)
        assert not attempts, f"a wrong pin on the {side} side: credentials were sent: {attempts[0]}"
    assert dc.pop3_count(src) == 1 and dc.imap_count(dst) == 0


def test_tls_pin_wrong_pop3s(t):
    _wrong_pin(t, "pop3", "tls")


def test_tls_pin_wrong_imap_starttls(t):
    _wrong_pin(t, "imap", "starttls")


def test_tls_pin_does_not_replace_verification(t):
    """A pin is checked on top of the certificate checks: the right pin of
    an expired certificate's key still fails, for the expiry."""
    good = t.dovecot()
    bad = cert_dovecot(t, "expired")
    src, dst = t.user(bad, "s"), t.user(good, "d")
    bad.deliver(src, varied_messages(t.name)[0][1])
    cfg = t.config([make_account("pinexp", bad.pop3_block(src, pin=pin_of_cert(bad.cert_file)),
                                 good.imap_block(dst))])
    r = t.bridge("-c", cfg, "check")
    assert r.rc != 0, "an expired certificate with the right pin was accepted"
    _assert_says("expired", r.output, "pinexp", "check")
    assert not bad.auth_attempts(src)


MALFORMED_PINS = {
    "no sha256// prefix": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "sha1": "sha1//AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "too short": "sha256//AAAA",
    "not base64": "sha256//!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "hex digest": "sha256//" + "ab" * 32,
    "empty": "",
    "trailing ;": "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;",
    "space separated": "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
                       "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
}

# 44 characters of the base64 alphabet that are not base64 of 32 bytes (the
# length of a SHA-256): no such pin can ever match a key.
NOT_A_SHA256_PINS = {
    "33 bytes (44 letters, no padding)": "sha256//" + "A" * 44,
    "all padding": "sha256//" + "=" * 44,
    "padding in the middle": "sha256//AAAAAAAAAAAAAAAAAAAA=AAAAAAAAAAAAAAAAAAAAAA=",
}


def _malformed(t, pins):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    wrong = []
    for label, pin in pins.items():
        for side in ("pop3", "imap"):
            pop3, imap = dc.pop3_block(src), dc.imap_block(dst)
            (pop3 if side == "pop3" else imap)["pin"] = pin
            cfg = t.config([make_account("pinmal", pop3, imap)])
            r = t.bridge("-c", cfg, "check", "-n")
            if r.rc != EX_CONFIG or not re.search(r"\bpin\b", r.stderr):
                wrong.append(f"{label} ({side}): pin = {pin!r} -> exit {r.rc}, "
                             f"{r.output.strip()[:160]!r}")
    assert not dc.auth_attempts(src) and not dc.auth_attempts(dst)
    assert not wrong, (f"malformed pins not refused as config errors (exit {EX_CONFIG} naming "
                       "\"pin\"): " + "; ".join(wrong))


def test_tls_pin_malformed_is_config_error(t):
    _malformed(t, MALFORMED_PINS)


def test_tls_pin_not_a_sha256_is_config_error(t):
    """The right alphabet and length but not base64 of 32 bytes: such a pin
    can never match, so it is a mistake in the file like any other
    malformed pin (else the run fails later, blaming the server's key)."""
    _malformed(t, NOT_A_SHA256_PINS)


def test_tls_pin_malformed_run(t):
    """run with a malformed pin: 78 before connecting."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    cfg = t.config([make_account("pinmal", dc.pop3_block(src, pin="sha256//tooshort"),
                                 dc.imap_block(dst))])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == EX_CONFIG, f"run with a malformed pin exited {r.rc}, want {EX_CONFIG}"
    assert re.search(r"\bpin\b", r.stderr), "the error does not name \"pin\""
    assert not dc.auth_attempts(src)


def test_tls_junk_trust_file(t):
    """ca_file that is not a PEM file of certificates: a failure that says
    so, and no credentials sent.  (The test's name and so its temp path
    must not contain "ca_file": popbridge picks its hint by searching
    curl's error text, which holds the file's path.)"""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    junk = t.tmp / "junk-ca.pem"
    junk.write_text("this is not a certificate\n")
    cfg = t.config([make_account("cajunk", dc.pop3_block(src, ca_file=str(junk)),
                                 dc.imap_block(dst))])
    r = t.bridge("-c", cfg, "check")
    assert r.rc != 0, "a junk ca_file was accepted"
    line = next((x for x in r.output.splitlines() if "cajunk" in x and "pop3" in x), "")
    assert re.search(r"ca_file", line), f"the error does not name ca_file: {line[:300]!r}"
    # It must say the file is the problem (not the server's certificate,
    # and not "set ca_file", which is set already).
    assert re.search(r"(could not|cannot|can't) be (read|used|loaded)|not a PEM|no certificates? in"
                     r"|\bPEM\b", line), \
        f"the error does not say that ca_file cannot be used: {line[:300]!r}"
    assert not dc.auth_attempts(src), "credentials were sent"


def test_tls_control_openssl_ca_cert_accepted(t):
    """Control for tlslib: a certificate made by the same `openssl ca`
    recipe, for localhost, signed by the instance's CA and valid from 2020
    to 2090, is served and accepted.  So each refusal above is for the one
    problem its certificate has, not for the way it was made."""
    from harness import Dovecot
    dc = Dovecot()
    t._instances[("test_tls.control",)] = dc       # stopped after the file
    crt, key = make_cert(dc.dir / "tls", "control", "localhost",
                         ["DNS:localhost", "IP:127.0.0.1"], dc.dir / "tls" / "ca.pem",
                         dc.dir / "tls" / "ca.key",
                         start="20200101000000Z", end="20900101000000Z")
    assert cert_subject_names(crt) == ["localhost", "127.0.0.1"]
    dc.cert_file, dc.key_file = crt, key
    dc.write_conf()
    dc.start()
    t.used.append(dc)
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    cfg = t.config([make_account("control", dc.pop3_block(src), dc.imap_block(dst, "starttls"))])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"a good certificate from the openssl ca recipe: run exited {r.rc}"
    assert dc.imap_count(dst) == 1


def test_tls_none_check_is_as_loud_as_run(t):
    """tls = "none" means no TLS at all, even where the server offers
    STARTTLS.  `check` says so as loudly as `run`: the plaintext warning,
    and that the server offers STARTTLS and how to use it.
    Before the fix: `check` said nothing about plaintext."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg = t.config([make_account("clear", dc.pop3_block(src, mode="plain"),
                                 dc.imap_block(dst, mode="plain"))])
    for args in (("check",), ("run",)):
        r = t.bridge("-c", cfg, *args)
        assert r.rc == 0, f"{args[0]}: exit {r.rc}"
        assert re.search(r"clear: warning: POP3 and IMAP without TLS", r.output), \
            f"{args[0]} does not warn about plaintext: {r.output[-400:]!r}"
    r = t.bridge("-c", cfg, "check")
    assert re.search(r"pop3 \S+ offers STARTTLS", r.output) and \
        re.search(r"imap \S+ offers STARTTLS", r.output), \
        f"check does not say the servers offer STARTTLS: {r.output[-600:]!r}"
