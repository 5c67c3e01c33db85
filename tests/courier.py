"""Private Courier-IMAP, Courier POP3 and popa3d servers on 127.0.0.1 for
popbridge's tests.

    from courier import Courier, Popa3d

    co = Courier().start()            # IMAP (STARTTLS), IMAPS, POP3 (STLS), POP3S
    co.add_user("bob", "pw")          # userdb entry + Maildir owned by a private uid
    co.deliver("bob", raw)            # a file in bob's Maildir/new
    co.imap_messages("bob"), co.pop3_messages("bob"), co.account(...)
    co.cleanup()

    pa = Popa3d().start()             # POP3 on one port, POP3S (socat + TLS) on another
    pa.add_user("alice", "pw")        # passwd/shadow of the namespace, /var/mail/alice
    pa.deliver("alice", raw)          # appended to the mbox, ">From " escaped
    pa.pop3_block("alice"), pa.kept(raw)     # kept: what popa3d serves of raw

Debian's courier-imap, courier-pop and popa3d conflict with Dovecot's
packages, so they are not installed: scripts/courier-fetch.sh downloads
them with `apt-get download` and unpacks them with `dpkg -x` into a cache
folder (default /var/cache/popbridge-courier/root; $POPBRIDGE_COURIER_CACHE),
and installs through apt only the libraries they lack and socat.

The unpacked binaries look for compiled-in paths (/etc/courier,
/usr/lib/courier, /run/courier/authdaemon, /var/mail, /var/lib/popa3d,
/etc/passwd for the users courier and popa3d).  Each instance runs its
daemons in a private mount namespace of its own (`unshare -m --propagation
private`), where

* /etc is an overlay whose upper layer is the instance's (passwd, group and
  shadow with only root, nobody, the service users and the test users;
  courier/* from the unpacked tree with a few settings changed;
  pam.d/popa3d using pam_unix alone), so the host's /etc is only read;
* /usr is a read-only overlay of the unpacked tree's usr over /usr;
* /var/lib is an overlay of the unpacked var/lib (popa3d's empty chroot
  folder) over /var/lib, writable into the instance's folder;
* /var/mail is a bind mount of DIR/mail, /run a tmpfs;
* /dev is a tmpfs of symlinks to the real /dev (bound under DIR) plus
  /dev/log, a datagram socket of the instance whose messages (popa3d,
  pam_unix) go to the instance's log, as the daemons' stderr does.

Nothing outside the instance's folder is written; the host's /etc, /usr,
/var and /run stay as they are, and no user is added to the host.  The
namespace lives as long as its holder process (a shell waiting on a pipe
from this process): stop() ends every process whose /proc/PID/ns/mnt is
the namespace's, and if this process dies the holder sees the pipe close
and does the same.  Ports are free ports of 127.0.0.1 only.

Both classes have the interface the integration tests use on
harness.Dovecot and cyrus.Cyrus, where it makes sense: start/stop/cleanup,
add_user, users, deliver/deliver_many, pop3, pop3_count, pop3_messages,
url, pop3_block, account (with a Dovecot or Cyrus as the other side via
harness.make_account), ca_file, host, ports, log_tail, log_size, log_text,
logins; Courier also imap, imap_messages, imap_count, imap_block and what
harness.InterruptLoop needs of an IMAP server: stored_count (the Maildir,
no IMAP session), open_sessions, wait_sessions_ended and session_mark
(sessions seen as processes, S1 below).  Each has kept(raw): what the
server stores of a message delivered or APPENDed to it, where it changes
bytes by design (see the quirks below).
"""

