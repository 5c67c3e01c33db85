"""Untrusted and mistyped input, refused early and without leaking (issue
12, "Hardening, second round"): URLs with a password in them, the batch
CSV's file: and env: passwords, CR LF in config values, strict numbers on
the command line, CSV byte-order marks and NUL bytes, mailbox names,
an empty autoconfig reply.

Each test says what the binary did before the fix.  Nothing here needs a
real mail server unless it says so: config errors must come before any
connection, and the servers named are 127.0.0.1 ports where nothing
listens (or tests/fakepop3.py, which records what it received).
"""

import os
import re

from autoconfig_server import AutoconfigServer
from fakepop3 import FakePOP3
from harness import libconfig_text, make_account

EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78

# Nothing listens on port 9 (discard): a test that got as far as
# connecting would fail with exit 75, not with the config error it wants.
NOWHERE_POP3 = "pop3s://127.0.0.1:9"
NOWHERE_IMAP = "imaps://127.0.0.1:9"
MESSAGE = (b"From: a@example.org\r\nSubject: hardening\r\n"
           b"Message-ID: <hardening@example.org>\r\n\r\nbody\r\n")
CSV_HEADER = ("pop3_url,pop3_user,pop3_password,imap_url,imap_user,"
              "imap_password,mailbox,keep\n")


def account(name="acct", pop3=None, imap=None, **extra):
    p = {"url": NOWHERE_POP3, "user": "someone", "password": "pw-pop3-dummy"}
    i = {"url": NOWHERE_IMAP, "user": "someone", "password": "pw-imap-dummy",
         "mailbox": "INBOX"}
    p.update(pop3 or {})
    i.update(imap or {})
    return make_account(name, p, i, **extra)


def write_config(t, accounts, name="popbridge.conf", raw=None):
    """A 0600 config; raw: the text as given (for escapes the harness's
    writer does not make, such as \\r)."""
    t.state_dir.mkdir(exist_ok=True)
    text = raw if raw is not None else libconfig_text(
        {"state_dir": str(t.state_dir), "accounts": accounts})
    path = t.tmp / name
    path.write_text(text)
    os.chmod(path, 0o600)
    return str(path)


def migrate_env():
    return {"POPBRIDGE_POP3_PASSWORD": "pw-pop3-dummy",
            "POPBRIDGE_IMAP_PASSWORD": "pw-imap-dummy"}


def migrate(t, *args, env=None):
    return t.bridge("migrate", *args, "--state-dir", t.tmp / "mstate",
                    env={**migrate_env(), **(env or {})})


def write_csv(t, text, name="accounts.csv"):
    path = t.tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def batch(t, csv_path, *args, env=None):
    return t.bridge("batch", csv_path, "--state-dir", t.tmp / "bstate",
                    "--report", t.tmp / "report.csv", *args, env=env)


def report_text(t):
    p = t.tmp / "report.csv"
    return p.read_text() if p.exists() else ""


# ------------------------------------------------------------- point 9
def test_migrate_bad_flag_is_named(t):
    """`migrate --flags 'a)b'` names the bad flag.  Before the fix the
    message printed a token of a freed copy of the argument (garbage in the
    normal build, heap-use-after-free under ASan)."""
    r = migrate(t, NOWHERE_POP3, NOWHERE_IMAP, "--user-pop", "a", "--user-imap", "b",
                "--flags", "\\Seen,a)b")
    assert r.rc == EX_USAGE, f"exit {r.rc}, want {EX_USAGE}"
    assert '"a)b"' in r.stderr, f"the bad flag is not named: {r.stderr.strip()!r}"


def test_batch_shard_strict(t):
    """--shard takes K/N and nothing else.  Before the fix `--shard 1/2/3`
    ran shard 1 of 2 (sscanf stopped at the second slash)."""
    csv_path = write_csv(t, CSV_HEADER)
    for bad in ("1/2/3", "1/2/", "1//2", "/2", "1/", "+1/2", "1/+2", " 1/2", "1/2 ",
                "0x1/2", "2/2", "1/0", "1", "12345678901/99999999999"):
        r = batch(t, csv_path, "--shard", bad)
        assert r.rc == EX_USAGE, f"--shard {bad!r}: exit {r.rc}, want {EX_USAGE}"
        assert "--shard" in r.stderr, f"--shard {bad!r}: {r.stderr.strip()!r}"
    r = batch(t, csv_path, "--shard", "1/2")
    assert r.rc == 0, f"--shard 1/2 with an empty CSV: exit {r.rc}: {r.stderr.strip()!r}"


