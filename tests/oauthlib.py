"""A private Dovecot that accepts OAuth2 bearer tokens, for popbridge's
OAuth2 tests (tests/integ/test_oauth2.py, tests/integ/test_secrets.py).

Standard library only, built on tests/harness.py (which it does not change):
OAuth2Dovecot subclasses harness.Dovecot and rewrites the configuration the
harness writes; IntrospectionServer is the token endpoint Dovecot asks.

    dc = oauth2_dovecot(t)                     # shared by the tests of a file
    user = t.user(dc, "d")                     # password logins work as before
    token = dc.idp.issue(user)                 # a bearer token for that user
    tc = TokenCommand(t.tmp, "dst", token)     # oauth2_token_command, counted
    dc.idp.revoke(token); dc.idp.requests      # what Dovecot asked

Dovecot 2.3.19's oauth2 passdb, as found by experiment here (Debian 12,
dovecot-core 1:2.3.19.1+dfsg1; the log lines quoted are Dovecot's):

* dovecot.conf: `auth_mechanisms = plain login xoauth2 oauthbearer` and
  `passdb { driver = oauth2  mechanisms = xoauth2 oauthbearer  args = FILE }`
  before the passwd-file passdb, which gets `mechanisms = plain login` so a
  token is never tried as a password.  The userdb (passwd-file, %u) is
  unchanged: the oauth2 passdb only authenticates, the user name then comes
  from the client (user= in XOAUTH2, a= in OAUTHBEARER's GS2 header).
  CAPABILITY (IMAP, before login) and CAPA (POP3: "SASL PLAIN LOGIN XOAUTH2
  OAUTHBEARER") then list both mechanisms.
* The args FILE needs only `introspection_url`.  All three
  `introspection_mode`s work against a plain HTTP endpoint on 127.0.0.1
  (no tls_* settings needed for http://):
    post (used here)  POST URL, body "token=TOKEN&client_id=&client_secret="
                      (application/x-www-form-urlencoded);
    get               GET URL + "TOKEN&client_id=&client_secret=" -- the
                      token is appended to introspection_url as is, so the
                      URL must end in "?token=" (or similar);
    auth (default)    GET URL with "Authorization: Bearer TOKEN".
  `tokeninfo_url` alone (no introspection_url) also works: GET
  tokeninfo_url + TOKEN, the answer checked as below.  With both, `force_introspection = yes` makes Dovecot ask the
  introspection endpoint even when tokeninfo already had the fields.
* The answer must be a JSON object with HTTP 200.  `username_attribute`
  (default "email") names the field holding the user; Dovecot compares it
  with the login's user name and refuses a mismatch:
    oauth2 failed: Introspection failed: Username 'bob' did not match 'alice'
  `active_attribute = active` + `active_value = true` makes Dovecot require
  "active": true; in these trials {"active": false, "username": U} was
  refused even without them, and so was {"active": false} alone (no user
  name):  oauth2 failed: Introspection failed: Provided token is not valid
  (with tokeninfo: "Token is not valid: Provided token is not valid").
* Every login asks the endpoint again (auth_cache_size = 0 in the harness),
  so revoking a token takes effect at the next login.
* A refused XOAUTH2/OAUTHBEARER login is not a plain NO: Dovecot first
  sends the RFC 7628 error challenge, "+ " and base64 of
  {"status":"401","schemes":"bearer","scope":"mail"}; libcurl 7.88 reports
  CURLE_LOGIN_DENIED at that point, so the last server line popbridge
  quotes in its refusal message is this challenge, not an -ERR/NO text.
* `debug = yes` in the args file adds only http-client traces; the one
  Info line per refusal (above) is there without it.
* On success the log shows "Login: user=<U>, method=XOAUTH2" (or
  OAUTHBEARER), which the tests use to prove which mechanism was used.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness import LOOPBACK, Dovecot

class IntrospectionServer:
    """An OAuth2 token introspection endpoint (RFC 7662 style) on 127.0.0.1.

    Answers for every token it issued {"active": true, "username": USER,
    ...}, and {"active": false} for anything else.  It accepts the three
    ways Dovecot's introspection_mode can ask: GET with the token appended
    to the URL ("get"), POST with token=... in the body ("post"), and GET
    with "Authorization: Bearer TOKEN" ("auth").  Every request is recorded
    in .requests as dicts (method, path, headers, body, token)."""

    def __init__(self):
        self.tokens: dict[str, str] = {}
        self.revoked: set[str] = set()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, body_in=b""):
                token = None
                path = self.path
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("bearer "):
                    token = auth[7:].strip()
                if token is None and body_in:
                    form = urllib.parse.parse_qs(body_in.decode("latin-1"))
                    if "token" in form:
                        token = form["token"][0]
                if token is None:
                    # introspection_mode = get, tokeninfo_url: the token is
                    # appended to the URL (Dovecot then adds
                    # "&client_id=&client_secret=").
                    query = urllib.parse.urlsplit(path).query
                    form = urllib.parse.parse_qs(query)
                    for key in ("token", "access_token"):
                        if key in form:
                            token = form[key][0]
                            break
                with outer._lock:
                    outer.requests.append({"method": self.command, "path": path,
                                           "headers": dict(self.headers.items()),
                                           "body": body_in, "token": token})
                    user = outer.tokens.get(token)
                    revoked = token in outer.revoked
                if user is not None:
                    # A revoked token is still known, with its user, but no
                    # longer active (RFC 7662 would send {"active": false}
                    # alone; the user name shows that Dovecot checks
                    # active_attribute and not merely the user name).
                    doc = {"active": not revoked, "username": user, "email": user,
                           "sub": user, "scope": "mail", "token_type": "Bearer"}
                else:
                    doc = {"active": False}
                code = 200
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer()

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(n) if n else b"")

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def issue(self, user, token=None):
        """A new bearer token for `user` (distinctive, URL-safe)."""
        token = token or ("ya29.Tok-" + secrets.token_urlsafe(24))
        with self._lock:
            self.tokens[token] = user
        return token

    def revoke(self, token):
        with self._lock:
            self.revoked.add(token)

    def asked_for(self, token):
        with self._lock:
            return sum(1 for r in self.requests if r["token"] == token)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class OAuth2Dovecot(Dovecot):
    """harness.Dovecot plus an oauth2 passdb for the XOAUTH2 and OAUTHBEARER
    mechanisms, validating tokens through `idp` (an IntrospectionServer).
    The passwd-file passdb stays, for PLAIN and LOGIN only, so the same
    users can log in with passwords (the other side of an account, and the
    test's own IMAP and POP3 clients)."""

    def __init__(self, idp: IntrospectionServer, mode="post", settings=None, **kw):
        # Set before Dovecot.__init__, which calls write_conf().
        self.idp = idp
        self.introspection_mode = mode
        # Lines of dovecot-oauth2.conf.ext to change (value None: left out).
        self.oauth2_settings = dict(settings or {})
        super().__init__(**kw)

    @property
    def oauth2_conf_path(self):
        return self.dir / "dovecot-oauth2.conf.ext"

    def oauth2_conf_text(self):
        if self.introspection_mode == "get":
            url = f"{self.idp.url}/introspect?token="
        else:
            url = f"{self.idp.url}/introspect"
        conf = {"introspection_url": url,
                "introspection_mode": self.introspection_mode,
                "force_introspection": "yes",
                "username_attribute": "username",
                "active_attribute": "active",
                "active_value": "true",
                "timeout_msecs": "5000"}
        conf.update(self.oauth2_settings)
        return "# written by tests/oauthlib.py\n" + "".join(
            f"{k} = {v}\n" for k, v in conf.items() if v is not None)

    def write_conf(self):
        super().write_conf()
        text = self.conf_path.read_text()
        self.oauth2_conf_path.write_text(self.oauth2_conf_text())
        os.chmod(self.oauth2_conf_path, 0o644)
        text, n = re.subn(r"^auth_mechanisms = plain login$",
                          "auth_mechanisms = plain login xoauth2 oauthbearer",
                          text, flags=re.M)
        assert n == 1, "harness config changed: no 'auth_mechanisms = plain login' line"
        oauth2_passdb = (f"passdb {{\n"
                         f"  driver = oauth2\n"
                         f"  mechanisms = xoauth2 oauthbearer\n"
                         f"  args = {self.oauth2_conf_path}\n"
                         f"}}\n")
        text, n = re.subn(r"^passdb \{\n  driver = passwd-file\n",
                          oauth2_passdb + "passdb {\n  driver = passwd-file\n"
                          "  mechanisms = plain login\n",
                          text, count=1, flags=re.M)
        assert n == 1, "harness config changed: no passwd-file passdb block"
        self.conf_path.write_text(text)

    def cleanup(self):
        super().cleanup()
        if getattr(self, "owns_idp", False):
            self.idp.close()


def oauth2_dovecot(t, mode="post", **opts) -> OAuth2Dovecot:
    """The OAuth2 Dovecot of this test file (made and started on first use,
    with its own IntrospectionServer), registered with the TestContext `t`
    like TestContext.dovecot(): stopped after the file, its log tail in
    the failure report."""
    def make():
        idp = IntrospectionServer()
        try:
            dc = OAuth2Dovecot(idp, mode=mode, **opts)
            dc.owns_idp = True
            return dc.start()
        except Exception:
            idp.close()
            raise
    return t.server(("oauthlib.OAuth2Dovecot", mode) + tuple(sorted(opts.items())), make)


def write_secret(path, text, mode=0o600):
    """Write `text` plus a newline to `path` with `mode` (default 0600)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    return path


class TokenCommand:
    """A token in a 0600 file and a wrapper script that prints it, counting
    its runs: each run appends a line to `count_file`.  Use .command as
    oauth2_token_command; .plain_command is the bare `cat FILE`."""

    def __init__(self, dirpath, name, token):
        d = Path(dirpath)
        self.token_file = write_secret(d / f"{name}.token", token)
        self.count_file = d / f"{name}.runs"
        self.script = d / f"{name}-token.sh"
        self.script.write_text("#!/bin/sh\n"
                               f"echo run >> '{self.count_file}'\n"
                               f"exec cat '{self.token_file}'\n")
        os.chmod(self.script, 0o700)
        self.command = str(self.script)
        self.plain_command = f"cat {self.token_file}"
        self.token = token

    def set_token(self, token):
        write_secret(self.token_file, token)
        self.token = token

    def runs(self):
        try:
            return len(self.count_file.read_text().splitlines())
        except FileNotFoundError:
            return 0