# ---------------------------------------------------------------------------
# QUIRKS seen here, Debian 12 packages courier-imap 5.0.13+1.0.16-3+b6,
# courier-pop 1.0.16-3+b6, courier-authlib 0.71.4-1+b2, popa3d 1.0.3-1.1,
# with the settings below ([T] = checked by tests/integ/test_courier.py).
#
# Running them
#  R1 authdaemond (/usr/lib/courier/courier-authlib/authdaemond) stays in the
#     foreground and logs to stderr; the init script only wraps it in
#     courierlogger.  Its socket is /run/courier/authdaemon/socket.
#  R2 makeuserdb is a Perl script calling the compiled-in
#     /usr/lib/courier/courier-authlib/makedatprog; it refuses a userdb file
#     with group or world permissions.  authdaemond sees a rebuilt userdb.dat
#     at the next lookup, without a restart.
#  R3 couriertcpd stays in the foreground; each connection's stderr (imapd,
#     pop3d: "INFO: LOGIN, user=..., ip=[...]") goes to couriertcpd's stderr.
#  R4 No TLS_DHPARAMS file is needed: couriertls (GnuTLS) negotiates ECDHE
#     with a PEM holding the key and the certificate.
#  R5 imapd starts gam_server (libgamin, for IDLE) as the user; it outlives
#     the session, so stop() must end the whole namespace, not its children.
#  R6 popa3d logs only through syslog(3) (/dev/log); pam_unix too.
#  R7 A port taken by someone else: couriertcpd says "bind: Address already
#     in use", socat "E bind(...): Address already in use", and they exit.
#  R8 popa3d writes a response in pieces: on a socket without TCP_NODELAY
#     each RETR waited about 40 ms (Nagle against the client's delayed
#     ACK; 200 RETRs 9 s instead of 0.03 s), so socat listens with nodelay.
#
# Sessions (what harness.InterruptLoop waits on before it counts)
#  S1 couriertcpd forks per connection; imaplogin (courierpop3login) checks
#     the password and execs imapd (courierpop3d) in the same process, as
#     the userdb uid, with AUTHENTICATED=<user> and TCPREMOTEPORT=<port> in
#     its environment; on imaps/pop3s couriertls runs between them and
#     the client.  APPEND writes into tmp/ and renames into cur/ (":2,")
#     once the literal is complete.  The session is over when that process
#     is gone: then nothing more of it can be stored.  A killed client's
#     imapd sees the socket close and exits at once (mid-literal: the tmp/
#     file is removed).  The log has "LOGIN, user=U, ..., port=[P]" and at
#     the end "LOGOUT, user=U, ..." or "DISCONNECTED, user=U, ...". [T]
#
# Courier IMAP
#  I1 Greeting "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE
#     THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION
#     STARTTLS ENABLE UTF8=ACCEPT] Courier-IMAP ready. ..."; AUTH=PLAIN only
#     after TLS (on imap:// without STARTTLS no AUTH= at all; LOGIN works);
#     no LITERAL+, MULTIAPPEND, BINARY, APPENDLIMIT. [T]
#  I2 NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." ".")):
#     a folder "Archive" is "INBOX.Archive" (Maildir/.Archive); CREATE
#     Archive: "NO Invalid mailbox name." [T]
#  I3 Messages delivered as files in Maildir/new are seen at the next SELECT.
#  I4 APPEND: every bare CR is removed ("a\rb" -> "ab", "a\r\r\n" ->
#     "a\r\n"); bare LF is taken as a line end; NUL bytes are kept, even
#     in a plain literal; 8-bit headers are kept, with an untagged "* OK
#     [ALERT] Your IMAP client does not appear to correctly implement
#     Unicode messages"; a missing final newline is added. [T for CR]
#  I5 INTERNALDATE is the file's mtime: "01-Jan-1970 00:00:00 +0000" (0)
#     gives the APPEND time instead; a date before 1970 makes the APPEND
#     fail: "NO Error in IMAP command received by server." [T]
#  I6 APPEND into the mailbox selected with EXAMINE: "NO Current box is
#     selected READ-ONLY." (before the literal is sent). [T]
#  I7 SELECT gives no UIDNEXT (STATUS does); PERMANENTFLAGS () after EXAMINE.
#
# Courier POP3
#  P1 CAPA: STLS (plain port), TOP, USER, LOGIN-DELAY 10 (not enforced:
#     logins seconds apart work), PIPELINING, UIDL, UTF8 USER,
#     IMPLEMENTATION Courier Mail Server; no SASL (POP3AUTH="" in Debian's
#     pop3d).  Greeting "+OK Hello there.". [T]
#  P2 UIDL "UID<n>-<uidvalidity>", e.g. "UID1-1796429690". [T]
#  P3 Until the client sends UTF8, a message whose header holds 8-bit bytes
#     is served as a "Cannot display Unicode content" multipart wrapper
#     around it (LIST gives the size of the original). [T]
#  P4 A Maildir file with CR LF line ends is served with CR CR LF: Courier
#     expects LF files, as its MDAs write them (deliver() does so too).
#  P5 RETR marks the message \Seen (renames it into cur/ with ":2,S").
#
# popa3d
#  A1 Greeting "+OK" alone; CAPA is "-ERR"; no STLS, no TLS of its own. [T]
#  A2 A wrong password: "-ERR Authentication failed (bad password?)".
#  A3 It does not undo mboxo escaping: a body line ">From x" is served as
#     such, so a message with a body line "From ..." is served with
#     ">From ..." (kept()). [T]
#  A4 UIDL is a hash of the Date, Message-ID and Received headers only:
#     messages that differ in From, To, Subject or body share it. [T]
#  A5 CR LF stored in the mbox is served as CR CR LF (deliver(crlf=True)). [T]
#  A6 It locks the mbox with fcntl (deliver() takes the same lock) and
#     rewrites it at QUIT after DELE; logs "N messages (B bytes) loaded",
#     "N (B) deleted, N (B) left" through syslog; a client gone without
#     QUIT: "Premature disconnect", nothing deleted.
#  A7 A login while the mbox's mtime is the current second takes a second
#     longer: popa3d pauses after fstat of the mbox (so that a change in
#     the same second still shows in the mtime).  A kill loop's first run
#     after new mail pays it, the reruns do not.
# ---------------------------------------------------------------------------

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shutil
import signal
import ssl as _ssl
import subprocess
import threading
import time
from pathlib import Path

import serverbase
from serverbase import LOOPBACK, PortInUse, free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
FETCH_SCRIPT = REPO_ROOT / "scripts" / "courier-fetch.sh"
CACHE = Path(os.environ.get("POPBRIDGE_COURIER_CACHE", "/var/cache/popbridge-courier"))

# uids and gids of the private namespace's /etc/passwd (files in the
# instance's folder belong to them; nothing on the host is named so).
COURIER_UID = 5110      # user "courier": couriertls -user=courier
POPA3D_UID = 5111       # user "popa3d": popa3d before the login
VMAIL_UID = 5112        # owner of every Courier Maildir (userdb uid=/gid=)
FIRST_USER_UID = 5200   # popa3d's users, one uid each

LD_PATH = "/usr/lib:/usr/lib/courier-authlib"     # inside the namespace

_deliver_seq = itertools.count(1)
_lock = threading.Lock()


class CourierUnavailable(RuntimeError):
    """Courier/popa3d cannot be run on this machine; the message says why."""


