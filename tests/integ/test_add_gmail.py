"""`popbridge add ADDRESS --to gmail-api` (issue 17): the POP3 mailbox on
the private Dovecot, Gmail the local fake of its API (tests/gmailfake.py,
never Google).  add runs the token command and asks the API one read-only
question; what it writes must load (`check -n`) and import into the fake;
a token command that fails, or whose token the API refuses, stops add with
nothing written."""

import os
import re
import stat
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gmailfake import GmailFake  # noqa: E402
from harness import free_ports, normalise, varied_messages  # noqa: E402

EX_OK, EX_USAGE, EX_TEMPFAIL, EX_NOPERM = 0, 64, 75, 77


class Setup:
    """A POP3 user with mail, the Gmail fake, a token command printing its
    token, and one CA file for both servers (--ca-file is for both)."""

    def __init__(self, t, messages=3):
        self.t = t
        self.dc = t.dovecot()
        self.src = t.user(self.dc, "s")
        self.address = f"{self.src}@example.test"
        self.raws = [raw for _, raw in varied_messages(t.name)[:messages]]
        for raw in self.raws:
            self.dc.deliver(self.src, raw)
        self.fake = GmailFake(t.tmp).start()
        self.tok = self.script("token.sh", f"echo {self.fake.token}")
        self.ca = t.tmp / "both-ca.pem"
        self.ca.write_bytes(Path(self.dc.ca_file).read_bytes() + b"\n" +
                            Path(self.fake.ca_file).read_bytes())
        self.cfg = t.tmp / "popbridge.conf"
        self.pop3_pw = self.dc.users[self.src]

    def script(self, name, body):
        p = self.t.tmp / name
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(0o700)
        return str(p)

    def add(self, *extra, to=None, token=None, env=None):
        args = ["-c", self.cfg, "add", self.address,
                "--pop3", f"pop3s://localhost:{self.dc.pop3s_port}",
                "--pop3-user", self.src,
                "--to", to or "gmail-api:" + self.fake.base,
                "--imap-user", self.fake.address, "--ca-file", self.ca,
                "--state-dir", self.t.state_dir, *extra]
        if token is not False:
            args += ["--oauth2-token-command", token or self.tok]
        e = {"POPBRIDGE_SRV": "0", "POPBRIDGE_POP3_PASSWORD": self.pop3_pw}
        e.update(env or {})
        return self.t.bridge(*args, env=e)

    def endpoints(self):
        with self.fake.lock:
            return [r["endpoint"] for r in self.fake.requests]


def _snapshot(d: Path):
    return {str(p.relative_to(d)): p.read_bytes()
            for p in sorted(d.rglob("*")) if p.is_file() and "gmailfake" not in p.parts}


def _imap_block(text):
    m = re.search(r"imap = \{[^}]*\};", text)
    assert m, f"no imap block in\n{text}"
    return m.group(0)


def test_add_gmail_api_end_to_end(t):
    s = Setup(t)
    try:
        r = s.add("--mailbox", "From GMX", "--delete")
        assert r.rc == EX_OK, f"add exited {r.rc}"
        assert s.fake.token not in r.output, "the token reached add's output"
        assert re.search(rf"gmail-api 127\.0\.0\.1:{s.fake.port}: the token command works",
                         r.output), "add does not say the Gmail login was tested"
        # One read-only question; no label made, nothing imported.
        assert s.endpoints() and set(s.endpoints()) <= {"list"}, \
            f"add asked the API more than messages.list: {s.endpoints()}"
        assert "From GMX" not in {x["name"] for x in s.fake.labels}, "add created a label"
        assert not s.fake.messages

        assert stat.S_IMODE(os.stat(s.cfg).st_mode) == 0o600
        text = s.cfg.read_text()
        assert s.fake.token not in text and s.pop3_pw not in text
        block = _imap_block(text)
        assert f'url = "gmail-api:{s.fake.base}";' in block, block
        assert f'user = "{s.fake.address}";' in block, block
        assert f'oauth2_token_command = "{s.tok}";' in block, block
        assert 'mailbox = "From GMX";' in block and f'ca_file = "{s.ca}";' in block, block
        for key in ("password", "tls", "auth"):
            assert not re.search(rf"\b{key}\w* =", block), f"{key} in the gmail block"
        pw_files = re.findall(r'password_file = "([^"]+)"', text)
        assert len(pw_files) == 1 and pw_files[0].endswith(".pop3"), pw_files
        assert Path(pw_files[0]).read_text() == s.pop3_pw + "\n"

        r = t.bridge("-c", s.cfg, "check", "-n")
        assert r.rc == EX_OK and "configuration OK" in r.output, r.output
        r = t.bridge("-c", s.cfg, "-v", "run")
        assert r.rc == EX_OK, f"run after add exited {r.rc}"
        assert s.fake.token not in r.output
        got = sorted(m.raw for m in s.fake.messages.values())
        assert got == sorted(normalise(raw) for raw in s.raws), \
            f"the fake holds {len(got)} messages, not the {len(s.raws)} delivered ones"
        for m in s.fake.messages.values():
            names = {s.fake.label_name(x) for x in m.label_ids}
            assert {"INBOX", "UNREAD", "From GMX"} <= names, names
        assert s.dc.pop3_count(s.src) == 0, "--delete: POP3 should be empty"
    finally:
        s.fake.stop()