# ------------------------------------------------------------- point 14
def test_url_port_digits_only(t):
    """A port is digits only.  Before the fix `host:+995` and `host: 995`
    loaded (strtol skips blanks and a sign) and `check -n` said OK."""
    for port in ("+995", " 995", "-995", "0x3e3"):
        cfg = write_config(t, [account(pop3={"url": f"pop3s://127.0.0.1:{port}"})])
        r = t.bridge("-c", cfg, "check", "-n")
        assert r.rc == EX_CONFIG, f"port {port!r}: exit {r.rc}, want {EX_CONFIG}"
        assert "bad port" in r.stderr or "nothing may follow" in r.stderr, \
            f"port {port!r}: {r.stderr.strip()!r}"


def test_add_empty_autoconfig_reply(t):
    """An autoconfig URL that answers 200 with no body is a reason like any
    other.  Before the fix http_get failed without one and `add` printed
    "autoconfig: URL: (null)"."""
    with AutoconfigServer() as srv:
        srv.put("/example.test/config-v1.1.xml", b"")
        presets = t.tmp / "no-presets.conf"
        presets.write_text("# none\n")
        env = {"POPBRIDGE_AUTOCONFIG_URL": srv.url + "/%d/config-v1.1.xml",
               "POPBRIDGE_ISPDB_URL": srv.url + "/ispdb/",
               "POPBRIDGE_SRV": "0", "POPBRIDGE_PROVIDERS": str(presets),
               "POPBRIDGE_POP3_PASSWORD": "x", "POPBRIDGE_IMAP_PASSWORD": "y"}
        r = t.bridge("-c", t.tmp / "add.conf", "add", "max@example.test",
                     "--to", NOWHERE_IMAP, "--imap-user", "u",
                     "--state-dir", t.tmp / "astate", env=env)
        assert srv.requests[:1] == ["/example.test/config-v1.1.xml"], srv.requests
    assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, want {EX_TEMPFAIL}"
    assert "(null)" not in r.output, f"a NULL reason was printed: {r.output.strip()!r}"
    assert re.search(r"config-v1\.1\.xml: an empty reply", r.output), \
        f"the empty reply is not given as the reason: {r.output.strip()!r}"


# ------------------------------------------------------------- point 4
# A password holding the characters that end a URL's authority.
URL_PW = "Pa/ss#w0rd?x"
PW_PARTS = ("Pa/ss", "w0rd", "ss#w", "rd?x", "max:Pa")


def assert_no_url_password(text, where):
    shown = [p for p in PW_PARTS if p in text]
    assert not shown, f"{where} shows {shown} of the url's password: {text.strip()[:400]!r}"


def test_url_password_never_echoed_config(t):
    """A config url with user:password, whatever else is wrong with it.
    Before the fix `check -n` printed `url "pop3s://max:Pa/ss#w0rd?x@...":
    bad port` (the '@' was looked for only before the first '/', '?', '#')
    and a url without "://" was echoed whole."""
    for url in (f"pop3s://max:{URL_PW}@pop.example.net",
                f"pop3s://max:{URL_PW}@pop.example.net:99999",
                f"max:{URL_PW}@pop.example.net",
                f"http://max:{URL_PW}@pop.example.net/"):
        cfg = write_config(t, [account(pop3={"url": url})])
        for args in (("check", "-n"), ("run",)):
            r = t.bridge("-c", cfg, *args)
            assert r.rc == EX_CONFIG, f"{url!r} {args}: exit {r.rc}, want {EX_CONFIG}"
            assert_no_url_password(r.output, f"`{' '.join(args)}` with url {url!r}")
        cfg = write_config(t, [account(imap={"url": url.replace("pop3s", "imaps")})])
        r = t.bridge("-c", cfg, "check", "-n")
        assert r.rc == EX_CONFIG, f"imap {url!r}: exit {r.rc}"
        assert_no_url_password(r.output, f"the imap url {url!r}")


