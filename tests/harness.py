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
import datetime as _dt
import email.utils
import imaplib
import itertools
import os
import poplib
import re
import shutil
import signal
import socket
import ssl as _ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

DOVECOT_BIN = "/usr/sbin/dovecot"
MAIL_UID = 5000
MAIL_GID = 5000
HOST = "localhost"
LOOPBACK = "127.0.0.1"

REPO_ROOT = Path(__file__).resolve().parent.parent

_live_instances: set = set()
_instance_seq = itertools.count(1)
_deliver_seq = itertools.count(1)
_lock = threading.Lock()


def _stop_all_at_exit():
    for dc in list(_live_instances):
        try:
            dc.stop()
        except Exception:
            pass


atexit.register(_stop_all_at_exit)


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def free_ports(n):
    """Return n distinct free TCP ports on 127.0.0.1."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _port_open(port, timeout=0.2):
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def make_tls(dirpath):
    """Make a test CA and a localhost server certificate (openssl CLI).

    Returns (ca_file, cert_file, key_file)."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.pem"
    srv_key, srv_csr, srv_crt = d / "server.key", d / "server.csr", d / "server.pem"
    ext = d / "server.ext"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
          "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "30",
          "-subj", "/O=popbridge tests/CN=popbridge test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes",
          "-keyout", str(srv_key), "-out", str(srv_csr),
          "-subj", "/O=popbridge tests/CN=localhost"])
    ext.write_text("basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _run(["openssl", "x509", "-req", "-in", str(srv_csr), "-CA", str(ca_crt),
          "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(srv_crt),
          "-days", "30", "-extfile", str(ext)])
    os.chmod(srv_key, 0o600)
    os.chmod(ca_key, 0o600)
    return str(ca_crt), str(srv_crt), str(srv_key)


_MONTHS = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def parse_internaldate(s):
    """'25-Nov-2025 21:55:00 +0200' -> timezone-aware datetime."""
    m = re.fullmatch(r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*", s)
    if not m:
        raise ValueError(f"bad INTERNALDATE {s!r}")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    off = _dt.timedelta(hours=int(oh), minutes=int(om))
    if sign == "-":
        off = -off
    return _dt.datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                        tzinfo=_dt.timezone(off))


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


