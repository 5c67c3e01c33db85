"""Test harness for popbridge: a private Dovecot on 127.0.0.1 and helpers.

Standard library only (Python 3.11, Debian 12).  Nothing here touches the
system Dovecot service or /etc/dovecot: every instance gets its own
temporary directory, base_dir, state_dir, instance_name, log files and
free TCP ports on 127.0.0.1.

Typical use:

    with Dovecot() as dc:
        dc.add_user("src", "pw1")
        dc.add_user("dst", "pw2")
        dc.deliver("src", b"Subject: hi\\n\\nbody\\n")
        acct = dc.account("t1", "src", "dst")
        write_config(path, [acct], state_dir)
        ...
        msgs = dc.imap_messages("dst")

What Dovecot 2.3.19 answers (checked by experiment, see tests/integ):

* quota_max_mail_size = 100K, IMAP APPEND of a 150 KB message:
      NO [LIMIT] Mail size is larger than the maximum size allowed by
      server configuration (0.001 + 0.000 secs).
  A 50 KB APPEND is accepted.  APPENDLIMIT is NOT advertised, neither
  before nor after login (CAPABILITY after login lists MULTIAPPEND and
  QUOTA, nothing with APPENDLIMIT), so a client learns the limit only
  from the NO.
* quota_storage = 200K (quota_rule = *:storage=200K): two 80 KB APPENDs
  succeed, the third gets
      NO [OVERQUOTA] Quota exceeded (mailbox for user is full) (...)
  and so does a single APPEND bigger than the whole quota.  GETQUOTAROOT
  then reports "User quota" (STORAGE 155 200).
* ssl = no: neither IMAP CAPABILITY nor POP3 CAPA offers STARTTLS/STLS.
  Sending them anyway gets "BAD TLS support isn't enabled." (IMAP) and
  "-ERR TLS support isn't enabled." (POP3).  With ssl = yes both are
  offered on the plain ports, and plaintext LOGIN/USER+PASS is accepted
  there as well (disable_plaintext_auth = no; Dovecot also treats loopback
  connections as "secured").
* Wrong password: IMAP "NO [AUTHENTICATIONFAILED] Authentication failed.",
  POP3 "-ERR [AUTH] Authentication failed." (about 0.5 s later with this
  configuration; 2 s and growing with Dovecot's defaults).
* INTERNALDATE: Dovecot's maildir keeps the received date as a time_t
  (the file's mtime), so APPEND with "+0200" keeps the instant but FETCH
  INTERNALDATE reports it in the server's local zone (TZ of the dovecot
  process, UTC here).  The zone offset of an APPEND date is not kept.
"""

from __future__ import annotations

import atexit
import email.utils
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import serverbase
from imapread import logout as _logout, parse_internaldate  # noqa: F401
from imapread import quote_mailbox as _quote_mailbox  # noqa: F401
from serverbase import (HOST, LOOPBACK, PortInUse, free_ports, make_account,  # noqa: F401
                        make_tls, pid_alive as _pid_alive)

DOVECOT_BIN = "/usr/sbin/dovecot"
MAIL_UID = 5000
MAIL_GID = 5000

REPO_ROOT = Path(__file__).resolve().parent.parent

_deliver_seq = itertools.count(1)
_lock = threading.Lock()


def normalise(raw: bytes) -> bytes:
    """What popbridge is specified to store for a POP3 message `raw`.

    Line endings become CRLF, a leading mbox "From " line is removed and a
    final CRLF is ensured; every other byte is unchanged."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data.startswith(b"From "):
        nl = data.find(b"\n")
        data = b"" if nl < 0 else data[nl + 1:]
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\n", b"\r\n")


def header_date(raw: bytes, name="Date"):
    """Parse the first `name:` header of a message into an aware datetime."""
    text = raw.replace(b"\r\n", b"\n").decode("latin-1")
    head = text.split("\n\n", 1)[0]
    m = re.search(rf"^{name}:[ \t]*(.*(?:\n[ \t].*)*)", head, re.M | re.I)
    if not m:
        return None
    return email.utils.parsedate_to_datetime(" ".join(m.group(1).split()))


def newest_received_date(raw: bytes):
    """Newest date among the Received: headers (text after the last ';')."""
    text = raw.replace(b"\r\n", b"\n").decode("latin-1")
    head = text.split("\n\n", 1)[0]
    dates = []
    for m in re.finditer(r"^Received:[ \t]*(.*(?:\n[ \t].*)*)", head, re.M | re.I):
        value = " ".join(m.group(1).split())
        if ";" in value:
            dates.append(email.utils.parsedate_to_datetime(value.rsplit(";", 1)[1].strip()))
    return max(dates) if dates else None


class Dovecot(serverbase.Server):
    """A private Dovecot instance on 127.0.0.1 serving IMAP and POP3.

    ssl=False gives an instance with `ssl = no` (no STARTTLS, no imaps or
    pop3s ports: imaps_port and pop3s_port are None).
    quota_max_mail_size ("100K") refuses bigger APPENDs with NO [LIMIT];
    quota_storage ("200K") makes APPEND over the quota fail with
    NO [OVERQUOTA].
    """

    family = "dovecot"
    name_prefix = "pbt"
    dir_prefix = "popbridge-test-"
    stderr_name = "dovecot.stderr"

    def __init__(self, ssl=True, quota_max_mail_size=None, quota_storage=None,
                 tmp=None, name=None):
        super().__init__(ssl=ssl, tmp=tmp, name=name)
        self.quota_max_mail_size = quota_max_mail_size
        self.quota_storage = quota_storage
        self.base_dir = self.dir / "run"
        self.state_dir = self.dir / "state"
        self.mail_dir = self.dir / "mail"
        self.home_dir = self.dir / "home"
        # One passwd-file per user (passdb path DIR/passwd.d/%u): Dovecot
        # re-reads a changed passwd-file at most once a second, so users
        # added to one shared file right after a login would be unknown for
        # up to a second; a new file for a new user is read at once.
        self.passwd_dir = self.dir / "passwd.d"
        self.conf_path = self.dir / "dovecot.conf"
        for d in (self.state_dir, self.mail_dir, self.home_dir):
            d.mkdir(mode=0o755)
        self.passwd_dir.mkdir(mode=0o755)
        # What the log says about sessions so far (open_sessions).
        self._sessions = {"pos": 0, "open": {}, "ended": set()}
        self._new_ports()
        self.write_conf()

    # ----------------------------------------------------------- config
    def write_conf(self):
        plugins = ""
        quota = ""
        if self.quota_max_mail_size or self.quota_storage:
            plugins = "mail_plugins = $mail_plugins quota\n"
            quota = (
                "plugin {\n"
                "  quota = maildir:User quota\n"
                f"  quota_rule = *:storage={self.quota_storage or '1G'}\n"
                + (f"  quota_max_mail_size = {self.quota_max_mail_size}\n"
                   if self.quota_max_mail_size else "")
                + "}\n")
            imap_plugins = "  mail_plugins = $mail_plugins imap_quota\n"
        else:
            imap_plugins = ""
        if self.ssl:
            tls = (f"ssl = yes\n"
                   f"ssl_cert = <{self.cert_file}\n"
                   f"ssl_key = <{self.key_file}\n")
            imaps = (f"  inet_listener imaps {{\n    address = {LOOPBACK}\n"
                     f"    port = {self.imaps_port}\n    ssl = yes\n  }}\n")
            pop3s = (f"  inet_listener pop3s {{\n    address = {LOOPBACK}\n"
                     f"    port = {self.pop3s_port}\n    ssl = yes\n  }}\n")
        else:
            tls = "ssl = no\n"
            imaps = pop3s = ""
        conf = f"""# private Dovecot for popbridge tests (written by tests/harness.py)
