"""scripts/gmail-token (issue 17): getting a Gmail API token headlessly.

Against a small local fake of Google's token endpoint on 127.0.0.1 (plain
HTTP, which the script allows for 127.0.0.1 only), with the browser's
redirect simulated: the test reads the consent URL the script prints and
requests its redirect_uri itself, as the browser would.  Checked: the
consent URL's parameters, PKCE (the fake checks the verifier against the
challenge), FILE's mode 0600, no secret on stdout or stderr, a cached
token reused without a request, the refresh grant after expiry, a wrong
state refused, a revoked refresh token reported, http to another host
refused.  No Dovecot, no popbridge binary: the script alone.
"""

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = str(REPO / "scripts" / "gmail-token")
CLIENT_ID = "1234-test.apps.googleusercontent.com"
SECRET = "GOCSPX-test-client-secret-4f1e"
EX_DATAERR, EX_USAGE, EX_NOPERM = 65, 64, 77


class TokenFake:
    """Google's token endpoint as its documentation describes it (the
    authorization_code grant with PKCE, the refresh_token grant), enough to
    tell what the script sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []          # (grant_type, fields)
        self.codes = {}             # code -> (challenge, redirect_uri)
        self.refresh = "1//refresh-" + os.urandom(8).hex()
        self.revoked = False
        self.seq = 0
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                ctype = self.headers.get("Content-Type", "")
                f = {k: v[0] for k, v in urllib.parse.parse_qs(
                    self.rfile.read(n).decode()).items()}
                code, obj = fake.answer(self.path, ctype, f)
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/token"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    def issue_code(self, challenge, redirect_uri):
        code = "4/code-" + os.urandom(8).hex()
        self.codes[code] = (challenge, redirect_uri)
        return code

    def answer(self, path, ctype, f):
        with self.lock:
            self.requests.append((f.get("grant_type"), f))
            if path != "/token" or ctype != "application/x-www-form-urlencoded":
                return 400, {"error": "invalid_request"}
            if f.get("client_id") != CLIENT_ID or f.get("client_secret") != SECRET:
                return 401, {"error": "invalid_client"}
            self.seq += 1
            tok = f"ya29.access-{self.seq}-" + os.urandom(4).hex()
            if f.get("grant_type") == "authorization_code":
                c = self.codes.pop(f.get("code", ""), None)
                if c is None:
                    return 400, {"error": "invalid_grant"}
                want = base64.urlsafe_b64encode(hashlib.sha256(
                    f.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
                if want != c[0] or f.get("redirect_uri") != c[1]:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "verifier or redirect_uri"}
                return 200, {"access_token": tok, "expires_in": 3599,
                             "refresh_token": self.refresh, "token_type": "Bearer",
                             "scope": "https://www.googleapis.com/auth/gmail.insert "
                             "https://www.googleapis.com/auth/gmail.readonly "
                             "https://www.googleapis.com/auth/gmail.labels"}
            if f.get("grant_type") == "refresh_token":
                if self.revoked or f.get("refresh_token") != self.refresh:
                    # Google's words; this fake echoes the token to check
                    # that the script never prints it.
                    return 400, {"error": "invalid_grant", "error_description":
                                 "Token has been expired or revoked: " +
                                 f.get("refresh_token", "")}
                return 200, {"access_token": tok, "expires_in": 3599,
                             "token_type": "Bearer"}
            return 400, {"error": "unsupported_grant_type"}

    def grants(self, kind):
        with self.lock:
            return sum(1 for g, _ in self.requests if g == kind)


def env_for(fake):
    e = dict(os.environ)
    e["GMAIL_TOKEN_URL"] = fake.url
    e["GMAIL_AUTH_URL"] = "http://127.0.0.1:9/auth"   # printed, never fetched
    return e


def secret_file(t):
    p = t.tmp / "client_secret_test.json"
    p.write_text(json.dumps({"installed": {"client_id": CLIENT_ID, "client_secret": SECRET,
                                           "redirect_uris": ["http://localhost"]}}))
    return str(p)


def start_authorize(t, fake, out, *extra):
    return subprocess.Popen(
        [sys.executable, SCRIPT, "authorize", "--client-id", CLIENT_ID,
         "--client-secret-file", secret_file(t), "--out", str(out), "--port", "0",
         "--timeout", "300", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
        text=True, env=env_for(fake))


def consent_url(p):
    """The consent URL, the first line of stdout that is one."""
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("http://127.0.0.1:9/auth?"):
            return line.strip(), seen
    raise AssertionError(f"no consent URL printed: {''.join(seen)!r}")


def browser(url):
    """What the browser does on the redirect: GET it; the status and page."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def finish(p):
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def no_secret(text, fake, *more):
    for s in (fake.refresh, SECRET, *more):
        assert s not in text, f"a secret was printed: ...{s[:8]}..."


