"""`popbridge add`: discovery against a local autoconfig server, both logins
tested, then secrets and the account written; nothing written on failure.

Every address here is loopback: the autoconfig "provider" and the ISPDB are
tests/autoconfig_server.py on 127.0.0.1, the POP3 and IMAP servers the
private Dovecot on localhost, and DNS SRV lookups are switched off
(POPBRIDGE_SRV=0).
"""

import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoconfig_server import AutoconfigServer, config_xml, incoming_server  # noqa: E402
from harness import (REPO_ROOT, BridgeResult, free_ports, normalise,  # noqa: E402
                     popbridge_path, varied_messages)

DOMAIN = "example.test"
AC_PATH = f"/{DOMAIN}/config-v1.1.xml"
ISPDB_PATH = f"/ispdb/{DOMAIN}"


class Setup:
    """A POP3 user with mail and an IMAP user on the test Dovecot, an
    autoconfig server, an empty preset file and the environment for add."""

    def __init__(self, t, srv, messages=2):
        self.t = t
        self.srv = srv
        self.dc = t.dovecot()
        self.src = t.user(self.dc, "s")
        self.dst = t.user(self.dc, "d")
        # The address's local part is the Dovecot user: autoconfig's
        # %EMAILLOCALPART% is then the POP3 login.
        self.address = f"{self.src}@{DOMAIN}"
        self.raws = [raw for _, raw in varied_messages(t.name)[:messages]]
        for raw in self.raws:
            self.dc.deliver(self.src, raw)
        self.presets = t.tmp / "no-presets.conf"
        self.presets.write_text("# no presets: discovery goes on to autoconfig\n")
        self.cfg = t.tmp / "popbridge.conf"
        self.pop3_pw = self.dc.users[self.src]
        self.imap_pw = self.dc.users[self.dst]

    def serve_autoconfig(self, path=AC_PATH, socket_type="SSL", port=None):
        self.srv.put(path, config_xml("localhost", port or self.dc.pop3s_port,
                                      socket_type, "%EMAILLOCALPART%"))

    def env(self, **over):
        e = {"POPBRIDGE_AUTOCONFIG_URL": self.srv.url + "/%d/config-v1.1.xml",
             "POPBRIDGE_ISPDB_URL": self.srv.url + "/ispdb/",
             "POPBRIDGE_SRV": "0",
             "POPBRIDGE_PROVIDERS": str(self.presets),
             "POPBRIDGE_POP3_PASSWORD": self.pop3_pw,
             "POPBRIDGE_IMAP_PASSWORD": self.imap_pw}
        e.update(over)
        return e

    def args(self, *extra, address=None):
        return ["-c", self.cfg, "add", address or self.address,
                "--to", f"imaps://localhost:{self.dc.imaps_port}",
                "--imap-user", self.dst, "--ca-file", self.dc.ca_file,
                "--state-dir", self.t.state_dir, *extra]

    def add(self, *extra, env=None, address=None):
        return self.t.bridge(*self.args(*extra, address=address), env=self.env(**(env or {})))

    def secrets_dir(self):
        return self.cfg.with_suffix("")      # popbridge.conf -> popbridge/

    def assert_no_password_in(self, text, what):
        for pw in (self.pop3_pw, self.imap_pw):
            assert pw not in text, f"a password appears in {what}"


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _snapshot(d: Path):
    """Every file under d with its bytes and mode."""
    return {str(p.relative_to(d)): (p.read_bytes(), _mode(p))
            for p in sorted(d.rglob("*")) if p.is_file()}


def _assert_imported(s: Setup, name=None):
    args = ["-c", s.cfg, "-v", "run"] + ([name] if name else [])
    r = s.t.bridge(*args)
    assert r.rc == 0, f"run after add exited {r.rc}"
    s.assert_no_password_in(r.output, "the run's output")
    got = [m["body"] for m in s.dc.imap_messages(s.dst)]
    want = [normalise(raw) for raw in s.raws]
    assert got == want, f"IMAP holds {len(got)} messages, not the {len(want)} delivered ones"


