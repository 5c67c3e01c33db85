"""Looking for secrets where they must not be: popbridge's output, syslog,
reports, ledgers, state directories.  For tests/integ/test_secrets.py,
test_oauth2.py and test_tls.py.  Standard library only.

A secret can leak as itself or inside a base64 blob: SASL PLAIN
("\\0user\\0secret"), LOGIN (the secret alone), XOAUTH2
("user=U\\x01auth=Bearer TOKEN\\x01\\x01"), OAUTHBEARER
("n,a=U,\\x01host=...\\x01auth=Bearer TOKEN\\x01\\x01"), or any other
wrapping.  Base64 works in 3-byte groups, so wherever the secret sits in
the encoded bytes, for one k in 0, 1, 2 the secret minus its first k bytes
starts on a group boundary; the encoding of its whole 3-byte groups then
appears verbatim in the blob.  aligned_b64_forms() gives those three
strings (and their URL-safe spelling), which catches every wrapping, and
the exact forms of the known wrappings are added for clearer messages.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def aligned_b64_forms(secret: str) -> list[str]:
    """Base64 of the secret with 0, 1 and 2 leading bytes stripped, cut to
    whole 3-byte groups (so it does not depend on what follows): one of
    them is inside any base64 text that encodes bytes containing the
    secret.  The URL-safe alphabet too.  Needs a secret of 5+ bytes."""
    raw = secret.encode()
    forms = []
    for k in range(3):
        part = raw[k:]
        part = part[:len(part) - len(part) % 3]
        if len(part) >= 3:
            s = _b64(part)
            forms.append(s)
            u = s.replace("+", "-").replace("/", "_")
            if u != s:
                forms.append(u)
    return forms


def secret_forms(secret: str, user: str | None = None) -> dict[str, str]:
    """{label: text} of every form in which `secret` must never appear."""
    forms = {"the secret itself": secret,
             "base64 of the secret": _b64(secret.encode())}
    if user is not None:
        forms["SASL PLAIN \\0user\\0secret"] = _b64(f"\0{user}\0{secret}".encode())
        forms["SASL PLAIN user\\0user\\0secret"] = _b64(f"{user}\0{user}\0{secret}".encode())
        forms["XOAUTH2 user=...auth=Bearer"] = _b64(
            f"user={user}\x01auth=Bearer {secret}\x01\x01".encode())
    for i, f in enumerate(aligned_b64_forms(secret)):
        forms[f"base64 of the secret at alignment #{i}"] = f
    # A percent-encoded or JSON-escaped copy shows the secret too.
    pct = re.sub(r"[^A-Za-z0-9._~-]", lambda m: "%%%02X" % ord(m.group()), secret)
    if pct != secret:
        forms["percent-encoded secret"] = pct
    return forms


def find_secrets(data, secrets) -> list[str]:
    """Which forms of which secrets occur in `data` (str or bytes).
    `secrets`: iterable of (secret, user or None).  Returns descriptions."""
    if isinstance(data, bytes):
        hay = data
    else:
        hay = data.encode("utf-8", "surrogateescape")
    found = []
    for secret, user in secrets:
        for label, form in secret_forms(secret, user).items():
            if form.encode() in hay:
                found.append(f"{label} ({secret[:6]}...)")
    return found


def assert_no_secrets(data, secrets, where):
    found = find_secrets(data, secrets)
    assert not found, f"{where} shows a secret: {', '.join(found)}"


def files_under(*dirs, skip=()):
    """Every regular file under the given folders (recursively), except
    the paths in `skip` and anything under a folder in `skip`."""
    skip = [Path(s).resolve() for s in skip]
    out = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            out.append(d)
            continue
        if not d.exists():
            continue
        for root, _, names in os.walk(d):
            for n in names:
                p = Path(root, n)
                rp = p.resolve()
                if any(rp == s or s in rp.parents for s in skip):
                    continue
                if p.is_file() and not p.is_symlink():
                    out.append(p)
    return sorted(out)


def assert_no_secrets_in_files(paths, secrets, what):
    """Read each file's bytes (a SQLite ledger, its -wal, a report, ...)
    and look for the secrets in all their forms."""
    bad = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError:
            continue
        found = find_secrets(data, secrets)
        if found:
            bad.append(f"{p}: {', '.join(found)}")
    assert not bad, f"{what}: a secret is stored in " + "; ".join(bad)


# --------------------------------------------------------------- syslog
class SyslogCapture:
    """What popbridge sends to syslog while the capture is open.

    If /dev/log does not exist (no syslog daemon, as in this container), a
    Unix datagram socket is bound there and every message received is kept;
    on close it is removed again, and only if it is still the socket made
    here (same inode).  If /dev/log exists, the system's syslog daemon is
    left alone: the capture then reads what is appended meanwhile to the
    first readable log file of LOG_FILES, if any.  `.available` says
    whether anything can be captured at all, `.how` says how."""

    LOG_FILES = ("/var/log/mail.log", "/var/log/syslog", "/var/log/messages")
    PATH = "/dev/log"

    def __init__(self):
        import socket
        import threading
        self._sock = None
        self._ino = None
        self._file = None
        self._file_start = 0
        self._msgs: list[bytes] = []
        self._lock = threading.Lock()
        self.available = False
        self.how = "no capture"
        if not os.path.lexists(self.PATH):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                s.bind(self.PATH)
            except OSError as e:
                s.close()
                self.how = f"cannot bind {self.PATH}: {e}"
                return
            os.chmod(self.PATH, 0o666)
            self._ino = os.stat(self.PATH).st_ino
            s.settimeout(0.2)
            self._sock = s
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
            self.available = True
            self.how = f"a datagram listener on {self.PATH} (there was none)"
            return
        for f in self.LOG_FILES:
            if os.access(f, os.R_OK):
                self._file = f
                self._file_start = os.path.getsize(f)
                self.available = True
                self.how = f"the system's syslog, read from {f}"
                return
        self.how = f"{self.PATH} exists (a system syslog) but no log file is readable"

    def _loop(self):
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except OSError:
                continue
            with self._lock:
                self._msgs.append(data)

    def messages(self) -> list[bytes]:
        """Every message so far (raw bytes, "<PRI>TIMESTAMP TAG[PID]: text")."""
        if self._file is not None:
            with open(self._file, "rb") as f:
                f.seek(self._file_start)
                return f.read().splitlines()
        with self._lock:
            return list(self._msgs)

    def popbridge_messages(self) -> list[bytes]:
        return [m for m in self.messages() if b"popbridge[" in m]

    def text(self) -> bytes:
        return b"\n".join(self.messages())

    def close(self):
        if self._sock is not None:
            self._stop.set()
            self._thread.join(2)
            self._sock.close()
            self._sock = None
            try:
                if os.stat(self.PATH).st_ino == self._ino:
                    os.unlink(self.PATH)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