def authorize(t, fake, out):
    p = start_authorize(t, fake, out)
    url, seen = consent_url(p)
    q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}
    code = fake.issue_code(q["code_challenge"], q["redirect_uri"])
    status, page = browser(q["redirect_uri"] + "?" + urllib.parse.urlencode(
        {"state": q["state"], "code": code, "scope": q["scope"]}))
    rc, rest, err = finish(p)
    return q, code, status, page, rc, "".join(seen) + rest, err


def test_authorize_then_token(t):
    fake = TokenFake()
    try:
        out = t.tmp / "gmail.token"
        q, code, status, page, rc, stdout, stderr = authorize(t, fake, out)
        assert rc == 0, f"authorize exited {rc}: {stderr}"
        assert status == 200 and "Done" in page, f"redirect answered {status}"
        assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
        assert q["access_type"] == "offline" and q["prompt"] == "consent"
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert len(q["state"]) >= 32
        assert urllib.parse.urlsplit(q["redirect_uri"]).hostname == "127.0.0.1"
        assert set(q["scope"].split()) == {
            "https://www.googleapis.com/auth/gmail.insert",
            "https://www.googleapis.com/auth/gmail.readonly",
            "https://www.googleapis.com/auth/gmail.labels"}, q["scope"]
        assert fake.grants("authorization_code") == 1
        mode = out.stat().st_mode & 0o777
        assert mode == 0o600, f"FILE has mode {mode:o}"
        saved = json.loads(out.read_text())
        assert saved["refresh_token"] == fake.refresh and saved["client_id"] == CLIENT_ID
        no_secret(stdout + stderr, fake, code)
        assert str(out.resolve()) in stdout and "oauth2_token_command" in stdout
        assert not [f for f in os.listdir(t.tmp) if f.startswith(".gmail-token.")], \
            "a temp file was left"

        # The access token of the exchange is cached: no request.
        tok = subprocess.run([sys.executable, SCRIPT, "token", "--file", str(out)],
                             capture_output=True, text=True, env=env_for(fake), timeout=60)
        assert tok.returncode == 0, tok.stderr
        assert tok.stdout == saved["access_token"] + "\n" and tok.stderr == ""
        assert fake.grants("refresh_token") == 0, "a cached token was not used"

        # Expired (or nearly): one refresh, then the new one is cached.
        saved["expires_at"] = int(saved["expires_at"]) - 3599 + 60
        out.write_text(json.dumps(saved))
        out.chmod(0o600)
        tok = subprocess.run([sys.executable, SCRIPT, "token", "--file", str(out)],
                             capture_output=True, text=True, env=env_for(fake), timeout=60)
        assert tok.returncode == 0, tok.stderr
        assert fake.grants("refresh_token") == 1, "no refresh after expiry"
        fresh = tok.stdout.strip()
        assert fresh != saved["access_token"] and fresh.startswith("ya29.access-")
        no_secret(tok.stdout + tok.stderr, fake)
        assert out.stat().st_mode & 0o777 == 0o600
        again = subprocess.run([sys.executable, SCRIPT, "token", "--file", str(out)],
                               capture_output=True, text=True, env=env_for(fake),
                               timeout=60)
        assert again.returncode == 0 and again.stdout.strip() == fresh
        assert fake.grants("refresh_token") == 1, "the refreshed token was not cached"

        # Revoked: exit 77, the way out said, the token not echoed.
        fake.revoked = True
        saved = json.loads(out.read_text())
        saved["expires_at"] = 0
        out.write_text(json.dumps(saved))
        bad = subprocess.run([sys.executable, SCRIPT, "token", "--file", str(out)],
                             capture_output=True, text=True, env=env_for(fake), timeout=60)
        assert bad.returncode == EX_NOPERM and bad.stdout == "", bad.returncode
        assert "invalid_grant" in bad.stderr and "authorize again" in bad.stderr
        assert "7 days" in bad.stderr
        no_secret(bad.stdout + bad.stderr, fake)

        # Readable by others: refused before any request.
        out.chmod(0o644)
        n = len(fake.requests)
        bad = subprocess.run([sys.executable, SCRIPT, "token", "--file", str(out)],
                             capture_output=True, text=True, env=env_for(fake), timeout=60)
        assert bad.returncode == 78 and "chmod 600" in bad.stderr
        assert len(fake.requests) == n
    finally:
        fake.stop()


