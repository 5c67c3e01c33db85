"""A local HTTPS fake of the Gmail API endpoints popbridge uses (issue 17),
on 127.0.0.1 with a certificate from a test CA (harness.make_tls).  Tests
run against this fake, never against Google.

Built from Google's API reference (gmail/v1) as documented:

  POST /upload/gmail/v1/users/{userId}/messages/import
        ?uploadType=multipart|media|resumable
        &internalDateSource=dateHeader|receivedTime
        &neverMarkSpam=true|false &processForCalendar=... &deleted=...
      multipart/related: a JSON part (the Message resource: labelIds),
      then the message/rfc822 part, the raw bytes.  media: the raw bytes
      alone.  resumable: a POST with the JSON and X-Upload-Content-Type /
      -Length answers 200 with a Location; a PUT of the bytes there imports.
      Answers the Message resource {id, threadId, labelIds}.
  GET  /gmail/v1/users/{userId}/labels            {labels: [...]}
  POST /gmail/v1/users/{userId}/labels            {name, ...} -> Label;
      409 when the name exists (Gmail ignores ASCII case), 400 reserved
  GET  /gmail/v1/users/{userId}/messages?q=&maxResults=&pageToken=
        &includeSpamTrash=   {messages: [{id, threadId}], nextPageToken,
      resultSizeEstimate}; "messages" absent when nothing matches.  q
      understands rfc822msgid:ID, after:/before: (epoch seconds or
      YYYY/MM/DD, the latter at midnight in California as Gmail reads
      it), label:NAME; any other term is a 400 here (Gmail would search
      text), so a test notices a query popbridge should not send.
  GET  /gmail/v1/users/{userId}/messages/{id}?format=raw|minimal
      raw: base64url of the bytes as stored; sizeEstimate; internalDate.

What the real server checks, checked: "Authorization: Bearer TOKEN" with
a token it issued (401 otherwise, Google's error JSON), userId "me" or the
mailbox's address, uploadType and every query parameter known and well
formed (400 otherwise), the multipart framing (boundary, exactly two
parts, a JSON first part, a message/* second part), Content-Length equal
to the body, label ids that exist.  Errors use Google's shape:
{"error": {"code", "message", "errors": [{"domain", "reason",
"message"}], "status"}}.

Messages are kept with their raw bytes (exactly as received), label ids,
internalDate (from the Date header with dateHeader, else now, in ms) and
the query parameters, for tests to read back (fake.messages).

Scripted faults, consumed in order per endpoint ("import", "labels",
"list", "get"):  fake.fault("import", status=429, retry_after=2,
reason="rateLimitExceeded"); status=503; daily=True (403
dailyLimitExceeded); cut="after_store" (the import is stored, then the
connection is closed with no reply: the settle path); cut="before_store".
fake.search_lag = S hides messages younger than S seconds from
messages.list, as Gmail's search index lags behind an import.

HTTP/2: Python's standard library has none, so the fake speaks HTTP/1.1
with keep-alive (ALPN offers http/1.1 only) and popbridge's libcurl opens
up to `inflight` connections instead of streams on one; the request
logic is the same.  Standard library and openssl only.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness import LOOPBACK, make_tls

SYSTEM_LABELS = ["INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT",
                 "SENT", "DRAFT", "CHAT", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL",
                 "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS"]
IMPORT_PARAMS = {"uploadType", "internalDateSource", "neverMarkSpam",
                 "processForCalendar", "deleted", "upload_id", "alt", "fields",
                 "prettyPrint", "quotaUser"}
BOOL_PARAMS = ("neverMarkSpam", "processForCalendar", "deleted")
PACIFIC_STD = timezone(timedelta(hours=-8))


def _http_error(code, message, reason, status, domain="global"):
    return code, {"error": {"code": code, "message": message,
                            "errors": [{"message": message, "domain": domain,
                                        "reason": reason}],
                            "status": status}}


class Message:
    def __init__(self, mid, raw, label_ids, internal_ms, params):
        self.id = mid
        self.thread_id = mid
        self.raw = raw
        self.label_ids = list(label_ids)
        self.internal_date = internal_ms      # ms since the epoch
        self.params = dict(params)
        self.stored_at = time.monotonic()

    def header(self, name):
        head = self.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        msg = email.message_from_bytes(head + b"\r\n\r\n")
        return msg.get(name)


class GmailFake:
    """The fake server; start() it, stop() it.  Thread-safe."""

    def __init__(self, tmp, address="me@gmail.test", max_import=150_000_000):
        self.dir = Path(tmp) / "gmailfake"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_file, self.cert_file, self.key_file = make_tls(self.dir)
        self.address = address
        self.max_import = max_import
        self.tokens = {"tok-" + os.urandom(8).hex()}
        self.issued = set(self.tokens)      # every token, for log checks
        self.lock = threading.Lock()
        self.messages: dict[str, Message] = {}
        self.labels = [{"id": n, "name": n, "type": "system"} for n in SYSTEM_LABELS]
        self.requests = []           # dicts: method, path, query, t, status, peer
        self.faults: dict[str, list] = {}
        self.search_lag = 0.0
        self.uploads = {}            # resumable sessions
        self.connections = set()     # client ports seen (keep-alive check)
        self.active = 0              # requests being handled now ...
        self.max_active = 0          # ... and the most at once
        self._seq = 0
        self.server = None
        self.thread = None

    # ---- for tests ----
    @property
    def token(self):
        return next(iter(self.tokens))

    @property
    def base(self):
        return f"https://{LOOPBACK}:{self.port}"

    def fault(self, endpoint, **kw):
        with self.lock:
            self.faults.setdefault(endpoint, []).append(kw)

    def revoke(self, token):
        with self.lock:
            self.tokens.discard(token)

    def issue(self):
        tok = "tok-" + os.urandom(8).hex()
        with self.lock:
            self.tokens.add(tok)
            self.issued.add(tok)
        return tok

    def label_name(self, lid):
        for lab in self.labels:
            if lab["id"] == lid:
                return lab["name"]
        return None

    def imports(self):
        """The import requests that reached the server, in order."""
        with self.lock:
            return [r for r in self.requests if r["endpoint"] == "import"]

    def start(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.set_alpn_protocols(["http/1.1"])
        fake = self

        class Handler(_Handler):
            pass
        Handler.fake = fake

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return ctx.wrap_socket(sock, server_side=True,
                                       do_handshake_on_connect=False), addr

        self.server = Server((LOOPBACK, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ---- the API ----
    def _next_id(self):
        self._seq += 1
        return "%016x" % (0x18c0000000000000 + self._seq * 7919)

    def _take_fault(self, endpoint):
        with self.lock:
            q = self.faults.get(endpoint)
            return q.pop(0) if q else None

    def _store(self, raw, meta, params):
        label_ids = meta.get("labelIds", []) if isinstance(meta, dict) else []
        if not isinstance(label_ids, list) or not all(isinstance(x, str) for x in label_ids):
            return _http_error(400, "Invalid labelIds", "invalidArgument",
                               "INVALID_ARGUMENT")
        with self.lock:
            known = {lab["id"] for lab in self.labels}
            for lid in label_ids:
                if lid not in known:
                    return _http_error(400, f"Invalid label: {lid}",
                                       "invalidArgument", "INVALID_ARGUMENT")
        if not raw:
            return _http_error(400, "Recipient address required", "invalidArgument",
                               "INVALID_ARGUMENT")
        if len(raw) > self.max_import:
            return _http_error(413, "Request payload size exceeds the limit",
                               "uploadTooLarge", "PAYLOAD_TOO_LARGE")
        internal = None
        if params.get("internalDateSource", "receivedTime") == "dateHeader":
            head = raw.split(b"\r\n\r\n", 1)[0]
            m = re.search(rb"(?im)^Date:[ \t]*(.*(?:\r?\n[ \t].*)*)", head)
            if m:
                try:
                    dt = email.utils.parsedate_to_datetime(
                        re.sub(rb"\r?\n", b"", m.group(1)).decode("latin-1"))
                    if dt.tzinfo is None:
                        dt = dt.replace(tzinfo=timezone.utc)
                    internal = int(dt.timestamp() * 1000)
                except (TypeError, ValueError):
                    internal = None
        if internal is None:
            internal = int(time.time() * 1000)
        if params.get("neverMarkSpam") != "true" and b"X-Fake-Spam: yes" in raw:
            label_ids = [x for x in label_ids if x != "INBOX"] + ["SPAM"]
        with self.lock:
            msg = Message(self._next_id(), raw, label_ids, internal, params)
            self.messages[msg.id] = msg
        return 200, {"id": msg.id, "threadId": msg.thread_id,
                     "labelIds": msg.label_ids}

    def _search(self, q, include_spam_trash):
        terms = q.split()
        now = time.monotonic()
        with self.lock:
            msgs = sorted(self.messages.values(), key=lambda m: -m.internal_date)
            labels = list(self.labels)
        out = []
        for m in msgs:
            if now - m.stored_at < self.search_lag:
                continue
            if not include_spam_trash and ({"SPAM", "TRASH"} & set(m.label_ids)):
                continue
            ok = True
            for t in terms:
                key, _, val = t.partition(":")
                key = key.lower()
                if key == "rfc822msgid":
                    mid = (m.header("Message-ID") or "").strip().strip("<>")
                    ok = mid == val.strip("<>")
                elif key in ("after", "before"):
                    secs = _search_time(val)
                    ok = (m.internal_date / 1000 > secs) if key == "after" else \
                         (m.internal_date / 1000 < secs)
                elif key == "label":
                    ids = {lab["id"] for lab in labels
                           if lab["name"].lower().replace(" ", "-") == val.lower()}
                    ok = bool(ids & set(m.label_ids))
                else:
                    raise ValueError(f"the fake does not search {t!r}")
                if not ok:
                    break
            if ok:
                out.append(m)
        return out


def _search_time(val):
    if re.fullmatch(r"\d{9,11}", val):
        return int(val)
    m = re.fullmatch(r"(\d{4})/(\d{1,2})/(\d{1,2})", val)
    if not m:
        raise ValueError(f"bad date {val!r}")
    y, mo, d = map(int, m.groups())
    return datetime(y, mo, d, tzinfo=PACIFIC_STD).timestamp()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: GmailFake = None

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.request.close()
            raise
        super().setup()

    # ---- plumbing ----
    def _reply(self, code, obj=None, headers=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        self._record["status"] = code      # before the client can see it
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _cut(self):
        """Close the connection with no reply."""
        self.close_connection = True
        self._record["status"] = "cut"
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        n = self.headers.get("Content-Length")
        if n is None or not n.isdigit():
            return None
        data = b""
        n = int(n)
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return data if len(data) == n else None

    def _auth_ok(self):
        h = self.headers.get("Authorization") or ""
        m = re.fullmatch(r"Bearer ([!-~]+)", h)
        with self.fake.lock:
            ok = bool(m) and m.group(1) in self.fake.tokens
        if not ok:
            self._reply(*_http_error(
                401, "Request had invalid authentication credentials. Expected "
                "OAuth 2 access token, login cookie or other valid authentication "
                "credential.", "authError", "UNAUTHENTICATED"),
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return ok

    def _route(self, method):
        u = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self._record = {"method": method, "path": u.path, "query": query,
                        "t": time.monotonic(), "status": None, "endpoint": None,
                        "peer": self.client_address[1]}
        with self.fake.lock:
            self.fake.requests.append(self._record)
            self.fake.connections.add(self.client_address[1])
        for k, v in query.items():
            if len(v) != 1:
                return self._reply(*_http_error(400, f"Repeated parameter {k}",
                                                "invalidParameter", "INVALID_ARGUMENT"))
        params = {k: v[0] for k, v in query.items()}
        m = re.fullmatch(r"/upload/gmail/v1/users/([^/]+)/messages/import", u.path)
        if m:
            self._record["endpoint"] = "import"
            return self._import(method, m.group(1), params)
        m = re.fullmatch(r"/gmail/v1/users/([^/]+)/labels", u.path)
        if m:
            self._record["endpoint"] = "labels"
            return self._labels(method, m.group(1))
        m = re.fullmatch(r"/gmail/v1/users/([^/]+)/messages", u.path)
        if m and method == "GET":
            self._record["endpoint"] = "list"
            return self._list(m.group(1), params)
        m = re.fullmatch(r"/gmail/v1/users/([^/]+)/messages/([0-9a-f]+)", u.path)
        if m and method == "GET":
            self._record["endpoint"] = "get"
            return self._get(m.group(1), m.group(2), params)
        self._body()
        return self._reply(404, {"error": {"code": 404, "message": "Not Found",
                                           "status": "NOT_FOUND"}})

    def _user_ok(self, user):
        if user in ("me", self.fake.address):
            return True
        self._reply(*_http_error(403, "Delegation denied for " + self.fake.address,
                                 "forbidden", "PERMISSION_DENIED"))
        return False

    def _fault(self, endpoint, stage):
        """A scripted fault for this request at this stage, done; or None."""
        with self.fake.lock:
            q = self.fake.faults.get(endpoint)
            flt = q[0] if q else None
            if flt is None or flt.get("cut") == "after_store" and stage == "before":
                return None
            if flt.get("cut") != "after_store" and stage == "after":
                return None
            q.pop(0)
        if flt.get("cut"):
            self._cut()
            return flt
        hdr = {}
        if flt.get("retry_after") is not None:
            hdr["Retry-After"] = flt["retry_after"]
        if flt.get("daily"):
            self._reply(*_http_error(403, "Daily Limit Exceeded",
                                     "dailyLimitExceeded", "PERMISSION_DENIED",
                                     domain="usageLimits"), headers=hdr)
        else:
            code = flt.get("status", 500)
            reason = flt.get("reason") or {429: "rateLimitExceeded", 503: "backendError",
                                           500: "backendError"}.get(code, "unknown")
            status = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(code, "INTERNAL")
            self._reply(*_http_error(code, flt.get("message", reason), reason, status,
                                     domain="usageLimits" if code in (403, 429) else "global"),
                        headers=hdr)
        return flt

    # ---- endpoints ----
    def _import(self, method, user, params):
        body = self._body()
        if body is None:
            return self._reply(*_http_error(411, "Length Required", "badRequest",
                                            "INVALID_ARGUMENT"))
        if not self._auth_ok() or not self._user_ok(user):
            return None
        bad = sorted(set(params) - IMPORT_PARAMS)
        if bad:
            return self._reply(*_http_error(
                400, f"Invalid JSON payload received. Unknown name \"{bad[0]}\"",
                "invalidArgument", "INVALID_ARGUMENT"))
        for b in BOOL_PARAMS:
            if b in params and params[b] not in ("true", "false"):
                return self._reply(*_http_error(400, f"Invalid value for {b}",
                                                "invalidArgument", "INVALID_ARGUMENT"))
        if params.get("internalDateSource", "receivedTime") not in ("dateHeader",
                                                                     "receivedTime"):
            return self._reply(*_http_error(400, "Invalid internalDateSource",
                                            "invalidArgument", "INVALID_ARGUMENT"))
        ut = params.get("uploadType")
        if method == "PUT" and ut == "resumable" and "upload_id" in params:
            return self._resumable_put(params, body)
        if method != "POST":
            return self._reply(405, {"error": {"code": 405, "message": "Method not allowed"}})
        if self._fault("import", "before"):
            return None
        ctype = self.headers.get("Content-Type") or ""
        if ut == "multipart":
            parts = _multipart(ctype, body)
            if isinstance(parts, str):
                return self._reply(*_http_error(400, parts, "badContent",
                                                "INVALID_ARGUMENT"))
            (h1, meta_raw), (h2, raw) = parts
            if not h1.get("content-type", "").startswith("application/json"):
                return self._reply(*_http_error(400, "The first part must be JSON",
                                                "badContent", "INVALID_ARGUMENT"))
            if not h2.get("content-type", "").startswith("message/"):
                return self._reply(*_http_error(
                    400, "Media type '%s' is not supported. Valid media types: [message/*]"
                    % h2.get("content-type", ""), "badContent", "INVALID_ARGUMENT"))
            try:
                meta = json.loads(meta_raw)
            except ValueError:
                return self._reply(*_http_error(400, "Invalid JSON payload",
                                                "parseError", "INVALID_ARGUMENT"))
        elif ut == "media":
            if not ctype.startswith("message/"):
                return self._reply(*_http_error(400, "Media type is not supported",
                                                "badContent", "INVALID_ARGUMENT"))
            meta, raw = {}, body
        elif ut == "resumable":
            try:
                meta = json.loads(body) if body else {}
            except ValueError:
                return self._reply(*_http_error(400, "Invalid JSON payload",
                                                "parseError", "INVALID_ARGUMENT"))
            n = self.headers.get("X-Upload-Content-Length") or ""
            if not (self.headers.get("X-Upload-Content-Type") or "").startswith("message/") \
                    or not n.isdigit():
                return self._reply(*_http_error(400, "Bad upload headers", "badContent",
                                                "INVALID_ARGUMENT"))
            if int(n) > self.fake.max_import:
                return self._reply(*_http_error(413, "Request payload size exceeds "
                                                "the limit", "uploadTooLarge",
                                                "PAYLOAD_TOO_LARGE"))
            uid = os.urandom(8).hex()
            with self.fake.lock:
                self.fake.uploads[uid] = (meta, int(n), params)
            q = {k: v for k, v in params.items()}
            q["upload_id"] = uid
            loc = (f"{self.fake.base}/upload/gmail/v1/users/{user}/messages/import?"
                   + urllib.parse.urlencode(q))
            return self._reply(200, None, headers={"Location": loc})
        else:
            return self._reply(*_http_error(400, "Invalid uploadType", "invalidArgument",
                                            "INVALID_ARGUMENT"))
        code, obj = self.fake._store(raw, meta, params)
        if code == 200 and self._fault("import", "after"):
            return None
        return self._reply(code, obj)

    def _resumable_put(self, params, body):
        with self.fake.lock:
            sess = self.fake.uploads.get(params["upload_id"])
        if sess is None:
            return self._reply(404, {"error": {"code": 404, "message": "No such upload"}})
        meta, n, p0 = sess
        if len(body) != n:
            return self._reply(400, {"error": {"code": 400, "message": "Size mismatch"}})
        if self._fault("import", "before"):
            return None
        code, obj = self.fake._store(body, meta, p0)
        if code == 200:
            with self.fake.lock:
                self.fake.uploads.pop(params["upload_id"], None)
            if self._fault("import", "after"):
                return None
        return self._reply(code, obj)

    def _labels(self, method, user):
        body = self._body() if method != "GET" else b""
        if not self._auth_ok() or not self._user_ok(user):
            return None
        if self._fault("labels", "before"):
            return None
        f = self.fake
        if method == "GET":
            with f.lock:
                return self._reply(200, {"labels": [dict(x) for x in f.labels]})
        if method != "POST":
            return self._reply(405, {"error": {"code": 405, "message": "Method not allowed"}})
        if (self.headers.get("Content-Type") or "").split(";")[0] != "application/json":
            return self._reply(*_http_error(400, "Expected JSON", "badContent",
                                            "INVALID_ARGUMENT"))
        try:
            obj = json.loads(body)
            name = obj["name"]
            assert isinstance(name, str) and name.strip() == name and name
        except (ValueError, KeyError, AssertionError, TypeError):
            return self._reply(*_http_error(400, "Invalid label name", "invalidArgument",
                                            "INVALID_ARGUMENT"))
        with f.lock:
            if any(lab["name"].lower() == name.lower() for lab in f.labels):
                reserved = name.upper() in SYSTEM_LABELS
                return self._reply(*_http_error(
                    400 if reserved else 409,
                    "Invalid label name" if reserved else "Label name exists or conflicts",
                    "invalidArgument" if reserved else "alreadyExists",
                    "INVALID_ARGUMENT" if reserved else "ALREADY_EXISTS"))
            lab = {"id": "Label_%d" % (len(f.labels) + 1), "name": name, "type": "user",
                   "labelListVisibility": obj.get("labelListVisibility", "labelShow"),
                   "messageListVisibility": obj.get("messageListVisibility", "show")}
            f.labels.append(lab)
        return self._reply(200, lab)

    def _list(self, user, params):
        if not self._auth_ok() or not self._user_ok(user):
            return None
        if self._fault("list", "before"):
            return None
        known = {"q", "maxResults", "pageToken", "includeSpamTrash", "labelIds",
                 "fields", "alt", "prettyPrint", "quotaUser"}
        if set(params) - known:
            return self._reply(*_http_error(400, "Unknown parameter", "invalidParameter",
                                            "INVALID_ARGUMENT"))
        try:
            maxr = int(params.get("maxResults", "100"))
            assert 1 <= maxr <= 500
            start = int(params.get("pageToken", "0"))
            found = self.fake._search(params.get("q", ""),
                                      params.get("includeSpamTrash") == "true")
        except (ValueError, AssertionError) as e:
            return self._reply(*_http_error(400, f"Invalid query: {e}", "invalidArgument",
                                            "INVALID_ARGUMENT"))
        page = found[start:start + maxr]
        out = {"resultSizeEstimate": len(found)}
        if page:
            out["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + maxr < len(found):
            out["nextPageToken"] = str(start + maxr)
        return self._reply(200, out)

    def _get(self, user, mid, params):
        if not self._auth_ok() or not self._user_ok(user):
            return None
        if self._fault("get", "before"):
            return None
        fmt = params.get("format", "full")
        if fmt not in ("raw", "minimal", "full", "metadata"):
            return self._reply(*_http_error(400, "Invalid format", "invalidArgument",
                                            "INVALID_ARGUMENT"))
        with self.fake.lock:
            m = self.fake.messages.get(mid)
        if m is None:
            return self._reply(*_http_error(404, "Requested entity was not found.",
                                            "notFound", "NOT_FOUND"))
        out = {"id": m.id, "threadId": m.thread_id, "labelIds": m.label_ids,
               "sizeEstimate": len(m.raw), "internalDate": str(m.internal_date),
               "historyId": "1"}
        if fmt == "raw":
            out["raw"] = base64.urlsafe_b64encode(m.raw).decode()
        return self._reply(200, out)

    def _counted(self, method):
        f = self.fake
        with f.lock:
            f.active += 1
            f.max_active = max(f.max_active, f.active)
        try:
            self._route(method)
        finally:
            with f.lock:
                f.active -= 1

    def do_GET(self):
        self._counted("GET")

    def do_POST(self):
        self._counted("POST")

    def do_PUT(self):
        self._counted("PUT")


def _multipart(ctype, body):
    """[(headers, bytes), (headers, bytes)] of a multipart/related body, or
    why not.  The parts are cut exactly: their bytes are what was sent."""
    m = re.match(r'multipart/related;\s*boundary="?([^";]+)"?', ctype)
    if not m:
        return "Content-Type must be multipart/related with a boundary"
    b = b"--" + m.group(1).encode()
    if not body.startswith(b + b"\r\n"):
        return "the body does not start with the boundary"
    end = body.rfind(b"\r\n" + b + b"--")
    if end < 0 or body[end + len(b) + 4:] not in (b"", b"\r\n"):
        return "no closing boundary"
    inner = body[len(b) + 2:end]
    sep = b"\r\n" + b + b"\r\n"
    pieces = inner.split(sep)
    if len(pieces) != 2:
        return f"expected 2 parts, got {len(pieces)}"
    parts = []
    for p in pieces:
        head, _, data = p.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n"):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        parts.append((headers, data))
    return parts
