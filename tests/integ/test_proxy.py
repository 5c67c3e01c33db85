"""The per-endpoint `proxy` key (issue 13): http:// (a CONNECT tunnel),
socks5:// and socks5h://, shown by `check` without its credentials, and the
environment's proxy (ALL_PROXY), which libcurl takes when the key is not
there, named by `check` as well.

The proxies are written here, standard library only, on 127.0.0.1; they
relay only to 127.0.0.1 and record every tunnel they open, so a test can
tell that a connection went through them (and with which credentials).
"""

import base64
import os
import re
import socket
import struct
import threading

from harness import make_account, varied_messages

EX_CONFIG = 78
EX_TEMPFAIL = 75
LOOPBACK = "127.0.0.1"


class TunnelProxy:
    """A CONNECT (kind "http") or SOCKS5 (kind "socks5") proxy on
    127.0.0.1.  With user and password it asks for them (HTTP Basic,
    RFC 1929).  `tunnels` lists {"host", "port", "user", "password"} for
    every tunnel opened."""

    def __init__(self, kind, user=None, password=None):
        self.kind = kind
        self.user, self.password = user, password
        self.tunnels = []
        self.refused = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, scheme=None, creds=True):
        who = (f"{self.user}:{self.password}@" if creds and self.user else "")
        return f"{scheme or self.kind}://{who}{LOOPBACK}:{self.port}"

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ------------------------------------------------------------ serving
    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        try:
            if self.kind == "http":
                target = self._http(conn)
            else:
                target = self._socks5(conn)
            if target is None:
                conn.close()
                return
            up = socket.create_connection((LOOPBACK, target["port"]), timeout=30)
        except OSError:
            conn.close()
            return
        with self.lock:
            self.tunnels.append(target)
        if self.kind == "http":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            conn.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(LOOPBACK) + struct.pack(">H", 0))
        self._relay(conn, up)

    @staticmethod
    def _read_exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def _allowed(self, host):
        # Only this machine: "localhost" and the loopback addresses.
        return host in ("localhost", LOOPBACK, "::1")

    def _http(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk or len(head) > 16384:
                return None
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        m = re.match(r"CONNECT (\S+):(\d+) HTTP/1\.[01]$", lines[0])
        if not m or not self._allowed(m.group(1).strip("[]")):
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return None
        user = password = None
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "proxy-authorization" and v.strip().startswith("Basic "):
                user, _, password = base64.b64decode(v.strip()[6:]).decode().partition(":")
        if self.user is not None and (user, password) != (self.user, self.password):
            with self.lock:
                self.refused.append((user, password))
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return None
        return {"host": m.group(1), "port": int(m.group(2)), "user": user,
                "password": password}

    def _socks5(self, conn):
        ver, n = self._read_exact(conn, 2)
        methods = self._read_exact(conn, n)
        if ver != 5:
            return None
        user = password = None
        if self.user is not None:
            if 2 not in methods:
                conn.sendall(b"\x05\xff")
                return None
            conn.sendall(b"\x05\x02")
            sub, ulen = self._read_exact(conn, 2)
            user = self._read_exact(conn, ulen).decode()
            (plen,) = self._read_exact(conn, 1)
            password = self._read_exact(conn, plen).decode()
            ok = (user, password) == (self.user, self.password)
            conn.sendall(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                with self.lock:
                    self.refused.append((user, password))
                return None
        else:
            conn.sendall(b"\x05\x00")
        ver, cmd, _, atyp = self._read_exact(conn, 4)
        if atyp == 1:
            host = socket.inet_ntoa(self._read_exact(conn, 4))
        elif atyp == 3:
            (ln,) = self._read_exact(conn, 1)
            host = self._read_exact(conn, ln).decode()
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, self._read_exact(conn, 16))
        else:
            return None
        (port,) = struct.unpack(">H", self._read_exact(conn, 2))
        if cmd != 1 or not self._allowed(host):
            conn.sendall(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
            return None
        return {"host": host, "port": port, "user": user, "password": password,
                "resolved_by_proxy": atyp == 3}

    @staticmethod
    def _relay(a, b):
        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            for s in (dst,):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(b, a), daemon=True)
        t.start()
        pump(a, b)
        t.join(60)
        a.close()
        b.close()


def _setup(t, proxy_for_both=None):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    for raw in raws:
        dc.deliver(src, raw)
    extra = {} if proxy_for_both is None else {"proxy": proxy_for_both}
    acct = make_account("px", dc.pop3_block(src, **extra), dc.imap_block(dst, **extra))
    return dc, src, dst, acct, len(raws)


def _ports(dc):
    return {dc.pop3s_port, dc.imaps_port}


def _no_env_proxy():
    """An environment without any proxy variable (the test's own may
    have one)."""
    env = {}
    for k in list(os.environ):
        if k.lower().endswith("_proxy"):
            env[k] = ""
    return env


def test_proxy_http_connect(t):
    """proxy = "http://127.0.0.1:PORT" on both blocks: `check` says so, and
    the POP3 and IMAP connections of `run` go through the proxy as CONNECT
    tunnels (the proxy's "200 Connection established" is not taken for the
    server's greeting).  Before the fix: "unknown key \\"proxy\\"" (78)."""
    with TunnelProxy("http") as px:
        dc, src, dst, acct, n = _setup(t, None)
        acct["pop3"]["proxy"] = acct["imap"]["proxy"] = px.url()
        cfg = t.config([acct])
        r = t.bridge("-c", cfg, "check", env=_no_env_proxy())
        assert r.rc == 0, f"check through an HTTP proxy: exit {r.rc}: {r.output[-400:]!r}"
        for proto in ("pop3", "imap"):
            assert f"px: {proto}: through the proxy {px.url()}" in r.stdout, \
                f"check does not say {proto} goes through the proxy: {r.stdout!r}"
        r = t.bridge("-c", cfg, "-v", "run", env=_no_env_proxy())
        assert r.rc == 0, f"run through an HTTP proxy: exit {r.rc}"
        assert dc.imap_count(dst) == n, "the mail did not arrive"
        seen = {tn["port"] for tn in px.tunnels}
        assert seen == _ports(dc), f"tunnels to {seen}, want {_ports(dc)}"


def test_proxy_socks5h_with_credentials(t):
    """proxy = "socks5h://USER:PASSWORD@127.0.0.1:PORT": the proxy resolves
    the host name (SOCKS5 with a name), takes the user and password
    (RFC 1929), and no output shows the password: `check` prints the proxy
    as socks5h://***@127.0.0.1:PORT.  Before the fix: "unknown key"."""
    secret = "Px-" + os.urandom(5).hex()
    with TunnelProxy("socks5", "pxuser", secret) as px:
        dc, src, dst, acct, n = _setup(t, None)
        acct["pop3"]["proxy"] = acct["imap"]["proxy"] = px.url("socks5h")
        cfg = t.config([acct])
        r = t.bridge("-c", cfg, "-vv", "check", env=_no_env_proxy())
        assert r.rc == 0, f"check through SOCKS5: exit {r.rc}: {r.output[-400:]!r}"
        shown = f"socks5h://***@{LOOPBACK}:{px.port}"
        assert f"px: pop3: through the proxy {shown}" in r.stdout, r.stdout
        assert secret not in r.output, "the proxy's password is shown by check -vv"
        assert base64.b64encode(f"pxuser:{secret}".encode()).decode() not in r.output
        r = t.bridge("-c", cfg, "-vv", "run", env=_no_env_proxy())
        assert r.rc == 0, f"run through SOCKS5: exit {r.rc}"
        assert secret not in r.output, "the proxy's password is shown by run -vv"
        assert dc.imap_count(dst) == n, "the mail did not arrive"
        assert {tn["port"] for tn in px.tunnels} == _ports(dc), px.tunnels
        assert all(tn["resolved_by_proxy"] and tn["host"] == "localhost" and
                   tn["user"] == "pxuser" and tn["password"] == secret
                   for tn in px.tunnels), f"not socks5h with the credentials: {px.tunnels}"

        # A wrong password: refused by the proxy, said, not shown.
        acct["pop3"]["proxy"] = f"socks5h://pxuser:wrong-{secret}@{LOOPBACK}:{px.port}"
        cfg = t.config([acct], name="wrong.conf")
        r = t.bridge("-c", cfg, "check", env=_no_env_proxy())
        assert r.rc != 0 and px.refused, "a wrong proxy password was not refused"
        assert secret not in r.output, "the proxy's (wrong) password is shown"


def test_proxy_from_the_environment(t):
    """No proxy key, ALL_PROXY set: libcurl uses it, and `check` says so
    (the variable and its value, credentials hidden); proxy = "" goes
    direct although ALL_PROXY is set.  Before the fix: the connections went
    through ALL_PROXY and `check` said nothing of it."""
    with TunnelProxy("socks5") as px:
        dc, src, dst, acct, n = _setup(t, None)
        cfg = t.config([acct])
        env = {**_no_env_proxy(), "ALL_PROXY": px.url("socks5")}
        r = t.bridge("-c", cfg, "check", env=env)
        assert r.rc == 0, f"check with ALL_PROXY: exit {r.rc}: {r.output[-400:]!r}"
        for proto in ("pop3", "imap"):
            assert re.search(rf"px: {proto}: through the environment's proxy "
                             rf"ALL_PROXY=socks5://{LOOPBACK}:{px.port}", r.stdout), \
                f"check does not say {proto} uses ALL_PROXY: {r.stdout!r}"
        assert {tn["port"] for tn in px.tunnels} == _ports(dc), px.tunnels

        before = len(px.tunnels)
        acct["pop3"]["proxy"] = acct["imap"]["proxy"] = ""
        cfg = t.config([acct], name="direct.conf")
        r = t.bridge("-c", cfg, "check", env=env)
        assert r.rc == 0, f"check with proxy = \"\": exit {r.rc}"
        assert "px: pop3: directly" in r.stdout, r.stdout
        assert len(px.tunnels) == before, "proxy = \"\" still went through ALL_PROXY"


def test_proxy_bad_values(t):
    """A proxy URL that is not http://, socks5:// or socks5h://
    [USER[:PASSWORD]@]HOST[:PORT] is a config error at its line, the URL
    shown without its credentials.  Before the fix: "unknown key"."""
    dc, src, dst, acct, n = _setup(t, None)
    for bad, why in (("ftp://127.0.0.1:21", "must start with"),
                     ("http://", "no host"),
                     ("socks5://u:Pw-bad-9@127.0.0.1:99999", "bad port"),
                     ("http://127.0.0.1:8080/path", "may hold only")):
        acct["imap"]["proxy"] = bad
        cfg = t.config([acct], name="bad.conf")
        r = t.bridge("-c", cfg, "check", "-n")
        assert r.rc == EX_CONFIG and why in r.stderr, f"{bad}: exit {r.rc}: {r.stderr.strip()!r}"
        assert "Pw-bad-9" not in r.output, "a proxy password is shown in a config error"
        assert re.search(r"bad\.conf:\d+:", r.stderr), r.stderr