def test_url_password_never_echoed_migrate(t):
    """migrate's two URLs.  Before the fix: `migrate: url
    "pop3s://max:Pa/ss#w0rd?x@pop.example.net": bad port`, and in the IMAP
    URL the '/' of the password started the mailbox, which went into the
    log line as the destination."""
    cases = [(f"pop3s://max:{URL_PW}@127.0.0.1:9", NOWHERE_IMAP),
             (f"max:{URL_PW}@127.0.0.1", NOWHERE_IMAP),
             (NOWHERE_POP3, f"imaps://max:{URL_PW}@127.0.0.1:9/Archive"),
             (NOWHERE_POP3, f"imaps://max:{URL_PW}@127.0.0.1:9")]
    for pop, imap in cases:
        r = migrate(t, pop, imap, "--user-pop", "a", "--user-imap", "b")
        assert r.rc == EX_USAGE, f"{pop} {imap}: exit {r.rc}, want {EX_USAGE}"
        assert_no_url_password(r.output, f"migrate {pop} {imap}")
        assert "%40" in r.stderr, f"the message does not say how to write an '@': {r.stderr!r}"


def test_url_password_never_echoed_batch(t):
    """A batch row with user:password in either URL: invalid, and neither
    stderr nor the --report shows the password.  Before the fix both showed
    `pop3s://max:Pa/ss...` (the report's redaction stopped at the first
    '/') and stderr the whole URL."""
    rows = [f"pop3s://max:{URL_PW}@127.0.0.1:9,max,pw1,{NOWHERE_IMAP},u,pw2,INBOX,true",
            f"pop3s://max:{URL_PW}@127.0.0.1:99999,max,pw1,{NOWHERE_IMAP},u,pw2,INBOX,true",
            f"{NOWHERE_POP3},max,pw1,imaps://max:{URL_PW}@127.0.0.1,u,pw2,INBOX,true",
            f"max:{URL_PW}@127.0.0.1,max,pw1,{NOWHERE_IMAP},u,pw2,INBOX,true"]
    csv_path = write_csv(t, CSV_HEADER + "\n".join(rows) + "\n")
    r = batch(t, csv_path)
    assert r.rc == EX_DATAERR, f"exit {r.rc}, want {EX_DATAERR}"
    for line in range(2, 2 + len(rows)):
        assert f"{csv_path}:{line}:" in r.stderr, f"line {line} not reported: {r.stderr!r}"
    assert_no_url_password(r.output, "batch's output")
    rep = report_text(t)
    assert rep.count("invalid") == len(rows), f"report: {rep!r}"
    assert_no_url_password(rep, "the --report file")


def test_url_password_never_echoed_add(t):
    """`add --pop3 URL` and `--to URL` with user:password.  Before the fix
    `--pop3 "pop3s://max:Pa/ss#w0rd?x@127.0.0.1": want pop3s://...` showed
    the password, and so did `--to` without "://"."""
    env = {"POPBRIDGE_POP3_PASSWORD": "x", "POPBRIDGE_IMAP_PASSWORD": "y",
           "POPBRIDGE_SRV": "0"}
    base = ["-c", t.tmp / "add.conf", "add", "max@example.test", "--imap-user", "u",
            "--state-dir", t.tmp / "astate"]
    for extra in (["--to", NOWHERE_IMAP, "--pop3", f"pop3s://max:{URL_PW}@127.0.0.1"],
                  ["--to", NOWHERE_IMAP, "--pop3", f"max:{URL_PW}@127.0.0.1"],
                  ["--to", f"max:{URL_PW}@127.0.0.1"],
                  ["--to", f"imaps://max:{URL_PW}@127.0.0.1"]):
        r = t.bridge(*base, *extra, env=env)
        assert r.rc == EX_USAGE, f"{extra}: exit {r.rc}, want {EX_USAGE}"
        assert_no_url_password(r.output, f"add {' '.join(extra)}")
    assert not (t.tmp / "add.conf").exists(), "add wrote a config"


