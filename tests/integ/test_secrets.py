"""Secrets never reach any output: every command at the highest verbosity
(-vv) against both servers, successes and refusals, and runs without -v
(syslog), with distinctive passwords and OAuth2 tokens; then stdout,
stderr, syslog, the batch report, the ledgers (SQLite, with their -wal and
-shm) and every file of the state folders are searched for each secret in
every form it could take (tests/secretlib.py: the secret itself, SASL
PLAIN, XOAUTH2, and base64 at every 3-byte alignment).

Servers: the OAuth2 Dovecot of tests/oauthlib.py (passwords and bearer
tokens) and, for the one login that puts the password on the wire as is
(POP3 USER/PASS, which curl's own verbose output would print in clear), the
scripted fake POP3 server without SASL (tests/fakepop3.py, plaintext on
127.0.0.1 with tls = "none").

Files that hold a secret on purpose (password files, token files, configs
and CSV files with literal passwords, the secrets folder `add` writes) are
kept outside the folders searched.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakepop3 import FakePOP3  # noqa: E402
from harness import (BridgeResult, _pid_alive, _text, make_account, popbridge_path,  # noqa: E402
                     varied_messages)
from oauthlib import TokenCommand, oauth2_dovecot, write_secret  # noqa: E402
from secretlib import (SyslogCapture, assert_no_secrets, assert_no_secrets_in_files,  # noqa: E402
                       files_under, find_secrets)

POP_PW = "Pw-Zq8!secret-POP"
IMAP_PW = "Pw-Zq8!secret-IMAP"
WRONG_PW = "Pw-Zq8!secret-WRONG"
EX_NOPERM = 77


# ------------------------------------------------------------------ setup
class World:
    """Users with the distinctive passwords, tokens, secret files and a
    config with four accounts, one per way a secret reaches a login:

      sec-pw   pop3s, password in the config   | imap STARTTLS, password_file
      sec-cmd  pop3 STARTTLS, password_command | imaps, password, auth = "login"
      sec-oa   pop3s XOAUTH2, token command    | imaps OAUTHBEARER, token command
      sec-up   fake POP3 USER/PASS (plaintext) | imaps, password_command
    """

    def __init__(self, t, n=2):
        self.t = t
        self.dc = dc = oauth2_dovecot(t)
        self.secret_dir = t.tmp / "secret-files"         # never searched
        self.secret_dir.mkdir(mode=0o700)
        self.state = t.tmp / "state"                     # searched
        self.state.mkdir()
        self.tag = 0
        self.users = {}
        for name in ("pw", "cmd", "oa", "up"):
            src = self._user("s" + name, POP_PW) if name != "up" else None
            dst = self._user("d" + name, IMAP_PW)
            self.users[name] = (src, dst)
        self.fake = FakePOP3(user="fake-" + t.short, password=POP_PW, sasl=False).start()
        t.note(f"fake POP3 USER/PASS server on port {self.fake.port}")
        self.pw_file = write_secret(self.secret_dir / "imap.pw", IMAP_PW)
        self.pop_pw_file = write_secret(self.secret_dir / "pop.pw", POP_PW)
        self.imap_pw_file2 = write_secret(self.secret_dir / "imap2.pw", IMAP_PW)
        s, d = self.users["oa"]
        self.tok_src = TokenCommand(self.secret_dir, "src", dc.idp.issue(s, self.token()))
        self.tok_dst = TokenCommand(self.secret_dir, "dst", dc.idp.issue(d, self.token()))
        self.deliver()

    def token(self):
        return "ya29.Zq8-secret-TOKEN-" + os.urandom(12).hex()

    def _user(self, role, pw):
        name = f"{self.t.short}{role}{os.getpid() % 1000}"
        self.dc.add_user(name, pw)
        return name

    def deliver(self, n=2):
        self.tag += 1
        for name, (src, _) in self.users.items():
            for _, raw in varied_messages(f"{self.t.name}-{name}-{self.tag}")[:n]:
                if src is None:
                    self.fake.add(raw)
                else:
                    self.dc.deliver(src, raw)

    def secrets(self, *extra):
        """(secret, user) pairs for every secret in play."""
        out = [(WRONG_PW, None)]
        for name, (src, dst) in self.users.items():
            out.append((IMAP_PW, dst))
            out.append((POP_PW, src or self.fake.user))
        s, d = self.users["oa"]
        out += [(self.tok_src.token, s), (self.tok_dst.token, d)]
        out += list(extra)
        return out

    def accounts(self, wrong=False):
        """The four accounts; wrong=True: every secret is wrong (WRONG_PW,
        an unknown token)."""
        dc = self.dc
        pop_pw = WRONG_PW if wrong else POP_PW
        imap_pw = WRONG_PW if wrong else IMAP_PW
        if wrong:
            bad = write_secret(self.secret_dir / "wrong.pw", WRONG_PW)
            pw_file = cmd_file = bad
            self.wrong_token = "ya29.Zq8-secret-WRONGTOKEN-" + os.urandom(12).hex()
            tok_cmd = TokenCommand(self.secret_dir, "wrongtok", self.wrong_token).command
            tok_cmd_dst = tok_cmd
        else:
            pw_file, cmd_file = self.pw_file, self.pop_pw_file
            tok_cmd, tok_cmd_dst = self.tok_src.command, self.tok_dst.command
        s, d = self.users["pw"]
        pw = make_account("sec-pw",
                          dc.pop3_block(s, "tls", password=pop_pw),
                          self._nopw(dc.imap_block(d, "starttls"), password_file=str(pw_file)))
        s, d = self.users["cmd"]
        cmd = make_account("sec-cmd",
                           self._nopw(dc.pop3_block(s, "starttls"),
                                      password_command=f"cat {cmd_file}"),
                           dc.imap_block(d, "tls", password=imap_pw, auth="login"))
        s, d = self.users["oa"]
        oa = make_account("sec-oa",
                          self._nopw(dc.pop3_block(s), auth="xoauth2",
                                     oauth2_token_command=tok_cmd),
                          self._nopw(dc.imap_block(d), auth="oauthbearer",
                                     oauth2_token_command=tok_cmd_dst))
        _, d = self.users["up"]
        up = make_account("sec-up", self.fake.pop3_block(password=pop_pw),
                          self._nopw(dc.imap_block(d),
                                     password_command=f"cat {self.imap_pw_file2 if not wrong else pw_file}"))
        return [pw, cmd, oa, up]

    @staticmethod
    def _nopw(block, **extra):
        b = dict(block)
        b.pop("password", None)
        b.update(extra)
        return b

    def config(self, wrong=False, extra="", name="popbridge.conf"):
        """A config file (0600, outside the searched folders)."""
        from harness import write_config
        return write_config(self.secret_dir / name, self.accounts(wrong), self.state, extra)

    def imported(self, name):
        return self.dc.imap_count(self.users[name][1])

    def close(self):
        self.fake.stop()


def _run(t, args, env=None, timeout=180):
    """popbridge ARGS with no terminal (a new session, stdin /dev/null), so
    nothing can prompt; recorded for the failure report."""
    cmd = [popbridge_path(), *map(str, args)]
    t0 = time.monotonic()
    e = {**os.environ, "HOME": str(t.tmp / "home"), "XDG_STATE_HOME": str(t.tmp / "xdg")}
    for k in ("POPBRIDGE_POP3_PASSWORD", "POPBRIDGE_IMAP_PASSWORD"):
        e.pop(k, None)
    e.update(env or {})
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       cwd=t.tmp, env=e, start_new_session=True)
    r = BridgeResult(cmd, p.returncode, _text(p.stdout), _text(p.stderr),
                     time.monotonic() - t0)
    t.runs.append(r)
    return r


def _check_outputs(runs, secrets):
    for r in runs:
        assert_no_secrets(r.output, secrets, f"`popbridge {' '.join(r.args[1:])}` (exit {r.rc})")


def _check_state(t, secrets, *dirs):
    dirs = dirs or (t.tmp,)
    files = files_under(*dirs, skip=[t.tmp / "secret-files"])
    assert files, "no state files to search (wrong folders?)"
    assert_no_secrets_in_files(files, secrets, "state and report files")
    return files


# ------------------------------------------------------------------ tests
def test_secrets_config_commands_vv(t):
    """check -n, check, run, run again (nothing new), status, status --json,
    all at -vv, over every login path; mail imported, then searched."""
    w = World(t)
    try:
        cfg = w.config()
        runs = [_run(t, ["-c", cfg, "-vv", "check", "-n"])]
        assert runs[-1].rc == 0, f"check -n exited {runs[-1].rc}"
        runs.append(_run(t, ["-c", cfg, "-vv", "check"]))
        assert runs[-1].rc == 0, f"check exited {runs[-1].rc}"
        runs.append(_run(t, ["-c", cfg, "-vv", "run"]))
        assert runs[-1].rc == 0, f"run exited {runs[-1].rc}"
        for name in w.users:
            assert w.imported(name) == 2, f"account sec-{name}: {w.imported(name)} imported, want 2"
        w.deliver(1)
        runs.append(_run(t, ["-c", cfg, "-vv", "run"]))
        assert runs[-1].rc == 0, f"second run exited {runs[-1].rc}"
        runs.append(_run(t, ["-c", cfg, "-vv", "run"]))        # nothing new
        runs.append(_run(t, ["-c", cfg, "-vv", "check", "sec-oa", "sec-up"]))
        runs.append(_run(t, ["-c", cfg, "-vv", "status"]))
        runs.append(_run(t, ["-c", cfg, "-vv", "status", "--json"]))
        assert runs[-1].rc == 0, f"status --json exited {runs[-1].rc}"
        json.loads(runs[-1].stdout)
        # The trace really is the most verbose: it shows server lines.
        assert re.search(r"S: \+OK", runs[2].stderr) and re.search(r"S: \* OK", runs[2].stderr), \
            "-vv run shows no protocol trace (is -vv the highest verbosity?)"
        # Every login path was really taken: USER/PASS against the fake
        # server, and these SASL mechanisms in Dovecot's log.
        assert "PASS" in w.fake.command_names(), "the fake server saw no USER/PASS login"
        want = {("pw", 0): "PLAIN", ("pw", 1): "PLAIN", ("cmd", 0): "PLAIN",
                ("cmd", 1): "LOGIN", ("oa", 0): "XOAUTH2", ("oa", 1): "OAUTHBEARER",
                ("up", 1): "PLAIN"}
        log = w.dc.log_text()
        for (name, side), mech in want.items():
            user = w.users[name][side]
            assert re.search(rf"Login: user=<{re.escape(user)}>, method={mech}\b", log), \
                f"sec-{name}: no {mech} login of {user} in Dovecot's log"
        _check_outputs(runs, w.secrets())
        files = _check_state(t, w.secrets(), w.state)
        assert any(p.suffix == ".db" for p in files), f"no ledger in {w.state}: {files}"
    finally:
        w.close()


def test_secrets_wrong_secrets_vv(t):
    """Every secret wrong: check and run at -vv refuse (77) and show none of
    them, nor the right ones."""
    w = World(t)
    try:
        cfg = w.config(wrong=True)
        runs = []
        for args in (["-vv", "check"], ["-vv", "run"], ["-v", "run"], ["run"]):
            r = _run(t, ["-c", cfg, *args])
            runs.append(r)
            assert r.rc == EX_NOPERM, f"`{' '.join(args)}` with wrong secrets exited {r.rc}"
        for name in w.users:
            assert w.imported(name) == 0
        assert w.fake.failed_logins >= 1, "the fake server saw no failed USER/PASS login"
        extra = [(w.wrong_token, u) for u in (w.users["oa"][0], w.users["oa"][1])]
        _check_outputs(runs, w.secrets(*extra))
        _check_state(t, w.secrets(*extra), w.state)
        # Each refusal is reported, with the account.
        for name in ("sec-pw", "sec-cmd", "sec-oa", "sec-up"):
            assert name in runs[1].stderr, f"the -vv run says nothing about {name}"
    finally:
        w.close()


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def _pid_in(pid_file):
    """The pid a daemon wrote to its pid file, or None (not there yet)."""
    try:
        words = Path(pid_file).read_text().split()
        return int(words[0]) if words else None
    except (OSError, ValueError):
        return None


def _is_popbridge(pid):
    try:
        return b"popbridge" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _summaries(text, account):
    return re.findall(rf"{re.escape(account)}: (?:\d+ new, \d+ imported|nothing new)", text)


def test_secrets_daemon_vv(t):
    """`-vv daemon -f`: a start poll and two SIGUSR1 polls with new mail."""
    w = World(t)
    log = t.tmp / "daemon.stderr"
    cfg = w.config(extra="interval = 3600;\n")
    proc = None
    try:
        with open(log, "wb") as err:
            proc = subprocess.Popen([popbridge_path(), "-c", cfg, "-vv", "daemon", "-f"],
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    cwd=t.tmp, start_new_session=True)
        text = lambda: log.read_text(errors="replace")  # noqa: E731
        for k in (1, 2, 3):
            _wait_for(lambda: all(len(_summaries(text(), a)) >= k
                                  for a in ("sec-pw", "sec-cmd", "sec-oa", "sec-up"))
                      or proc.poll() is not None, 60, f"poll {k} of every account")
            assert proc.poll() is None, f"the daemon exited {proc.returncode}"
            if k < 3:
                w.deliver(1)
                proc.send_signal(signal.SIGUSR1)
        for name in w.users:
            assert w.imported(name) == 4, f"sec-{name}: {w.imported(name)} imported, want 4"
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        t.runs.append(BridgeResult(["popbridge", "-vv", "daemon", "-f"],
                                   proc.returncode if proc else None, "",
                                   log.read_text(errors="replace") if log.exists() else "", 0))
        w.close()
    out = log.read_text(errors="replace")
    assert re.search(r"S: \+OK", out), "the -vv daemon logged no protocol trace"
    assert_no_secrets(out, w.secrets(), "`popbridge -vv daemon -f`")
    _check_state(t, w.secrets(), w.state)


def test_secrets_migrate_vv(t):
    """`-vv migrate` with the passwords in the environment; a dry run; a
    wrong IMAP password; then the ledger under XDG_STATE_HOME."""
    dc = oauth2_dovecot(t)
    src = f"{t.short[:8]}ms{os.getpid() % 1000}"
    dst = f"{t.short[:8]}md{os.getpid() % 1000}"
    dc.add_user(src, POP_PW)
    dc.add_user(dst, IMAP_PW)
    for _, raw in varied_messages(t.name)[:3]:
        dc.deliver(src, raw)
    base = ["-vv", "migrate", dc.url("pop3"), dc.url("imap") + "/Moved",
            "--user-pop", src, "--user-imap", dst, "--ca-file", dc.ca_file]
    env = {"POPBRIDGE_POP3_PASSWORD": POP_PW, "POPBRIDGE_IMAP_PASSWORD": IMAP_PW}
    runs = [_run(t, base + ["--dry-run"], env)]
    assert runs[-1].rc == 0, f"migrate --dry-run exited {runs[-1].rc}"
    runs.append(_run(t, base, {**env, "POPBRIDGE_IMAP_PASSWORD": WRONG_PW}))
    assert runs[-1].rc == EX_NOPERM, f"migrate with a wrong IMAP password exited {runs[-1].rc}"
    runs.append(_run(t, base, {**env, "POPBRIDGE_POP3_PASSWORD": WRONG_PW}))
    assert runs[-1].rc == EX_NOPERM, f"migrate with a wrong POP3 password exited {runs[-1].rc}"
    runs.append(_run(t, base + ["--keep"], env))
    assert runs[-1].rc == 0, f"migrate exited {runs[-1].rc}"
    assert dc.imap_count(dst, "Moved") == 3
    secrets = [(POP_PW, src), (IMAP_PW, dst), (WRONG_PW, src), (WRONG_PW, dst)]
    _check_outputs(runs, secrets)
    files = _check_state(t, secrets, t.tmp / "xdg", t.tmp / "home")
    assert any(p.suffix == ".db" for p in files), f"no migrate ledger found: {files}"


def test_secrets_batch_vv(t):
    """`-vv batch` with literal, env: and file: passwords and a wrong one,
    --report: the output, the report and the batch state hold no secret."""
    dc = oauth2_dovecot(t)
    secret_dir = t.tmp / "secret-files"
    secret_dir.mkdir(mode=0o700)
    rows, users = [], []
    for k, (pop_field, imap_field) in enumerate((
            (POP_PW, IMAP_PW),                                         # literal
            ("env:SEC_POP_PW", "env:SEC_IMAP_PW"),                     # env:
            (f"file:{write_secret(secret_dir / 'p', POP_PW)}",
             f"file:{write_secret(secret_dir / 'i', IMAP_PW)}"),       # file:
            (WRONG_PW, IMAP_PW))):                                     # refused
        src = f"{t.short[:8]}bs{k}x{os.getpid() % 1000}"
        dst = f"{t.short[:8]}bd{k}x{os.getpid() % 1000}"
        dc.add_user(src, POP_PW)
        dc.add_user(dst, IMAP_PW)
        users.append((src, dst))
        for _, raw in varied_messages(f"{t.name}{k}")[:2]:
            dc.deliver(src, raw)
        rows.append([dc.url("pop3"), src, pop_field, dc.url("imap"), dst, imap_field,
                     "INBOX", "true"])
    import csv
    import io
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["pop3_url", "pop3_user", "pop3_password", "imap_url", "imap_user",
                 "imap_password", "mailbox", "keep"])
    wr.writerows(rows)
    csv_path = secret_dir / "accounts.csv"
    csv_path.write_text(buf.getvalue())
    os.chmod(csv_path, 0o600)
    report = t.tmp / "report.csv"
    bstate = t.tmp / "batch-state"
    env = {"SEC_POP_PW": POP_PW, "SEC_IMAP_PW": IMAP_PW}
    args = ["-vv", "batch", csv_path, "--jobs", 2, "--ca-file", dc.ca_file,
            "--state-dir", bstate, "--report", report,
            "--secrets-dir", secret_dir, "--secrets-env-prefix", "SEC_"]
    runs = [_run(t, args + ["--dry-run"], env), _run(t, args, env)]
    assert runs[-1].rc != 0, "a batch with a refused account exited 0"
    for src, dst in users[:3]:
        assert dc.imap_count(dst) == 2, f"batch row for {src}: not imported"
    assert report.exists(), "no --report written"
    text = report.read_text()
    assert "failed" in text, f"the report shows no failed row: {text[:500]!r}"
    runs.append(_run(t, args + ["--retry-failed"], env))
    secrets = [(POP_PW, u[0]) for u in users] + [(IMAP_PW, u[1]) for u in users] + \
        [(WRONG_PW, users[3][0])]
    _check_outputs(runs, secrets)
    files = _check_state(t, secrets, bstate, report, t.tmp / "xdg", t.tmp / "home")
    assert_no_secrets_in_files([report], secrets, "the --report file")
    assert any(p.suffix == ".db" for p in files), f"no batch ledgers found: {files}"


def test_secrets_add_vv(t):
    """`-vv add` with the passwords in the environment and a preset pointing
    at the private Dovecot; a refused add; then -vv run of what it wrote.
    Searched: the output, the config it wrote and the state dir (not the
    0600 secret files it writes on purpose)."""
    dc = oauth2_dovecot(t)
    src = f"{t.short[:8]}as{os.getpid() % 1000}"
    dst = f"{t.short[:8]}ad{os.getpid() % 1000}"
    dc.add_user(src, POP_PW)
    dc.add_user(dst, IMAP_PW)
    for _, raw in varied_messages(t.name)[:2]:
        dc.deliver(src, raw)
    presets = t.tmp / "presets.conf"
    presets.write_text(f"example.test  pop3s://localhost:{dc.pop3s_port}  "
                       f"imaps://localhost:{dc.imaps_port}  Secret Test Provider\n")
    cfg_dir = t.tmp / "secret-files"
    cfg_dir.mkdir(mode=0o700)
    cfg = cfg_dir / "added.conf"
    state = t.tmp / "state"
    env = {"POPBRIDGE_PROVIDERS": str(presets), "POPBRIDGE_SRV": "0",
           "POPBRIDGE_AUTOCONFIG_URL": "http://127.0.0.1:9/%d/config-v1.1.xml",
           "POPBRIDGE_ISPDB_URL": "http://127.0.0.1:9/ispdb/",
           "POPBRIDGE_POP3_PASSWORD": POP_PW, "POPBRIDGE_IMAP_PASSWORD": IMAP_PW}
    args = ["-c", cfg, "-vv", "add", f"{src}@example.test", "--pop3-user", src,
            "--to", f"imaps://localhost:{dc.imaps_port}", "--imap-user", dst,
            "--ca-file", dc.ca_file, "--state-dir", state]
    runs = [_run(t, args, {**env, "POPBRIDGE_IMAP_PASSWORD": WRONG_PW})]
    assert runs[-1].rc == EX_NOPERM, f"add with a wrong IMAP password exited {runs[-1].rc}"
    runs.append(_run(t, args, {**env, "POPBRIDGE_POP3_PASSWORD": WRONG_PW}))
    assert runs[-1].rc == EX_NOPERM, f"add with a wrong POP3 password exited {runs[-1].rc}"
    runs.append(_run(t, args, env))
    assert runs[-1].rc == 0, f"add exited {runs[-1].rc}"
    text = Path(cfg).read_text()
    secrets = [(POP_PW, src), (IMAP_PW, dst), (WRONG_PW, src), (WRONG_PW, dst)]
    assert_no_secrets(text, secrets, "the config `add` wrote")
    runs.append(_run(t, ["-c", cfg, "-vv", "check"]))
    runs.append(_run(t, ["-c", cfg, "-vv", "run"]))
    assert runs[-1].rc == 0, f"run of the added account exited {runs[-1].rc}"
    assert dc.imap_count(dst) == 2
    _check_outputs(runs, secrets)
    secret_files = Path(str(cfg)[:-len(".conf")])           # added.conf -> added/
    _check_state(t, secrets, state, t.tmp / "xdg", t.tmp / "home")
    assert not any(state in p.parents for p in files_under(secret_files)), \
        "add put its secret files into the state dir"


def test_secrets_syslog(t):
    """Without -v (no terminal) popbridge logs to syslog: check, run, a run
    with wrong secrets, and the detached daemon at -vv (its trace goes to
    syslog).  The syslog messages and stderr hold no secret."""
    with SyslogCapture() as cap:
        t.note(f"syslog capture: {cap.how}")
        w = World(t)
        pid = d = None
        pid_file = w.state / "popbridge.pid"
        try:
            cfg = w.config(extra="interval = 3600;\n")
            bad = w.config(wrong=True, name="wrong.conf")
            runs = [_run(t, ["-c", cfg, "check"]), _run(t, ["-c", cfg, "run"]),
                    _run(t, ["-c", bad, "run"]), _run(t, ["-c", bad, "check"])]
            assert runs[1].rc == 0, f"run exited {runs[1].rc}"
            assert runs[2].rc == EX_NOPERM, f"run with wrong secrets exited {runs[2].rc}"
            extra = [(w.wrong_token, u) for u in w.users["oa"]]
            _check_outputs(runs, w.secrets(*extra))
            if not cap.available:
                t.note("syslog could not be captured; stderr only")
                return
            time.sleep(0.5)
            msgs = cap.popbridge_messages()
            assert any(b"sec-pw" in m for m in msgs), \
                f"nothing from popbridge reached syslog ({cap.how}): {msgs[:3]}"

            def polls():
                return sum(1 for m in cap.popbridge_messages()
                           if re.search(rb"sec-\w+: (\d+ new|nothing new)", m))
            base = polls()
            # The detached daemon at -vv: trace to syslog.
            w.deliver(1)
            d = _run(t, ["-c", cfg, "-vv", "daemon"])
            assert d.rc == 0, f"`-vv daemon` (detached) exited {d.rc}"
            pid = int(_wait_for(lambda: _pid_in(pid_file), 10, "the daemon's pid file"))
            _wait_for(lambda: polls() >= base + 4, 60, "the daemon's first polls in syslog")
            w.deliver(1)
            os.kill(pid, signal.SIGUSR1)
            _wait_for(lambda: polls() >= base + 8, 60, "the SIGUSR1 polls in syslog")
            for name in w.users:
                assert w.imported(name) == 4, f"sec-{name}: {w.imported(name)} imported, want 4"
        finally:
            if pid is None and d is not None:
                # Started but not seen yet: the pid file names it soon.
                time.sleep(1)
                pid = _pid_in(pid_file)
            if pid is not None and _is_popbridge(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                    deadline = time.monotonic() + 20
                    while _pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    if _pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            w.close()
        msgs = cap.popbridge_messages()
        text = b"\n".join(msgs)
        t.runs.append(BridgeResult(["syslog"], 0, "", text.decode(errors="replace")[-6000:], 0))
        assert re.search(rb"S: \+OK", text), "the -vv daemon's trace did not reach syslog"
        found = find_secrets(text, w.secrets(*extra))
        assert not found, f"syslog shows a secret: {', '.join(found)}"
        _check_state(t, w.secrets(*extra), w.state)


def test_secrets_search_control(t):
    """Control: the search finds each secret in every wrapping a leak could
    take, at every offset in a base64 blob, and in a SQLite file; and does
    not fire on the other secrets' text.  (Without this, the tests above
    could pass by searching badly.)"""
    import base64
    import sqlite3
    user = "someuser"
    for secret in (POP_PW, IMAP_PW, "ya29.Zq8-secret-TOKEN-0123456789abcdef"):
        wrappings = [f"PASS {secret}", f"\0{user}\0{secret}", f"{user}\0{user}\0{secret}",
                     f"user={user}\x01auth=Bearer {secret}\x01\x01",
                     f"n,a={user},\x01host=localhost\x01port=993\x01auth=Bearer {secret}\x01\x01",
                     secret]
        for w in wrappings:
            for pre in range(6):
                blob = base64.b64encode(("x" * pre + w + "y" * (pre % 4)).encode()).decode()
                line = f"popbridge: acct: imap: C: A001 AUTHENTICATE PLAIN {blob}"
                assert find_secrets(line, [(secret, user)]), \
                    f"the search misses {w!r} base64-encoded after {pre} bytes"
        assert find_secrets(f"PASS {secret}\r\n", [(secret, None)])
        db = t.tmp / f"control-{len(secret)}.db"
        with sqlite3.connect(db) as c:
            c.execute("create table t (v text)")
            c.execute("insert into t values (?)", (f"error: {secret}",))
        try:
            assert_no_secrets_in_files([db], [(secret, None)], "control")
        except AssertionError:
            pass
        else:
            raise AssertionError("the search misses a secret stored in a SQLite file")
    assert not find_secrets("Pw-Zq8!secret-IMAP", [(POP_PW, "u")]), \
        "the POP3 password's forms match the IMAP password (the search would blame the wrong one)"
    assert not find_secrets("server said: Pw-Zq8! and secret and POP", [(POP_PW, None)])


def test_secrets_refused_configs(t):
    """Configs refused because of how a secret is given: the message names
    the problem without showing the secret (a url holding user:password, a
    misspelt key holding it, a 0644 config or password_file)."""
    dc = oauth2_dovecot(t)
    src = f"{t.short}s{os.getpid() % 1000}"
    dst = f"{t.short}d{os.getpid() % 1000}"
    dc.add_user(src, POP_PW)
    dc.add_user(dst, IMAP_PW)
    secret_dir = t.tmp / "secret-files"
    secret_dir.mkdir(mode=0o700)
    from harness import write_config
    state = t.tmp / "state"
    runs = []

    def cfg_with(pop3, imap=None, mode=0o600):
        p = write_config(secret_dir / f"c{len(list(secret_dir.iterdir()))}.conf",
                         [make_account("sec-bad", pop3, imap or dc.imap_block(dst))], state)
        os.chmod(p, mode)
        return p

    cases = [
        ("url with user:password", cfg_with(dc.pop3_block(
            src, url=f"pop3s://{src}:{POP_PW}@localhost:{dc.pop3s_port}")), ("check", "-n"), 78),
        ("imap url with user:password", cfg_with(dc.pop3_block(src), dc.imap_block(
            dst, url=f"imaps://{dst}:{IMAP_PW}@localhost:{dc.imaps_port}")), ("check", "-n"), 78),
        ("misspelt key", cfg_with(dc.pop3_block(src, pasword=POP_PW)), ("check", "-n"), 78),
        ("config readable by others", cfg_with(dc.pop3_block(src), mode=0o644), ("run",), 77),
    ]
    pf = write_secret(secret_dir / "pop.pw", POP_PW, mode=0o644)
    b = dc.pop3_block(src)
    b.pop("password")
    b["password_file"] = str(pf)
    cases.append(("password_file readable by others", cfg_with(b), ("-vv", "check"), 77))
    for label, cfg, args, want in cases:
        r = _run(t, ["-c", cfg, *args])
        runs.append(r)
        assert r.rc == want, f"{label}: exit {r.rc}, want {want}"
    r = _run(t, ["-vv", "migrate", f"pop3s://{src}:{POP_PW}@localhost:{dc.pop3s_port}",
                 dc.url("imap"), "--user-pop", src, "--user-imap", dst, "--ca-file", dc.ca_file],
             {"POPBRIDGE_POP3_PASSWORD": POP_PW, "POPBRIDGE_IMAP_PASSWORD": IMAP_PW})
    runs.append(r)
    assert r.rc != 0, "migrate with user:password in the POP3 url exited 0"
    secrets = [(POP_PW, src), (IMAP_PW, dst)]
    _check_outputs(runs, secrets)
    # (`check` goes on to the IMAP side when only the POP3 secret is refused.)
    assert not dc.auth_attempts(src), f"a POP3 login was tried: {dc.auth_attempts(src)[0]}"


def test_secrets_batch_url_with_password(t):
    """A batch row with user:password in its URLs is refused; neither the
    output nor the --report ("never a secret") may show the password."""
    dc = oauth2_dovecot(t)
    src = f"{t.short}s{os.getpid() % 1000}"
    dst = f"{t.short}d{os.getpid() % 1000}"
    dc.add_user(src, POP_PW)
    dc.add_user(dst, IMAP_PW)
    secret_dir = t.tmp / "secret-files"
    secret_dir.mkdir(mode=0o700)
    csv_path = secret_dir / "accounts.csv"
    csv_path.write_text(
        "pop3_url,pop3_user,pop3_password,imap_url,imap_user,imap_password,mailbox,keep\n"
        f"pop3s://{src}:{POP_PW}@localhost:{dc.pop3s_port},{src},env:SEC_POP_PW,"
        f"{dc.url('imap')},{dst},env:SEC_IMAP_PW,INBOX,true\n"
        f"{dc.url('pop3')},{src},env:SEC_POP_PW,"
        f"imaps://{dst}:{IMAP_PW}@localhost:{dc.imaps_port},{dst},env:SEC_IMAP_PW,INBOX,true\n")
    os.chmod(csv_path, 0o600)
    report = t.tmp / "report.csv"
    r = _run(t, ["-vv", "batch", csv_path, "--ca-file", dc.ca_file, "--state-dir",
                 t.tmp / "batch-state", "--report", report, "--secrets-env-prefix", "SEC_"],
             {"SEC_POP_PW": POP_PW, "SEC_IMAP_PW": IMAP_PW})
    assert r.rc != 0, "a batch of two rows with passwords in their URLs exited 0"
    secrets = [(POP_PW, src), (IMAP_PW, dst)]
    _check_outputs([r], secrets)
    assert report.exists(), "no --report written"
    found = find_secrets(report.read_bytes(), secrets)
    assert not found, ("the --report file shows a password that was put into a URL of the CSV "
                       f"({', '.join(found)}); its rows: "
                       + " | ".join(line[:120] for line in report.read_text().splitlines()[1:]))
    # Both rows are refused, so no ledger is made: search all the test's
    # files (the report among them) but the CSV that holds the secrets.
    _check_state(t, secrets, t.tmp)
