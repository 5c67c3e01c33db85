"""OAuth2: auth = "xoauth2" and "oauthbearer" with oauth2_token_command, on
the POP3 side and on the IMAP side, against a private Dovecot whose oauth2
passdb asks an introspection endpoint on 127.0.0.1 (tests/oauthlib.py).

Tokens are issued by that endpoint for one user each; a token is active
until revoked.  The token command is a script that appends a line to a
file each time it runs and prints the token from a 0600 file.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import assert_bytes_equal, make_account, varied_messages  # noqa: E402
from oauthlib import TokenCommand, oauth2_dovecot  # noqa: E402
from secretlib import assert_no_secrets  # noqa: E402

EX_NOPERM = 77
EX_CONFIG = 78


def _oauth_block(block, mech, cmd):
    """An endpoint block with the password replaced by a token command."""
    b = dict(block)
    b.pop("password", None)
    b["auth"] = mech
    b["oauth2_token_command"] = cmd
    return b


class Pair:
    """A POP3 source with mail and an IMAP target on the OAuth2 Dovecot,
    with a token (and a counting token command) for each."""

    def __init__(self, t, n=3, label=""):
        self.t = t
        self.dc = oauth2_dovecot(t)
        self.src = t.user(self.dc, "s")
        self.dst = t.user(self.dc, "d")
        self.raws = [raw for _, raw in varied_messages(f"{t.name}{label}")[:n]]
        for raw in self.raws:
            self.dc.deliver(self.src, raw)
        self.tok_src = TokenCommand(t.tmp, f"src{label}", self.dc.idp.issue(self.src))
        self.tok_dst = TokenCommand(t.tmp, f"dst{label}", self.dc.idp.issue(self.dst))

    def pop3(self, mech=None, mode="tls", plain_cmd=False):
        b = self.dc.pop3_block(self.src, mode)
        if mech is None:
            return b
        tc = self.tok_src
        return _oauth_block(b, mech, tc.plain_command if plain_cmd else tc.command)

    def imap(self, mech=None, mode="tls", plain_cmd=False):
        b = self.dc.imap_block(self.dst, mode)
        if mech is None:
            return b
        tc = self.tok_dst
        return _oauth_block(b, mech, tc.plain_command if plain_cmd else tc.command)

    def secrets(self):
        return [(self.tok_src.token, self.src), (self.tok_dst.token, self.dst),
                (self.dc.users[self.src], self.src), (self.dc.users[self.dst], self.dst)]

    def assert_imported(self):
        msgs = self.dc.imap_messages(self.dst)
        assert len(msgs) == len(self.raws), \
            f"IMAP holds {len(msgs)} messages, {len(self.raws)} were delivered"
        for raw, m in zip(self.raws, msgs):
            assert_bytes_equal(raw, m["body"])

    def log_mark(self):
        return len(self.dc.log_text())

    def login_methods(self, user, proto, since=0, until=None):
        """The SASL methods of `user`'s successful logins in Dovecot's log
        (proto "pop3" or "imap"), between two log_mark()s."""
        return re.findall(rf"{proto}-login: Info: Login: user=<{re.escape(user)}>, "
                          r"method=([A-Z0-9-]+)", self.dc.log_text()[since:until])


def _run_and_check(t, p, pop_mech, imap_mech, mode="tls"):
    acct = make_account("oa", p.pop3(pop_mech, mode), p.imap(imap_mech, mode), keep=True)
    cfg = t.config([acct])
    since = p.log_mark()
    r = t.bridge("-c", cfg, "-vv", "run")
    until = p.log_mark()        # before the test's own (PLAIN) IMAP logins
    assert r.rc == 0, f"run with pop3 auth {pop_mech}, imap auth {imap_mech} exited {r.rc}"
    p.assert_imported()
    for user, mech, proto in ((p.src, pop_mech, "pop3"), (p.dst, imap_mech, "imap")):
        want = (mech or "PLAIN").upper()
        got = p.login_methods(user, proto, since, until)
        assert got and set(got) == {want}, \
            f"{proto} logins of {user} used {got}, want {want} (Dovecot's log)"
    assert_no_secrets(r.output, p.secrets(), "popbridge -vv run")
    if pop_mech == "xoauth2":
        # Microsoft's POP3 refuses the one-line "AUTH XOAUTH2 <b64>": the
        # trace must show the server's empty "+ " challenge of the two-step
        # exchange before the login succeeds.
        assert re.search(r"pop3: S: \+ *\n(?:.*\n)*?.*pop3: S: \+OK", r.stderr), \
            "POP3 XOAUTH2 was not the two-step exchange (no empty '+ ' challenge in the trace)"
    return r


def test_oauth2_xoauth2_both_sides(t):
    p = Pair(t)
    _run_and_check(t, p, "xoauth2", "xoauth2")
    assert p.dc.idp.asked_for(p.tok_src.token) >= 1 and p.dc.idp.asked_for(p.tok_dst.token) >= 1, \
        "Dovecot did not ask the introspection endpoint about the tokens"


def test_oauth2_oauthbearer_both_sides(t):
    p = Pair(t)
    _run_and_check(t, p, "oauthbearer", "oauthbearer")


def test_oauth2_pop3_side_only(t):
    """xoauth2 on POP3, a password on IMAP; then oauthbearer on POP3."""
    p = Pair(t, label="x")
    _run_and_check(t, p, "xoauth2", None)
    q = Pair(t, label="b")
    _run_and_check(t, q, "oauthbearer", None)


def test_oauth2_imap_side_only(t):
    p = Pair(t, label="x")
    _run_and_check(t, p, None, "xoauth2")
    q = Pair(t, label="b")
    _run_and_check(t, q, None, "oauthbearer")


def test_oauth2_starttls(t):
    """pop3:// and imap:// (STARTTLS, then the SASL exchange)."""
    p = Pair(t, label="x")
    _run_and_check(t, p, "xoauth2", "oauthbearer", mode="starttls")
    q = Pair(t, label="b")
    _run_and_check(t, q, "oauthbearer", "xoauth2", mode="starttls")