def test_add_gmail_api_wrong_token_command_writes_nothing(t):
    s = Setup(t, messages=1)
    try:
        fails = s.script("fails.sh", "echo 'no refresh token here' >&2; exit 1")
        wrong = s.script("wrong.sh", "echo tok-not-issued-by-the-fake")
        before = _snapshot(t.tmp)
        for cmd, words in ((fails, "token command failed"),
                           (wrong, "refused the token")):
            # --save-untested does not save a refused sign-in.
            for extra in ((), ("--save-untested",)):
                r = s.add(*extra, token=cmd)
                assert r.rc == EX_NOPERM, f"{cmd} {extra}: add exited {r.rc}, want 77"
                assert re.search(rf"gmail-api 127\.0\.0\.1:{s.fake.port}: FAILED", r.output), \
                    "the failure does not name the Gmail API"
                assert words in r.output and "nothing was written" in r.output, r.output
                assert _snapshot(t.tmp) == before, "add wrote files though the sign-in failed"
                assert not s.cfg.exists() and not s.cfg.with_suffix("").exists()
        assert "tok-not-issued" not in r.output, "the refused token was shown"
        assert not s.fake.messages
    finally:
        s.fake.stop()


def test_add_gmail_api_unreachable_saved_untested(t):
    """The API cannot be reached (a closed port): stop (75) with nothing
    written, or, with --save-untested, save it and say so."""
    s = Setup(t, messages=1)
    s.fake.stop()
    closed = free_ports(1)[0]
    base = f"gmail-api:https://127.0.0.1:{closed}"
    before = _snapshot(t.tmp)
    r = s.add(to=base)
    assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, want 75"
    assert "--save-untested" in r.output and _snapshot(t.tmp) == before
    r = s.add("--save-untested", to=base)
    assert r.rc == EX_OK and "SAVED UNTESTED" in r.output, r.output
    assert f'url = "{base}";' in s.cfg.read_text()
    r = t.bridge("-c", s.cfg, "check", "-n")
    assert r.rc == EX_OK, r.output


def test_add_gmail_api_placeholder_and_google_ca(t):
    """No token command and no terminal: a placeholder, the Gmail side not
    tried (nothing reaches Google).  --ca-file, for the POP3 server here,
    is not written for Google's own API."""
    s = Setup(t, messages=1)
    s.fake.stop()
    r = s.add(to="gmail-api", token=False)
    assert r.rc == EX_OK, f"exit {r.rc}"
    assert "NOT DONE YET" in r.output and "Gmail API" in r.output, r.output
    block = _imap_block(s.cfg.read_text())
    assert 'url = "gmail-api:";' in block and "PLACEHOLDER" in block, block
    assert "ca_file" not in block, "the POP3 CA file was set for Google's API"
    r = t.bridge("-c", s.cfg, "check", "-n")
    assert r.rc == EX_OK, r.output


def test_add_gmail_api_usage_errors(t):
    s = Setup(t, messages=1)
    try:
        pw = t.tmp / "pw"
        pw.write_text("secret\n")
        before = _snapshot(t.tmp)
        for extra, token, words in (
                (("--imap-password-file", pw), None, "token command only"),
                (("--imap-auth", "plain"), None, "token command only"),
                (("--mailbox", "SENT"), None, "Gmail keeps for itself"),
                ((), "ya29.a0AfH6SMBxyz", "looks like a token itself")):
            r = s.add(*extra, token=token)
            assert r.rc == EX_USAGE and words in r.output, (extra, r.rc, r.output)
            assert "ya29.a0AfH6SMBxyz" not in r.output
        r = s.add(to="gmail-api:http://127.0.0.1:1")
        assert r.rc == EX_USAGE and "gmail-api:https://HOST" in r.output, r.output
        assert _snapshot(t.tmp) == before and s.endpoints() == []
    finally:
        s.fake.stop()
