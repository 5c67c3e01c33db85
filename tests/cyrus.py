"""A private Cyrus IMAP (imapd + pop3d) on 127.0.0.1 for popbridge's tests.

The quirks of Cyrus met so far are listed in the comment block below this
docstring; tests/integ/test_cyrus.py checks most of them.

Cyrus is the second server family popbridge is tested against (issue 6).
Debian's cyrus-imapd and cyrus-pop3d conflict with Dovecot's packages, so
they are not installed: scripts/cyrus-fetch.sh downloads them and unpacks
them with `dpkg -x` into a cache folder (default
/var/cache/popbridge-cyrus/root), and installs through apt only the
libraries they lack (libxapian30, libical3).  This module runs Cyrus's
`master` from that tree with LD_LIBRARY_PATH pointing into it, with a
private imapd.conf and cyrus.conf in a temporary folder:

* its own configdirectory and partition-default; nothing under /etc, /var
  or /run is read or written (every Cyrus command gets -C);
* services imap, imaps, pop3, pop3s (and an LMTP unix socket) on free
  ports of 127.0.0.1 only;
* real authentication: sasl_pwcheck_method auxprop with the sasldb plugin
  and a private sasldb file written with saslpasswd2 -f (from the unpacked
  sasl2-bin); an admin "cyrus" with a random password;
* TLS with a test CA of its own (harness.make_tls), tls_server_cert/key.

Cyrus refuses to run its services as root ("Fatal error: must run as the
Cyrus user") and needs that user in the passwd database, so the services
run as `nobody` (cyrus_user/cyrus_group; override with
$POPBRIDGE_CYRUS_USER / $POPBRIDGE_CYRUS_GROUP); the instance's folders
belong to it.

Cyrus logs only through syslog(3), to /dev/log, which this machine does not
have.  So master runs in a private mount namespace (unshare --mount, as
root) whose /dev is a tmpfs of symlinks to the real /dev plus /dev/log ->
a datagram socket of this instance; a thread writes what arrives there to
DIR/cyrus.log (log_tail, log_text).  The system's /dev is not touched.
Where unshare is not possible, Cyrus runs without a log (log_text says so).

The interface is that of harness.Dovecot as the integration tests use it:
start/stop/cleanup, add_user, deliver, imap, pop3, imap_messages,
imap_count, pop3_count, pop3_messages, url, pop3_block, imap_block,
account, ca_file, host, ports, log_tail, log_size.  Mail is delivered by
IMAP APPEND as the admin into user/NAME (the admin is given an ACL entry on
each mailbox it creates), not by files: Cyrus keeps its own spool and index.
"""