class Dovecot:
    """A private Dovecot instance on 127.0.0.1 serving IMAP and POP3.

    ssl=False gives an instance with `ssl = no` (no STARTTLS, no imaps or
    pop3s ports: imaps_port and pop3s_port are None).
    quota_max_mail_size ("100K") refuses bigger APPENDs with NO [LIMIT];
    quota_storage ("200K") makes APPEND over the quota fail with
    NO [OVERQUOTA].
    """

    def __init__(self, ssl=True, quota_max_mail_size=None, quota_storage=None,
                 tmp=None, name=None):
        self.ssl = ssl
        self.quota_max_mail_size = quota_max_mail_size
        self.quota_storage = quota_storage
        seq = next(_instance_seq)
        self.name = name or f"pbt{os.getpid()}-{seq}"
        parent = tmp or os.environ.get("POPBRIDGE_TEST_TMP")
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="popbridge-test-", dir=parent))
        # Mail processes run as uid 5000 and must traverse the tree.
        os.chmod(self.dir, 0o755)
        self.base_dir = self.dir / "run"
        self.state_dir = self.dir / "state"
        self.mail_dir = self.dir / "mail"
        self.home_dir = self.dir / "home"
        self.log_path = self.dir / "dovecot.log"
        # One passwd-file per user (passdb path DIR/passwd.d/%u): Dovecot
        # re-reads a changed passwd-file at most once a second, so users
        # added to one shared file right after a login would be unknown for
        # up to a second; a new file for a new user is read at once.
        self.passwd_dir = self.dir / "passwd.d"
        self.conf_path = self.dir / "dovecot.conf"
        for d in (self.state_dir, self.mail_dir, self.home_dir):
            d.mkdir(mode=0o755)
        self.passwd_dir.mkdir(mode=0o755)
        self.host = HOST
        self.users: dict[str, str] = {}
        self.proc = None
        self._stderr_file = None
        self.ca_file, self.cert_file, self.key_file = make_tls(self.dir / "tls")
        os.chmod(self.dir / "tls", 0o755)
        (self.imap_port, self.imaps_port,
         self.pop3_port, self.pop3s_port) = free_ports(4)
        if not ssl:
            self.imaps_port = self.pop3s_port = None
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

    @property
    def ports(self):
        return [p for p in (self.imap_port, self.imaps_port,
                            self.pop3_port, self.pop3s_port) if p]

    # ----------------------------------------------------------- lifecycle
    def start(self, timeout=15.0):
        """Start the instance and wait (at most `timeout` s) until every port
        accepts connections.  If a port was taken meanwhile by someone else,
        new ports are picked and the start is tried again (3 times)."""
        if self.proc and self.proc.poll() is None:
            return self
        if os.geteuid() != 0:
            raise RuntimeError("a private Dovecot needs root (mail runs as uid 5000)")
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except _PortInUse:
                (self.imap_port, self.imaps_port,
                 self.pop3_port, self.pop3s_port) = free_ports(4)
                if not self.ssl:
                    self.imaps_port = self.pop3s_port = None
                self.write_conf()
        return self._start_once(timeout)

    def _start_once(self, timeout):
        out_path = self.dir / "dovecot.stderr"
        out_start = out_path.stat().st_size if out_path.exists() else 0
        self._stderr_file = open(out_path, "ab")
        # -F keeps the master in the foreground as our child, so stop() can
        # reap it; it still writes BASE_DIR/master.pid.
        self.proc = subprocess.Popen(
            [DOVECOT_BIN, "-F", "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL, stdout=self._stderr_file,
            stderr=subprocess.STDOUT, start_new_session=True)
        _live_instances.add(self)
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while pending:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                out = self.startup_output()[out_start:]
                self.stop()
                if "Address already in use" in out:
                    raise _PortInUse()
                raise RuntimeError(f"dovecot exited with status {rc} during start\n"
                                   f"{out}{self.log_tail()}")
            pending = [p for p in pending if not _port_open(p)]
            if not pending:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"dovecot ports {pending} not accepting after {timeout}s\n"
                    f"{self.startup_output()}{self.log_tail()}")
            time.sleep(0.05)
        return self

    def startup_output(self):
        try:
            return (self.dir / "dovecot.stderr").read_text(errors="replace")
        except OSError:
            return ""

    def master_pid(self):
        try:
            return int((self.base_dir / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout=10.0):
        pid = self.master_pid()
        if pid is None and self.proc:
            pid = self.proc.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc and self.proc.pid == pid:
                    if self.proc.poll() is not None:
                        break
                elif not _pid_alive(pid):
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if self.proc:
                    try:
                        self.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
        self.proc = None
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None
        _live_instances.discard(self)

    def cleanup(self):
        """Stop the instance and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_tail(self, lines=40, since=0):
        """The last `lines` log lines (written after byte offset `since`)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                data = f.read().decode("utf-8", "replace")
        except OSError:
            data = ""
        text = data.splitlines()[-lines:]
        return "".join(f"  dovecot| {line}\n" for line in text)

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
        tmp = md / "tmp" / name
        with open(tmp, "wb") as f:
            f.write(raw)
        os.chown(tmp, MAIL_UID, MAIL_GID)
        os.rename(tmp, md / "new" / name)
        return name

    def maildir_count(self, user):
        md = self.maildir(user)
        return sum(1 for sub in ("cur", "new")
                   for p in (md / sub).iterdir() if not p.name.startswith("."))

    # ----------------------------------------------------------- clients
    def ssl_context(self):
        ctx = _ssl.create_default_context(cafile=self.ca_file)
        return ctx

    def imap(self, user, password=None, timeout=30):
        """A logged-in imaplib client (imaps, or plain imap if ssl=False)."""
        password = self.users[user] if password is None else password
        if self.ssl:
            c = imaplib.IMAP4_SSL(self.host, self.imaps_port,
                                  ssl_context=self.ssl_context(), timeout=timeout)
        else:
            c = imaplib.IMAP4(self.host, self.imap_port, timeout=timeout)
        c.login(user, password)
        return c

    def pop3(self, user, password=None, timeout=30):
        """A logged-in poplib client (pop3s, or plain pop3 if ssl=False)."""
        password = self.users[user] if password is None else password
        if self.ssl:
            c = poplib.POP3_SSL(self.host, self.pop3s_port,
                                context=self.ssl_context(), timeout=timeout)
        else:
            c = poplib.POP3(self.host, self.pop3_port, timeout=timeout)
        c.user(user)
        c.pass_(password)
        return c

    def imap_messages(self, user, mailbox="INBOX"):
        """Every message of `mailbox` as dicts, in UID order:
        {uid, body (bytes), internaldate (aware datetime), internaldate_raw,
        flags (set of str, without \\Recent)}."""
        c = self.imap(user)
        try:
            typ, data = c.select(_quote_mailbox(mailbox), readonly=True)
            if typ != "OK":
                raise AssertionError(f"IMAP SELECT {mailbox} for {user}: {typ} {data}")
            if int(data[0] or 0) == 0:
                return []
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            if typ != "OK":
                raise AssertionError(f"IMAP FETCH for {user}: {typ} {data}")
            out = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta = item[0].decode("latin-1")
                uid = int(re.search(r"\bUID (\d+)", meta).group(1))
                flags_m = re.search(r"\bFLAGS \(([^)]*)\)", meta)
                flags = set(flags_m.group(1).split()) if flags_m else set()
                flags.discard("\\Recent")
                idate_raw = re.search(r'\bINTERNALDATE "([^"]+)"', meta).group(1)
                out.append({"uid": uid, "body": item[1], "flags": flags,
                            "internaldate": parse_internaldate(idate_raw),
                            "internaldate_raw": idate_raw})
            out.sort(key=lambda m: m["uid"])
            return out
        finally:
            _logout(c)

    def imap_count(self, user, mailbox="INBOX"):
        c = self.imap(user)
        try:
            typ, data = c.select(_quote_mailbox(mailbox), readonly=True)
            if typ != "OK":
                raise AssertionError(f"IMAP SELECT {mailbox} for {user}: {typ} {data}")
            return int(data[0] or 0)
        finally:
            _logout(c)

    def pop3_count(self, user):
        """Messages in the user's POP3 mailbox, asked over POP3."""
        c = self.pop3(user)
        try:
            return c.stat()[0]
        finally:
            c.quit()

    def pop3_messages(self, user):
        """[(uidl, bytes)] of the POP3 mailbox, as the server serves them."""
        c = self.pop3(user)
        try:
            out = []
            for line in c.uidl()[1]:
                num, uidl = line.decode().split()
                lines = c.retr(int(num))[1]
                out.append((uidl, b"\r\n".join(lines) + b"\r\n"))
            return out
        finally:
            c.quit()

    # ----------------------------------------------------------- popbridge config
    def url(self, proto, mode="tls"):
        """URL for proto 'pop3'/'imap'; mode 'tls' (pop3s/imaps), 'starttls'
        (pop3://, imap:// on the plain ports) or 'plain' (same URL as
        starttls; pair it with tls = "none")."""
        if mode == "tls":
            port = self.pop3s_port if proto == "pop3" else self.imaps_port
            if port is None:
                raise ValueError("this instance has no TLS ports")
            return f"{proto}s://{self.host}:{port}"
        port = self.pop3_port if proto == "pop3" else self.imap_port
        return f"{proto}://{self.host}:{port}"

    def pop3_block(self, user, mode="tls", password=None, **extra):
        """The `pop3 = { ... }` group of an account for `user` here."""
        b = {"url": self.url("pop3", mode), "user": user,
             "password": self.users[user] if password is None else password,
             "ca_file": self.ca_file}
        if mode == "plain":
            b["tls"] = "none"
        b.update(extra)
        return b

    def imap_block(self, user, mode="tls", mailbox="INBOX", password=None, **extra):
        """The `imap = { ... }` group of an account for `user` here."""
        b = {"url": self.url("imap", mode), "user": user,
             "password": self.users[user] if password is None else password,
             "ca_file": self.ca_file, "mailbox": mailbox}
        if mode == "plain":
            b["tls"] = "none"
        b.update(extra)
        return b

    def account(self, name, src, dst, mode="tls", keep=True, flags=(),
                mailbox="INBOX", pop3_extra=None, imap_extra=None, **extra):
        """An account dict for write_config() bridging src (POP3) to dst (IMAP)
        on this instance.  mode: "tls" (pop3s/imaps), "starttls" (pop3://,
        imap://) or "plain" (pop3://, imap:// with tls = "none")."""
        return make_account(name, self.pop3_block(src, mode, **(pop3_extra or {})),
                            self.imap_block(dst, mode, mailbox, **(imap_extra or {})),
                            keep=keep, flags=flags, **extra)

    # ----------------------------------------------------------- log reading
    def logins(self, user):
        """Log lines of successful logins of `user` (IMAP or POP3)."""
        return [line for line in self.log_text().splitlines()
                if "Login: " in line and f"user=<{user}>" in line]

    def auth_attempts(self, user):
        """Every log line showing that a client tried to log in as `user`
        (a successful login, a failed one, or an aborted one naming it)."""
        return [line for line in self.log_text().splitlines()
                if f"user=<{user}>" in line or f"passwd-file({user}," in line]


def make_account(name, pop3, imap, keep=True, flags=(), **extra):
    acct = {"name": name, "pop3": pop3, "imap": imap, "keep": keep,
            "flags": list(flags)}
    acct.update(extra)
    return acct


class _PortInUse(Exception):
    pass


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _quote_mailbox(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(c):
    try:
        c.logout()
    except Exception:
        pass


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

    def dovecot(self, **opts) -> Dovecot:
        key = tuple(sorted(opts.items()))
        dc = self._instances.get(key)
        if dc is None:
            dc = Dovecot(**opts).start()
            self._instances[key] = dc
        if dc not in self.used:
            self.used.append(dc)
            self._log_start[id(dc)] = dc.log_size()
        return dc

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

    def popen(self, *args, stderr_path=None):
        """Start popbridge without waiting (for the kill tests); its stderr
        goes to stderr_path (default TMP/popen-N.stderr)."""
        exe = popbridge_path()
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise AssertionError(f"popbridge binary not found at {exe} "
                                 "(build it with `make`, or set POPBRIDGE)")
        if stderr_path is None:
            stderr_path = self.tmp / f"popen-{len(self.runs)}.stderr"
        with open(stderr_path, "wb") as err:
            return subprocess.Popen([exe, *map(str, args)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, cwd=self.tmp)

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