def test_wrong_state_refused(t):
    fake = TokenFake()
    try:
        out = t.tmp / "gmail.token"
        p = start_authorize(t, fake, out)
        url, _ = consent_url(p)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}
        code = fake.issue_code(q["code_challenge"], q["redirect_uri"])
        status, _ = browser(q["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"state": "not-" + q["state"], "code": code}))
        rc, stdout, stderr = finish(p)
        assert status == 400, f"a wrong state got HTTP {status}"
        assert rc == EX_DATAERR and "state" in stderr, f"exit {rc}: {stderr}"
        assert not out.exists(), "FILE written on a wrong state"
        assert fake.grants("authorization_code") == 0, "the code was exchanged anyway"
        no_secret(stdout + stderr, fake, code)
    finally:
        fake.stop()


def test_paste_and_consent_refused(t):
    """--paste: the address the browser ended on, typed in; and a refusal
    on the consent screen (error=access_denied) ends authorize cleanly."""
    fake = TokenFake()
    try:
        out = t.tmp / "gmail.token"
        p = start_authorize(t, fake, out, "--paste")
        url, _ = consent_url(p)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}
        code = fake.issue_code(q["code_challenge"], q["redirect_uri"])
        p.stdin.write(q["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"state": q["state"], "code": code}) + "\n")
        p.stdin.flush()
        rc, stdout, stderr = finish(p)
        assert rc == 0, f"exit {rc}: {stderr}"
        assert json.loads(out.read_text())["refresh_token"] == fake.refresh
        assert out.stat().st_mode & 0o777 == 0o600
        no_secret(stdout + stderr, fake, code)

        out2 = t.tmp / "other.token"
        p = start_authorize(t, fake, out2)
        url, _ = consent_url(p)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}
        browser(q["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"state": q["state"], "error": "access_denied"}))
        rc, _, stderr = finish(p)
        assert rc == EX_DATAERR and "access_denied" in stderr and not out2.exists()
    finally:
        fake.stop()


def test_plain_http_only_to_loopback(t):
    out = t.tmp / "gmail.token"
    out.write_text(json.dumps({"client_id": CLIENT_ID, "client_secret": SECRET,
                               "refresh_token": "1//r", "expires_at": 0}))
    out.chmod(0o600)
    e = dict(os.environ, GMAIL_TOKEN_URL="http://192.0.2.1/token")
    r = subprocess.run([sys.executable, SCRIPT, "token", "--file", str(out)],
                       capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == EX_USAGE and "127.0.0.1" in r.stderr, r.stderr
    assert SECRET not in r.stderr + r.stdout and "1//r" not in r.stderr + r.stdout
