"""A household following only the README (issue 13, point 1): install,
`popbridge add`, enable the shipped systemd unit, and mail flows, without
editing anything by hand.

The test cannot run systemd, so it does what the unit does: it installs
with `make install DESTDIR=... PREFIX=/usr/local` into a temporary root,
reads the installed unit (config/popbridge.service), makes its
StateDirectory for its User=, and runs its ExecStart as that user with its
UMask.  It may not create users on this machine, so the unit's user is
`nobody` (which Debian has): the copy of the unit that the README has the
household put into /etc/systemd/system says User=nobody, and add is
pointed at that copy with $POPBRIDGE_UNIT.  Root only.

Everything is on 127.0.0.1: the private Dovecot and the local autoconfig
server of tests/autoconfig_server.py.
"""

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoconfig_server import AutoconfigServer, config_xml  # noqa: E402
from harness import REPO_ROOT, BridgeResult, normalise, popbridge_path, varied_messages  # noqa: E402

DOMAIN = "example.test"
NOBODY = pwd.getpwnam("nobody")


def _install(t):
    """`make install` into a fresh root (0755 all the way, as / is); the
    binary under test if $POPBRIDGE names another."""
    root = t.tmp / "root"
    root.mkdir(mode=0o755)
    p = subprocess.run(["make", "-o", "all", "install", f"DESTDIR={root}", "PREFIX=/usr/local"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"make install failed: {p.stderr[-500:]}"
    exe = root / "usr/local/bin/popbridge"
    if Path(popbridge_path()).resolve() != (REPO_ROOT / "bridge" / "popbridge").resolve():
        shutil.copy2(popbridge_path(), exe)
    for d in ("etc", "etc/ssl", "etc/systemd/system", "var/lib"):
        (root / d).mkdir(mode=0o755, parents=True, exist_ok=True)
    return root, exe


def _unit(root):
    """The installed unit's [Service] settings."""
    text = (root / "usr/local/share/popbridge/popbridge.service").read_text()
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    keys = {}
    for line in service.splitlines():
        m = re.match(r"^(\w+)=(.*)$", line.strip())
        if m:
            keys[m.group(1)] = m.group(2).strip()
    return text, keys


def _as_user(pw, umask):
    def preexec():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        os.umask(umask)
    return preexec


def _owner(path):
    return os.stat(path).st_uid


class _Household:
    """A POP3 mailbox with mail, an IMAP mailbox, an autoconfig server and
    an installed popbridge."""

    def __init__(self, t, srv, messages=3):
        self.t = t
        self.dc = t.dovecot()
        self.src = t.user(self.dc, "s")
        self.dst = t.user(self.dc, "d")
        self.address = f"{self.src}@{DOMAIN}"
        self.raws = [raw for _, raw in varied_messages(t.name)[:messages]]
        for raw in self.raws:
            self.dc.deliver(self.src, raw)
        srv.put(f"/{DOMAIN}/config-v1.1.xml",
                config_xml("localhost", self.dc.pop3s_port, "SSL", "%EMAILLOCALPART%"))
        self.srv = srv
        self.root, self.exe = _install(t)
        # The household's CA: the test Dovecot's, where the daemon can read it.
        self.ca = self.root / "etc/ssl/test-ca.pem"
        shutil.copy(self.dc.ca_file, self.ca)
        os.chmod(self.ca, 0o644)
        self.cfg = self.root / "etc/popbridge.conf"
        self.state = self.root / "var/lib/popbridge"

    def env(self, **over):
        e = {"POPBRIDGE_AUTOCONFIG_URL": self.srv.url + "/%d/config-v1.1.xml",
             "POPBRIDGE_ISPDB_URL": self.srv.url + "/ispdb/",
             "POPBRIDGE_SRV": "0",
             "POPBRIDGE_POP3_PASSWORD": self.dc.users[self.src],
             "POPBRIDGE_IMAP_PASSWORD": self.dc.users[self.dst]}
        e.update(over)
        return e

    def run(self, *args, env=None, user=None, umask=0o022):
        cmd = [str(self.exe), *map(str, args)]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           cwd="/", timeout=180, env={**os.environ, **(env or {})},
                           preexec_fn=_as_user(user, umask) if user else None)
        r = BridgeResult(cmd, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
        self.t.runs.append(r)
        return r

    def add(self, *extra, env=None):
        return self.run("-c", self.cfg, "add", self.address,
                        "--to", f"imaps://localhost:{self.dc.imaps_port}",
                        "--imap-user", self.dst, "--ca-file", self.ca,
                        "--state-dir", self.state, *extra, env=self.env(**(env or {})))

    def secrets(self):
        return sorted((self.root / "etc/popbridge").iterdir())

    def assert_no_password_in(self, text, what):
        for pw in (self.dc.users[self.src], self.dc.users[self.dst]):
            assert pw not in text, f"a password appears in {what}"

    def imported(self):
        return [m["body"] for m in self.dc.imap_messages(self.dst)]

    def want(self):
        return [normalise(raw) for raw in self.raws]


def test_household_readme_with_the_shipped_unit(t):
    """Install, add (as root, no option about users), enable the unit: the
    daemon the unit starts, as the unit's user, reads its config and
    passwords and imports the mail.  add found the unit's User= and wrote
    the config and the secret files for that user; check -n (as root)
    checked that user can read them.  Before the fix: the files were
    root:root 0600, check -n said "configuration OK", and the daemon as
    the unit's user could not read the config ("cannot read: Permission
    denied"; with a readable config: "password_file ...: Permission
    denied" at every poll)."""
    if os.geteuid() != 0:
        t.note("not root: add cannot give files to the unit's user, nor run as it")
        return
    with AutoconfigServer() as srv:
        h = _Household(t, srv)
        text, unit = _unit(h.root)
        assert unit.get("User") == "popbridge", f"the shipped unit's User= is {unit.get('User')}"
        # The README: cp config/popbridge.service /etc/systemd/system/.  The
        # user it names cannot be made here: nobody stands in for it.
        installed = h.root / "etc/systemd/system/popbridge.service"
        installed.write_text(re.sub(r"(?m)^User=.*$", "User=nobody",
                                    re.sub(r"(?m)^Group=.*$", "Group=nogroup", text)))

        r = h.add(env={"POPBRIDGE_UNIT": str(installed)})
        assert r.rc == 0, f"add exited {r.rc}"
        h.assert_no_password_in(r.output, "add's output")
        for f in [h.cfg, h.root / "etc/popbridge", *h.secrets()]:
            assert _owner(f) == NOBODY.pw_uid, f"{f} belongs to uid {_owner(f)}, not nobody"
            assert stat.S_IMODE(os.stat(f).st_mode) in (0o600, 0o700), f"{f}: mode"
        assert 'user = "nobody";' in h.cfg.read_text(), "the new config does not name its user"

        r = h.run("-c", h.cfg, "check", "-n")
        assert r.rc == 0 and "configuration OK" in r.output, f"check -n: {r.output.strip()!r}"

        # What systemd does for the unit: StateDirectory, then ExecStart as
        # User= with UMask=.
        assert unit.get("StateDirectory") == "popbridge"
        h.state.mkdir(mode=int(unit.get("StateDirectoryMode", "0755"), 8))
        os.chown(h.state, NOBODY.pw_uid, NOBODY.pw_gid)
        argv = unit["ExecStart"].split()
        assert argv[0] == "/usr/local/bin/popbridge" and argv[1:3] == ["-c", "/etc/popbridge.conf"], argv
        argv = [str(h.exe), "-c", str(h.cfg), *argv[3:]]
        log = t.tmp / "unit-daemon.stderr"
        with open(log, "wb") as errf:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                 cwd="/", env={k: v for k, v in os.environ.items()
                                               if not k.startswith("POPBRIDGE_")},
                                 preexec_fn=_as_user(NOBODY, int(unit.get("UMask", "0022"), 8)))
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and p.poll() is None:
                if len(h.imported()) >= len(h.raws):
                    break
                time.sleep(0.3)
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        out = log.read_text(errors="replace")
        t.runs.append(BridgeResult(argv, p.returncode, "", out, 0))
        assert "Permission denied" not in out, f"the unit's daemon cannot read its files: {out[-600:]}"
        assert h.imported() == h.want(), \
            f"the unit's daemon imported {len(h.imported())} of {len(h.raws)} messages: {out[-600:]}"
        h.assert_no_password_in(out, "the daemon's log")


def test_add_owner_and_the_configs_user(t):
    """--owner USER gives a new config and the secret files to USER (the
    config then says user = USER), and `run` as that user works; for an
    existing config its owner decides without --owner, and an --owner that
    contradicts its `user` is refused.  Root only.  Before the fix:
    --owner was an unknown option (64) and the files were root's."""
    if os.geteuid() != 0:
        t.note("not root: no files to give away")
        return
    with AutoconfigServer() as srv:
        h = _Household(t, srv, messages=2)
        h.state.mkdir(mode=0o700)
        os.chown(h.state, NOBODY.pw_uid, NOBODY.pw_gid)
        r = h.add("--owner", "nobody", env={"POPBRIDGE_UNIT": ""})
        assert r.rc == 0, f"add --owner nobody exited {r.rc}"
        assert 'user = "nobody";' in h.cfg.read_text()
        assert all(_owner(f) == NOBODY.pw_uid for f in [h.cfg, *h.secrets()]), \
            "--owner nobody: not every file is nobody's"
        r = h.run("-c", h.cfg, "-v", "run", user=NOBODY, umask=0o077)
        assert r.rc == 0, f"run as nobody exited {r.rc}"
        assert h.imported() == h.want(), "run as nobody did not import the mail"

        # A second account in that config: its user decides; a contradicting
        # --owner is a usage error and changes nothing.
        other = t.user(h.dc, "o")
        h.dc.deliver(other, h.raws[0])
        before = h.cfg.read_bytes()
        r = h.run("-c", h.cfg, "add", f"{other}@{DOMAIN}", "--to",
                  f"imaps://localhost:{h.dc.imaps_port}", "--imap-user", h.dst,
                  "--ca-file", h.ca, "--owner", "root",
                  env=h.env(POPBRIDGE_POP3_PASSWORD=h.dc.users[other], POPBRIDGE_UNIT=""))
        assert r.rc == 64 and "user = \"nobody\"" in r.stderr, f"a contradicting --owner: exit {r.rc}"
        assert h.cfg.read_bytes() == before
        r = h.run("-c", h.cfg, "add", f"{other}@{DOMAIN}", "--to",
                  f"imaps://localhost:{h.dc.imaps_port}", "--imap-user", h.dst,
                  "--ca-file", h.ca, "--mailbox", "Other",
                  env=h.env(POPBRIDGE_POP3_PASSWORD=h.dc.users[other], POPBRIDGE_UNIT=""))
        assert r.rc == 0, f"a second account: exit {r.rc}"
        assert all(_owner(f) == NOBODY.pw_uid for f in h.secrets()), \
            f"the config's user did not get the new files: {[(f.name, _owner(f)) for f in h.secrets()]}"
        r = h.run("-c", h.cfg, "check", "-n")
        assert r.rc == 0, f"check -n: {r.stderr.strip()!r}"