# ---------------------------------------------------------------------------
# QUIRKS of Cyrus IMAP 3.6.1, Debian 12 packages cyrus-common, cyrus-imapd,
# cyrus-pop3d 3.6.1-4+deb12u5 (banner: "Cyrus IMAP 3.6.1-Debian-3.6.1-4+deb12u5",
# "Cyrus POP3 ..."), with the settings below unless a line says otherwise.
# Seen on this machine; [T] = checked by tests/integ/test_cyrus.py.
#
# Running it
#  R1 The services refuse root: "Fatal error: must run as the Cyrus user"
#     (exit 64); master starts as root and switches to cyrus_user, which must
#     be in the passwd database (Cyrus looks it up by name).
#  R2 master does not hand its -C to the services: each cmd= in cyrus.conf
#     needs its own -C, or the service reads /etc/imapd.conf and dies ("can't
#     open configuration file /etc/imapd.conf").
#  R3 Logs go to syslog(3) (/dev/log) only; master -L redirects only stdio.
#  R4 configdirectory's subfolders (db, socket, proc, lock, ...) must exist:
#     "DBERROR: ... skipstamp: No such file or directory" otherwise.
#  R5 An admin (admins: cyrus) may CREATE user/NAME but not APPEND to it: "NO
#     Mailbox does not exist" (not a permission error) until SETACL gives
#     the admin rights on it.
#  R6 sasldb users are NAME@servername (saslpasswd2 -u localhost here).
#
# POP3 (pop3d)
#  P1 UIDL is "UIDVALIDITY.UID", e.g. "1795648383.1"; UIDVALIDITY is the
#     mailbox's creation time, so a recreated mailbox has all-new UIDLs. [T]
#  P2 CAPA before login: SASL PLAIN LOGIN, STLS (plain port, TLS configured),
#     EXPIRE NEVER, LOGIN-DELAY 0, TOP, UIDL, PIPELINING, RESP-CODES,
#     AUTH-RESP-CODE, USER, IMPLEMENTATION Cyrus POP3 <version>.  After login
#     USER, SASL and STLS are gone. [T]
#  P3 Greeting "+OK localhost Cyrus POP3 <version> server ready <APOP stamp>";
#     USER answers "+OK Name is a valid mailbox"; PASS "+OK Mailbox locked and
#     ready SESSIONID=<...>", yet nothing is locked: a second session of the
#     same user logs in meanwhile and sees the same messages (no [IN-USE]).
#  P4 Wrong password: "-ERR [AUTH] Invalid login", about 3 s later
#     (failedloginpause, default 3). [T]
#  P5 popminpoll (here 8s in one instance): a login sooner than that after the
#     last good one gets "-ERR [LOGIN-DELAY] Logins must be at least N minute
#     apart", N in whole minutes ("0 minute" for 8 s); CAPA says
#     "LOGIN-DELAY 8".  popbridge treats it as a refused login (exit 77). [T]
#  P6 A message stored without a final newline is served with CRLF added
#     before ".CRLF"; lines starting with "." are dot-stuffed.  DELE takes
#     effect at QUIT ("Expunged N messages from user.NAME" in the log); a
#     session cut without QUIT deletes nothing. [T]
#  P7 A sasldb user without a mailbox logs in to POP3 and sees an empty
#     maildrop ("+OK 0 0"), no error.
#
# IMAP (imapd)
#  I1 The greeting carries a short [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE
#     (STARTTLS) AUTH=PLAIN AUTH=LOGIN SASL-IR]; a CAPABILITY command before
#     login already lists everything (MULTIAPPEND, UIDPLUS, BINARY, ...).
#  I2 After login: LITERAL+ MULTIAPPEND UIDPLUS BINARY CATENATE QUOTA IDLE
#     MOVE CONDSTORE QRESYNC SPECIAL-USE ... and APPENDLIMIT=<maxmessagesize>,
#     or APPENDLIMIT=4294967295 when there is no limit (popbridge shows "4.29
#     GB").  No LITERAL-. [T]
#  I3 The [CAPABILITY ...] in LOGIN's tagged OK lists LOGINDISABLED (even on
#     imaps, after a successful login) and lacks SASL-IR; a CAPABILITY
#     command after login does not list LOGINDISABLED.
#  I4 Hierarchy separator "/" (unixhierarchysep, the default since 3.0) and
#     altnamespace: folders sit beside INBOX ("Archive/2024", not
#     "INBOX/Archive"); NAMESPACE (("" "/")) (("Other Users/" "/"))
#     (("Shared Folders/" "/")).  CREATE makes missing parents. [T]
#     unixhierarchysep: no makes it "."; then a name with "/" is refused:
#     "NO Invalid mailbox name" (popbridge: exit 75, nothing deleted). [T]
#  I5 APPEND to a missing mailbox: "NO [TRYCREATE] Mailbox does not exist". [T]
#     A user without INBOX (no autocreate) may CREATE INBOX itself.
#  I6 MULTIAPPEND: "OK [APPENDUID <uidvalidity> 1:6] Completed" (a range).
#  I7 Over quota: "NO Over quota", with no [OVERQUOTA] code (popbridge finds
#     the word "quota": exit 75, nothing deleted).  A MULTIAPPEND that does
#     not fit as a whole stores nothing, though some messages would fit. [T]
#  I8 maxmessagesize is advertised as APPENDLIMIT; an APPEND over it: "NO
#     [TOOBIG] Message size exceeds fixed limit", and for a non-synchronising
#     literal (LITERAL+) then "* BYE [TOOBIG] ..." and the connection closes
#     (the literal is not read).  popbridge never sends one: it keeps such a
#     message on POP3 by APPENDLIMIT (exit 65). [T]
#  I9 NUL bytes: "NO Message contains NUL characters" in a plain literal;
#     stored unchanged from a literal8 (~{n+}, BINARY). [T]
#  I10 Bare LF in a literal: "NO Message contains bare newlines"; a bare CR is
#     accepted and stored as is. [T for CR]
#  I11 8-bit bytes in headers are each replaced by "X" ("Grüße" -> "GrXXXXe")
#     and the APPEND is answered OK (munge8bit, on by default; reject8bit
#     off): mail with raw 8-bit headers is changed by the server and no
#     client can tell.  With "munge8bit: no" the bytes are stored as sent
#     (checked by hand).  8-bit bodies, 3000-character lines and a message
#     without a final CRLF are stored as sent. [T]
#  I12 INTERNALDATE keeps the instant, not the zone: APPEND "... +0200" is
#     FETCHed in the server's zone ("+0000" here), like Dovecot. [T]
#  I13 Wrong password: "NO Login failed: authentication failure", no
#     [AUTHENTICATIONFAILED] code, about 3 s later (failedloginpause);
#     libcurl still reports a refused login (exit 77). [T]
#  I14 With sasl_mech_list unset and a sasldb, Cyrus offers CRAM-MD5
#     DIGEST-MD5 LOGIN NTLM PLAIN SCRAM-SHA-1..512(-PLUS); popbridge still
#     logs in with AUTH=PLAIN. [T]
#  I15 EXAMINE answers carry [MAILBOXID (...)], [URLMECH INTERNAL],
#     [ANNOTATIONS 65536], [HIGHESTMODSEQ n] and PERMANENTFLAGS ().
#
# Log lines (tests read them): "login: localhost [127.0.0.1] USER MECH[+TLS]
# User logged in SESSIONID=<...>", "badlogin: localhost [127.0.0.1] MECH (USER)
# [SASL(-13): authentication failure: checkpass failed]"; POP3 logs as
# pop3/pop3s, IMAP as imap/imaps (the cyrus.conf service names).
# ---------------------------------------------------------------------------