# ------------------------------------------------------------------ the tree
_NEED = ["usr/bin/imapd", "usr/bin/couriertls", "usr/sbin/couriertcpd",
         "usr/lib/courier/courier/imaplogin", "usr/lib/courier/courier/courierpop3login",
         "usr/lib/courier/courier/courierpop3d",
         "usr/lib/courier/courier-authlib/authdaemond", "usr/sbin/makeuserdb",
         "usr/sbin/popa3d", "etc/courier/imapd", "etc/courier/pop3d-ssl",
         "etc/courier/authdaemonrc", "var/lib/popa3d"]
_root_checked: dict = {}


def _tree_problem(root: Path):
    missing = [p for p in _NEED if not (root / p).exists()]
    return f"missing in {root}: {', '.join(missing)}" if missing else None


def courier_root() -> Path:
    """The unpacked tree; runs scripts/courier-fetch.sh once per process
    (it is quiet and quick when everything is in place).  Raises
    CourierUnavailable saying what is missing."""
    root = CACHE / "root"
    if root in _root_checked:
        if _root_checked[root]:
            raise CourierUnavailable(_root_checked[root])
        return root
    problem = None
    if os.geteuid() != 0:
        problem = "the private Courier and popa3d need root (mount namespace, uids)"
    else:
        p = subprocess.run(["sh", str(FETCH_SCRIPT)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True,
                           env={**os.environ, "POPBRIDGE_COURIER_CACHE": str(CACHE)})
        if p.returncode != 0:
            problem = (f"scripts/courier-fetch.sh failed (exit {p.returncode}): "
                       + (p.stderr.strip().splitlines() or ["no output"])[-1])
        else:
            problem = _tree_problem(root)
    for tool in ("unshare", "nsenter", "socat", "openssl", "perl"):
        if not problem and not shutil.which(tool):
            problem = f"{tool} is not installed"
    _root_checked[root] = problem
    if problem:
        raise CourierUnavailable(problem)
    return root


# ------------------------------------------------------------------ the log
class _Log:
    """One log file per instance: lines from the daemons' stderr and from
    the namespace's /dev/log, each as "HH:MM:SS.mmm source: text"."""

    def __init__(self, path: Path):
        self.path = path
        path.touch()
        self._lock = threading.Lock()
        self._threads = []
        self._sink = None

    def write(self, source, text):
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        with self._lock, open(self.path, "ab") as f:
            for line in text.splitlines() or [b""]:
                f.write(f"{stamp} {source}: ".encode() + line.rstrip(b"\r") + b"\n")

    def follow(self, source, pipe):
        """A thread copying a process's output pipe into the log."""
        def run():
            try:
                for line in iter(pipe.readline, b""):
                    self.write(source, line)
            except (OSError, ValueError):
                pass
            finally:
                try:
                    pipe.close()
                except OSError:
                    pass
        th = threading.Thread(target=run, daemon=True, name=f"log-{source}")
        th.start()
        self._threads.append(th)
        return th

    def syslog_socket(self, sock_path: Path):
        """Receive syslog datagrams on a unix socket (the namespace's /dev/log),
        keeping the tag and text ("<PRI>Mon DD HH:MM:SS " goes)."""
        self._sink = serverbase.SyslogSink(
            sock_path, lambda data: self.write("syslog", data),
            strip=rb"^<\d+>(?:\w{3} [ \d]\d \d\d:\d\d:\d\d )?")
        self._sink.start()

    def close(self):
        for th in self._threads:
            th.join(2)
        self._threads = []
        if self._sink:
            self._sink.close()
            self._sink = None

# ------------------------------------------------------------------ the namespace
# Run by `unshare -m --propagation private sh -c`; $1 the instance's ns
# folder, $2 the unpacked tree, $3 the folder to be /var/mail.  It mounts, says "ready", and holds the
# namespace until its stdin (a pipe from the test process) closes; then it
# ends every other process of the namespace.
_LAUNCHER = r"""
set -eu
d=$1; root=$2; mail=$3
mount -t overlay popbridge-courier-etc \
    -o "lowerdir=/etc,upperdir=$d/etc.upper,workdir=$d/etc.work" /etc
mount -t overlay popbridge-courier-usr -o "lowerdir=$root/usr:/usr" /usr
mount -t overlay popbridge-courier-varlib \
    -o "lowerdir=$root/var/lib:/var/lib,upperdir=$d/varlib.upper,workdir=$d/varlib.work" /var/lib
mount --bind "$mail" /var/mail
mount -t tmpfs -o mode=755,size=16m popbridge-courier-run /run
mount --rbind /dev "$d/realdev"
mount -t tmpfs -o mode=755,size=64k popbridge-courier-dev /dev
for e in "$d/realdev"/* "$d/realdev"/.[!.]*; do
    { [ -e "$e" ] || [ -L "$e" ]; } || continue
    ln -s "$e" "/dev/${e##*/}"
done
ln -sf "$d/syslog.sock" /dev/log
echo ready
read -r _ || true
me=$(readlink /proc/$$/ns/mnt)
for round in 1 2 3 4 5; do
    left=
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] && continue
        [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$me" ] || continue
        kill -KILL "$pid" 2>/dev/null && left=1
    done
    [ -n "$left" ] || break
    sleep 0.2
done
"""


def _ns_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


class _Namespace:
    """A private mount namespace held by a shell; commands run inside it
    through nsenter, files inside it are reached as /proc/HOLDER/root/PATH."""

    def __init__(self, nsdir: Path, root: Path, mail: Path, log: _Log, env: dict):
        self.dir = nsdir
        self.mail = mail
        self.root = root
        self.log = log
        self.env = env
        self.holder = None
        self.ns = None
        self.procs: list = []
        for sub in ("etc.upper", "etc.work", "varlib.upper", "varlib.work", "realdev"):
            (nsdir / sub).mkdir(parents=True, exist_ok=True)

    def start(self, timeout=60.0):
        self.log.syslog_socket(self.dir / "syslog.sock")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _LAUNCHER,
             "popbridge-courier-ns", str(self.dir), str(self.root), str(self.mail)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        out = b""
        # The holder says "ready" once everything is mounted; on a busy
        # machine that can take a while, so wait on the pipe itself.
        fd = self.holder.stdout.fileno()
        os.set_blocking(fd, False)
        while b"ready\n" not in out:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the private namespace was not ready after {timeout}s: "
                                   f"{out.decode(errors='replace')}")
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = None
            if chunk == b"" or (chunk is None and self.holder.poll() is not None):
                text = out.decode(errors="replace").strip()
                self.stop()
                raise CourierUnavailable(
                    "could not set up a private mount namespace (unshare -m, overlay "
                    f"mounts): {text or 'no output'}")
            if chunk:
                out += chunk
            else:
                time.sleep(0.02)
        os.set_blocking(fd, True)
        self.ns = _ns_of(self.holder.pid)
        if self.ns is None or self.ns == _ns_of(os.getpid()):
            self.stop()
            raise CourierUnavailable("unshare did not give a new mount namespace")
        self.log.follow("namespace", self.holder.stdout)

    def path(self, inside: str) -> Path:
        """A path of the namespace as seen from here."""
        return Path(f"/proc/{self.holder.pid}/root") / inside.lstrip("/")

    def _nsenter(self, args):
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *map(str, args)]

    def run(self, args, input=None, timeout=120, env=None):
        """Run a command inside; raise with its output if it fails."""
        p = subprocess.run(self._nsenter(args), input=input, capture_output=True,
                           timeout=timeout, env={**self.env, **(env or {})})
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} (in the namespace) exited "
                               f"{p.returncode}: {(p.stdout + p.stderr).decode(errors='replace')}")
        return p

    def spawn(self, source, args, env=None):
        """Start a daemon inside, its output into the log as `source`."""
        p = subprocess.Popen(self._nsenter(args), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env={**self.env, **(env or {})}, start_new_session=True)
        self.procs.append(p)
        p.log_thread = self.log.follow(source, p.stdout)
        return p

    def pids(self):
        """Every process of the namespace but the holder."""
        if not self.ns:
            return []
        out = []
        for e in os.listdir("/proc"):
            if e.isdigit() and int(e) != self.holder.pid and _ns_of(e) == self.ns:
                out.append(int(e))
        return out

    def stop(self, timeout=10.0):
        if self.holder is None:
            return
        if self.ns:
            for sig, wait in ((signal.SIGTERM, timeout / 2), (signal.SIGKILL, timeout / 2)):
                pids = self.pids()
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + wait
                while pids and time.monotonic() < deadline:
                    for p in self.procs:
                        p.poll()
                    pids = [pid for pid in self.pids() if serverbase.pid_alive(pid)]
                    if pids:
                        time.sleep(0.05)
                if not pids:
                    break
        try:
            self.holder.stdin.close()
        except OSError:
            pass
        try:
            self.holder.wait(timeout)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait(5)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        self.holder = None
        self.ns = None


