"""What the private mail servers of the tests share (harness.Dovecot,
cyrus.Cyrus, courier.Courier and courier.Popa3d): a folder of their own,
free ports on 127.0.0.1 and a new set when one is taken meanwhile, the
start that waits until every port is ready, the stop that ends the master
(SIGTERM, then SIGKILL), the log file and its tail for failure reports,
the test's own IMAP and POP3 clients, and popbridge config blocks.

A server class says only what differs: how it writes its configuration
(write_conf), what it needs before its daemons (_prepare), how it starts
them and when they are ready (_start_once), how it stops, and how its log
names logins.

Standard library only; nothing here imports harness (harness imports this).
"""

from __future__ import annotations

import atexit
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

import imapread

HOST = "localhost"
LOOPBACK = "127.0.0.1"

_live: set = set()
_seq = itertools.count(1)


def _stop_all_at_exit():
    for server in list(_live):
        try:
            server.stop()
        except Exception:
            pass


atexit.register(_stop_all_at_exit)


class PortInUse(Exception):
    """A port picked as free was taken by someone else before the server
    could listen on it: the start is tried again on new ports."""


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


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def greeting(host, port, ca_file, tls=False, timeout=20):
    """The first line a server sends on `port` (through TLS if `tls`);
    RuntimeError unless it is an IMAP or POP3 OK greeting."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        if tls:
            ctx = _ssl.create_default_context(cafile=ca_file)
            with ctx.wrap_socket(s, server_hostname=host) as t:
                line = t.makefile("rb").readline()
        else:
            line = s.makefile("rb").readline()
    text = line.decode("utf-8", "replace")
    if not (text.startswith("* OK") or text.startswith("+OK")):
        raise RuntimeError(f"port {port} greets with {text!r}")
    return text.strip()


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


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


class SyslogSink(threading.Thread):
    """Receives syslog datagrams on a unix socket (a server's private
    /dev/log) and hands each to write(bytes), without what `strip` matches
    ("<PRI>" by default) and without trailing NUL, CR and LF."""

    def __init__(self, sock_path: Path, write, strip=rb"^<\d+>"):
        super().__init__(daemon=True, name=f"syslog-{sock_path.parent.name}")
        try:
            sock_path.unlink()
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        os.chmod(sock_path, 0o666)
        self.sock.settimeout(0.2)
        self.write = write
        self.strip = re.compile(strip)
        self.stopping = False

    def run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            self.write(self.strip.sub(b"", data, count=1).rstrip(b"\0\r\n"))

    def close(self):
        self.stopping = True
        self.join(2)
        try:
            self.sock.close()
        except OSError:
            pass


def maildir_deliver(md: Path, raw: bytes, name, uid, gid):
    """Put `raw` into the Maildir `md` as an MDA does: written whole into
    tmp/, owned by uid:gid, renamed into new/.  Returns the file name."""
    tmp = md / "tmp" / name
    with open(tmp, "wb") as f:
        f.write(raw)
    os.chown(tmp, uid, gid)
    os.rename(tmp, md / "new" / name)
    return name


def maildir_count(md: Path):
    """Messages in the Maildir `md`, counted in the folder itself (no IMAP
    session: cheap enough to poll while popbridge runs).  A server writes a
    message into tmp/ and renames it into new/ or cur/ once it is complete,
    and moves files from new/ to cur/ while a session syncs; a file moved
    between the two listings is counted once, by its base name (before ":")."""
    names = set()
    for sub in ("new", "cur"):
        try:
            entries = os.listdir(md / sub)
        except FileNotFoundError:
            continue
        names.update(e.split(":", 1)[0] for e in entries if not e.startswith("."))
    return len(names)


def make_account(name, pop3, imap, keep=True, flags=(), **extra):
    acct = {"name": name, "pop3": pop3, "imap": imap, "keep": keep,
            "flags": list(flags)}
    acct.update(extra)
    return acct


class Server:
    """A private server instance on 127.0.0.1 (see the module docstring).

    Subclasses set family (folder, log and message names), name_prefix
    (the instance name), start_timeout, and the ports they serve."""

    family = "server"
    name_prefix = "pb"
    dir_prefix = None           # default popbridge-FAMILY-
    start_timeout = 15.0
    start_attempts = 4          # a start that loses a port is tried on new ones
    stderr_name = "server.stderr"
    imap_port = imaps_port = pop3_port = pop3s_port = None

    def __init__(self, ssl=True, tmp=None, name=None):
        self.ssl = ssl
        self.name = name or f"{self.name_prefix}{os.getpid()}-{next(_seq)}"
        parent = tmp or os.environ.get("POPBRIDGE_TEST_TMP")
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=self.dir_prefix or f"popbridge-{self.family}-",
                                         dir=parent))
        # The daemons run as other uids and must traverse the tree.
        os.chmod(self.dir, 0o755)
        self.log_path = self.dir / f"{self.family}.log"
        self.host = HOST
        self.users: dict[str, str] = {}
        self.version = None
        self.proc = None
        self._stderr_file = None
        self.ca_file, self.cert_file, self.key_file = make_tls(self.dir / "tls")
        os.chmod(self.dir / "tls", 0o755)

    # ----------------------------------------------------------- ports
    def _new_ports(self):
        (self.imap_port, self.imaps_port,
         self.pop3_port, self.pop3s_port) = free_ports(4)
        if not self.ssl:
            self.imaps_port = self.pop3s_port = None

    @property
    def ports(self):
        return [p for p in (self.imap_port, self.imaps_port,
                            self.pop3_port, self.pop3s_port) if p]

    # ----------------------------------------------------------- lifecycle
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def write_conf(self):
        """Write the server's configuration for the current ports."""

    def _prepare(self):
        """What must be in place before the daemons start (once per start)."""

    def _start_once(self, timeout, last):
        """Start the daemons and wait until they are ready; PortInUse if a
        port was taken meanwhile (last: this is the last try)."""
        raise NotImplementedError

    def _port_lost(self):
        """After PortInUse: end what was started, take new ports."""
        self.stop()
        self._new_ports()
        self.write_conf()

    def start(self, timeout=None):
        """Start the instance and wait (at most `timeout` s) until every port
        is ready.  If a port was taken meanwhile by someone else, new ports
        are picked and the start is tried again."""
        if self.running:
            return self
        timeout = self.start_timeout if timeout is None else timeout
        _live.add(self)
        try:
            self._prepare()
            for attempt in range(self.start_attempts):
                last = attempt == self.start_attempts - 1
                try:
                    self._start_once(timeout, last)
                    break
                except PortInUse:
                    if last:
                        raise
                    self._port_lost()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, cmd, **kw):
        """Start the server's master process as our child, in a session of
        its own, its output appended to DIR/stderr_name."""
        self._stderr_file = open(self.dir / self.stderr_name, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr_file,
                                     stderr=subprocess.STDOUT, start_new_session=True, **kw)
        _live.add(self)
        return self.proc

    def startup_output(self):
        try:
            return (self.dir / self.stderr_name).read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, pending, ready, timeout, since, check=None):
        """Wait until ready(port) for every port of `pending`.  check(),
        called before each round, raises when the server can no longer get
        there (it exited, or lost a port); so may ready().  Returns when all
        are ready; RuntimeError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        pending = list(pending)
        while True:
            if check:
                check()
            pending = [p for p in pending if not ready(p)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.family}: ports {pending} not ready after {timeout}s\n"
                                   f"{self.startup_output()}{self.log_tail(30, since=since)}")
            time.sleep(0.05)

    def greeting(self, port, tls=False, timeout=20):
        return greeting(self.host, port, self.ca_file, tls, timeout)

    def _end_master(self, pid, timeout):
        """SIGTERM to the master `pid`; SIGKILL if it is still there after
        `timeout` seconds."""
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.pid == pid:
                if self.proc.poll() is not None:
                    return
            elif not pid_alive(pid):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def _stopped(self):
        """Forget the master and its output file once it has been ended."""
        self.proc = None
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None
        _live.discard(self)

    def stop(self, timeout=10.0):
        self._end_master(self.proc.pid if self.proc else None, timeout)
        self._stopped()

    def cleanup(self):
        """Stop the instance and remove its folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # ----------------------------------------------------------- log
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
        return "".join(f"  {self.family}| {line}\n" for line in text)

    def open_sessions(self, user, protocols=("imap", "pop3"), logged_in_before=None):
        raise NotImplementedError

    def wait_sessions_ended(self, user, timeout=120.0, protocols=("imap", "pop3"),
                            logged_in_before=None):
        """Wait until the server has ended every session of `user` it logged
        in (see open_sessions): after that no APPEND of a killed client can
        still be committed late.  Returns True when they have all ended
        (at once if none is open), False if some are still open after
        `timeout` seconds (open_sessions() says which).  The state must be
        seen twice, 50 ms apart, so that a login still on its way through
        the server's log is not missed."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            if self.open_sessions(user, protocols, logged_in_before):
                quiet = 0
            else:
                quiet += 1
                if quiet >= 2:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05 if quiet else 0.02)

    # ----------------------------------------------------------- clients
    def ssl_context(self):
        return _ssl.create_default_context(cafile=self.ca_file)

    def imap(self, user, password=None, timeout=30, tls=True):
        """A logged-in imaplib client (imaps; the plain port if ssl=False or
        not tls: no TLS handshake keeps reading back hundreds of accounts
        quick)."""
        password = self.users[user] if password is None else password
        if tls and self.imaps_port:
            c = imaplib.IMAP4_SSL(self.host, self.imaps_port,
                                  ssl_context=self.ssl_context(), timeout=timeout)
        else:
            c = imaplib.IMAP4(self.host, self.imap_port, timeout=timeout)
        c.login(user, password)
        return c

    def pop3(self, user, password=None, timeout=30, tls=True):
        """A logged-in poplib client (pop3s; the plain port if ssl=False or
        not tls)."""
        password = self.users[user] if password is None else password
        if tls and self.pop3s_port:
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
        with imapread.session(self.imap(user)) as c:
            return imapread.messages(c, mailbox, who=user)

    def imap_count(self, user, mailbox="INBOX"):
        with imapread.session(self.imap(user)) as c:
            n = imapread.count(c, mailbox)
        if n is None:
            raise AssertionError(f"IMAP SELECT {mailbox} for {user} failed")
        return n

    def pop3_count(self, user):
        """Messages in the user's POP3 mailbox, asked over POP3."""
        c = self.pop3(user)
        try:
            return c.stat()[0]
        finally:
            c.quit()

    def pop3_messages(self, user, utf8=False):
        """[(uidl, bytes)] of the POP3 mailbox as the server serves them
        (CRLF lines, dot-stuffing undone).  utf8: send UTF8 (RFC 6856) first."""
        c = self.pop3(user)
        try:
            if utf8:
                c.utf8()
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
