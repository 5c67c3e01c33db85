"""The daemon's web page, /metrics and /status.json (issue 18), as a
person and a Prometheus server meet them.

A daemon with `listen = "127.0.0.1:PORT"` polls accounts on the private
Dovecot; headless Chromium (Debian's chromium and chromium-driver, driven
through python3-selenium) loads the page, takes a screenshot, reads the
accounts' figures from the DOM, signs in with the token and presses
"Check now", and the count on the page changes.  /metrics passes
`promtool check metrics` (Debian's prometheus) and says what
`status --prometheus` says; /status.json is what `status --json` prints.
Then what may not happen: actions without the token or the CSRF token,
another site's form, another Host, secrets or their paths on the page,
oversized requests, a flood of connections or a dead page process
stopping the polling.

Every wait polls for an outcome with a generous deadline; nothing here
measures time.  Only 127.0.0.1.
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from daemonlib import Daemon, wait_mail
from harness import free_ports, small_message

import random

LONG = "interval = 3600;\n"     # the schedule never fires during a test
FIRST_POLL = 30                 # s: generous, for a loaded machine
DEADLINE = 90                   # s: for anything asked of the daemon


# ------------------------------------------------------------------ helpers
def web_config(t, accounts, token=True, extra=""):
    """A config listening on a free port of 127.0.0.1; returns
    (config path, port, token or None)."""
    port = free_ports(1)[0]
    tok = None
    text = LONG + f'listen = "127.0.0.1:{port}";\n'
    if token:
        tok = os.urandom(16).hex()
        tf = t.tmp / "web.token"
        tf.write_text(tok + "\n")
        tf.chmod(0o600)
        text += f'listen_token_file = "{tf}";\n'
    return t.config(accounts, extra=text + extra), port, tok


def request(port, method, path, headers=None, body=None, timeout=60):
    """(status, headers as a dict of lower-case names, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def basic(token, user="web"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def wait_served(d, port, path="/", timeout=DEADLINE):
    """Wait until the page's process answers 200 at path; its body."""
    def get():
        try:
            s, _, b = request(port, "GET", path, timeout=10)
            return b if s == 200 else None
        except OSError:
            return None
    return d.wait(get, timeout, f"the web page answering GET {path} on port {port}")


def csrf_of(page: bytes):
    m = re.search(rb'name="csrf" value="([^"]+)"', page)
    return m.group(1).decode() if m else None


def deliver(dc, user, n, tag, seed):
    rng = random.Random(seed)
    raws = [small_message(i, rng, tag) for i in range(n)]
    for raw in raws:
        dc.deliver(user, raw)
    return raws


def metric_samples(text):
    """{'name{labels}': value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def promtool_check(t, text, what):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian's prometheus package: make deps)"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=120)
    t.note(f"promtool check metrics ({what}): exit {p.returncode}")
    assert p.returncode == 0, (f"promtool check metrics fails on {what}: "
                               f"{(p.stdout + p.stderr).decode(errors='replace')[-1500:]}")


# ------------------------------------------------------------------ browser
def _selenium():
    try:
        import selenium  # noqa: F401
    except ImportError:
        # Debian's python3-selenium, when another python3 runs the tests.
        sys.path.append("/usr/lib/python3/dist-packages")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    return webdriver, Service, By


class Browser:
    """Headless Chromium through chromedriver, a phone-sized window."""

    def __init__(self, t):
        webdriver, Service, self.By = _selenium()
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        assert os.access(chromium, os.X_OK) and os.access(driver, os.X_OK), \
            "chromium and chromedriver are needed (Debian's chromium, chromium-driver: make deps)"
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=412,915", "--no-first-run", "--disable-extensions",
                  "--disable-background-networking", "--disable-sync",
                  f"--user-data-dir={t.tmp / 'chromium-profile'}"):
            opts.add_argument(a)
        self.d = webdriver.Chrome(service=Service(driver, log_path=str(t.tmp / "chromedriver.log")),
                                  options=opts)
        self.d.set_page_load_timeout(120)

    def close(self):
        self.d.quit()

    def figures(self, account):
        """The numbers the page shows for an account, from data-value."""
        sec = self.d.find_element(self.By.CSS_SELECTOR, f'section[data-account="{account}"]')
        out = {}
        for dd in sec.find_elements(self.By.CSS_SELECTOR, "dd[data-value]"):
            out[dd.get_attribute("class")] = int(dd.get_attribute("data-value"))
        out["last-poll"] = sec.find_element(self.By.CSS_SELECTOR, "dd.last-poll").text
        out["last-error"] = sec.find_element(self.By.CSS_SELECTOR, "dd.last-error").text
        return out

    def buttons(self, account=None):
        sel = f'section[data-account="{account}"] button' if account else "button"
        return self.d.find_elements(self.By.CSS_SELECTOR, sel)


# -------------------------------------------------------------------- tests
def test_page_in_chromium(t):
    """Two accounts; the page shows each one's figures; "Check now" on one
    of them imports what waits there, and only there."""
    dc = t.dovecot()
    hs, hd = t.user(dc, "hs"), t.user(dc, "hd")
    ws, wd = t.user(dc, "ws"), t.user(dc, "wd")
    deliver(dc, hs, 3, t.name + "-h1", 1)
    deliver(dc, ws, 1, t.name + "-w1", 2)
    cfg, port, tok = web_config(t, [dc.account("home", hs, hd), dc.account("work", ws, wd)])

    with Daemon(t, cfg) as d:
        d.wait_polls("home", 1, FIRST_POLL)
        d.wait_polls("work", 1, FIRST_POLL)
        wait_served(d, port)
        b = Browser(t)
        try:
            b.d.get(f"http://127.0.0.1:{port}/")
            shot = t.tmp / "page.png"
            assert b.d.save_screenshot(str(shot)), "chromium took no screenshot"
            png = shot.read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, \
                f"the screenshot is no picture of a page ({len(png)} bytes)"
            t.note(f"screenshot: {shot} ({len(png)} bytes)")
            assert b.d.title.startswith("popbridge"), f"title {b.d.title!r}"
            home, work = b.figures("home"), b.figures("work")
            assert home["imported-total"] == 3 and home["imported-today"] == 3, home
            assert work["imported-total"] == 1 and work["imported-today"] == 1, work
            assert home["waiting"] == 0 and home["set-aside"] == 0, home
            assert "ok" in home["last-poll"] and home["last-error"] == "none", home
            # Not signed in: reading, but no button.
            assert b.buttons() == [], "buttons shown to a browser without the token"
            assert b.d.find_element(b.By.ID, "login"), "no Sign in link"

            # New mail in both; the daemon will not poll by itself (interval
            # 3600): only the button brings it.
            deliver(dc, hs, 2, t.name + "-h2", 3)
            deliver(dc, ws, 1, t.name + "-w2", 4)
            # Sign in as a person would: any user, the token as password.
            b.d.get(f"http://web:{tok}@127.0.0.1:{port}/login")
            assert len(b.buttons("home")) == 1 and len(b.buttons()) == 3, \
                f"after signing in: {[e.text for e in b.buttons()]}"
            since = d.mark()
            b.buttons("home")[0].click()

            # The click returns when the press is sent, not when the page
            # it leads to has loaded (a busy machine shows the old one for
            # a while): wait for the note, reading what the page says.
            def asked_note():
                try:
                    found = b.d.find_elements(b.By.ID, "asked")
                    return found[0].text if found else None
                except Exception:       # the page reloaded under us
                    return None
            note = d.wait(asked_note, DEADLINE, "the page saying a check was asked for")
            assert "home" in note, f"after the press the page says {note!r}"

            def home_count():
                b.d.get(f"http://127.0.0.1:{port}/")
                f = b.figures("home")
                return f if f["imported-total"] == 5 else None
            after = d.wait(home_count, DEADLINE,
                           "the page showing 5 imported for home after Check now")
            b.d.save_screenshot(str(t.tmp / "page-after.png"))
            work_after = b.figures("work")
        finally:
            b.close()
        assert after["imported-today"] == 5, after
        wait_mail(d, dc, hd, 5, DEADLINE, "home's 5 messages in IMAP")
        d.wait_line(lambda s: "home: polling now, as the web page asked" in s, DEADLINE,
                    "the daemon's log line for the press", since=since)
        polled = [s for s in d.lines(since) if re.search(r"\bwork: (polling|\d+ new|nothing new)", s)]
    assert work_after["imported-total"] == 1, f"work changed without its button: {work_after}"
    assert polled == [], f"the home button polled work too: {polled}"
    assert dc.stored_count(wd) == 1 and dc.stored_count(hd) == 5


def test_metrics_json_and_status(t):
    """/metrics passes promtool and says what `status --prometheus` says;
    /status.json is `status --json`; a failing account shows as one."""
    dc = t.dovecot()
    gs, gd = t.user(dc, "gs"), t.user(dc, "gd")
    bs, bd = t.user(dc, "bs"), t.user(dc, "bd")
    deliver(dc, gs, 2, t.name, 5)
    bad = dc.account("bad", bs, bd, pop3_extra={"password": "wrong-" + os.urandom(4).hex()})
    cfg, port, tok = web_config(t, [dc.account("good", gs, gd), bad])

    with Daemon(t, cfg) as d:
        d.wait_polls("good", 1, FIRST_POLL)
        d.wait_polls("bad", 1, FIRST_POLL)
        wait_served(d, port)
        s, h, body = request(port, "GET", "/metrics")
        assert s == 200 and h["content-type"].startswith("text/plain; version=0.0.4"), (s, h)
        text = body.decode()
        promtool_check(t, text, "/metrics")
        m = metric_samples(text)
        assert m['popbridge_messages_imported_total{account="good"}'] == 2, text
        assert m['popbridge_imported_bytes_total{account="good"}'] > 0
        assert m['popbridge_polls_total{account="good",result="ok"}'] >= 1
        assert m['popbridge_polls_total{account="bad",result="authentication_failure"}'] >= 1
        assert m['popbridge_consecutive_failed_polls{account="bad"}'] >= 1
        assert m['popbridge_failing_since_timestamp_seconds{account="bad"}'] > 0
        assert m['popbridge_last_success_timestamp_seconds{account="good"}'] > 0
        assert m['popbridge_last_success_timestamp_seconds{account="bad"}'] == 0
        assert m['popbridge_up'] == 1 and m['popbridge_daemon_running'] == 1
        polls = sum(v for k, v in m.items() if k.startswith('popbridge_polls_total{account="good"'))
        assert m['popbridge_poll_duration_seconds_count{account="good"}'] == polls
        assert m['popbridge_poll_duration_seconds_bucket{account="good",le="+Inf"}'] == polls

        # The same numbers from the command line, for a textfile collector;
        # the daemon polls nothing meanwhile (interval 3600), so they agree.
        r = t.bridge("-c", cfg, "status", "--prometheus")
        assert r.rc == 0, f"status --prometheus exited {r.rc} (an account failing is no error there)"
        promtool_check(t, r.stdout, "status --prometheus")
        assert metric_samples(r.stdout) == m, "status --prometheus and /metrics differ"

        # /status.json is `status --json`.
        s, h, body = request(port, "GET", "/status.json")
        assert s == 200 and h["content-type"] == "application/json", (s, h)
        web = json.loads(body)
        r = t.bridge("-c", cfg, "status", "--json")
        cli = json.loads(r.stdout)
        assert web == cli, f"/status.json {web} != status --json {cli}"
        names = [a["name"] for a in web["accounts"]]
        assert names == ["good", "bad"] and web["accounts"][1]["last_result"] == \
            "authentication failure", web

        # Prometheus may scrape from elsewhere with the token as a Bearer.
        s, _, body = request(port, "GET", "/metrics", {"Authorization": f"Bearer {tok}"})
        assert s == 200 and metric_samples(body.decode()) == m


def test_actions_need_token_and_csrf(t):
    """Only a signed-in browser's form from this page polls; the rest is
    refused with the right status and polls nothing."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg, port, tok = web_config(t, [dc.account("home", src, dst)])
    origin = f"http://127.0.0.1:{port}"
    form = "application/x-www-form-urlencoded"

    with Daemon(t, cfg) as d:
        d.wait_polls("home", 1, FIRST_POLL)
        page = wait_served(d, port)
        assert csrf_of(page) is None, "a CSRF token (and buttons) without the token"
        s, _, page = request(port, "GET", "/", basic(tok))
        csrf = csrf_of(page)
        assert s == 200 and csrf, "no CSRF token on the page of a signed-in browser"
        since = d.mark()
        ok = f"csrf={csrf}&account=home"
        cases = [
            ("no token", {"Content-Type": form}, ok, 401),
            ("a wrong token", {**basic("x" * 32), "Content-Type": form}, ok, 401),
            ("no CSRF token", {**basic(tok), "Content-Type": form}, "account=home", 403),
            ("a forged CSRF token", {**basic(tok), "Content-Type": form},
             "csrf=1.%s&account=home" % ("0" * 64), 403),
            ("another site's form", {**basic(tok), "Content-Type": form,
                                     "Origin": "http://evil.example"}, ok, 403),
            ("another site's page (Referer)", {**basic(tok), "Content-Type": form,
                                               "Referer": "http://evil.example/x"}, ok, 403),
            ("not a form", {**basic(tok), "Content-Type": "text/plain"}, ok, 415),
            ("an account that is not there", {**basic(tok), "Content-Type": form},
             f"csrf={csrf}&account=nobody", 404),
            ("a rebound host name", {**basic(tok), "Content-Type": form, "Origin": origin,
                                     "Host": f"evil.example:{port}"}, ok, 421),
        ]
        for what, headers, body, want in cases:
            s, h, _ = request(port, "POST", "/check", headers, body)
            assert s == want, f"POST /check with {what}: {s}, expected {want}"
            if want == 401:
                assert h.get("www-authenticate", "").startswith("Basic"), h
        s, _, _ = request(port, "GET", "/", {"Host": "attacker.example"})
        assert s == 421, f"GET / with another Host: {s}"
        assert not any("polling" in line for line in d.lines(since)), \
            f"a refused request polled: {d.lines(since)}"

        # The real thing: signed in by the cookie /login gives.
        s, h, _ = request(port, "GET", "/login", basic(tok))
        assert s == 303 and "HttpOnly" in h.get("set-cookie", "") and \
            "SameSite=Strict" in h["set-cookie"], (s, h)
        cookie = h["set-cookie"].split(";")[0]
        s, _, _ = request(port, "GET", "/login")
        assert s == 401
        forged = cookie.split("=")[0] + "=1." + "0" * 64
        assert csrf_of(request(port, "GET", "/", {"Cookie": forged})[2]) is None
        s, h, _ = request(port, "POST", "/check", {"Cookie": cookie, "Content-Type": form,
                                                   "Origin": origin}, ok)
        assert s == 303 and h["location"] == "/?checked=1&account=home", (s, h)
        d.wait_line(lambda s: "home: polling now, as the web page asked" in s, DEADLINE,
                    "the poll the button asked for", since=since)


def test_no_secret_on_the_page(t):
    """A password file's path, the passwords and the token appear nowhere
    the web page serves, even when an error names the file."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    pwf = t.tmp / "secret-dir-xyz" / "home.pop3"
    pwf.parent.mkdir()
    pwf.write_text(dc.users[src] + "\n")
    pwf.chmod(0o600)
    acct = dc.account("home", src, dst)
    del acct["pop3"]["password"]
    acct["pop3"]["password_file"] = str(pwf)
    cfg, port, tok = web_config(t, [acct])
    with Daemon(t, cfg) as d:
        d.wait_polls("home", 1, FIRST_POLL)
        # An error that names the file: it goes away before the next poll.
        pwf.unlink()
        d.poll_now()
        d.wait_polls("home", 2, DEADLINE)
        wait_served(d, port)
        for path in ("/", "/status.json", "/metrics"):
            for headers in ({}, basic(tok)):
                s, _, body = request(port, "GET", path, headers)
                assert s == 200
                text = body.decode(errors="replace")
                for secret in (str(pwf), "secret-dir-xyz", dc.users[src], dc.users[dst], tok):
                    assert secret not in text, f"{path} shows {secret!r}"
        s, _, body = request(port, "GET", "/status.json")
        err = json.loads(body)["accounts"][0]["last_error"] or ""
        t.note(f"last_error as served: {err!r}")


def test_bounded_and_separate(t):
    """Oversized requests are refused; a flood of idle connections and a
    killed page process leave the polling alone, and the page comes
    back."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg, port, tok = web_config(t, [dc.account("home", src, dst)])
    with Daemon(t, cfg) as d:
        d.wait_polls("home", 1, FIRST_POLL)
        wait_served(d, port)
        s, _, _ = request(port, "POST", "/check", {**basic(tok), "Content-Type":
                          "application/x-www-form-urlencoded"}, "x=" + "a" * 5000)
        assert s == 413, f"a 5 kB form: {s}"
        try:
            s, _, _ = request(port, "GET", "/", {"X-Filler": "a" * 40000})
            assert s >= 400, f"40 kB of header: {s}"
        except (ConnectionError, http.client.HTTPException):
            pass                    # cut off: as good
        for method, path, want in (("PUT", "/", 405), ("GET", "/nope", 404),
                                   ("POST", "/", 404)):
            s, _, _ = request(port, method, path, basic(tok), "")
            assert s == want, f"{method} {path}: {s}, expected {want}"

        # 64 connections that say nothing: the polls go on.
        idle = []
        try:
            for _ in range(64):
                try:
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                except OSError:
                    break
            deliver(dc, src, 2, t.name, 6)
            d.poll_now()
            wait_mail(d, dc, dst, 2, DEADLINE, "mail imported while 64 idle connections sit "
                      "on the web page")
        finally:
            for c in idle:
                c.close()
        wait_served(d, port)

        # The page's process killed: the daemon says so, starts it again.
        m = re.findall(r"web page: serving \(pid (\d+)\)", d.log())
        assert m, "no 'web page: serving (pid N)' line in the daemon's log (-v)"
        since = d.mark()
        os.kill(int(m[-1]), signal.SIGKILL)
        d.wait_line(lambda s: "web page: its process ended" in s, DEADLINE,
                    "the daemon noticing the page's process died", since=since)
        deliver(dc, src, 1, t.name + "-b", 7)
        d.poll_now()
        wait_mail(d, dc, dst, 3, DEADLINE, "mail imported after the page's process died")
        body = wait_served(d, port)
        assert b'data-account="home"' in body
        assert d.alive()


def test_listen_settings_checked(t):
    """What the config may not say, and a daemon that cannot listen."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    acct = dc.account("home", src, dst)
    port = free_ports(1)[0]

    def check(extra):
        cfg = t.config([acct], extra=LONG + extra, name="c.conf")
        return t.bridge("-c", cfg, "check", "-n")

    r = check(f'listen = "0.0.0.0:{port}";\n')
    assert r.rc == 78 and "not a loopback" in r.stderr, (r.rc, r.stderr)
    r = check('listen = "mail.example.com:8025";\n')
    assert r.rc == 78 and "not an IP address" in r.stderr, (r.rc, r.stderr)
    r = check('listen = "127.0.0.1:0";\n')
    assert r.rc == 78 and "port" in r.stderr, (r.rc, r.stderr)
    tf = t.tmp / "open.token"
    tf.write_text(os.urandom(16).hex())
    tf.chmod(0o644)
    r = check(f'listen = "127.0.0.1:{port}";\nlisten_token_file = "{tf}";\n')
    assert r.rc != 0 and "chmod 600" in r.stderr, (r.rc, r.stderr)
    r = check(f'listen = "127.0.0.1:{port}";\nlisten_token_file = "{tf}";\n'
              f'listen_token_command = "echo x";\n')
    assert r.rc == 78 and "not both" in r.stderr, (r.rc, r.stderr)

    # A short token: the daemon refuses to start.
    tf.write_text("short\n")
    tf.chmod(0o600)
    cfg = t.config([acct], extra=LONG + f'listen = "127.0.0.1:{port}";\n'
                   f'listen_token_file = "{tf}";\n', name="short.conf")
    r = t.bridge("-c", cfg, "daemon", "-f", timeout=120)
    assert r.rc == 78 and "shorter than" in r.stderr, (r.rc, r.stderr)

    # The port taken: the daemon says so and does not start.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        cfg = t.config([acct], extra=LONG + f'listen = "127.0.0.1:{port}";\n', name="busy.conf")
        r = t.bridge("-c", cfg, "daemon", "-f", timeout=120)
    assert r.rc == 75 and "cannot listen there" in r.stderr, (r.rc, r.stderr)


def test_readme_prometheus_config(t):
    """The scrape config and the alert rule the README gives are what
    Prometheus takes (promtool check config, check rules)."""
    readme = (os.path.dirname(os.path.abspath(__file__)) + "/../../README.md")
    blocks = re.findall(r"```yaml\n(.*?)```", open(readme).read(), re.S)
    conf = next((b for b in blocks if "scrape_configs" in b and "popbridge" in b), None)
    rules = next((b for b in blocks if "PopbridgeAccountFailing" in b), None)
    assert conf and rules, "the README has no Prometheus scrape config or alert rule"
    (t.tmp / "prometheus.yml").write_text(conf)
    (t.tmp / "popbridge.rules.yml").write_text(rules)
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian's prometheus package: make deps)"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "popbridge.rules.yml"]):
        p = subprocess.run([promtool, *args], cwd=t.tmp, capture_output=True, timeout=120)
        assert p.returncode == 0, f"promtool {' '.join(args)}: {(p.stdout + p.stderr).decode()[-800:]}"
    assert "popbridge_failing_since_timestamp_seconds > 3600" in rules