# ------------------------------------------------------------------ helpers
def _crypt(password):
    p = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
                       capture_output=True, check=True, timeout=60)
    return p.stdout.decode().strip()


def _valid_user(name, password):
    if (not name or not re.fullmatch(r"[a-z][a-z0-9_-]{0,30}", name)
            or not password or any(c in password for c in "\n\r\t:|")):
        raise ValueError(f"bad user name or password for a private server: {name!r}")


class _Private(serverbase.Server):
    """What Courier and Popa3d share: the namespace, /etc's users, the log
    of their daemons' output and syslog, and the start of their listeners."""

    start_timeout = 60.0

    def __init__(self, ssl=True, tmp=None, name=None):
        if os.geteuid() != 0:
            raise CourierUnavailable("a private Courier or popa3d needs root "
                                     "(a mount namespace, files of other uids)")
        self.root = courier_root()
        super().__init__(ssl=ssl, tmp=tmp, name=name)
        self.log = _Log(self.log_path)
        self.mail_dir = self.dir / "mail"           # /var/mail inside
        self.mail_dir.mkdir(mode=0o755)
        os.chmod(self.mail_dir, 0o755)
        self._passwd = [("root", 0, 0, "/root", "/bin/sh"),
                        ("courier", COURIER_UID, COURIER_UID, "/nonexistent", "/usr/sbin/nologin"),
                        ("popa3d", POPA3D_UID, POPA3D_UID, "/nonexistent", "/usr/sbin/nologin"),
                        ("vmail", VMAIL_UID, VMAIL_UID, "/nonexistent", "/usr/sbin/nologin"),
                        ("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin")]
        self._shadow: dict[str, str] = {}
        self._etc_lock = threading.Lock()
        self._listeners = []
        # couriertls and socat read key and certificate from one PEM.
        self.pem_file = str(self.dir / "tls" / "server-key-cert.pem")
        with open(self.pem_file, "wb") as f:
            f.write(Path(self.key_file).read_bytes() + Path(self.cert_file).read_bytes())
        os.chown(self.pem_file, COURIER_UID, COURIER_UID)
        os.chmod(self.pem_file, 0o600)
        self.ns = _Namespace(self.dir / "ns", self.root, self.mail_dir, self.log,
                             {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
        self._etc = self.dir / "ns" / "etc.upper"
        self._write_etc_files()
        self._write_users(inside=False)

    # ----------------------------------------------------------- /etc
    def _write_etc_files(self):
        """Files of the namespace's /etc other than the user files."""
        pam = self._etc / "pam.d"
        pam.mkdir(exist_ok=True)
        # pam_unix only, whatever the host's common-* files say.
        (pam / "popa3d").write_text("# popbridge tests (tests/courier.py)\n"
                                    "auth     required pam_unix.so\n"
                                    "account  required pam_unix.so\n")

    def _write_users(self, inside=True):
        """passwd, group and shadow of the namespace, written whole; once
        the namespace runs, through it (a rename inside its /etc)."""
        passwd = "".join(f"{n}:x:{u}:{g}:{n}:{h}:{s}\n" for n, u, g, h, s in self._passwd)
        group = "".join(f"{n}:x:{g}:\n" for n, _, g, _, _ in self._passwd)
        shadow = "".join(f"{n}:{self._shadow.get(n, '*')}:19000:0:99999:7:::\n"
                         for n, *_ in self._passwd)
        for fname, text, mode in (("passwd", passwd, 0o644), ("group", group, 0o644),
                                  ("shadow", shadow, 0o640)):
            self._put_etc(fname, text.encode(), mode, inside)

    def _put_etc(self, rel, data: bytes, mode, inside=True, owner=(0, 0)):
        if inside and self.running:
            dst = self.ns.path("/etc/" + rel)
        else:
            dst = self._etc / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.new")
        with open(tmp, "wb") as f:
            f.write(data)
        os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.rename(tmp, dst)

    @property
    def running(self):
        return self.ns.holder is not None and self.ns.holder.poll() is None

    # ----------------------------------------------------------- lifecycle
    def _prepare(self):
        self._start_at = self.log_size()
        self.ns.start()
        self._before_daemons()

    def _start_once(self, timeout, last):
        self._listeners = []
        self._start_daemons(timeout, self._start_at, last)

    def _port_lost(self):
        self._stop_listeners()
        self._new_ports()

    def _wait_greetings(self, services, timeout, start_at, last):
        """services: [(port, tls, proc)]; each port must greet.  Returns the
        first greeting."""
        by_port = {port: (tls, proc) for port, tls, proc in services}
        greetings = []

        def ready(port):
            tls, proc = by_port[port]
            if proc.poll() is not None:
                # Its last words reach the log when its pipe is drained.
                proc.log_thread.join(10)
                if "Address already in use" in self.log_text()[start_at:] and not last:
                    raise PortInUse()
                raise RuntimeError(f"{self.family}: the daemon for port {port} exited "
                                   f"with status {proc.returncode} during start\n"
                                   f"{self.log_tail(30, since=start_at)}")
            try:
                # A short wait per try: the port may belong to someone
                # else who never answers (then our daemon exits).
                greetings.append(self.greeting(port, tls, timeout=5))
            except (OSError, RuntimeError, _ssl.SSLError):
                return False
            return True
        self._wait_ready(by_port, ready, timeout, start_at)
        return greetings[0] if greetings else None

    def _listen(self, source, args, env=None):
        """Start a listening daemon (couriertcpd, socat) inside."""
        p = self.ns.spawn(source, args, env)
        self._listeners.append(p)
        return p

    def _stop_listeners(self):
        """End the listeners of a start that lost a port (and whatever
        they started), not the rest of the namespace."""
        for p in self._listeners:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.ns.procs.remove(p)
        self._listeners = []

    def stop(self, timeout=10.0):
        self.ns.stop(timeout)
        self.log.close()
        self._stopped()

    def logins(self, user):
        raise NotImplementedError


# ------------------------------------------------------------------ Courier
class Courier(_Private):
    """Courier-IMAP and Courier POP3 with courier-authlib's authdaemond and a
    userdb, in a private mount namespace on 127.0.0.1.

    Ports: imap_port (STARTTLS offered), imaps_port (couriertls),
    pop3_port (STLS offered), pop3s_port (couriertls).  ssl=False: no TLS
    at all (no STARTTLS/STLS; imaps_port and pop3s_port are None).
    imap_env / pop3_env: extra settings ({NAME: value}) on top of Debian's
    /etc/courier/imapd(-ssl) / pop3d(-ssl), e.g. {"IMAP_CAPABILITY": ...}.

    Users are userdb entries (uid/gid VMAIL_UID, home DIR/home/NAME, mail
    DIR/home/NAME/Maildir, systempw a SHA-512 crypt); mail is delivered as
    files into the Maildir, as an MDA does.
    """

    family = "courier"
    name_prefix = "pbcourier"

    def __init__(self, ssl=True, imap_env=None, pop3_env=None, tmp=None, name=None):
        super().__init__(ssl=ssl, tmp=tmp, name=name)
        self.home_dir = self.dir / "home"
        self.home_dir.mkdir(mode=0o755)
        self.imap_env = dict(imap_env or {})
        self.pop3_env = dict(pop3_env or {})
        self._userdb: dict[str, str] = {}
        self._new_ports()
        self._write_courier_conf()

    def _new_ports(self):
        (self.imap_port, self.imaps_port,
         self.pop3_port, self.pop3s_port) = free_ports(4)
        if not self.ssl:
            self.imaps_port = self.pop3s_port = None

    def _write_courier_conf(self):
        """Debian's /etc/courier, with authuserdb alone and the daemons'
        files pointing at the instance (appended, so they win when sourced)."""
        src = self.root / "etc/courier"
        dst = self._etc / "courier"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, symlinks=True)
        rc = (dst / "authdaemonrc").read_text()
        rc = re.sub(r"(?m)^authmodulelist=.*$", 'authmodulelist="authuserdb"', rc)
        rc = re.sub(r"(?m)^daemons=.*$", "daemons=3", rc)
        (dst / "authdaemonrc").write_text(rc)
        tls = (f"\n# popbridge tests (tests/courier.py)\nTLS_CERTFILE={self.pem_file}\n"
               "TLS_CACHEFILE=\n")
        for f in ("imapd-ssl", "pop3d-ssl"):
            with open(dst / f, "a") as fh:
                fh.write(tls)
        for f, extra in (("imapd", self.imap_env), ("pop3d", self.pop3_env)):
            if extra:
                with open(dst / f, "a") as fh:
                    fh.write("\n# popbridge tests (tests/courier.py)\n"
                             + "".join(f"{k}={_sh_quote(str(v))}\n" for k, v in extra.items()))
        self._put_etc("courier/userdb", b"", 0o600, inside=False)

    def _before_daemons(self):
        """authdaemond, then the userdb as it is now."""
        self.ns.run(["sh", "-c", "mkdir -p /run/courier/authdaemon && "
                     f"chown {COURIER_UID}:{COURIER_UID} /run/courier/authdaemon && "
                     "chmod 750 /run/courier/authdaemon && chmod 775 /run/courier"])
        self._makeuserdb()
        self.ns.spawn("authdaemond", [
            "sh", "-c", "set -a; . /etc/courier/authdaemonrc; "
            "exec /usr/lib/courier/courier-authlib/authdaemond"],
            env={"LD_LIBRARY_PATH": LD_PATH})
        sock = self.ns.path("/run/courier/authdaemon/socket")
        deadline = time.monotonic() + 60
        while not sock.exists():
            if self.ns.procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("authdaemond did not start\n" + self.log_tail(20))
            time.sleep(0.05)

    def _start_daemons(self, timeout, start_at, last):
        login = "/usr/lib/courier/courier"
        tcpd = ["/usr/sbin/couriertcpd", "-address=127.0.0.1", "-nodnslookup",
                "-noidentlookup", "-maxprocs=200", "-maxperip=200"]
        tls = ["/usr/bin/couriertls", "-server", "-tcpd", "-user=courier"]
        imap = [f"{login}/imaplogin", "/usr/bin/imapd", "Maildir"]
        pop3 = [f"{login}/courierpop3login", f"{login}/courierpop3d", "Maildir"]
        # (log name, config files, settings, port, behind couriertls, program)
        plan = [("imap", "imapd imapd-ssl",
                 {"IMAP_STARTTLS": "YES" if self.ssl else "NO", "IMAP_TLS": ""},
                 self.imap_port, False, imap),
                ("pop3", "pop3d pop3d-ssl",
                 {"POP3_STARTTLS": "YES" if self.ssl else "NO", "POP3_TLS": ""},
                 self.pop3_port, False, pop3)]
        if self.ssl:
            plan += [("imaps", "imapd imapd-ssl", {"IMAP_STARTTLS": "NO", "IMAP_TLS": "1"},
                      self.imaps_port, True, imap),
                     ("pop3s", "pop3d pop3d-ssl",
                      {"POP3_STARTTLS": "NO", "POP3_TLS": "1", "POP3_TLS_REQUIRED": "0"},
                      self.pop3s_port, True, pop3)]
        services = []
        for source, files, env, port, behind_tls, prog in plan:
            # As Debian's init scripts do: the files' variables exported, then
            # a few set for this listener.
            script = ("set -a; " + "".join(f". /etc/courier/{f}; " for f in files.split())
                      + "".join(f"{k}={_sh_quote(v)}; " for k, v in env.items())
                      + 'exec "$@"')
            args = [*tcpd, str(port), *(tls if behind_tls else []), *prog]
            p = self._listen(source, ["sh", "-c", script, source, *args],
                             env={"LD_LIBRARY_PATH": LD_PATH})
            services.append((port, behind_tls, p))
        greeting = self._wait_greetings(services, timeout, start_at, last)
        m = re.search(r"(Courier-IMAP) ready", greeting or "")
        self.version = m.group(1) if m else greeting

    # ----------------------------------------------------------- users and mail
    def _makeuserdb(self):
        data = "".join(f"{n}\t{v}\n" for n, v in self._userdb.items()).encode()
        self._put_etc("courier/userdb", data, 0o600)
        if self.running:
            self.ns.run(["/usr/sbin/makeuserdb"], env={"LD_LIBRARY_PATH": LD_PATH})

    def maildir(self, user, mailbox="INBOX") -> Path:
        """The Maildir (or Maildir++ folder: "INBOX.Archive" is .Archive)."""
        md = self.home_dir / user / "Maildir"
        if mailbox.upper() == "INBOX":
            return md
        name = mailbox[6:] if mailbox.upper().startswith("INBOX.") else mailbox
        return md / ("." + name)

    def _make_maildir(self, md: Path, folder=False):
        for d in (md, md / "cur", md / "new", md / "tmp"):
            d.mkdir(exist_ok=True)
            os.chown(d, VMAIL_UID, VMAIL_UID)
            os.chmod(d, 0o700)
        if folder and not (md / "maildirfolder").exists():
            (md / "maildirfolder").touch()
            os.chown(md / "maildirfolder", VMAIL_UID, VMAIL_UID)

    def add_user(self, name, password):
        _valid_user(name, password)
        home = self.home_dir / name
        home.mkdir(exist_ok=True)
        os.chown(home, VMAIL_UID, VMAIL_UID)
        self._make_maildir(home / "Maildir")
        with self._etc_lock:
            self._userdb[name] = (f"uid={VMAIL_UID}|gid={VMAIL_UID}|home={home}|"
                                  f"mail={home}/Maildir|systempw={_crypt(password)}")
            self._makeuserdb()
        self.users[name] = password
        return name

    def deliver(self, user, raw: bytes, name=None, mailbox="INBOX", crlf=False):
        """Put a message into `user`'s Maildir new/ as an MDA does: with LF
        line ends (CR LF becomes LF; a bare CR stays), unless crlf, which
        stores the bytes as given (Courier POP3 then serves CR CR LF).  File
        names follow delivery order.  Returns the file name."""
        if not crlf:
            raw = raw.replace(b"\r\n", b"\n")
        md = self.maildir(user, mailbox)
        if not md.exists():
            self._make_maildir(md, folder=True)
        with _lock:
            seq = next(_deliver_seq)
        if name is None:
            name = f"{int(time.time())}.M{seq:08d}P{os.getpid()}.popbridge-tests"
        return serverbase.maildir_deliver(md, raw, name, VMAIL_UID, VMAIL_UID)

    def deliver_many(self, user, raws, mailbox="INBOX", crlf=False):
        return [self.deliver(user, raw, mailbox=mailbox, crlf=crlf) for raw in raws]

    @staticmethod
    def kept(raw: bytes) -> bytes:
        """What Courier-IMAP stores of a message APPENDed to it: bare CR
        bytes (a CR not before an LF) removed."""
        return re.sub(rb"\r(?!\n)", b"", raw)

    def stored_count(self, user, mailbox="INBOX"):
        """Messages in `mailbox` of `user`, counted in the Maildir itself (no
        IMAP session: cheap enough to poll while popbridge runs).  imapd
        writes an APPENDed message into tmp/ and renames it into cur/ (or
        new/) when it is complete; a file moved between new/ and cur/ while
        the two are listed is counted once, by its base name (before ":")."""
        return serverbase.maildir_count(self.maildir(user, mailbox))

    # ----------------------------------------------------------- sessions
    _SESSION_PROGRAMS = {"imapd": "imap", "courierpop3d": "pop3"}

    def _sessions(self):
        """The logged-in sessions now, as [{user, proto, pid, start, line}]:
        the imapd and courierpop3d processes of the namespace (S1).  A
        session still in imaplogin or courierpop3login has not logged in."""
        out = []
        try:
            entries = os.listdir("/proc")
        except OSError:
            return out
        for e in entries:
            if not e.isdigit():
                continue
            pid = int(e)
            try:
                if os.stat(f"/proc/{pid}").st_uid != VMAIL_UID or _ns_of(pid) != self.ns.ns:
                    continue
                with open(f"/proc/{pid}/stat") as f:
                    text = f.read()
                comm = text[text.find("(") + 1:text.rfind(")")]
                rest = text.rsplit(")", 1)[1].split()
                proto = self._SESSION_PROGRAMS.get(comm)
                if proto is None or rest[0] in ("Z", "X"):
                    continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            except (OSError, IndexError, ValueError):
                continue
            user = env.get(b"AUTHENTICATED", b"").decode("utf-8", "replace")
            port = env.get(b"TCPREMOTEPORT", b"?").decode("utf-8", "replace")
            out.append({"user": user, "proto": proto, "pid": pid, "start": rest[19],
                        "line": f"{comm}[{pid}] user={user}, port={port} (still running)"})
        return out

    def session_mark(self):
        """The sessions there are now, for open_sessions(logged_in_before=...)."""
        if not self.ns.ns:
            return frozenset()
        return frozenset((s["pid"], s["start"]) for s in self._sessions())

    def open_sessions(self, user, protocols=("imap", "pop3"), logged_in_before=None):
        """The sessions of `user` that have logged in and not yet ended, as
        [{user, proto, pid, start, line}]: a session is open as long as its
        imapd or courierpop3d process is there (S1).  logged_in_before: only
        sessions in that session_mark() (those there when it was taken)."""
        if not self.ns.ns:
            return []
        return [s for s in self._sessions()
                if s["user"] == user and s["proto"] in protocols
                and (logged_in_before is None or (s["pid"], s["start"]) in logged_in_before)]

    def logins(self, user):
        """Log lines of successful logins of `user`, e.g. "imaps: INFO: LOGIN,
        user=bob, ip=[::ffff:127.0.0.1], port=[...], protocol=IMAP"."""
        return [ln for ln in self.log_text().splitlines()
                if re.search(rf"\bLOGIN, user={re.escape(user)},", ln)]

    def __repr__(self):
        return f"<Courier {self.dir}>"


# ------------------------------------------------------------------ popa3d
class Popa3d(_Private):
    """popa3d, an inetd-style POP3 server, on pop3_port (plain, through
    socat TCP-LISTEN) and pop3s_port (socat OPENSSL-LISTEN with the test
    CA's certificate; popa3d has no TLS and no STLS of its own), in a
    private mount namespace.  ssl=False: no pop3s_port.

    Users are system users of the namespace's /etc/passwd and shadow (a uid
    each, from FIRST_USER_UID), checked by PAM (pam_unix); mail is the mbox
    /var/mail/USER (DIR/mail/USER), owned by the user, mode 600."""

    family = "popa3d"
    name_prefix = "pbpopa3d"

    def __init__(self, ssl=True, tmp=None, name=None):
        super().__init__(ssl=ssl, tmp=tmp, name=name)
        self._uids = itertools.count(FIRST_USER_UID)
        self._new_ports()

    def _new_ports(self):
        self.pop3_port, self.pop3s_port = free_ports(2)
        if not self.ssl:
            self.pop3s_port = None

    def _before_daemons(self):
        pass

    def _start_daemons(self, timeout, start_at, last):
        plan = [("popa3d", self.pop3_port, False,
                 f"TCP-LISTEN:{self.pop3_port},bind={LOOPBACK},reuseaddr,fork,nodelay",
                 "EXEC:/usr/sbin/popa3d,nofork")]
        if self.ssl:
            plan.append(("popa3d-tls", self.pop3s_port, True,
                         f"OPENSSL-LISTEN:{self.pop3s_port},bind={LOOPBACK},reuseaddr,fork,nodelay,"
                         f"cert={self.pem_file},verify=0",
                         "EXEC:/usr/sbin/popa3d"))
        services = []
        for source, port, tls, listen, exe in plan:
            p = self._listen(source, ["socat", listen, exe])
            services.append((port, tls, p))
        greeting = self._wait_greetings(services, timeout, start_at, last)
        self.version = f"popa3d ({greeting})"

    # ----------------------------------------------------------- users and mail
    def mbox(self, user) -> Path:
        return self.mail_dir / user

    def uid_of(self, user):
        return next(u for n, u, *_ in self._passwd if n == user)

    def add_user(self, name, password):
        _valid_user(name, password)
        if name in self.users or name in ("root", "courier", "popa3d", "vmail", "nobody"):
            raise ValueError(f"user {name} exists")
        with self._etc_lock:
            uid = next(self._uids)
            self._passwd.append((name, uid, uid, "/nonexistent", "/usr/sbin/nologin"))
            self._shadow[name] = _crypt(password)
            self._write_users()
        box = self.mbox(name)
        box.touch()
        os.chown(box, uid, uid)
        os.chmod(box, 0o600)
        self.users[name] = password
        return name

    @staticmethod
    def _mbox_entry(raw: bytes, crlf=False):
        """raw as an mbox entry: a From_ line (the message's own if it starts
        with one), the message with mboxo escaping ("From " at a line start
        becomes ">From "; ">From " stays), LF line ends unless crlf, a final
        newline, and the blank line before the next entry."""
        data = raw if crlf else raw.replace(b"\r\n", b"\n")
        if data.startswith(b"From "):
            nl = data.find(b"\n")
            sep, data = (data, b"") if nl < 0 else (data[:nl + 1], data[nl + 1:])
            if not sep.endswith(b"\n"):
                sep += b"\n"
        else:
            sep = b"From popbridge-tests@localhost " + time.asctime(time.gmtime()).encode() + b"\n"
        data = re.sub(rb"(?m)^From ", b">From ", data)
        if not data.endswith(b"\n"):
            data += b"\n"
        return sep + data + b"\n"

    def deliver(self, user, raw: bytes, crlf=False):
        """Append `raw` to /var/mail/USER as a local MDA does (see
        _mbox_entry), under popa3d's own lock (fcntl, whole file).  crlf:
        store CR LF line ends as given (popa3d then serves CR CR LF)."""
        return self.deliver_many(user, [raw], crlf=crlf)[0]

    def deliver_many(self, user, raws, crlf=False):
        """Append several messages at once; returns their byte offsets in
        the mbox."""
        box = self.mbox(user)
        offsets = []
        with open(box, "ab") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            try:
                f.seek(0, os.SEEK_END)
                for raw in raws:
                    offsets.append(f.tell())
                    f.write(self._mbox_entry(raw, crlf))
                # No fsync: popa3d reads the file through the same page
                # cache, and one per message made a kill loop's deliveries
                # of a few hundred messages take seconds.
                f.flush()
            finally:
                fcntl.lockf(f, fcntl.LOCK_UN)
        return offsets

    @classmethod
    def kept(cls, raw: bytes) -> bytes:
        """What popa3d serves of a message delivered by deliver() (CRLF
        lines, as pop3_messages returns them): the From_ line gone, body
        lines "From ..." as ">From ..." (mboxo escaping, not undone), a
        final line end."""
        entry = cls._mbox_entry(raw)
        msg = entry[entry.index(b"\n") + 1:-1]
        return msg.replace(b"\n", b"\r\n")

    def logins(self, user):
        """syslog lines of popa3d about `user`'s logins ("Authentication
        passed for USER")."""
        return [ln for ln in self.log_text().splitlines()
                if re.search(rf"Authentication passed for {re.escape(user)}\b", ln)]

    def pop3_block(self, user, mode="tls", password=None, **extra):
        if mode == "starttls":
            raise ValueError("popa3d has no STLS: use mode 'tls' or 'plain'")
        return super().pop3_block(user, mode, password, **extra)

    def __repr__(self):
        return f"<Popa3d {self.dir}>"


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"
