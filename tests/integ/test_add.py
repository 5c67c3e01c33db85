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
from harness import normalise, popbridge_path, varied_messages  # noqa: E402

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


def test_add_asks_on_the_terminal_without_echo(t):
    with AutoconfigServer() as srv:
        s = Setup(t, srv)
        s.serve_autoconfig()
        env = {**os.environ, **s.env()}
        del env["POPBRIDGE_POP3_PASSWORD"]
        del env["POPBRIDGE_IMAP_PASSWORD"]
        args = [str(a) for a in s.args()]
        imap_user = args.index("--imap-user")
        del args[imap_user:imap_user + 2]            # asked too
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(t.tmp)
            os.execve(popbridge_path(), [popbridge_path(), *args], env)
        answers = [("IMAP user name", s.dst), ("POP3 password", s.pop3_pw),
                   ("IMAP password", s.imap_pw)]
        out = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if answers and answers[0][0].encode() in out.split(b"\n")[-1]:
                os.write(fd, answers.pop(0)[1].encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        text = out.decode(errors="replace")
        t.note("terminal transcript:\n" + "\n".join("    " + x for x in text.splitlines()[:6]))
        assert not answers, f"popbridge did not ask for: {[a for a, _ in answers]}"
        assert os.waitstatus_to_exitcode(status) == 0, f"add on a terminal exited {status}"
        s.assert_no_password_in(text, "the terminal (echo was on?)")
        assert s.dst in text, "the IMAP user name was not echoed (it should be)"
    _assert_imported(s)