# ------------------------------------------------------------- point 10
def test_batch_csv_bom_and_nul(t):
    """A CSV saved with a UTF-8 byte-order mark (Excel's "CSV UTF-8") is
    read; a NUL byte makes its row invalid, named by its line.  Before the
    fix: exit 78, "the header row has no column pop3_url" (the mark was
    part of the first column's name); and a NUL silently cut its field
    ("pw\\0junk" was the password "pw")."""
    text = (b"\xef\xbb\xbf" + CSV_HEADER.encode()
            + f"{NOWHERE_POP3},max,pw\0junk,{NOWHERE_IMAP},u,pw2,INBOX,true\n".encode()
            + f"{NOWHERE_POP3},max2,pw,{NOWHERE_IMAP},u,pw2,INBOX,maybe\n".encode())
    csv_path = write_csv(t, text)
    r = batch(t, csv_path)
    assert r.rc == EX_DATAERR, f"exit {r.rc}, want {EX_DATAERR}: {r.stderr.strip()!r}"
    assert "no column" not in r.stderr, f"the byte-order mark was read as data: {r.stderr!r}"
    assert re.search(rf"{re.escape(str(csv_path))}:2: row skipped: .*NUL", r.stderr), \
        f"the NUL byte is not named at line 2: {r.stderr!r}"
    assert f"{csv_path}:3: row skipped: keep" in r.stderr, \
        f"the row after the NUL is not read: {r.stderr!r}"


# ------------------------------------------------------------- point 6
def crlf_config(t, fake, where, name):
    """A config whose value at `where` holds CR LF and "DELE 1"."""
    acct = make_account("inj", fake.pop3_block(),
                        {"url": NOWHERE_IMAP, "user": "someone", "password": "pw-imap",
                         "mailbox": "INBOX"})
    block, key = where
    acct[block][key] = acct[block][key] + "@@CRLF@@DELE 1"
    text = libconfig_text({"state_dir": str(t.state_dir), "accounts": [acct]})
    return write_config(t, None, name=name, raw=text.replace("@@CRLF@@", "\\r\\n"))


def test_crlf_in_config_values_refused(t):
    """A user or password with CR LF is a config error naming the key,
    before any connection.  Before the fix `check -n` said OK, and `run`
    logging in with USER/PASS sent the fake server "DELE 1" as a command
    of its own (the CR LF ended the USER line)."""
    fake = FakePOP3([MESSAGE], sasl=False).start()
    problems = []
    try:
        for n, (where, key) in enumerate(((("pop3", "user")), (("pop3", "password")),
                                          (("imap", "user")), (("imap", "password")))):
            cfg = crlf_config(t, fake, (where, key), f"crlf{n}.conf")
            for args in (("run",), ("check", "-n")):
                r = t.bridge("-c", cfg, *args)
                if r.rc != EX_CONFIG:
                    problems.append(f"{where} {key} with CR LF, {' '.join(args)}: exit {r.rc}")
                elif f'{where}: "{key}" holds a line break' not in r.stderr:
                    problems.append(f"{where} {key}: {r.stderr.strip()!r}")
                if "DELE" in r.output:
                    problems.append(f"{where} {key}: the value was echoed: {r.output!r}")
        fake.wait_idle()
        if "DELE" in fake.command_names():
            problems.append("the fake POP3 server received DELE as a command:\n"
                            + fake.transcript())
        elif fake.sessions:
            problems.append("popbridge connected with a CR LF in a value:\n"
                            + fake.transcript())
    finally:
        fake.stop()
    assert not problems, " | ".join(problems)


