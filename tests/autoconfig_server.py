"""A small HTTP server on 127.0.0.1 for the discovery tests of `popbridge add`.

Standard library only.  It serves whatever a test puts at a path (an
autoconfig document, a redirect, a huge body) and answers 404 elsewhere;
every request path is recorded, so a test can tell which sources popbridge
asked.  Loopback only: it binds 127.0.0.1 and nothing else.

    with AutoconfigServer() as srv:
        srv.put("/example.test/config-v1.1.xml",
                config_xml("localhost", 12345, "SSL"))
        env = {"POPBRIDGE_AUTOCONFIG_URL": srv.url + "/%d/config-v1.1.xml"}
        ...
        assert srv.requests == ["/example.test/config-v1.1.xml"]
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

LOOPBACK = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    server_version = "popbridge-test-autoconfig"

    def do_GET(self):  # noqa: N802 (the http.server name)
        srv = self.server.owner
        with srv.lock:
            srv.requests.append(self.path)
            route = srv.routes.get(self.path.split("?", 1)[0])
        if route is None:
            status, body, headers = 404, b"not here\n", {}
        else:
            status, body, headers = route
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a client that stops reading a huge body: expected

    def log_message(self, fmt, *args):
        pass


class AutoconfigServer:
    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, dict]] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       name="autoconfig-server", daemon=True)
        self.thread.start()

    def put(self, path, body, status=200, content_type="text/xml"):
        """Serve body (str or bytes) at path (the query string is ignored)."""
        if isinstance(body, str):
            body = body.encode()
        with self.lock:
            self.routes[path] = (status, body, {"Content-Type": content_type})

    def redirect(self, path, location, status=302):
        with self.lock:
            self.routes[path] = (status, b"", {"Location": location})

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def incoming_server(host, port, socket_type="SSL", username="%EMAILADDRESS%",
                    kind="pop3", auth="password-cleartext"):
    """One <incomingServer> element of a config-v1.1.xml document."""
    return (f'    <incomingServer type="{kind}">\n'
            f"      <hostname>{escape(host)}</hostname>\n"
            f"      <port>{port}</port>\n"
            f"      <socketType>{socket_type}</socketType>\n"
            f"      <username>{escape(username)}</username>\n"
            f"      <authentication>{auth}</authentication>\n"
            f"    </incomingServer>\n")


def config_xml(host=None, port=None, socket_type="SSL",
               username="%EMAILADDRESS%", domain="example.test", servers=None):
    """A Thunderbird autoconfig document (config-v1.1.xml).

    By default one POP3 server (host, port, socket_type, username) and an
    IMAP one on the same host; `servers` gives the <incomingServer>
    elements instead (see incoming_server)."""
    if servers is None:
        servers = (incoming_server(host, 993, "SSL", username, kind="imap")
                   + incoming_server(host, port, socket_type, username))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<clientConfig version="1.1">\n'
            f'  <emailProvider id="{escape(domain)}">\n'
            f"    <domain>{escape(domain)}</domain>\n"
            "    <displayName>popbridge test provider</displayName>\n"
            f"{servers}"
            '    <outgoingServer type="smtp">\n'
            f"      <hostname>{escape(host or 'localhost')}</hostname>\n"
            "      <port>465</port>\n"
            "      <socketType>SSL</socketType>\n"
            "    </outgoingServer>\n"
            "  </emailProvider>\n"
            "</clientConfig>\n")