def test_oauth2_plain_cat_command(t):
    """The documented form: oauth2_token_command = "cat FILE" (0600)."""
    p = Pair(t)
    acct = make_account("oacat", p.pop3("xoauth2", plain_cmd=True),
                        p.imap("oauthbearer", plain_cmd=True))
    cfg = t.config([acct])
    r = t.bridge("-c", cfg, "-vv", "check")
    assert r.rc == 0, f"check with `cat TOKENFILE` commands exited {r.rc}"
    assert_no_secrets(r.output, p.secrets(), "popbridge -vv check")
    r = t.bridge("-c", cfg, "-vv", "run")
    assert r.rc == 0, f"run with `cat TOKENFILE` commands exited {r.rc}"
    assert_no_secrets(r.output, p.secrets(), "popbridge -vv run")
    p.assert_imported()


def test_oauth2_token_command_before_each_login(t):
    """The command runs once per login, and each login gets the token the
    command prints then (a token replaced between runs is picked up, the
    revoked old one is not used again)."""
    p = Pair(t)
    cfg = t.config([make_account("oacount", p.pop3("xoauth2"), p.imap("xoauth2"))])

    def logins(user):
        """popbridge's logins: the OAuth2 ones (the test reads back with PLAIN)."""
        return sum(1 for proto in ("pop3", "imap") for m in p.login_methods(user, proto)
                   if m == "XOAUTH2")

    r = t.bridge("-c", cfg, "check")
    assert r.rc == 0, f"check exited {r.rc}"
    assert (p.tok_src.runs(), p.tok_dst.runs()) == (1, 1), \
        f"after check (one login per side) the token commands ran " \
        f"{p.tok_src.runs()} and {p.tok_dst.runs()} times, want 1 and 1"

    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"run exited {r.rc}"
    p.assert_imported()
    assert (p.tok_src.runs(), p.tok_dst.runs()) == (2, 2), \
        f"after check and run the token commands ran {p.tok_src.runs()} and " \
        f"{p.tok_dst.runs()} times, want 2 and 2"

    # New tokens, old ones revoked: the next logins must use the new ones.
    old_src, old_dst = p.tok_src.token, p.tok_dst.token
    p.tok_src.set_token(p.dc.idp.issue(p.src))
    p.tok_dst.set_token(p.dc.idp.issue(p.dst))
    p.dc.idp.revoke(old_src)
    p.dc.idp.revoke(old_dst)
    more = varied_messages(t.name + "-2")[3]
    p.dc.deliver(p.src, more[1])
    p.raws.append(more[1])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"run after the tokens were replaced exited {r.rc} (an old token reused?)"
    p.assert_imported()
    assert (p.tok_src.runs(), p.tok_dst.runs()) == (3, 3), \
        f"token command runs {p.tok_src.runs()} and {p.tok_dst.runs()}, want 3 and 3"
    assert p.tok_src.runs() == logins(p.src) and p.tok_dst.runs() == logins(p.dst), \
        "token command runs differ from the logins Dovecot logged " \
        f"({p.tok_src.runs()}/{logins(p.src)}, {p.tok_dst.runs()}/{logins(p.dst)})"


def _wrong_token(t, side, mech, revoked=False):
    p = Pair(t, label=side + mech)
    tc = p.tok_src if side == "pop3" else p.tok_dst
    user = p.src if side == "pop3" else p.dst
    if revoked:
        p.dc.idp.revoke(tc.token)
        bad = tc.token
    else:
        bad = "ya29.Wrong-" + "Zq8x" * 8
        tc.set_token(bad)
    acct = make_account("oabad", p.pop3(mech if side == "pop3" else "xoauth2"),
                        p.imap(mech if side == "imap" else "xoauth2"), keep=False)
    cfg = t.config([acct])
    r = t.bridge("-c", cfg, "-vv", "run")
    what = f"a {'revoked' if revoked else 'wrong'} {mech} token on the {side} side"
    assert r.rc == EX_NOPERM, f"{what}: exit {r.rc}, want {EX_NOPERM}"
    assert_no_secrets(r.output, [(bad, user)] + p.secrets(), f"popbridge -vv run with {what}")
    assert any("oabad" in line and "localhost" in line for line in r.stderr.splitlines()), \
        f"{what}: no line names both the account and the server"
    assert re.search(rf"{side}\b.*(refused|login|auth)", r.stderr, re.I), \
        f"{what}: the error does not say the {side} login was refused"
    assert p.dc.imap_count(p.dst) == 0, f"{what}: something was imported"
    assert p.dc.pop3_count(p.src) == len(p.raws), f"{what}: POP3 messages were deleted"
    r = t.bridge("-c", cfg, "check")
    assert r.rc == EX_NOPERM, f"check with {what}: exit {r.rc}, want {EX_NOPERM}"
    assert_no_secrets(r.output, [(bad, user)] + p.secrets(), f"popbridge check with {what}")