def test_crlf_in_secret_from_file_or_command(t):
    """A password_file or password_command whose first line holds a CR (or
    a NUL) is refused when the secret is read, naming the key, never the
    secret.  Before the fix the line was cut at the CR and the rest dropped
    without a word ("pw\\rDELE 1" logged in as "pw")."""
    fake = FakePOP3([MESSAGE], sasl=False).start()
    try:
        pwfile = t.tmp / "pop3.pw"
        pwfile.write_bytes(fake.password.encode() + b"\rDELE 1\n")
        os.chmod(pwfile, 0o600)
        for n, (key, value) in enumerate((
                ("password_file", str(pwfile)),
                ("password_command", f"printf '%s\\rDELE 1\\n' '{fake.password}'"),
                ("password_command", f"printf '%s\\000DELE 1\\n' '{fake.password}'"))):
            pop3 = fake.pop3_block()
            del pop3["password"]
            pop3[key] = value
            acct = make_account("inj", pop3, {"url": NOWHERE_IMAP, "user": "someone",
                                              "password": "pw-imap", "mailbox": "INBOX"})
            cfg = write_config(t, [acct], name=f"sec{n}.conf")
            r = t.bridge("-c", cfg, "run")
            assert r.rc == EX_CONFIG, f"{key} {value!r}: exit {r.rc}: {r.stderr.strip()!r}"
            assert key in r.stderr and re.search("CR|NUL", r.stderr), \
                f"{key}: the message does not say what is wrong: {r.stderr.strip()!r}"
            assert fake.password not in r.output and "DELE" not in r.output, r.output
        fake.wait_idle()
        assert fake.logins == 0 and "DELE" not in fake.command_names(), fake.transcript()
    finally:
        fake.stop()


# ------------------------------------------------------------- point 11
UMLAUT = "Entw\u00fcrfe"          # "Entwürfe": Entw&APw-rfe on the wire


def test_mailbox_utf8_and_modified_utf7(t):
    """Against Dovecot: a mailbox written in UTF-8 is created and filled
    under its modified UTF-7 name; the same name written in modified UTF-7
    (as before) is the same mailbox; an "&" in a UTF-8 name is a letter.
    `migrate` and `batch` take UTF-8 names as well.  Before the fix a UTF-8
    name was a config error ("write names with non-ASCII letters in
    modified UTF-7") and `migrate .../Entw%C3%BCrfe` exit 64."""
    from migratelib import imap_mailboxes
    from harness import varied_messages
    dc = t.dovecot()
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    users = {}
    for k in ("utf8", "mutf7", "amp", "mig", "bat"):
        users[k] = (t.user(dc, "s"), t.user(dc, "d"))
        for raw in raws:
            dc.deliver(users[k][0], raw)
    accts = [dc.account("utf8", *users["utf8"], mailbox=UMLAUT),
             dc.account("mutf7", *users["mutf7"], mailbox="Entw&APw-rfe"),
             dc.account("amp", *users["amp"], mailbox="Tom & Jerry \u00fc")]
    cfg = t.config(accts)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"check -n: exit {r.rc}: {r.stderr.strip()!r}"
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"run: exit {r.rc}: {r.stderr.strip()!r}"
    for k, wire in (("utf8", "Entw&APw-rfe"), ("mutf7", "Entw&APw-rfe"),
                    ("amp", "Tom &- Jerry &APw-")):
        dst = users[k][1]
        boxes = imap_mailboxes(dc, dst)
        assert wire in boxes, f"{k}: no mailbox {wire}; there are {boxes}"
        assert dc.imap_count(dst, wire) == len(raws), f"{k}: {wire} holds the wrong count"
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0 and all(dc.imap_count(users[k][1], "Entw&APw-rfe") == len(raws)
                             for k in ("utf8", "mutf7")), "a second run imported again"

    src, dst = users["mig"]
    r = t.bridge("migrate", dc.url("pop3"), dc.url("imap") + "/Entw%C3%BCrfe",
                 "--user-pop", src, "--user-imap", dst, "--ca-file", dc.ca_file,
                 "--state-dir", t.tmp / "mstate",
                 env={"POPBRIDGE_POP3_PASSWORD": dc.users[src],
                      "POPBRIDGE_IMAP_PASSWORD": dc.users[dst]})
    assert r.rc == 0, f"migrate: exit {r.rc}: {r.stderr.strip()!r}"
    assert dc.imap_count(dst, "Entw&APw-rfe") == len(raws), imap_mailboxes(dc, dst)

    src, dst = users["bat"]
    csv_path = write_csv(t, CSV_HEADER + f"{dc.url('pop3')},{src},{dc.users[src]},"
                         f"{dc.url('imap')},{dst},{dc.users[dst]},{UMLAUT},true\n")
    r = batch(t, csv_path, "--ca-file", dc.ca_file)
    assert r.rc == 0, f"batch: exit {r.rc}: {r.stderr.strip()!r}"
    assert dc.imap_count(dst, "Entw&APw-rfe") == len(raws), imap_mailboxes(dc, dst)