base_dir = {self.base_dir}
state_dir = {self.state_dir}
instance_name = {self.name}
log_path = {self.log_path}
info_log_path = {self.log_path}
listen = {LOOPBACK}
protocols = imap pop3
{tls}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_cache_size = 0
# Answer failed logins quickly (about 0.5 s).  The default 2 s delay and,
# worse, anvil's per-IP auth penalty (2..15 s for every later login from
# 127.0.0.1, good ones too, for ~30 s) would slow every test that shares the
# instance after a wrong-password test.  The penalty is switched off by
# making its socket unusable (mode 0, see service anvil below): the auth
# process then runs without it.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd_dir}/%u
}}
mail_uid = {MAIL_UID}
mail_gid = {MAIL_GID}
first_valid_uid = {MAIL_UID}
last_valid_uid = {MAIL_UID}
first_valid_gid = {MAIL_GID}
last_valid_gid = {MAIL_GID}
mail_location = maildir:{self.mail_dir}/%u
pop3_uidl_format = %08Xu%08Xv
{plugins}
protocol imap {{
  mail_max_userip_connections = 100
{imap_plugins}}}
protocol pop3 {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.imap_port}
  }}
{imaps}}}
service pop3-login {{
  inet_listener pop3 {{
    address = {LOOPBACK}
    port = {self.pop3_port}
  }}
{pop3s}}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{quota}"""
        self.conf_path.write_text(conf)

    # ----------------------------------------------------------- lifecycle
    def _prepare(self):
        if os.geteuid() != 0:
            raise RuntimeError("a private Dovecot needs root (mail runs as uid 5000)")

    def _start_once(self, timeout, last):
        out_start = len(self.startup_output())
        # -F keeps the master in the foreground as our child, so stop() can
        # reap it; it still writes BASE_DIR/master.pid.
        self._spawn([DOVECOT_BIN, "-F", "-c", str(self.conf_path)])

        def check():
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                out = self.startup_output()[out_start:]
                if "Address already in use" in out:
                    raise PortInUse()
                raise RuntimeError(f"dovecot exited with status {rc} during start\n"
                                   f"{out}{self.log_tail()}")
        self._wait_ready(self.ports, serverbase.port_open, timeout, 0, check)

    def master_pid(self):
        try:
            return int((self.base_dir / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout=10.0):
        pid = self.master_pid()
        if pid is None and self.proc:
            pid = self.proc.pid
        self._end_master(pid, timeout)
        self._stopped()

    # ----------------------------------------------------------- users and mail
    def maildir(self, user) -> Path:
        return self.mail_dir / user

    def add_user(self, name, password):
        if (":" in name + password or "\n" in name + password or "/" in name
                or name.startswith(".") or not name):
            raise ValueError("bad user name or password for a passwd-file")
        home = self.home_dir / name
        home.mkdir(exist_ok=True)
        os.chown(home, MAIL_UID, MAIL_GID)
        md = self.maildir(name)
        md.mkdir(exist_ok=True)
        os.chown(md, MAIL_UID, MAIL_GID)
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(exist_ok=True)
            os.chown(md / sub, MAIL_UID, MAIL_GID)
        path = self.passwd_dir / name
        tmp = path.with_name("." + name + ".tmp")
        tmp.write_text(f"{name}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_GID}::{home}::\n")
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
        self.users[name] = password
        return name

    def deliver(self, user, raw: bytes, name=None):
        """Put a message into `user`'s maildir new/ exactly as given.

        File names sort in delivery order, so POP3 message numbers follow
        delivery order.  Returns the file name."""
        md = self.maildir(user)
        if name is None:
            with _lock:
                seq = next(_deliver_seq)
            name = f"{int(time.time())}.{seq:08d}.harness"
        return serverbase.maildir_deliver(md, raw, name, MAIL_UID, MAIL_GID)

    def maildir_count(self, user):
        md = self.maildir(user)
        return sum(1 for sub in ("cur", "new")
                   for p in (md / sub).iterdir() if not p.name.startswith("."))

    def stored_count(self, user, mailbox="INBOX"):
        """Messages Dovecot has committed to `mailbox` of `user`, counted in
        the maildir itself (no IMAP session, so it is cheap enough to poll
        while popbridge runs, and it leaves no session behind).

        Dovecot writes a message to tmp/ and renames it into new/ (or cur/)
        when the APPEND's transaction commits, and unlinks it on EXPUNGE;
        it also moves files from new/ to cur/ while a session syncs.  A file
        moved between the two listings would be seen twice, so files are
        counted by their unique base name (before ":2,")."""
        md = self.maildir(user)
        if mailbox != "INBOX":
            md = md / ("." + mailbox)
        return serverbase.maildir_count(md)

    # ----------------------------------------------------------- log reading
    def logins(self, user):
        """Log lines of successful logins of `user` (IMAP or POP3)."""
        return [line for line in self.log_text().splitlines()
                if "Login: " in line and f"user=<{user}>" in line]

    _LOGIN_RE = re.compile(r" (imap|pop3)-login: Info: Login: user=<([^>]*)>.*?"
                           r"\bmpid=(\d+)\b.*?\bsession=<([^>]+)>")
    _END_RE = re.compile(r" (imap|pop3)\(([^)]*)\)<(\d+)><([^>]+)>: "
                         r"(?:Info: Disconnected|Info: Logged out|Fatal|Panic)")

    def _session_scan(self):
        """Bring the session table up to date with the log (incremental:
        only the bytes written since the last call are read)."""
        st = self._sessions
        try:
            with open(self.log_path, "rb") as f:
                f.seek(st["pos"])
                data = f.read()
        except OSError:
            return st
        end = data.rfind(b"\n")
        if end < 0:
            return st
        base = st["pos"]
        st["pos"] = base + end + 1
        off = base
        for raw in data[:end + 1].splitlines(keepends=True):
            line = raw.decode("utf-8", "replace")
            m = self._LOGIN_RE.search(line)
            if m:
                proto, user, pid, sid = m.groups()
                if sid not in st["ended"]:
                    st["open"][sid] = {"user": user, "proto": proto, "pid": int(pid),
                                       "logged_in_at": off, "line": line.strip()}
            else:
                m = self._END_RE.search(line)
                if m:
                    sid = m.group(4)
                    st["ended"].add(sid)
                    st["open"].pop(sid, None)
            off += len(raw)
        return st

    def open_sessions(self, user, protocols=("imap", "pop3"), logged_in_before=None):
        """The sessions of `user` that Dovecot has logged in and not yet
        ended, as [{user, proto, pid, logged_in_at, line}].

        A session is open from its "Login: user=<USER>, ... mpid=PID, ...
        session=<ID>" line (imap-login, pop3-login) until Dovecot logs its
        end ("imap(USER)<PID><ID>: Info: Disconnected: ..." -- a logout, a
        client that went away, a killed client -- or a Fatal/Panic line of
        that session) or its mail process PID is gone (each imap and pop3
        process serves one session here: service_count = 1), whichever
        comes first.  While an IMAP session is open, Dovecot may still
        commit an APPEND whose client is already gone; once it has ended,
        nothing more of it can arrive.  logged_in_before: only sessions
        whose Login line lies before that byte offset of the log (e.g.
        log_size() taken when a client was killed)."""
        st = self._session_scan()
        out = []
        for sid, s in list(st["open"].items()):
            if s["user"] != user or s["proto"] not in protocols:
                continue
            if logged_in_before is not None and s["logged_in_at"] >= logged_in_before:
                continue
            if not _proc_is(s["pid"], s["proto"]):
                # The process is gone (its end line may still be on its way
                # through the log process): nothing more can be committed.
                st["open"].pop(sid, None)
                st["ended"].add(sid)
                continue
            out.append({"session": sid, **s})
        return out

    def auth_attempts(self, user):
        """Every log line showing that a client tried to log in as `user`
        (a successful login, a failed one, or an aborted one naming it)."""
        return [line for line in self.log_text().splitlines()
                if f"user=<{user}>" in line or f"passwd-file({user}," in line]


def _proc_is(pid, name):
    """Is process `pid` alive and running the executable `name`?  (So that a
    recycled PID is not taken for a Dovecot mail process.)"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return False
    comm = text[text.find("(") + 1:text.rfind(")")]
    state = text.rsplit(")", 1)[1].split()[0]
    return comm == name and state not in ("Z", "X")


# --------------------------------------------------------------- libconfig
def _lc_value(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        esc = (v.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\t", "\\t"))
        return f'"{esc}"'
    if isinstance(v, dict):
        inner = "".join(f"{pad}  {k} = {_lc_value(x, indent + 1)};\n" for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, dict) for x in v):
            items = ",\n".join(f"{pad}  {_lc_value(x, indent + 1)}" for x in v)
            return "(\n" + items + "\n" + pad + ")"
        return "[ " + ", ".join(_lc_value(x, indent) for x in v) + " ]"
    raise TypeError(f"cannot write {type(v).__name__} to libconfig")


def libconfig_text(settings: dict) -> str:
    return "".join(f"{k} = {_lc_value(v, 0)};\n" for k, v in settings.items())


def write_config(path, accounts, state_dir, extra=""):
    """Write a popbridge config file (libconfig syntax) with mode 0600.

    accounts: list of dicts (see Dovecot.account); extra: text appended
    verbatim.  Returns the path."""
    text = ("# popbridge test configuration (tests/harness.py)\n"
            + libconfig_text({"state_dir": str(state_dir), "accounts": list(accounts)})
            + extra)
    return write_private(path, text)


def write_private(path, text):
    """Write a file as given with mode 0600 (a config, a secret); returns
    the path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return str(path)


# --------------------------------------------------------------- popbridge runs
def popbridge_path():
    p = os.environ.get("POPBRIDGE")
    if p:
        return str(Path(p).resolve()) if os.sep in p else p
    return str(REPO_ROOT / "bridge" / "popbridge")


class BridgeResult:
    def __init__(self, args, rc, stdout, stderr, seconds):
        self.args, self.rc, self.stdout, self.stderr = args, rc, stdout, stderr
        self.seconds = seconds

    @property
    def output(self):
        return self.stdout + self.stderr

    def __repr__(self):
        return f"<popbridge {' '.join(self.args)} rc={self.rc}>"


_failed_starts: dict = {}     # TestContext.server: key -> why it cannot start


class TestContext:
    """What a test function gets: a fresh temp dir, shared Dovecot instances
    of its file, fresh users, popbridge runs (recorded for failure reports)."""

    def __init__(self, name, tmp: Path, instances: dict):
        self.name = name
        self.tmp = Path(tmp)
        self._instances = instances
        self.used: list[Dovecot] = []
        self.runs: list[BridgeResult] = []
        self.notes: list[str] = []
        self._user_seq = itertools.count(1)
        self._log_start: dict[int, int] = {}
        self.short = re.sub(r"[^a-z0-9]", "", name.split(".")[-1].lower().replace("test_", ""))[:12]

    def note(self, text):
        self.notes.append(text)

    def server(self, key, make, title=None, unavailable=()):
        """The test file's shared server instance `key` (make() builds and
        starts it on first use; run_integ stops it after the file); its log
        tail goes into this test's failure report.  With a title, a server
        that cannot start fails this test with the reason (`unavailable`:
        the exception that says the machine cannot run it), and every later
        test of the file that asks for it, at once."""
        inst = self._instances.get(key)
        if inst is None:
            if key in _failed_starts:
                raise AssertionError(_failed_starts[key])
            try:
                inst = make()
            except Exception as e:
                if title is None:
                    raise
                if isinstance(e, unavailable):
                    _failed_starts[key] = f"{title} cannot run on this machine: {e}"
                else:
                    _failed_starts[key] = (f"the private {title} did not start: "
                                           f"{type(e).__name__}: {e}")
                raise AssertionError(_failed_starts[key]) from None
            self._instances[key] = inst
        if inst not in self.used:
            self.used.append(inst)
            self._log_start[id(inst)] = inst.log_size()
        return inst

    def dovecot(self, **opts) -> Dovecot:
        return self.server(("Dovecot",) + tuple(sorted(opts.items())),
                           lambda: Dovecot(**opts).start())

    def user(self, dc: Dovecot, role="u"):
        """A fresh user with a random password; returns the name."""
        name = f"{self.short}{role}{next(self._user_seq)}x{os.getpid() % 1000}"
        while name in dc.users:
            name = f"{self.short}{role}{next(self._user_seq)}x{os.getpid() % 1000}"
        dc.add_user(name, "pw-" + os.urandom(6).hex())
        return name

    @property
    def state_dir(self):
        return self.tmp / "state"

    def config(self, accounts, extra="", name="popbridge.conf"):
        self.state_dir.mkdir(exist_ok=True)
        return write_config(self.tmp / name, accounts, self.state_dir, extra)

    def bridge(self, *args, timeout=180, env=None) -> BridgeResult:
        exe = popbridge_path()
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise AssertionError(f"popbridge binary not found at {exe} "
                                 "(build it with `make`, or set POPBRIDGE)")
        cmd = [exe, *map(str, args)]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, cwd=self.tmp,
                               env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired as e:
            res = BridgeResult(cmd, None, _text(e.stdout), _text(e.stderr),
                               time.monotonic() - t0)
            self.runs.append(res)
            raise AssertionError(f"popbridge {' '.join(map(str, args))} did not "
                                 f"finish within {timeout}s")
        res = BridgeResult(cmd, p.returncode, _text(p.stdout), _text(p.stderr),
                           time.monotonic() - t0)
        self.runs.append(res)
        return res

    def popen(self, *args, stderr_path=None, default_signals=False):
        """Start popbridge without waiting (for the kill tests); its stderr
        goes to stderr_path (default TMP/popen-N.stderr).  default_signals:
        start it with SIGINT, SIGTERM, SIGHUP and SIGQUIT at their default
        actions, whatever this process inherited (a shell starts background
        jobs with SIGINT ignored, nohup ignores SIGHUP, and exec keeps an
        ignored signal ignored)."""
        exe = popbridge_path()
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise AssertionError(f"popbridge binary not found at {exe} "
                                 "(build it with `make`, or set POPBRIDGE)")
        if stderr_path is None:
            stderr_path = self.tmp / f"popen-{len(self.runs)}.stderr"
        with open(stderr_path, "wb") as err:
            return subprocess.Popen([exe, *map(str, args)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, cwd=self.tmp,
                                    preexec_fn=default_signal_actions if default_signals
                                    else None)

    def report(self, max_runs=4, max_chars=4000):
        """Text for a failure: popbridge outputs and Dovecot log tails."""
        out = []
        for n in self.notes:
            out.append(f"  note: {n}\n")
        for r in self.runs[-max_runs:]:
            out.append(f"  popbridge {' '.join(r.args[1:])} -> exit {r.rc} "
                       f"({r.seconds:.1f}s)\n")
            text = (r.stdout + r.stderr)[-max_chars:]
            out.extend(f"  popbridge| {line}\n" for line in text.splitlines())
        for dc in self.used:
            out.append(f"  dovecot log of this test, last lines ({dc.dir}):\n")
            out.append(dc.log_tail(25, since=self._log_start.get(id(dc), 0)))
        return "".join(out)


def _text(b):
    if b is None:
        return ""
    return b.decode("utf-8", errors="replace") if isinstance(b, bytes) else b


# --------------------------------------------------------------- test messages
def varied_messages(tag):
    """Messages that exercise popbridge's normalisation, as (label, raw).

    `tag` goes into every Message-ID and Subject so messages of different
    tests never look alike."""
    msgs = []
    msgs.append(("lf-only", (
        f"Date: Mon, 15 Jan 2024 09:30:00 +0000\n"
        f"From: Alice Example <alice@example.org>\n"
        f"To: bob@example.net\n"
        f"Subject: [{tag}] plain LF-only message\n"
        f"Message-ID: <lf.{tag}@example.org>\n"
        f"\n"
        f"Hello Bob,\n"
        f".a line that starts with a dot\n"
        f"..two dots\n"
        f".\n"
        f"the line above is a lone dot, and this line is long: "
        + "x" * 1200 + "\n"
        f"From the desk of Alice (a From line inside the body stays)\n"
        f">From quoted\n").encode()))
    msgs.append(("mbox-from-line", (
        f"From alice@example.org Tue Feb 20 11:00:00 2024\n"
        f"Date: Tue, 20 Feb 2024 11:00:00 -0800\n"
        f"From: alice@example.org\n"
        f"Subject: [{tag}] starts with an mbox From line\n"
        f"Message-ID: <mbox.{tag}@example.org>\n"
        f"\n"
        f"The first line of this file is an mbox separator.\n").encode()))
    msgs.append(("no-final-newline", (
        f"Date: Wed, 13 Mar 2024 23:59:59 +0000\r\n"
        f"From: carol@example.com\r\n"
        f"Subject: [{tag}] no final newline\r\n"
        f"Message-ID: <nofinal.{tag}@example.com>\r\n"
        f"\r\n"
        f"CRLF line endings, but the last line has no line ending").encode()))
    msgs.append(("date-plus-0200", (
        f"Received: from mx.example.de by mx.example.net; Thu, 4 Apr 2024 10:20:30 +0200\n"
        f"Date: Thu, 4 Apr 2024 10:15:00 +0200\n"
        f"From: Dieter <dieter@example.de>\n"
        f"Subject: [{tag}] Date header in +0200\n"
        f"Message-ID: <plus2.{tag}@example.de>\n"
        f"\n"
        f"Guten Tag.\n").encode()))
    msgs.append(("received-only", (
        f"Received: from relay.example.net by mx.example.net with ESMTP id 42;\n"
        f"\tSun, 5 May 2024 18:45:10 +0100\n"
        f"Received: from client.example.com by relay.example.net;\n"
        f"\tSun, 5 May 2024 17:40:00 +0000\n"
        f"From: erin@example.com\n"
        f"Subject: [{tag}] no Date header, two Received headers\n"
        f"Message-ID: <recv.{tag}@example.com>\n"
        f"\n"
        f"No Date: header here.\n").encode()))
    msgs.append(("utf8-8bit", (
        f"Date: Sat, 8 Jun 2024 07:00:00 -0500\n"
        f"From: =?UTF-8?Q?Fran=C3=A7ois?= <francois@example.fr>\n"
        f"Subject: [{tag}] 8-bit UTF-8 body\n"
        f"Message-ID: <utf8.{tag}@example.fr>\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: 8bit\n"
        f"\n"
        f"Bonjour, ça va ? Grüße aus Köln. Ελληνικά. 日本語のテキスト. 🙂\n").encode("utf-8")))
    return msgs


def expected_internaldate(raw):
    """The INTERNALDATE popbridge must set: the Date header, else the newest
    Received date, else None (fetch time, not predictable)."""
    d = header_date(raw)
    if d is None:
        d = newest_received_date(raw)
    return d


def small_message(i, rng, tag):
    """A small message numbered i with a unique X-Harness-Seq header; line
    endings, mbox From lines, sizes and a missing final newline vary."""
    kind = rng.randrange(5)
    nl = "\r\n" if kind == 1 else "\n"
    day = 1 + i % 28
    lines = [f"Date: Fri, {day} Nov 2024 {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d} +0{i % 10}00",
             f"From: sender{i % 17}@example.org",
             f"Subject: [{tag}] message {i}",
             f"Message-ID: <m{i}.{tag}@example.org>",
             f"X-Harness-Seq: {i}",
             ""]
    body_lines = rng.randrange(1, 120)
    for j in range(body_lines):
        word = rng.choice(["alpha", "beta", ".dot", "gamma", "From x", "ünïcode", "z" * 90])
        lines.append(f"{i}-{j} {word}")
    text = nl.join(lines)
    if kind != 2:
        text += nl
    if kind == 3:
        text = f"From sender@example.org Fri Nov  1 00:00:00 2024{nl}" + text
    return text.encode("utf-8")


def describe(raw):
    """Short label of a message for assertion messages."""
    m = re.search(rb"^(?:X-Harness-Seq|Subject): ?(.*)$", raw, re.M)
    return (m.group(1).decode("utf-8", "replace").strip() if m else repr(raw[:40]))


def assert_exactly_once(raws, msgs, what="INBOX"):
    """Every raw message (normalised) is in msgs exactly once, nothing else is."""
    want = {}
    for raw in raws:
        want.setdefault(normalise(raw), []).append(raw)
    got = {}
    for m in msgs:
        got[m["body"]] = got.get(m["body"], 0) + 1
    missing = [describe(v[0]) for k, v in want.items() if got.get(k, 0) < len(v)]
    extra = [describe(k) for k, n in got.items() if n > len(want.get(k, []))]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing or changed (e.g. {missing[:5]})")
    if extra:
        problems.append(f"{len(extra)} duplicated or unexpected (e.g. {extra[:5]})")
    if problems:
        raise AssertionError(f"{what}: {len(msgs)} messages for {len(raws)} expected: "
                             + "; ".join(problems))


def assert_bytes_equal(raw, body):
    """Fail with the first differing offset between normalise(raw) and body."""
    exp = normalise(raw)
    if exp == body:
        return
    n = next((i for i, (a, b) in enumerate(zip(exp, body)) if a != b), min(len(exp), len(body)))
    raise AssertionError(
        f"{describe(raw)}: bytes differ at offset {n} (expected {len(exp)} bytes, got "
        f"{len(body)}): expected {exp[max(0, n - 20):n + 20]!r}, got {body[max(0, n - 20):n + 20]!r}")


# --------------------------------------------------------------- a busy machine
_live_loads: set = set()


def default_signal_actions():
    """For Popen(preexec_fn=...): the child starts with SIGINT, SIGTERM,
    SIGHUP and SIGQUIT at their default actions, not ignored because the
    test runner was started in the background or under nohup."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def _stop_loads_at_exit():
    for load in list(_live_loads):
        load.stop()


atexit.register(_stop_loads_at_exit)


class CpuLoad:
    """`n` CPU-bound processes (python3 -c 'while 1: pass') beside a test,
    as on a loaded CI machine.

        load = CpuLoad(2).start()
        try: ...
        finally: load.stop()

    (or `with CpuLoad(2):`).  stop() kills exactly the processes start()
    spawned, by their PIDs, and reaps them; an atexit hook does the same
    should a test end without calling it."""

    def __init__(self, n=2):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    @property
    def on(self):
        return bool(self.procs)

    def start(self):
        while len(self.procs) < self.n:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", "while 1: pass"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _live_loads.add(self)
        return self

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        _live_loads.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# --------------------------------------------------------------- verdicts
_SEQ_RE = re.compile(rb"^X-Harness-Seq: (\d+)\r?$", re.M)


def harness_seq(body: bytes):
    """The X-Harness-Seq number of a small_message() (or None)."""
    m = _SEQ_RE.search(body[:8192])
    return int(m.group(1)) if m else None


def census(raws, imap_bodies, pop3_bodies=()):
    """Count every small_message() of `raws` (numbered by X-Harness-Seq) in
    IMAP, exact copies only, and on POP3.  Returns a dict: lost (neither in
    IMAP nor on POP3), dup (more than one exact copy in IMAP), changed (a
    copy whose bytes differ from what popbridge is to store), foreign
    (messages of no known number), missing (not in IMAP), left_on_pop3,
    and for each an example list under "<key>_e"."""
    want = {}
    for raw in raws:
        n = harness_seq(raw)
        assert n is not None and n not in want, "census needs unique X-Harness-Seq numbers"
        want[n] = normalise(raw)
    exact, on_pop = {}, {}
    changed, foreign = [], []
    for body in imap_bodies:
        n = harness_seq(body)
        if n not in want:
            foreign.append(body[:60])
        elif body != want[n]:
            changed.append(n)
        else:
            exact[n] = exact.get(n, 0) + 1
    for body in pop3_bodies:
        n = harness_seq(body)
        if n in want:
            on_pop[n] = on_pop.get(n, 0) + 1
    missing = [n for n in want if not exact.get(n)]
    lost = [n for n in missing if not on_pop.get(n)]
    dup = [n for n in want if exact.get(n, 0) > 1]
    left = [n for n in want if on_pop.get(n)]
    out = {"total": len(want)}
    for key, items in (("lost", lost), ("dup", dup), ("changed", changed),
                       ("foreign", foreign), ("missing", missing), ("left_on_pop3", left)):
        out[key] = len(items)
        out[key + "_e"] = items[:8]
    return out


def stress_tally(test, check, lost, dup, changed, extra=None):
    """Append one verdict to $POPBRIDGE_STRESS_TALLY (a JSON object a line,
    the format tests/faultlib.py writes) for tests/stress.sh's totals."""
    path = os.environ.get("POPBRIDGE_STRESS_TALLY")
    if not path:
        return
    import json
    rec = {"test": test, "check": check, "lost": lost, "dup": dup, "corrupt": changed}
    rec.update(extra or {})
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


# --------------------------------------------------------------- interrupt loops
def _caught(pid, sig):
    """Has process `pid` a handler installed for `sig` (SigCgt in /proc)?"""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (int(sig) - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def padded_message(raw, i, size):
    """small_message `raw` with lines added at the top of its body until it
    is about `size` bytes (an attachment's worth)."""
    nl = b"\r\n" if b"\r\n" in raw else b"\n"
    head, sep, body = raw.partition(nl + nl)
    line = f"{i} padding ".encode() + b"=" * 66 + nl
    return head + sep + line * max(0, (size - len(raw)) // len(line)) + body


# The most messages popbridge can have under way when asked to stop (two
# batches of up to 32 on the IMAP wire, the next one being read): a run
# signalled with more than this still to import must not import them all.
IN_FLIGHT_MAX = 128


class InterruptLoop:
    """`popbridge run` (keep = false) interrupted by a signal at moments
    chosen within its measured working time, and run again at once after
    each interruption; then one verifying run.

    How it adapts to the machine:

    * calibrate(): one unkilled run with `batch` new messages while the
      maildir of the IMAP user is polled: when the first message was
      committed (first), when the last one was (last), when the run ended
      (end).  If first..last is shorter than `span_target` seconds, the
      batch grows (up to max_batch) and it measures again, so a fast
      machine gets more mail per round rather than fewer kills mid-work.
    * Each interruption is aimed at a random moment within first..last,
      scaled to the mail waiting (85 %; the other 15 % anywhere within the
      run, start-up and deletions included), times a speed factor that
      every outcome corrects: a run that had finished, or a kill that
      found everything imported, says the machine is faster than assumed;
      a kill that found nothing imported says it is slower; a kill mid-work
      says how far along it was.  Three misses in a row measure again.
    * Where each interruption landed is measured, not assumed: the maildir
      count just after the run ended against the count when it started
      and the mail that was waiting: "before" (nothing imported), "mid"
      (some but not all), "after" (all), "finished" (it ended before the
      signal), "unknown" (see chaining).
    * Rerun at once: right after the interrupted run is gone (SIGKILL: at
      once; TERM/INT/HUP: when it has exited by itself), the next run is
      started, with nothing in between but one count of the maildir.
      That exposes a killed run's APPEND that Dovecot commits late.
      Each round plans a chain of signals (one more with probability
      `chain` each, up to max_chain): the reruns are interrupted too while
      at least two batches (64 messages) are left, the last is left to
      finish; all but the last signal aim at the first half of the import.  A chained run's
      starting count is only taken once Dovecot has ended every session
      of the runs before it (so a late commit is not taken for its work);
      if its interruption comes first, it is counted as "unknown", never
      as mid-work.
    * One message in 20 is of attachment size (big_share, big_size): a
      bigger MULTIAPPEND keeps Dovecot busy longer after a kill, so late
      commits happen on a quiet machine too, not only on a loaded one.
    * Before each round and before the verifying run, every IMAP session
      of the user must have ended (Dovecot.wait_sessions_ended), so that
      counts and the verdict see every late commit.

    A run that was not interrupted must exit 0: the first one that does
    not (or that runs longer than run_timeout, or leaves the mail piling up
    on POP3) ends the loop at once with an AssertionError (bad_exits has
    it), rather than going on delivering mail a broken binary cannot move.

    For SIGKILL the victims' exit codes say nothing; for TERM, INT and HUP
    (which popbridge is to catch: stop after the batch in flight, exit 75
    when work is left) each victim must exit by itself: `signal_deaths`
    lists those killed by the signal itself, `hung` those still running
    `stop_timeout` s after it, `term_problems` an exit code or log that does
    not fit what it did.  Such a signal is held back until popbridge has
    its handler installed (or, if it never does, until it is importing).
    A run signalled with more than IN_FLIGHT_MAX messages still to import
    that imports them all has not acted on the signal (term_problems).
    Every run starts with the signals at their default actions
    (default_signal_actions), whatever the test runner inherited.

    The mail comes from the POP3 server `dc` and goes to the IMAP server
    `imap_server` (by default `dc` too; pop3_mode and imap_mode as for
    Dovecot.pop3_block and imap_block, "tls" by default).  Another IMAP
    server than Dovecot needs what the loop uses of one: stored_count(user),
    imap_messages(user), imap_block(user, mode), open_sessions(user,
    protocols, logged_in_before) and wait_sessions_ended(user, timeout,
    protocols), logged_in_before being a mark from its session_mark() if it
    has one (else its log_size(), as for Dovecot).  Another POP3 server:
    deliver, pop3_count, pop3_messages, pop3_block (tests/courier.py's
    Courier and Popa3d have them).  `expect(raw)`: what the two servers
    keep of a message delivered as raw, where one of them changes bytes by
    design (popa3d's ">From ", Courier's bare CR); the verdict compares
    with normalise(expect(raw)).  calibrate_stat: calibrate() asks the POP3
    server for its count between delivering and the timed run, as round()
    does, for a server whose first login after new mail costs time that
    the rounds then do not pay (popa3d waits about a second when the mbox
    changed within the current second).

    account=(cfg, src, places): the caller's config instead of one made
    here; src is its POP3 user on `dc`, places {label: (server, user)}
    the IMAP users its mail goes to (several for routed mail: progress is
    then the sum of their counts, and every one of them must end its
    sessions).  tests/routelib.py's RouteKillLoop runs it that way.
    """

    AIM = 0.85

    def __init__(self, t, dc, sig=signal.SIGKILL, seed=None, tag=None, batch=200,
                 max_batch=3000, span_target=0.4, chain=0.75, max_chain=5,
                 stop_timeout=60.0, run_timeout=300.0, session_timeout=120.0, name="loop",
                 big_share=0.05, big_size=(20_000, 120_000), imap_server=None,
                 pop3_mode="tls", imap_mode="tls", expect=None, calibrate_stat=False,
                 account=None):
        import random
        self.t, self.dc, self.sig = t, dc, signal.Signals(sig)
        self.imap_srv = dc if imap_server is None else imap_server
        self.expect = expect or (lambda raw: raw)
        self.calibrate_stat = calibrate_stat
        self.seed = int(os.environ.get("POPBRIDGE_TEST_SEED", "20241203")) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.tag = tag or f"{t.short}{self.seed % 100000}"
        self.batch, self.max_batch, self.span_target = batch, max_batch, span_target
        self.chain, self.max_chain = chain, max_chain
        self.big_share, self.big_size = big_share, big_size
        self.stop_timeout, self.run_timeout = stop_timeout, run_timeout
        self.session_timeout = session_timeout
        if account is not None:
            self.cfg, self.src, self.places = account
            self.imap_srv, self.dst = next(iter(self.places.values()))
        else:
            self.src, self.dst = t.user(dc, "s"), t.user(self.imap_srv, "d")
            if imap_server is None and pop3_mode == imap_mode == "tls":
                acct = dc.account(name, self.src, self.dst, keep=False)
            else:
                acct = make_account(name, dc.pop3_block(self.src, pop3_mode),
                                    self.imap_srv.imap_block(self.dst, imap_mode), keep=False)
            self.cfg = t.config([acct], name=f"{name}-{self.seed}.conf")
            self.places = {"imap": (self.imap_srv, self.dst)}
        self.raws: list[bytes] = []
        self.cal = None                 # {"n", "first", "last", "end"} of the last calibration
        self.speeds = [1.0, 1.0]        # speed factors: first run of a round, reruns
        self.misses = 0
        self.loaded = False             # a label for the records (CpuLoad is the caller's)
        self.kills: list[dict] = []     # one record per signal sent to a running popbridge
        self.rounds = self.calibrations = self.nproc = 0
        self.finished_early = 0
        self.bad_exits: list[str] = []
        self.signal_deaths: list[str] = []
        self.hung: list[str] = []
        self.term_problems: list[str] = []
        self.session_waits: list[str] = []
        self.sig_count = None           # the maildir count when a catchable signal went out

    # ---------------------------------------------------------- bookkeeping
    def mid(self, loaded=None):
        return sum(1 for k in self.kills if k["where"] == "mid"
                   and (loaded is None or k["loaded"] == loaded))

    def where(self, loaded=None):
        out = {}
        for k in self.kills:
            if loaded is None or k["loaded"] == loaded:
                out[k["where"]] = out.get(k["where"], 0) + 1
        return out

    def summary(self):
        def part(loaded):
            n = sum(1 for k in self.kills if k["loaded"] == loaded)
            return f"{n} ({self.where(loaded)})"
        return (f"SIG{self.sig.name[3:]}: {len(self.kills)} signals in {self.rounds} rounds, "
                f"{self.mid()} mid-work; quiet {part(False)}, loaded {part(True)}; "
                f"{self.finished_early} runs ended before their signal; "
                f"{self.calibrations} calibrations, batch now {self.batch}, speed factor "
                f"{self.speeds[0]:.2f} (reruns {self.speeds[1]:.2f}); {len(self.raws)} "
                f"messages; seed {self.seed}")

    def _count(self):
        return sum(srv.stored_count(user) for srv, user in self.places.values())

    def _session_mark(self):
        """Marks for open_sessions(logged_in_before=...), one per place: the
        sessions each IMAP server has now are before it, those to come after."""
        marks = {}
        for label, (srv, _user) in self.places.items():
            mark = getattr(srv, "session_mark", None)
            marks[label] = mark() if mark else srv.log_size()
        return marks

    def _sessions_open(self, marks):
        """Are IMAP sessions of the places open that logged in before `marks`?"""
        return any(srv.open_sessions(user, ("imap",), marks[label])
                   for label, (srv, user) in self.places.items())

    def message(self, i):
        """Message number i of the loop."""
        raw = small_message(i, self.rng, self.tag)
        if self.rng.random() < self.big_share:
            raw = padded_message(raw, i, self.rng.randrange(*self.big_size))
        return raw

    def deliveries(self, raws_from=0):
        """How many messages the places are to store for the messages
        delivered from number raws_from on."""
        return len(self.raws) - raws_from

    def deliver(self, n):
        for _ in range(n):
            raw = self.message(len(self.raws))
            self.raws.append(raw)
            self.dc.deliver(self.src, raw)

    def _start(self):
        self.nproc += 1
        path = self.t.tmp / f"loop-{self.nproc % 6}.stderr"
        with open(path, "wb") as err:
            p = subprocess.Popen([popbridge_path(), "-c", self.cfg, "run"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, cwd=self.t.tmp,
                                 preexec_fn=default_signal_actions)
        return p, path

    @staticmethod
    def _err(path, limit=600):
        try:
            return path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def _bad(self, text):
        """An unkilled run failed: record it and end the loop."""
        self.bad_exits.append(text)
        raise AssertionError(f"a popbridge run that was not interrupted failed, so the loop "
                             f"stops: {text}")

    def _wait_run(self, p, path, what):
        """Wait for an unkilled run, which must exit 0."""
        try:
            rc = p.wait(self.run_timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self._bad(f"{what}: still running after {self.run_timeout:.0f} s (killed)")
        if rc != 0:
            self._bad(f"{what}: exit {rc}: {self._err(path, 400)!r}")
        return rc

    def settle(self):
        """Wait until the IMAP servers have ended every session of the IMAP
        users of the places."""
        ok = True
        for label, (srv, user) in self.places.items():
            if not srv.wait_sessions_ended(user, self.session_timeout, ("imap",)):
                still = srv.open_sessions(user, ("imap",))
                self.session_waits.append(
                    f"{label}: {len(still)} IMAP sessions still open "
                    f"{self.session_timeout:.0f} s after their client was gone, "
                    f"e.g. {still[0]['line'][:160] if still else ''}")
                ok = False
        return ok

    # ---------------------------------------------------------- timing model
    def calibrate(self):
        """Measure an unkilled run (see the class comment); grow the batch
        until first..last lasts span_target."""
        for _ in range(6):
            self.calibrations += 1
            self.settle()
            start = len(self.raws)
            self.deliver(self.batch)
            n = self.deliveries(start)
            if self.calibrate_stat:
                self.dc.pop3_count(self.src)
            base = self._count()
            t0 = time.monotonic()
            p, path = self._start()
            first = last = None
            while True:
                done = p.poll() is not None
                c = self._count()
                el = time.monotonic() - t0
                if not done and el > self.run_timeout:
                    p.kill()
                    p.wait()
                    self._bad(f"calibration run: still running after {el:.0f} s (killed)")
                if first is None and c > base:
                    first = el
                if last is None and c >= base + n:
                    last = el
                if done:
                    break
                time.sleep(0.004)
            end = time.monotonic() - t0
            if p.returncode != 0:
                self._bad(f"calibration run: exit {p.returncode}: {self._err(path, 400)!r}")
            first = end / 2 if first is None else first
            last = end if last is None else last
            self.cal = {"n": n, "first": first, "last": max(last, first + 0.001), "end": end}
            self.speeds = [1.0, 1.0]
            self.misses = 0
            span = self.cal["last"] - self.cal["first"]
            if span >= self.span_target or self.batch >= self.max_batch:
                break
            grow = min(4.0, max(1.5, self.span_target / max(span, 0.01)))
            self.batch = min(self.max_batch, int(self.batch * grow) + 1)
        return self.cal

    def _model(self, n):
        """(first, last, end) in seconds for a run with n messages waiting,
        as calibrated (speed factor not applied)."""
        c = self.cal
        span = (c["last"] - c["first"]) * max(n, 1) / c["n"]
        return c["first"], c["first"] + span, c["first"] + span + (c["end"] - c["last"])

    def _pick(self, n, more, rerun):
        """A moment (seconds after the start) for a run with n messages
        waiting; `more`: more signals are planned in this round, so aim at
        the first half of the import, leaving work for the reruns."""
        first, last, end = self._model(n)
        if self.rng.random() < self.AIM:
            span = last - first
            d = self.rng.uniform(first + 0.05 * span, first + (0.5 if more else 0.95) * span)
            aimed = True
        else:
            d = self.rng.uniform(0.01, end)
            aimed = False
        return d * self.speeds[rerun], aimed

    def _adapt(self, where, d, n, frac, rerun):
        """Correct the speed factor of first runs or of reruns (which settle
        what the run before left before they import) by an outcome."""
        first, last, end = self._model(n)
        s = self.speeds[rerun]
        if where == "finished":
            s = min(s, 0.9 * d / end)
        elif where == "after":
            s = min(s, 0.95 * d / last)
        elif where == "before":
            s = max(s, 1.05 * d / first)
        elif where == "mid" and frac is not None:
            s = 0.7 * s + 0.3 * d / (first + frac * (last - first))
        self.speeds[rerun] = min(20.0, max(0.05, s))

    # ---------------------------------------------------------- the signal
    def _send(self, p, base, prev_log):
        """Send the signal.  A catchable one is held back until popbridge
        has its handler installed (SigCgt), so that it never lands in the
        moment between exec and the handler; or, for a popbridge that never
        installs one, until it has begun importing (the maildir count rose
        above `base`, once known): by then it is deep in its work and ought
        to catch the signal.  Returns whether it was sent (False: the run
        had ended)."""
        if self.sig != signal.SIGKILL:
            while p.poll() is None and not _caught(p.pid, self.sig):
                if base is None and not self._sessions_open(prev_log):
                    base = self._count()
                if base is not None and self._count() > base:
                    break
                time.sleep(0.002)
        if p.poll() is not None:
            return False
        self.sig_count = None if self.sig == signal.SIGKILL else self._count()
        p.send_signal(self.sig)
        return True

    def _reap(self, p, path, label):
        """Wait for the interrupted run to end; returns its exit code."""
        if self.sig == signal.SIGKILL:
            return p.wait()
        try:
            return p.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.hung.append(f"{label}: still running {self.stop_timeout:.0f} s after "
                             f"SIG{self.sig.name[3:]}; killed")
            raise AssertionError(self.hung[-1])

    def _judge_graceful(self, rc, path, label, left_undone, target, now_count):
        if self.sig == signal.SIGKILL or rc is None:
            return
        if rc == -self.sig:
            self.signal_deaths.append(f"{label}: killed by SIG{self.sig.name[3:]} "
                                      f"(returncode {rc}) instead of stopping by itself")
            return
        err = self._err(path, 4000)
        left = target - self.sig_count
        if left > IN_FLIGHT_MAX and now_count >= target:
            self.term_problems.append(
                f"{label}: SIG{self.sig.name[3:]} came with {left} messages still to import, "
                f"more than can be in flight, yet it imported them all (exit {rc}): the "
                f"signal was not acted on")
        if left_undone and rc != 75:
            self.term_problems.append(f"{label}: work left undone but exit {rc} (not 75): "
                                      f"{err[-300:]!r}")
        elif rc not in (0, 75):
            self.term_problems.append(f"{label}: exit {rc}: {err[-300:]!r}")
        if rc == 75 and "stopping" not in err:
            self.term_problems.append(f"{label}: exit 75 without a log line saying it is "
                                      f"stopping: {err[-300:]!r}")

    # ---------------------------------------------------------- one round
    def round(self):
        """Deliver `batch` messages, start a run, interrupt it at a chosen
        moment, rerun at once (and maybe interrupt that one too), let the
        last run finish.  Returns the list of where the signals landed."""
        self.rounds += 1
        r = self.rounds
        self.settle()
        self.deliver(self.batch)
        start_count = self._count()
        waiting = self.dc.pop3_count(self.src)
        if waiting > 2 * self.batch + 100:
            self._bad(f"round {r}: {waiting} messages waiting on POP3 for a batch of "
                      f"{self.batch}: the runs before did not move the mail")
        target = start_count + self.deliveries(len(self.raws) - waiting)
        p, path = self._start()
        t0 = time.monotonic()
        base = start_count              # the count when this victim started, if known
        prev_log = None                 # log offset at the previous kill (chained victims)
        n = waiting
        landed = []
        planned = 1
        while planned < self.max_chain and self.rng.random() < self.chain:
            planned += 1
        for k in range(planned):
            label = f"round {r}" + (f", rerun {k}" if k else "")
            d, aimed = self._pick(n, k + 1 < planned, k > 0)
            deadline = t0 + d
            while True:
                now = time.monotonic()
                if p.poll() is not None or now >= deadline:
                    break
                if base is None and not self._sessions_open(prev_log):
                    base = self._count()
                time.sleep(min(0.005, max(0.0, deadline - now)))
            if not self._send(p, base, prev_log):
                # It ended before its signal: the machine is faster than assumed.
                self.finished_early += 1
                if p.returncode != 0:
                    self._bad(f"{label} (ended before its signal): exit {p.returncode}: "
                              f"{self._err(path, 400)!r}")
                self._adapt("finished", d, n, None, k > 0)
                if aimed:
                    self.misses += 1
                    self.batch = min(self.max_batch, int(self.batch * 1.25) + 1)
                if self.misses >= 3:
                    self.calibrate()
                return landed
            t_sig = time.monotonic()
            d = t_sig - t0                  # when it went out (a held-back one later)
            rc = self._reap(p, path, label)
            stop_s = time.monotonic() - t_sig
            now_count = self._count()
            prev_log = self._session_mark()
            rerun, rpath = self._start()                    # at once
            t_rerun = time.monotonic()
            if base is None:
                where = "unknown"
            elif now_count <= base:
                where = "before"
            elif now_count >= target:
                where = "after"
            else:
                where = "mid"
            self.kills.append({"round": r, "chain": k, "loaded": self.loaded, "d": d,
                               "where": where, "rc": rc, "waiting": n, "stop_s": stop_s})
            landed.append(where)
            self._judge_graceful(rc, path, label, where in ("before", "mid", "unknown")
                                 and now_count < target, target, now_count)
            if where != "unknown":
                frac = (now_count - base) / max(1, target - base)
                self._adapt(where, d, n, frac, k > 0)
            if aimed:
                self.misses = 0 if where == "mid" else self.misses + 1
            p, path, t0 = rerun, rpath, t_rerun
            n = max(1, target - now_count)
            base = None
            if k + 1 >= planned or n < 64:
                break
        self._wait_run(p, path, f"round {r}: the run after the last signal")
        if self.misses >= 3:
            self.calibrate()
        return landed

    # ---------------------------------------------------------- the verdict
    def finish(self, final_timeout=None):
        """Wait for the IMAP server to end every session of the IMAP user,
        then one healthy run; returns a dict: final (BridgeResult), msgs
        (the IMAP mailbox), census counts (lost, dup, changed, ...),
        pop3_left."""
        ended = self.settle()
        final = self.t.bridge("-c", self.cfg, "run", timeout=final_timeout or self.run_timeout)
        msgs = self.imap_srv.imap_messages(self.dst)
        pop = [b for _, b in self.dc.pop3_messages(self.src)]
        res = census([self.expect(raw) for raw in self.raws], [m["body"] for m in msgs], pop)
        res.update({"final": final, "msgs": msgs, "pop3_left": len(pop), "sessions_ended": ended})
        stress_tally(self.t.name, f"SIG{self.sig.name[3:]} loop seed {self.seed}",
                     res["lost"], res["dup"], res["changed"] + res["foreign"],
                     {"kills": len(self.kills), "mid": self.mid(), "missing": res["missing"]})
        return res