def test_oauth2_wrong_token_pop3_xoauth2(t):
    _wrong_token(t, "pop3", "xoauth2")


def test_oauth2_wrong_token_pop3_oauthbearer(t):
    _wrong_token(t, "pop3", "oauthbearer")


def test_oauth2_wrong_token_imap_xoauth2(t):
    _wrong_token(t, "imap", "xoauth2")


def test_oauth2_wrong_token_imap_oauthbearer(t):
    _wrong_token(t, "imap", "oauthbearer")


def test_oauth2_revoked_token(t):
    _wrong_token(t, "imap", "xoauth2", revoked=True)


def test_oauth2_token_command_fails(t):
    """A command that fails or prints nothing: the account fails, no login is
    tried, and the error names oauth2_token_command."""
    p = Pair(t)
    for cmd, what in (("exit 3", "exits 3"), ("true", "prints nothing")):
        acct = make_account("oacmd", _oauth_block(p.dc.pop3_block(p.src), "xoauth2", cmd),
                            p.imap("xoauth2"))
        cfg = t.config([acct])
        before = len(p.dc.auth_attempts(p.src))
        r = t.bridge("-c", cfg, "-vv", "run")
        assert r.rc not in (0, EX_CONFIG), f"a token command that {what}: exit {r.rc}"
        assert "oauth2_token_command" in r.stderr, \
            f"a token command that {what}: the error does not name oauth2_token_command"
        assert len(p.dc.auth_attempts(p.src)) == before, \
            f"a token command that {what}: a login was tried anyway"
    assert p.dc.imap_count(p.dst) == 0


def _config_error(t, block_edit, expect_key, label):
    dc = oauth2_dovecot(t)
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    pop3 = dc.pop3_block(src)
    block_edit(pop3, t)
    cfg = t.config([make_account("oaconf", pop3, dc.imap_block(dst))])
    for args in (("check", "-n"), ("run",)):
        before = len(dc.auth_attempts(src))
        r = t.bridge("-c", cfg, *args)
        assert r.rc == EX_CONFIG, f"{label}: `{' '.join(args)}` exited {r.rc}, want {EX_CONFIG}"
        assert re.search(expect_key, r.stderr), \
            f"{label}: the error does not name {expect_key!r}: {r.stderr.strip()[:300]!r}"
        assert len(dc.auth_attempts(src)) == before, f"{label}: a login was tried"
        assert_no_secrets(r.output, [(dc.users[src], src), (dc.users[dst], dst)], label)


def test_oauth2_config_xoauth2_with_password(t):
    def edit(b, t):
        b["auth"] = "xoauth2"
        b["oauth2_token_command"] = "cat /dev/null"
    _config_error(t, edit, r"password|oauth2_token_command", 'auth = "xoauth2" with a password')


def test_oauth2_config_oauthbearer_with_password_file(t):
    def edit(b, t):
        pw = t.tmp / "pw"
        pw.write_text(b.pop("password") + "\n")
        pw.chmod(0o600)
        b["password_file"] = str(pw)
        b["auth"] = "oauthbearer"
        b["oauth2_token_command"] = "cat /dev/null"
    _config_error(t, edit, r"password|oauth2_token_command",
                  'auth = "oauthbearer" with a password_file')


def test_oauth2_config_xoauth2_without_command(t):
    def edit(b, t):
        b["auth"] = "xoauth2"
    _config_error(t, edit, r"oauth2_token_command",
                  'auth = "xoauth2" with a password and no oauth2_token_command')

    def edit2(b, t):
        b.pop("password")
        b["auth"] = "oauthbearer"
    _config_error(t, edit2, r"oauth2_token_command",
                  'auth = "oauthbearer" with no secret at all')


def test_oauth2_config_token_command_without_oauth2_auth(t):
    def edit(b, t):
        b.pop("password")
        b["oauth2_token_command"] = "cat /dev/null"
    _config_error(t, edit, r"oauth2_token_command",
                  "oauth2_token_command without auth")

    def edit2(b, t):
        b.pop("password")
        b["auth"] = "plain"
        b["oauth2_token_command"] = "cat /dev/null"
    _config_error(t, edit2, r"oauth2_token_command",
                  'oauth2_token_command with auth = "plain"')