def test_mailbox_bad_names_are_config_errors(t):
    """Names Dovecot would refuse at every run are config errors at load,
    with words that fit.  Before the fix `check -n` said OK for each, and
    `run` ended with exit 75 every time: "Mailbox name is not valid
    mUTF-7" (bad&utf7), INBOX. taken as INBOX and then no STATUS, and for
    ~tilde and a 300-byte name a CANNOT with a hint about the hierarchy
    separator, which was not the problem."""
    cases = {"bad&utf7": "not valid modified UTF-7", "R&D": '"&-"',
             "INBOX.": "hierarchy separator", "Archive/": "hierarchy separator",
             "~tilde": '"~"', "x" * 300: "longer than 255 bytes",
             "\u00fc" * 100: "longer than 255 bytes"}
    for n, (name, words) in enumerate(cases.items()):
        cfg = write_config(t, [account(imap={"mailbox": name})], name=f"mb{n}.conf")
        for args in (("check", "-n"), ("run",)):
            r = t.bridge("-c", cfg, *args)
            assert r.rc == EX_CONFIG, f"mailbox {name[:20]!r} {args}: exit {r.rc}, want 78"
            assert f'"mailbox" ' in r.stderr and words in r.stderr, \
                f"mailbox {name[:20]!r}: {r.stderr.strip()!r}"
    # The same in a batch row and for migrate.
    rows = "".join(f"{NOWHERE_POP3},u{n},pw,{NOWHERE_IMAP},u,pw2,{name},true\n"
                   for n, name in enumerate(cases))
    csv_path = write_csv(t, CSV_HEADER + rows)
    r = batch(t, csv_path)
    assert r.rc == EX_DATAERR, f"batch: exit {r.rc}"
    for line in range(2, 2 + len(cases)):
        assert re.search(rf"{re.escape(str(csv_path))}:{line}: row skipped: mailbox ",
                         r.stderr), f"line {line}: {r.stderr!r}"
    for name in ("bad&utf7", "INBOX.", "%7Etilde", "Entw%FCrfe", "a%00b"):
        r = migrate(t, NOWHERE_POP3, f"{NOWHERE_IMAP}/{name}", "--user-pop", "a",
                    "--user-imap", "b")
        assert r.rc == EX_USAGE and "mailbox" in r.stderr.lower(), \
            f"migrate .../{name}: exit {r.rc}: {r.stderr.strip()!r}"