def test_add_autoconfig_end_to_end(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv, messages=3)
        s.serve_autoconfig()
        r = s.add()
        assert r.rc == 0, f"add exited {r.rc}"
        assert srv.requests[:1] == [AC_PATH], f"autoconfig not asked first: {srv.requests}"
        s.assert_no_password_in(r.output, "add's output")
        assert re.search(r"autoconfig", r.output), "add does not say where it found the server"
        assert re.search(rf"check\b.*{re.escape(s.address)}", r.output), \
            "add does not hint at `popbridge check NAME`"

    # The config: new, mode 600, loads, refers to the secret files.
    assert _mode(s.cfg) == 0o600, f"new config has mode {oct(_mode(s.cfg))}"
    text = s.cfg.read_text()
    s.assert_no_password_in(text, "the config file")
    r = t.bridge("-c", s.cfg, "check", "-n")
    assert r.rc == 0 and "configuration OK" in r.output, "the written config does not load"
    files = re.findall(r'password_file = "([^"]+)"', text)
    assert len(files) == 2, f"want two password_file lines, got {files}"
    for f, pw in zip(files, (s.pop3_pw, s.imap_pw)):
        assert Path(f).parent == s.secrets_dir(), f"secret {f} not under {s.secrets_dir()}"
        assert _mode(f) == 0o600, f"{f} has mode {oct(_mode(f))}"
        assert Path(f).read_text() == pw + "\n", f"{f} does not hold the password"
    assert _mode(s.secrets_dir()) == 0o700, "the secrets folder is not mode 700"
    assert f'state_dir = "{t.state_dir}"' in text, "--state-dir not written"
    assert s.address in text and f'user = "{s.src}"' in text, \
        "%EMAILLOCALPART% not substituted into the POP3 user"

    # check logs in with what was written; run imports the mail.
    r = t.bridge("-c", s.cfg, "check")
    assert r.rc == 0, f"check of the new account exited {r.rc}"
    _assert_imported(s)