from __future__ import annotations

import imaplib
import os
import poplib
import pwd
import grp
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import serverbase
from serverbase import LOOPBACK, PortInUse

REPO_ROOT = Path(__file__).resolve().parent.parent
FETCH_SCRIPT = REPO_ROOT / "scripts" / "cyrus-fetch.sh"
CACHE = Path(os.environ.get("POPBRIDGE_CYRUS_CACHE", "/var/cache/popbridge-cyrus"))
CYRUS_USER = os.environ.get("POPBRIDGE_CYRUS_USER", "nobody")
CYRUS_GROUP = os.environ.get("POPBRIDGE_CYRUS_GROUP", "nogroup")
ADMIN = "cyrus"
MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(
    os.uname().machine, f"{os.uname().machine}-linux-gnu")



class CyrusUnavailable(RuntimeError):
    """Cyrus cannot be run on this machine; the message says what is missing."""


def _tree_ok(root: Path):
    """None if the unpacked tree can run, else what is wrong."""
    need = [root / "usr/lib/cyrus/bin/master", root / "usr/lib/cyrus/bin/imapd",
            root / "usr/lib/cyrus/bin/pop3d", root / "usr/sbin/saslpasswd2"]
    missing = [str(p) for p in need if not os.access(p, os.X_OK)]
    if missing:
        return "missing " + ", ".join(missing)
    env = {**os.environ, "LD_LIBRARY_PATH": str(root / "usr/lib" / MULTIARCH)}
    try:
        out = subprocess.run(["ldd", *map(str, need)], capture_output=True, text=True,
                             env=env, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"ldd failed: {e}"
    nf = sorted({line.split()[0] for line in out.splitlines() if "not found" in line})
    return f"libraries not found: {' '.join(nf)}" if nf else None


_tree_lock = threading.Lock()
_tree_checked: dict = {}


def cyrus_root() -> Path:
    """The unpacked Cyrus tree, fetched with scripts/cyrus-fetch.sh if it is
    missing or incomplete.  Raises CyrusUnavailable with the reason."""
    env_root = os.environ.get("POPBRIDGE_CYRUS_ROOT")
    root = Path(env_root) if env_root else CACHE / "root"
    with _tree_lock:
        if root in _tree_checked:
            if _tree_checked[root]:
                raise CyrusUnavailable(_tree_checked[root])
            return root
        problem = _tree_ok(root)
        if problem and not env_root:
            if os.geteuid() != 0:
                problem = (f"Cyrus is not unpacked in {root} ({problem}) and fetching it "
                           f"needs root: run `sh {FETCH_SCRIPT}` as root")
            else:
                p = subprocess.run(["sh", str(FETCH_SCRIPT)], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True,
                                   env={**os.environ, "POPBRIDGE_CYRUS_CACHE": str(CACHE)})
                if p.returncode != 0:
                    problem = (f"scripts/cyrus-fetch.sh failed (exit {p.returncode}): "
                               + (p.stderr.strip().splitlines() or ["no output"])[-1])
                else:
                    problem = _tree_ok(root)
        for what, lookup, name in (("user", pwd.getpwnam, CYRUS_USER),
                                   ("group", grp.getgrnam, CYRUS_GROUP)):
            if not problem:
                try:
                    lookup(name)
                except KeyError:
                    problem = (f"Cyrus needs its services' {what} {name!r} in the system's "
                               f"{what} database (set POPBRIDGE_CYRUS_{what.upper()})")
        _tree_checked[root] = problem
        if problem:
            raise CyrusUnavailable(problem)
        return root


def _quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _kb(size):
    """'200K' / '2M' / bytes as an int -> kilobytes, as Cyrus quotas count."""
    return max(1, (size if isinstance(size, int) else _bytes(size)) // 1024)


def _bytes(size):
    m = re.fullmatch(r"(\d+)([KMG]?)", str(size).strip().upper())
    if not m:
        raise ValueError(f"bad size {size!r}")
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


# The launcher run by `unshare --mount` (a private mount namespace): /dev
# becomes a tmpfs of symlinks to the real /dev (rbind-mounted under the
# instance dir, visible only in this namespace) plus /dev/log -> our socket.
_NS_LAUNCHER = r"""
set -e
realdev=$1; sock=$2; shift 2
mount --rbind /dev "$realdev"
mount -t tmpfs -o mode=755,size=64k popbridge-cyrus-dev /dev
for e in "$realdev"/* "$realdev"/.[!.]*; do
    { [ -e "$e" ] || [ -L "$e" ]; } || continue
    ln -s "$e" "/dev/${e##*/}"
done
ln -sf "$sock" /dev/log
exec "$@"
"""

_unshare_ok = None


def _can_unshare():
    global _unshare_ok
    if _unshare_ok is None:
        try:
            _unshare_ok = os.geteuid() == 0 and subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "true"],
                capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _unshare_ok = False
    return _unshare_ok


class Cyrus(serverbase.Server):
    """A private Cyrus IMAP instance on 127.0.0.1 serving IMAP and POP3.

    ssl=False: no TLS at all (no imaps/pop3s ports, no STARTTLS).
    quota_storage ("200K"): every mailbox made by add_user gets that STORAGE quota.
    maxmessagesize ("100K"): Cyrus's maxmessagesize (APPEND and LMTP limit).
    mechs: sasl_mech_list ("PLAIN LOGIN"; None = every mechanism the SASL
    plugins installed offer with a sasldb, e.g. SCRAM, DIGEST-MD5, CRAM-MD5).
    conf: extra imapd.conf settings {name: value}.
    """

    family = "cyrus"
    name_prefix = "pbcy"
    start_timeout = 30.0
    stderr_name = "master.stderr"

    def __init__(self, ssl=True, quota_storage=None, maxmessagesize=None,
                 mechs="PLAIN LOGIN", conf=None, tmp=None, name=None):
        if os.geteuid() != 0:
            raise CyrusUnavailable("a private Cyrus needs root (its services switch to "
                                   f"{CYRUS_USER}; its /dev/log is a private mount)")
        self.root = cyrus_root()
        super().__init__(ssl=ssl, tmp=tmp, name=name)
        self.bin = self.root / "usr/lib/cyrus/bin"
        self.libdir = self.root / "usr/lib" / MULTIARCH
        self.quota_storage = quota_storage
        self.maxmessagesize = maxmessagesize
        self.mechs = mechs
        self.extra_conf = dict(conf or {})
        # The hierarchy separator: "/" (unixhierarchysep, the default since
        # 3.0) or "." (netnews).
        self.sep = "." if str(self.extra_conf.get("unixhierarchysep", "yes")).lower() in (
            "0", "no", "off", "false", "f", "n") else "/"
        self.uid = pwd.getpwnam(CYRUS_USER).pw_uid
        self.gid = grp.getgrnam(CYRUS_GROUP).gr_gid
        self.conf_dir = self.dir / "conf"
        self.spool_dir = self.dir / "spool"
        self.tmp_dir = self.dir / "tmp"
        for d in (self.conf_dir, self.spool_dir, self.tmp_dir,
                  *(self.conf_dir / s for s in ("db", "socket", "proc", "lock", "log",
                                                "sieve", "quota", "user", "msg"))):
            d.mkdir(mode=0o750, exist_ok=True)
            os.chown(d, self.uid, self.gid)
        self.realdev = self.dir / "realdev"
        self.realdev.mkdir()
        self.imapd_conf = self.dir / "imapd.conf"
        self.cyrus_conf = self.dir / "cyrus.conf"
        self.sasldb = self.dir / "sasldb2"
        self.log_path.touch()
        self.syslog_sock = self.dir / "syslog.sock"
        self.pid_file = self.dir / "master.pid"
        self.has_log = False        # True once syslog capture works (see start)
        self._sink = None
        self._admin = None
        self._admin_lock = threading.Lock()
        self.admin_password = "adm-" + os.urandom(9).hex()
        os.chown(self.key_file, self.uid, self.gid)
        self._new_ports()
        self._saslpasswd(ADMIN, self.admin_password)
        self.write_conf()

    # ----------------------------------------------------------- config
    def _env(self):
        return {**os.environ, "LD_LIBRARY_PATH": str(self.libdir)}

    def write_conf(self):
        lines = {
            "configdirectory": self.conf_dir,
            "partition-default": self.spool_dir,
            "defaultpartition": "default",
            "temp_path": self.tmp_dir,
            "servername": "localhost",
            "syslog_prefix": self.name,
            "cyrus_user": CYRUS_USER,
            "cyrus_group": CYRUS_GROUP,
            "admins": ADMIN,
            "sasl_pwcheck_method": "auxprop",
            "sasl_auxprop_plugin": "sasldb",
            "sasl_sasldb_path": self.sasldb,
            "allowplaintext": "yes",
            "unixhierarchysep": "yes" if self.sep == "/" else "no",
            "altnamespace": "yes",
            "virtdomains": "off",
            "autocreate_quota": "-1",
            "duplicatesuppression": "no",
            "lmtpsocket": self.conf_dir / "socket/lmtp",
            "idlesocket": self.conf_dir / "socket/idle",
            "notifysocket": self.conf_dir / "socket/notify",
            "sievedir": self.conf_dir / "sieve",
            "popminpoll": "0",
        }
        if self.mechs:
            lines["sasl_mech_list"] = self.mechs
        if self.ssl:
            lines["tls_server_cert"] = self.cert_file
            lines["tls_server_key"] = self.key_file
        if self.maxmessagesize:
            lines["maxmessagesize"] = _bytes(self.maxmessagesize)
        lines.update(self.extra_conf)
        self.imapd_conf.write_text("# private Cyrus for popbridge tests (tests/cyrus.py)\n"
                                   + "".join(f"{k}: {v}\n" for k, v in lines.items()))
        c = f"-C {self.imapd_conf}"
        b = self.bin
        services = [f'  imap cmd="{b}/imapd {c}" listen="{LOOPBACK}:{self.imap_port}" proto=tcp4 prefork=0',
                    f'  pop3 cmd="{b}/pop3d {c}" listen="{LOOPBACK}:{self.pop3_port}" proto=tcp4 prefork=0',
                    f'  lmtpunix cmd="{b}/lmtpd {c}" listen="{self.conf_dir}/socket/lmtp" prefork=0']
        if self.ssl:
            services += [
                f'  imaps cmd="{b}/imapd {c} -s" listen="{LOOPBACK}:{self.imaps_port}" proto=tcp4 prefork=0',
                f'  pop3s cmd="{b}/pop3d {c} -s" listen="{LOOPBACK}:{self.pop3s_port}" proto=tcp4 prefork=0']
        self.cyrus_conf.write_text(
            "# private Cyrus for popbridge tests (tests/cyrus.py)\n"
            f'START {{\n  recover cmd="{b}/ctl_cyrusdb {c} -r"\n}}\n'
            "SERVICES {\n" + "\n".join(services) + "\n}\n"
            "EVENTS {\n}\nDAEMON {\n}\n")

    def _saslpasswd(self, user, password):
        p = subprocess.run([str(self.root / "usr/sbin/saslpasswd2"), "-f", str(self.sasldb),
                            "-p", "-c", "-u", "localhost", user],
                           input=password.encode(), capture_output=True, env=self._env(),
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"saslpasswd2 for {user} failed: "
                               f"{p.stderr.decode(errors='replace').strip()}")
        os.chown(self.sasldb, self.uid, self.gid)
        os.chmod(self.sasldb, 0o640)

    # ----------------------------------------------------------- lifecycle
    def _prepare(self):
        if os.geteuid() != 0:
            raise CyrusUnavailable("a private Cyrus needs root (it switches to "
                                   f"{CYRUS_USER} and mounts a private /dev/log)")

    def _write_log(self, data: bytes):
        # "Mon DD HH:MM:SS tag[pid]: text" as syslog sent it.
        with open(self.log_path, "ab", buffering=0) as f:
            f.write(data + b"\n")

    def _start_once(self, timeout, last):
        log_start = self.log_size()
        if self._sink is None and _can_unshare():
            self._sink = serverbase.SyslogSink(self.syslog_sock, self._write_log)
            self._sink.start()
        master = [str(self.bin / "master"), "-C", str(self.imapd_conf),
                  "-M", str(self.cyrus_conf), "-p", str(self.pid_file), "-D"]
        self.has_log = self._sink is not None
        if self._sink:
            cmd = ["unshare", "--mount", "--propagation", "private",
                   "sh", "-c", _NS_LAUNCHER, "cyrus-ns", str(self.realdev),
                   str(self.syslog_sock), *master]
        else:
            with open(self.log_path, "a") as f:
                f.write("(no Cyrus log: unshare --mount is not possible here, so no "
                        "private /dev/log)\n")
            cmd = master
        # unshare and sh exec, so the child's pid is master's pid.
        self._spawn(cmd, env=self._env(), cwd=self.dir)

        def check():
            if self.proc.poll() is not None:
                raise RuntimeError(f"cyrus master exited with status {self.proc.returncode} "
                                   f"during start\n{self.startup_output()}"
                                   f"{self.log_tail(since=log_start)}")
            if "Address already in use" in self.log_text()[log_start:]:
                raise PortInUse()
        self._wait_ready(self.ports, serverbase.port_open, timeout, log_start, check)
        # Listening is master's job; a service that cannot run (wrong user,
        # library, config) only shows when a connection is served.
        try:
            greeting = self.greeting(self.imap_port)
            self.greeting(self.pop3_port)
            if self.ssl:
                self.greeting(self.imaps_port, tls=True)
                self.greeting(self.pop3s_port, tls=True)
        except Exception as e:
            raise RuntimeError(f"cyrus services do not answer ({e})\n"
                               f"{self.startup_output()}{self.log_tail(since=log_start)}")
        m = re.search(r"Cyrus IMAP (\S+)", greeting)
        self.version = m.group(1) if m else greeting

    def master_pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, timeout=15.0):
        self._close_admin()
        if self.proc:
            pid = self.proc.pid
            self._end_master(pid, timeout)
            # Children left behind by a master that died (our own session).
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._stopped()
        if self._sink:
            self._sink.close()
            self._sink = None

    # ----------------------------------------------------------- log
    def logins(self, user):
        """Log lines of successful logins of `user` (IMAP or POP3), e.g.
        "imaps[123]: login: localhost [127.0.0.1] bob plaintext+TLS User logged in"."""
        return [line for line in self.log_text().splitlines()
                if re.search(rf"\blogin: \S+ \[[^]]*\] {re.escape(user)} ", line)]

    def auth_attempts(self, user):
        return [line for line in self.log_text().splitlines()
                if re.search(rf"\b(?:bad)?login: \S+ \[[^]]*\] (?:\S+ \()?{re.escape(user)}\b",
                             line)]

    # ----------------------------------------------------------- admin
    def _admin_conn(self):
        if self._admin is None:
            if self.ssl:
                c = imaplib.IMAP4_SSL(self.host, self.imaps_port,
                                      ssl_context=self.ssl_context(), timeout=60)
            else:
                c = imaplib.IMAP4(self.host, self.imap_port, timeout=60)
            c.login(ADMIN, self.admin_password)
            self._admin = c
        return self._admin

    def _close_admin(self):
        if self._admin is not None:
            try:
                self._admin.logout()
            except Exception:
                pass
            self._admin = None

    def admin(self, fn):
        """Run fn(imaplib connection logged in as the admin), reconnecting once
        if the connection was lost."""
        with self._admin_lock:
            for attempt in (1, 2):
                try:
                    return fn(self._admin_conn())
                except (imaplib.IMAP4.abort, OSError, EOFError):
                    self._close_admin()
                    if attempt == 2:
                        raise

    def mailbox_of(self, user, mailbox="INBOX"):
        """The admin's name for a user's mailbox: user/NAME[/BOX] (or with
        "." where unixhierarchysep is off)."""
        base = f"user{self.sep}{user}"
        return base if mailbox.upper() == "INBOX" else f"{base}{self.sep}{mailbox}"

    # ----------------------------------------------------------- users and mail
    def add_user(self, name, password):
        if (not name or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or "\n" in password
                or not password):
            raise ValueError("bad user name or password for this Cyrus instance")
        self._saslpasswd(name, password)
        box = self.mailbox_of(name)

        def create(c):
            typ, data = c.create(box)
            if typ != "OK" and b"exists" not in b" ".join(data or []).lower():
                raise RuntimeError(f"CREATE {box}: {typ} {data}")
            typ, data = c.setacl(box, ADMIN, "lrswipkxtecda")
            if typ != "OK":
                raise RuntimeError(f"SETACL {box}: {typ} {data}")
            if self.quota_storage:
                typ, data = c.setquota(box, f"(STORAGE {_kb(self.quota_storage)})")
                if typ != "OK":
                    raise RuntimeError(f"SETQUOTA {box}: {typ} {data}")
        self.admin(create)
        self.users[name] = password
        return name

    def deliver(self, user, raw: bytes, name=None, mailbox="INBOX"):
        """APPEND `raw` as the admin into `user`'s mailbox; returns its UID.

        What arrives is what Cyrus makes of it: imaplib sends bare LF and CR
        as CRLF; Cyrus refuses NUL bytes ("NO Message contains NUL
        characters") and replaces 8-bit bytes in headers by "X"."""
        return self.deliver_many(user, [raw], mailbox)[0]

    def deliver_many(self, user, raws, mailbox="INBOX"):
        box = self.mailbox_of(user, mailbox)

        def append(c):
            uids = []
            for raw in raws:
                typ, data = c.append(_quote(box), None, None, raw)
                if typ != "OK":
                    raise RuntimeError(f"APPEND to {box}: {typ} {data}")
                m = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(data or []))
                uids.append(int(m.group(1)) if m else None)
            return uids
        return self.admin(append)

    def set_quota(self, user, storage):
        """STORAGE quota of `user` ("200K"; None removes it)."""
        box = self.mailbox_of(user)
        limits = f"(STORAGE {_kb(storage)})" if storage else "()"
        return self.admin(lambda c: c.setquota(box, limits))

    # ----------------------------------------------------------- clients
    def pop3(self, user, password=None, timeout=30, busy_wait=30.0):
        """A logged-in poplib client.  A login refused with -ERR [IN-USE] or
        -ERR [LOGIN-DELAY] (popminpoll) is tried again for up to `busy_wait` s."""
        deadline = time.monotonic() + busy_wait
        while True:
            try:
                return super().pop3(user, password, timeout)
            except poplib.error_proto as e:
                if not re.search(r"\[(IN-USE|LOGIN-DELAY)\]", str(e)) \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def spool_count(self, user, mailbox="INBOX"):
        """Messages in a user's mailbox, asked by the admin (STATUS): no
        login as the user, so no POP3 LOGIN-DELAY is started or hit."""
        box = self.mailbox_of(user, mailbox)

        def status(c):
            typ, data = c.status(_quote(box), "(MESSAGES)")
            if typ != "OK":
                raise AssertionError(f"STATUS {box}: {typ} {data}")
            return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
        return self.admin(status)

    def __repr__(self):
        return f"<Cyrus {self.version or '?'} {self.dir}>"