# ------------------------------------------------------------- point 5
def test_batch_csv_cannot_send_local_secrets(t):
    """A CSV row's file: and env: passwords are read by the admin's process
    and sent to the server the row names.  They are refused unless under
    --secrets-dir (links resolved) or with a --secrets-env-prefix, or
    anywhere with --trust-csv; a refusal names the line and the reason,
    never the secret.  Before the fix the first line of a file outside any
    such folder (also through a link or "..") and $AWS_SECRET_ACCESS_KEY
    logged in to the "stranger" users here, whose passwords they are."""
    dc = t.dovecot()
    file_secret = "Root-Only-" + os.urandom(6).hex()
    env_secret = "Aws-Key-" + os.urandom(6).hex()
    outside = t.tmp / "outside"
    outside.mkdir(mode=0o700)
    (outside / "root-only.pw").write_text(file_secret + "\n")
    os.chmod(outside / "root-only.pw", 0o600)
    secrets = t.tmp / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "link.pw").symlink_to(outside / "root-only.pw")
    dst = t.user(dc, "d")
    strangers = {}
    for k in ("file", "link", "dotdot", "env"):
        strangers[k] = f"{t.short}str{k}{os.getpid() % 1000}"
        dc.add_user(strangers[k], env_secret if k == "env" else file_secret)
    good_file, good_env = t.user(dc, "gf"), t.user(dc, "ge")
    (secrets / "good.pw").write_text(dc.users[good_file] + "\n")
    os.chmod(secrets / "good.pw", 0o600)
    env = {"AWS_SECRET_ACCESS_KEY": env_secret, "PB_INPUTS_OK_PW": dc.users[good_env]}

    def row(user, field):
        return (f"{dc.url('pop3')},{user},{field},{dc.url('imap')},{dst},"
                f"{dc.users[dst]},INBOX,true\n")
    rows = [row(strangers["file"], f"file:{outside}/root-only.pw"),
            row(strangers["link"], f"file:{secrets}/link.pw"),
            row(strangers["dotdot"], f"file:{secrets}/../outside/root-only.pw"),
            row(strangers["env"], "env:AWS_SECRET_ACCESS_KEY"),
            row(good_file, f"file:{secrets}/good.pw"),
            row(good_env, "env:PB_INPUTS_OK_PW")]
    csv_path = write_csv(t, CSV_HEADER + "".join(rows))
    problems = []

    def reached(users):
        return [u for u in users if dc.auth_attempts(u)]

    def check_run(label, r, want_rc, refused_lines):
        if r.rc != want_rc:
            problems.append(f"{label}: exit {r.rc}, want {want_rc}")
        for line in refused_lines:
            if not re.search(rf"{re.escape(str(csv_path))}:{line}: row skipped: "
                             r"(pop3|imap)_password: (file|env):\S* refused", r.stderr):
                problems.append(f"{label}: line {line} not refused: {r.stderr.strip()!r}")
        for s in (file_secret, env_secret, dc.users[good_file], dc.users[good_env]):
            if s in r.output or s in report_text(t):
                problems.append(f"{label}: a secret is shown")

    # Without the new options: every file: and env: row is refused.
    r = batch(t, csv_path, "--ca-file", dc.ca_file, env=env)
    check_run("no options", r, EX_DATAERR, range(2, 8))
    if reached(strangers.values()):
        problems.append("no options: a local secret reached the stranger's server for "
                        f"{reached(strangers.values())}")
    # With the admin's folder and prefix: the strangers still refused.
    r = batch(t, csv_path, "--ca-file", dc.ca_file, "--secrets-dir", secrets,
              "--secrets-env-prefix", "PB_INPUTS_OK_", env=env)
    check_run("--secrets-dir, --secrets-env-prefix", r, EX_DATAERR, range(2, 6))
    if reached(strangers.values()):
        problems.append(f"with the options: reached {reached(strangers.values())}")
    if [u for u in (good_file, good_env) if not dc.logins(u)]:
        problems.append(f"the allowed rows did not log in: {r.stderr.strip()!r}")
    assert not problems, " | ".join(problems)
    # --trust-csv: the CSV is the admin's own; anything goes.
    r = batch(t, csv_path, "--ca-file", dc.ca_file, "--trust-csv", env=env)
    assert r.rc == 0, f"--trust-csv: exit {r.rc}: {r.stderr.strip()!r}"
    assert len(reached(strangers.values())) == 4


def test_batch_secret_options_checked(t):
    """--secrets-dir must be an existing folder, --secrets-env-prefix the
    start of a variable name.  (Options new with the fix: before it both
    were unknown, exit 64 with the usage.)"""
    csv_path = write_csv(t, CSV_HEADER)
    (t.tmp / "afile").write_text("x\n")
    for args, words in ((("--secrets-dir", t.tmp / "missing"), "No such file"),
                        (("--secrets-dir", t.tmp / "afile"), "not a folder"),
                        (("--secrets-env-prefix", ""), "variable name"),
                        (("--secrets-env-prefix", "A B"), "variable name")):
        r = batch(t, csv_path, *args)
        assert r.rc == EX_USAGE and words in r.stderr, f"{args}: exit {r.rc}: {r.stderr!r}"
    r = batch(t, csv_path, "--secrets-dir", t.tmp, "--secrets-env-prefix", "PB_")
    assert r.rc == 0, f"good options: exit {r.rc}: {r.stderr.strip()!r}"