def test_add_wrong_pop3_password_writes_nothing(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig()
        # An existing config with one account, and no config at all.
        other = t.user(s.dc, "o")
        cfg = t.config([s.dc.account("first", other, s.dst)])
        before = _snapshot(t.tmp)
        r = s.add(env={"POPBRIDGE_POP3_PASSWORD": "wrong-31337"})
        assert r.rc == 77, f"add with a wrong POP3 password exited {r.rc}, want 77"
        assert re.search(rf"pop3 localhost:{s.dc.pop3s_port}: FAILED", r.output), \
            "the failure does not name the POP3 server"
        assert "wrong-31337" not in r.output, "the wrong password is shown"
        s.assert_no_password_in(r.output, "add's output")
        assert _snapshot(t.tmp) == before, "add changed files although a login failed"
        assert not s.secrets_dir().exists(), "a secrets folder was left behind"
        assert Path(cfg).read_bytes() == before["popbridge.conf"][0]

        os.unlink(cfg)
        r = s.add(env={"POPBRIDGE_IMAP_PASSWORD": "wrong-31337"})
        assert r.rc == 77, f"add with a wrong IMAP password exited {r.rc}, want 77"
        assert re.search(rf"imap localhost:{s.dc.imaps_port}: FAILED", r.output), \
            "the failure does not name the IMAP server"
        assert not s.cfg.exists(), "a config was created although a login failed"
        assert not s.secrets_dir().exists(), "a secrets folder was left behind"


# Existing configs whose layout the insertion must survive: comments with
# brackets and the word "accounts", strings with ")" and "#", a list ended
# on the last element's line, "name : value" without a final ";", an empty
# list, and an empty array.
LAYOUTS = {
    "commented": """# my popbridge config -- keep this comment
// accounts = ( "not this one" );
/* a block comment with ) and ( and accounts = ( */
state_dir = "{state}";   # where ledgers live
timeout = 60;
accounts = (
  # the first account
  {acct}   # trailing comment )
  # a comment before the closing bracket
);
# a comment at the end
""",
    "oneline": 'state_dir = "{state}";\naccounts : ( {acct} )\n',
    "empty": '# nothing yet\nstate_dir = "{state}";\naccounts = ( );  # none\n',
    "emptyarray": 'state_dir = "{state}";\naccounts = [\n];\n',
}


def _account_text(s, name, src):
    dc = s.dc
    return ("{ name = \"%s\"; # ) a comment with a bracket\n"
            "    pop3 = { url = \"pop3s://localhost:%d\"; user = \"%s\"; password = \"%s\";\n"
            "             ca_file = \"%s\"; };\n"
            "    imap = { url = \"imaps://localhost:%d\"; user = \"%s\"; password = \"%s\";\n"
            "             ca_file = \"%s\"; mailbox = \"odd ) # name\"; }; }"
            % (name, dc.pop3s_port, src, dc.users[src], dc.ca_file,
               dc.imaps_port, s.dst, dc.users[s.dst], dc.ca_file))


def test_add_second_account_keeps_comments(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig()
        for layout, template in LAYOUTS.items():
            other = t.user(s.dc, "o")
            acct = _account_text(s, "first", other) if "{acct}" in template else ""
            text = template.format(state=t.state_dir, acct=acct)
            s.cfg.write_text(text)
            os.chmod(s.cfg, 0o600)
            comments = [line.strip() for line in text.splitlines()
                        if line.strip().startswith(("#", "//", "/*"))]
            r = s.add("--name", f"second-{layout}")
            assert r.rc == 0, f"[{layout}] add to an existing config exited {r.rc}"
            new = s.cfg.read_text()
            for c in comments:
                assert c in new, f"[{layout}] comment lost: {c!r}"
            assert new.startswith(text[:text.index("accounts")]), \
                f"[{layout}] the text before the list changed"
            assert _mode(s.cfg) == 0o600, f"[{layout}] the config's mode changed"
            r = t.bridge("-c", s.cfg, "check", "-n")
            assert r.rc == 0 and "configuration OK" in r.output, \
                f"[{layout}] the config does not load after add"
            if acct:
                assert 'name = "first"' in new and 'mailbox = "odd ) # name"' in new, \
                    f"[{layout}] the first account changed"
            r = t.bridge("-c", s.cfg, "check", f"second-{layout}")
            assert r.rc == 0, f"[{layout}] check of the added account exited {r.rc}"
            last = re.findall(r'password_file = "([^"]+)"', new)
        # Every layout added the same POP3 mailbox; the last one still
        # imports with the secrets it wrote.
        _assert_imported(s, f"second-{layout}")
        for f in last:
            assert Path(f).exists()


def test_add_ispdb_only(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig(path=ISPDB_PATH)
        r = s.add()
        assert r.rc == 0, f"add with an ISPDB-only hit exited {r.rc}"
        assert AC_PATH in srv.requests and ISPDB_PATH in srv.requests, \
            f"autoconfig then ISPDB not both asked: {srv.requests}"
        assert srv.requests.index(AC_PATH) < srv.requests.index(ISPDB_PATH)
        assert "ISPDB" in r.output, "add does not say the server came from the ISPDB"
    _assert_imported(s)


def test_add_preset(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.presets.write_text(
            "# test presets\n"
            "other.test   pop3s://pop.other.test        -   Other\n"
            f"{DOMAIN}  pop3s://localhost:{s.dc.pop3s_port}  "
            f"imaps://localhost:{s.dc.imaps_port}   Test Provider  # with a comment\n")
        s.serve_autoconfig()          # must not be asked: the preset wins
        r = s.add("--pop3-user", s.src)
        assert r.rc == 0, f"add with a preset exited {r.rc}"
        assert srv.requests == [], f"HTTP asked despite a preset: {srv.requests}"
        assert "Test Provider" in r.output, "add does not name the preset's provider"
    _assert_imported(s)


def test_add_preset_file_broken(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.presets.write_text(f"{DOMAIN} http://localhost:1 - Bad\n")
        r = s.add()
        assert r.rc == 78, f"a broken preset file gave exit {r.rc}, want 78"
        assert re.search(rf"{re.escape(str(s.presets))}:1:", r.output), \
            "the error does not name FILE:LINE"
        assert not s.cfg.exists()


def test_add_unknown_domain(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        r = s.add()
        assert r.rc == 75, f"add for an unknown domain exited {r.rc}, want 75"
        m = re.search(r"could not find the POP3 server for (\S+); tried: ([^(]*)", r.output)
        assert m and m.group(1) == DOMAIN, "no 'could not find the POP3 server for DOMAIN'"
        for source in ("presets", "autoconfig", "ISPDB", "DNS SRV"):
            assert source in m.group(2), f"the tried list lacks {source}"
        assert srv.requests == [AC_PATH, ISPDB_PATH], f"unexpected requests {srv.requests}"
        assert not s.cfg.exists() and not s.secrets_dir().exists()


# Documents an autoconfig server must not get away with: entity bombs, an
# external entity, a body over the 1 MiB ceiling, values of the wrong kind
# (a bad host name, a port out of range, an unknown socketType, IMAP only)
# and something that is not XML.
HOSTILE_DOCS = {
    "bomb": ('<?xml version="1.0"?>\n<!DOCTYPE clientConfig [\n'
             '<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">\n'
             + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">\n'
                       for p, c in zip("abcdefgh", "bcdefghi"))
             + ']>\n<clientConfig><emailProvider id="x"><incomingServer type="pop3">'
             '<hostname>&i;</hostname></incomingServer></emailProvider></clientConfig>\n'),
    "external": ('<?xml version="1.0"?>\n<!DOCTYPE clientConfig [\n'
                 '<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                 '<clientConfig><emailProvider id="x"><incomingServer type="pop3">'
                 '<hostname>&x;</hostname></incomingServer></emailProvider></clientConfig>\n'),
    "huge": "<clientConfig>" + "<!-- padding -->" * 100000 + "</clientConfig>",
    "wrong": config_xml(servers=incoming_server("bad host;name", 995, "SSL")
                        + incoming_server("localhost", 99999, "SSL")
                        + incoming_server("localhost", 995, "ROT13")
                        + incoming_server("localhost", 995, "SSL", kind="imap")),
    "notxml": "<clientConfig><unclosed>",
}


def test_add_hostile_documents(t):
    """Each hostile document, a plain-http redirect away from loopback and a
    redirect loop are refused quickly, and discovery goes on (here to a good
    ISPDB document)."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig(path=ISPDB_PATH)
        for name, doc in HOSTILE_DOCS.items():
            srv.put(f"/{name}/{DOMAIN}.xml", doc)
        srv.redirect(f"/away/{DOMAIN}.xml", "http://192.0.2.1/config.xml")
        srv.redirect(f"/loop/{DOMAIN}.xml", f"{srv.url}/loop/{DOMAIN}.xml")
        for name in [*HOSTILE_DOCS, "away", "loop"]:
            t0 = time.monotonic()
            r = s.add("--name", f"h-{name}", env={
                "POPBRIDGE_AUTOCONFIG_URL": f"{srv.url}/{name}/%d.xml"})
            assert r.rc == 0, f"[{name}] add exited {r.rc} (the ISPDB document is good)"
            assert time.monotonic() - t0 < 20, f"[{name}] took {time.monotonic() - t0:.0f}s"
            assert "the Mozilla ISPDB" in r.output, f"[{name}] the hostile document was used"
            assert "root:" not in r.output, f"[{name}] a local file leaked"
            # Make room for the next case: the same POP3 mailbox again.
            s.cfg.unlink()
            for f in s.secrets_dir().iterdir():
                f.unlink()
        assert srv.requests.count(f"/loop/{DOMAIN}.xml") == 4, \
            "a redirect loop is not cut after 3 redirects"

        # Without a good ISPDB document the reasons show (-v is not needed).
        srv.routes.pop(ISPDB_PATH)
        for name, why in [("bomb", "DTD|not well-formed"), ("external", "DTD"), ("huge", "larger than"),
                          ("wrong", "no usable POP3 server"), ("notxml", "not well-formed"),
                          ("away", "refused http://192.0.2.1/"),
                          ("loop", "more than 3 redirects")]:
            r = s.add(env={"POPBRIDGE_AUTOCONFIG_URL": f"{srv.url}/{name}/%d.xml"})
            assert r.rc == 75, f"[{name}] exit {r.rc}, want 75"
            assert re.search(why, r.output), f"[{name}] the reason ({why}) is not given"


def test_add_plaintext_only_tries_starttls(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig(socket_type="plain", port=s.dc.pop3_port)
        r = s.add()
        assert r.rc == 0, f"add with a plaintext-only document exited {r.rc}"
        assert re.search(r"without TLS", r.output), "add does not say the provider lists plaintext only"
        text = s.cfg.read_text()
        assert f'url = "pop3://localhost:{s.dc.pop3_port}"' in text, "not a STARTTLS url"
        assert "tls = " not in text, "plaintext was written although STARTTLS works"
        r = t.bridge("-c", s.cfg, "check")
        assert r.rc == 0 and re.search(r"TLSv1\.[23]", r.output), "the POP3 login is not over TLS"


def test_add_usage_errors(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig()
        base = s.args()
        to = base.index("--to")
        cases = {
            "no --to": base[:to] + base[to + 2:],
            "bad --to": base[:to + 1] + ["https://localhost"] + base[to + 2:],
            "user in --to": base[:to + 1] + ["imaps://u:p@localhost"] + base[to + 2:],
            "bad address": s.args(address="no-at-sign"),
            "two addresses": s.args("extra@example.test"),
            "bad name": s.args("--name", "a/b"),
            "bad state dir": s.args("--state-dir", "relative"),
            "unknown option": s.args("--frobnicate"),
        }
        for what, args in cases.items():
            r = t.bridge(*args, env=s.env())
            assert r.rc == 64, f"[{what}] exit {r.rc}, want 64"
        assert not s.cfg.exists()

        # The same name twice, and the same POP3 mailbox twice.
        assert s.add("--name", "once").rc == 0
        r = s.add("--name", "once")
        assert r.rc == 64 and "once" in r.output, f"a taken --name gave exit {r.rc}"
        r = s.add("--name", "twice")
        assert r.rc == 64 and "already fetches" in r.output, \
            f"the same POP3 mailbox twice gave exit {r.rc}"

        # No terminal and no password: a usage error before any network use.
        env = {**os.environ, **s.env()}
        del env["POPBRIDGE_POP3_PASSWORD"]
        p = subprocess.run([popbridge_path(), *map(str, s.args("--name", "nopw"))],
                           env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, start_new_session=True, timeout=60)
        assert p.returncode == 64, f"no password and no terminal: exit {p.returncode}"
        assert "POPBRIDGE_POP3_PASSWORD" in p.stderr


def _pty_run(t, args, env, answers, timeout=90):
    """popbridge with a pseudo-terminal for its terminal and stdin: each
    prompt of `answers` ((text in the prompt, reply), in order) is answered
    as it appears.  Returns (exit code, transcript, prompts not asked).  A
    popbridge still waiting at the deadline is killed (it asked something
    the test does not know)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(t.tmp)
        os.execve(popbridge_path(), [popbridge_path(), *map(str, args)], env)
    pending = list(answers)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if pending and pending[0][0].encode() in out.split(b"\n")[-1]:
            os.write(fd, pending.pop(0)[1].encode() + b"\n")
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace")
    t.note("terminal transcript:\n" + "\n".join("    " + x for x in text.splitlines()[:40]))
    return os.waitstatus_to_exitcode(status), text, [a for a, _ in pending]


def test_add_asks_on_the_terminal_without_echo(t):
    """On a terminal add asks what it was not told: the IMAP user (echoed),
    the login methods and keep (Enter: the default shown), the passwords
    (not echoed)."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig()
        env = {**os.environ, **s.env()}
        del env["POPBRIDGE_POP3_PASSWORD"]
        del env["POPBRIDGE_IMAP_PASSWORD"]
        args = [str(a) for a in s.args()]
        imap_user = args.index("--imap-user")
        del args[imap_user:imap_user + 2]            # asked too
        rc, text, left = _pty_run(t, args, env, [
            ("IMAP user name", s.dst), ("POP3 login method", ""),
            ("POP3 password", s.pop3_pw), ("IMAP login method", ""),
            ("IMAP password", s.imap_pw), ("Keep a copy", "")])
        assert not left, f"popbridge did not ask for: {left}"
        assert rc == 0, f"add on a terminal exited {rc}"
        s.assert_no_password_in(text, "the terminal (echo was on?)")
        assert s.dst in text, "the IMAP user name was not echoed (it should be)"
        cfg = s.cfg.read_text()
        assert "keep = true;" in cfg and "auth =" not in cfg, \
            "Enter did not take keep = true and the automatic login method"
    _assert_imported(s)


def test_add_enter_takes_the_defaults(t):
    """Enter at a question takes the default shown in brackets: the IMAP
    user name (the address, as mail clients assume), the login methods
    (auto); an answer replaces it (keep: n).  Before the fix: Enter at
    "IMAP user name" ended the wizard ("the IMAP user name is empty or too
    long", exit 64), and there was no keep or login method question."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig()
        # The IMAP account is named by the address, as the default says.
        s.dc.add_user(s.address, s.imap_pw)
        env = {**os.environ, **s.env()}
        args = [str(a) for a in s.args()]
        imap_user = args.index("--imap-user")
        del args[imap_user:imap_user + 2]
        rc, text, left = _pty_run(t, args, env, [
            (f"IMAP user name at localhost [{s.address}]", ""),
            ("POP3 login method", ""), ("IMAP login method", ""),
            ("Keep a copy", "n")])
        assert not left, f"popbridge did not ask: {left} (transcript in the notes)"
        assert rc == 0, f"add with Enter at the questions exited {rc}"
        cfg = s.cfg.read_text()
        assert f'user = "{s.address}";' in cfg, "Enter did not take the IMAP user shown"
        assert "keep = false;" in cfg, "the answer n to keep was not taken"
        assert "auth =" not in cfg, "Enter did not take the automatic login method"
        r = t.bridge("-c", s.cfg, "check", "-n")
        assert r.rc == 0, f"the config does not load: {r.stderr.strip()!r}"


def test_add_save_untested(t):
    """Servers that cannot be reached (a closed port): nothing is saved,
    and the message says how to save anyway; --save-untested saves the
    account, untested, and says so (in the output and the config); on a
    terminal the question is asked (y).  A refused login is never saved.
    Before the fix: "nothing was written: the POP3 and the IMAP login
    failed", with no way to save."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        closed = free_ports(1)[0]
        down = ["--pop3", f"pop3s://127.0.0.1:{closed}", "--to", f"imaps://127.0.0.1:{closed}"]
        base = [a for a in map(str, s.args("--pop3-user", s.src))]
        to = base.index("--to")
        del base[to:to + 2]
        r = t.bridge(*base, *down, env=s.env())
        assert r.rc == 75, f"servers down: exit {r.rc}"
        assert "--save-untested" in r.output, "the message does not say how to save anyway"
        assert not s.cfg.exists()

        r = t.bridge(*base, *down, "--save-untested", env=s.env())
        assert r.rc == 0, f"--save-untested: exit {r.rc}"
        assert "SAVED UNTESTED" in r.output, "add does not say the account is untested"
        text = s.cfg.read_text()
        assert "NOT TESTED" in text, "the config does not say the account is untested"
        s.assert_no_password_in(text, "the config")
        r = t.bridge("-c", s.cfg, "check", "-n")
        assert r.rc == 0, f"the untested account's config does not load: {r.stderr.strip()!r}"

        # On a terminal: asked, default no; y saves.
        s.cfg.unlink()
        for f in s.secrets_dir().iterdir():
            f.unlink()
        rc, out, left = _pty_run(t, [*base, *down], {**os.environ, **s.env()}, [
            ("POP3 login method", ""), ("IMAP login method", ""), ("Keep a copy", ""),
            ("Save the account anyway, untested? [y/N]", "y")])
        assert not left and rc == 0, f"asked {left}, exit {rc}"
        assert "SAVED UNTESTED" in out and s.cfg.exists()

        # A refused login is not "untested": never saved.
        s.cfg.unlink()
        for f in s.secrets_dir().iterdir():
            f.unlink()
        s.serve_autoconfig()
        r = s.add("--save-untested", env={"POPBRIDGE_POP3_PASSWORD": "wrong-31337"})
        assert r.rc == 77 and not s.cfg.exists(), f"a refused login was saved: exit {r.rc}"


# ------------------------------------------------ providers: OAuth2, no POP3
SHIPPED_PRESETS = REPO_ROOT / "config" / "providers.conf"


def test_add_oauth2_only_from_the_ispdb(t):
    """The ISPDB lists the POP3 server with <authentication>OAuth2 only:
    add says the provider takes no password, sets up auth = "xoauth2" with
    a placeholder oauth2_token_command (no token command was given, and
    there is no terminal to ask on) and points to the README's OAuth2
    section; the POP3 login is not tried, the IMAP one is.  Before the fix:
    the document was refused ("no password login (OAuth2 only?)") and add
    ended "could not find the POP3 server" (75)."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        srv.put(ISPDB_PATH, config_xml(servers=incoming_server(
            "localhost", s.dc.pop3s_port, "SSL", "%EMAILLOCALPART%", auth="OAuth2")))
        env = s.env()
        env.pop("POPBRIDGE_POP3_PASSWORD")      # none is needed
        r = t.bridge(*s.args(), env={**env, "POPBRIDGE_POP3_PASSWORD": ""})
        assert r.rc == 0, f"add for an OAuth2-only provider exited {r.rc}"
        assert "takes only OAuth2" in r.output, "add does not say the provider takes OAuth2 only"
        assert "README.md" in r.output and "OAuth2" in r.output, "no pointer to the README"
        assert "NOT DONE YET" in r.output, "the placeholder is not called out"
        text = s.cfg.read_text()
        assert 'auth = "xoauth2";' in text and "oauth2_token_command" in text, text
        assert "PLACEHOLDER" in text, "the config does not mark the placeholder"
        assert text.count("password_file") == 1, "a POP3 password file was set up"
        assert not (s.secrets_dir() / f"{s.address}.pop3").exists()
        r = t.bridge("-c", s.cfg, "check", "-n")
        assert r.rc == 0, f"the config does not load: {r.stderr.strip()!r}"
        # The placeholder fails with the fix, before any connection.
        r = t.bridge("-c", s.cfg, "run")
        assert r.rc == 75 and "set oauth2_token_command" in r.stderr, r.stderr
        assert s.dc.auth_attempts(s.src) == [], "a POP3 login was tried with the placeholder"


def test_add_outlook_preset_oauth2(t):
    """The shipped presets mark Outlook.com and Hotmail as OAuth2 only: add
    sets up auth = "xoauth2" (with a placeholder: no token command given)
    and asks for no POP3 password.  Nothing reaches Microsoft: the POP3
    login is not tried without a token.  Before the fix: a password login
    was set up, and without POPBRIDGE_POP3_PASSWORD add stopped ("give the
    POP3 password")."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        address = "max.household@outlook.com"
        env = {"POPBRIDGE_PROVIDERS": str(SHIPPED_PRESETS), "POPBRIDGE_POP3_PASSWORD": ""}
        r = s.add(env=env, address=address)
        assert r.rc == 0, f"add for outlook.com exited {r.rc}"
        assert "takes only OAuth2" in r.output and "NOT DONE YET" in r.output, r.output
        text = s.cfg.read_text()
        assert 'auth = "xoauth2";' in text and 'url = "pop3s://outlook.office365.com"' in text
        assert srv.requests == [], f"HTTP asked despite a preset: {srv.requests}"


def test_add_oauth2_token_command_is_written(t):
    """--pop3-token-command is the oauth2_token_command written, and the
    login is tried with its token (here against a closed port, so the
    account is saved with --save-untested).  Before the fix: an unknown
    option (64)."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        closed = free_ports(1)[0]
        srv.put(ISPDB_PATH, config_xml(servers=incoming_server(
            "localhost", closed, "SSL", "%EMAILLOCALPART%", auth="OAuth2")))
        r = s.add("--pop3-token-command", "printf 'tok-%s' test", "--save-untested",
                  env={"POPBRIDGE_POP3_PASSWORD": ""})
        assert r.rc == 0, f"exit {r.rc}"
        text = s.cfg.read_text()
        assert 'oauth2_token_command = "printf \'tok-%s\' test";' in text, text
        assert "PLACEHOLDER" not in text and "SAVED UNTESTED" in r.output
        assert re.search(rf"pop3 localhost:{closed}: FAILED: .*connect", r.output), \
            "the login was not tried with the token"


def test_add_icloud_offers_no_pop3(t):
    """iCloud offers no POP3: the shipped presets say so, and add says it in
    those words, before any lookup or question.  Before the fix: "could not
    find the POP3 server for icloud.com" after asking the network."""
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        r = s.add(env={"POPBRIDGE_PROVIDERS": str(SHIPPED_PRESETS)},
                  address="max.household@icloud.com")
        assert r.rc == 78, f"add for icloud.com exited {r.rc}, want 78"
        assert "iCloud offers no POP3" in r.output, f"not said: {r.output.strip()!r}"
        assert "could not find" not in r.output
        assert srv.requests == [], f"the network was asked: {srv.requests}"
        assert not s.cfg.exists()


def test_add_refused_login_shows_the_provider_hint(t):
    """GMX and WEB.DE refuse POP3 until it is switched on in their web
    mailer; their presets carry that hint, and add shows it when the POP3
    login is refused.  (The GMX line of the shipped presets, pointed at the
    test's Dovecot.)  Before the fix: only "pop3: ... refused the login"."""
    hints = {}
    for line in SHIPPED_PRESETS.read_text().splitlines():
        m = re.match(r"(gmx\.net|web\.de)\s.*\|\s*hint=(.*)$", line)
        if m:
            hints[m.group(1)] = m.group(2).strip()
    assert set(hints) == {"gmx.net", "web.de"}, f"GMX and WEB.DE presets without a hint: {hints}"
    assert all("POP3" in h for h in hints.values()), hints
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.presets.write_text(f"{DOMAIN}  pop3s://localhost:{s.dc.pop3s_port}  -  GMX (test) "
                             f"| hint={hints['gmx.net']}\n")
        r = s.add("--pop3-user", s.src, env={"POPBRIDGE_POP3_PASSWORD": "wrong-31337"})
        assert r.rc == 77, f"a refused login: exit {r.rc}"
        assert f"hint: {hints['gmx.net']}" in r.output, f"the hint is not shown: {r.output.strip()!r}"
        assert "POP3 login was refused (" + hints["gmx.net"] in r.stderr, \
            f"the summary does not give the hint: {r.stderr.strip()!r}"
        assert not s.cfg.exists()


# ---------------------------------------------------- DNS: what failed
class _DNS:
    """A name server on 127.0.0.1:53 (UDP) for a resolver pointed at it:
    "nxdomain" answers every query "no such name", "silent" answers
    nothing.  Records the names asked."""

    def __init__(self, mode):
        import socket
        import threading
        self.mode = mode
        self.asked = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                q, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            if len(q) < 12:
                continue
            name, i = [], 12
            while i < len(q) and q[i] != 0:
                name.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
                i += 1 + q[i]
            self.asked.append(".".join(name))
            if self.mode == "silent":
                continue
            # The question back, QR and RA set, RD kept, RCODE 3 (NXDOMAIN).
            flags = 0x8000 | (q[2] & 0x01) << 8 | 0x0080 | 3
            end = i + 5
            self.sock.sendto(q[:2] + flags.to_bytes(2, "big") + b"\x00\x01" + b"\x00" * 6
                             + q[12:end], peer)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def _with_resolver(t, args, env, resolv_conf):
    """popbridge in a private mount namespace whose /etc/resolv.conf is
    resolv_conf (a name server on 127.0.0.1); nothing else changes."""
    rc = t.tmp / "resolv.conf"
    rc.write_text(resolv_conf)
    cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
           str(rc), popbridge_path(), *map(str, args)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       cwd=t.tmp, env={**os.environ, **env}, timeout=180)
    res = BridgeResult(cmd, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
    t.runs.append(res)
    return res


def _dns_possible(t):
    if os.geteuid() != 0:
        t.note("not root: no private mount namespace for /etc/resolv.conf")
        return False
    p = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if p.returncode != 0:
        t.note(f"unshare -m refused here: {p.stderr.decode().strip()}")
        return False
    return True


RESOLV = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def test_add_dns_failures_are_called_dns(t):
    """A host name that does not resolve, and a resolver that does not
    answer, are called that, not a failed login: "the host name ... does
    not resolve (DNS: no such host)", "no answer from the DNS resolver (is
    this machine online?)".  A name that does not exist is not saved with
    --save-untested; an offline machine is (untested).  The resolver is a
    name server on 127.0.0.1:53 seen through a private /etc/resolv.conf.
    Before the fix: "nothing was written: the POP3 and the IMAP login
    failed" for both."""
    if not _dns_possible(t):
        return
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        args = ["-c", s.cfg, "add", s.address, "--pop3", "pop3s://pop.nowhere.test",
                "--to", "imaps://imap.nowhere.test", "--imap-user", s.dst,
                "--state-dir", t.state_dir]
        try:
            dns = _DNS("nxdomain")
        except OSError as e:
            t.note(f"127.0.0.1:53 is taken ({e}): no private name server")
            return
        try:
            r = _with_resolver(t, args, s.env(), RESOLV)
            assert r.rc == 75, f"names that do not resolve: exit {r.rc}"
            for host in ("pop.nowhere.test", "imap.nowhere.test"):
                assert re.search(rf"host name {re.escape(host)} does not resolve", r.output), \
                    f"{host}: not called a DNS failure: {r.output.strip()!r}"
            assert "login failed" not in r.output and "DNS" in r.stderr, r.stderr
            r = _with_resolver(t, [*args, "--save-untested"], s.env(), RESOLV)
            assert r.rc == 75 and not s.cfg.exists(), \
                f"a name that does not exist was saved untested: exit {r.rc}"
            assert any("nowhere.test" in n for n in dns.asked), f"our name server was not asked: {dns.asked}"
        finally:
            dns.stop()

        dns = _DNS("silent")
        try:
            r = _with_resolver(t, args, s.env(), RESOLV)
            assert r.rc == 75, f"a silent resolver: exit {r.rc}"
            assert "no answer from the DNS resolver" in r.output, r.output.strip()
            assert "--save-untested" in r.stderr, r.stderr
            r = _with_resolver(t, [*args, "--save-untested"], s.env(), RESOLV)
            assert r.rc == 0 and "SAVED UNTESTED" in r.output, f"offline, --save-untested: exit {r.rc}"
            assert s.cfg.exists()
        finally:
            dns.stop()


def test_add_srv_no_answer_is_not_no_record(t):
    """Discovery's last source, DNS SRV: a resolver that does not answer is
    "no answer from the resolver", a name server that says no is "no such
    record".  Before the fix: "no record" for both."""
    if not _dns_possible(t):
        return
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        env = {**s.env()}
        del env["POPBRIDGE_SRV"]
        args = ["-c", s.cfg, *s.args()[2:]]
        for mode, want, not_want in (("silent", "no answer from the resolver", "no such record"),
                                     ("nxdomain", "no such record", "no answer")):
            try:
                dns = _DNS(mode)
            except OSError as e:
                t.note(f"127.0.0.1:53 is taken ({e}): no private name server")
                return
            try:
                r = _with_resolver(t, args, env, RESOLV)
            finally:
                dns.stop()
            assert r.rc == 75, f"[{mode}] exit {r.rc}"
            m = re.search(r"DNS SRV: (.*)", r.stderr)
            assert m and want in m.group(1) and not_want not in m.group(1), \
                f"[{mode}] the SRV note: {m.group(1) if m else r.stderr.strip()!r}"
            assert any(n.startswith("_pop3s._tcp.") for n in dns.asked), dns.asked
