"""Configuration and command line errors, and the secret sources."""

import os
import re

from harness import REPO_ROOT, libconfig_text, make_account, varied_messages

EX_USAGE = 64
EX_NOPERM = 77
EX_CONFIG = 78

# Nothing listens here: config errors must be found before any connection.
DUMMY_POP3 = "pop3s://localhost:9"
DUMMY_IMAP = "imaps://localhost:9"


def dummy_account(name="acct", **extra):
    acct = make_account(name,
                        {"url": DUMMY_POP3, "user": "someone", "password": "pw-pop3-dummy"},
                        {"url": DUMMY_IMAP, "user": "someone", "password": "pw-imap-dummy",
                         "mailbox": "INBOX"})
    acct.update(extra)
    return acct


def write(t, text, name="popbridge.conf", mode=0o600):
    path = t.tmp / name
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def config_text(t, accounts):
    t.state_dir.mkdir(exist_ok=True)
    return libconfig_text({"state_dir": str(t.state_dir), "accounts": accounts})


def line_of(text, needle):
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise ValueError(needle)


def assert_file_line(stderr, path, line):
    base = os.path.basename(path)
    assert re.search(rf"(^|[\s'\"(]|/){re.escape(base)}:{line}:", stderr, re.M), \
        f"the error does not point at {base}:{line}:"


def test_unknown_key_in_account(t):
    acct = dummy_account()
    acct["kepp"] = True                      # typo of keep
    text = config_text(t, [acct])
    cfg = write(t, text)
    r = t.bridge("-c", cfg, "run")
    assert r.rc == EX_CONFIG, f"exit {r.rc}, expected {EX_CONFIG}"
    assert_file_line(r.stderr, cfg, line_of(text, "kepp"))
    assert "kepp" in r.stderr, "the error does not name the unknown key"


def test_unknown_top_level_key(t):
    text = config_text(t, [dummy_account()]) + "poll_intervall = 5;\n"
    cfg = write(t, text)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG, f"exit {r.rc}, expected {EX_CONFIG}"
    assert_file_line(r.stderr, cfg, line_of(text, "poll_intervall"))


def test_syntax_error(t):
    text = config_text(t, [dummy_account()]).replace('mailbox = "INBOX";', 'mailbox = ;')
    cfg = write(t, text)
    r = t.bridge("-c", cfg, "run")
    assert r.rc == EX_CONFIG, f"exit {r.rc}, expected {EX_CONFIG}"
    assert re.search(rf"{re.escape(os.path.basename(cfg))}:\d+:", r.stderr), \
        "the syntax error does not say FILE:LINE:"


def test_missing_required_key(t):
    acct = dummy_account()
    del acct["imap"]["user"]
    cfg = write(t, config_text(t, [acct]))
    r = t.bridge("-c", cfg, "run")
    assert r.rc == EX_CONFIG, f"exit {r.rc}, expected {EX_CONFIG}"
    assert "user" in r.stderr, "the error does not name the missing key"


def test_two_secrets_refused(t):
    acct = dummy_account()
    pwfile = t.tmp / "pw.txt"
    pwfile.write_text("secret\n")
    acct["pop3"]["password_file"] = str(pwfile)
    cfg = write(t, config_text(t, [acct]))
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG, f"exit {r.rc}, expected {EX_CONFIG} (password and password_file)"


def test_password_in_world_readable_config(t):
    cfg = write(t, config_text(t, [dummy_account()]), mode=0o644)
    r = t.bridge("-c", cfg, "run")
    assert r.rc == EX_NOPERM, f"exit {r.rc}, expected {EX_NOPERM} (0644 file with a password)"
    assert "pw-pop3-dummy" not in r.output and "pw-imap-dummy" not in r.output


def test_password_in_group_readable_config(t):
    cfg = write(t, config_text(t, [dummy_account()]), mode=0o640)
    r = t.bridge("-c", cfg, "run")
    assert r.rc == EX_NOPERM, f"exit {r.rc}, expected {EX_NOPERM} (0640 file with a password)"


def test_bad_option(t):
    r = t.bridge("--no-such-option", "run")
    assert r.rc == EX_USAGE, f"exit {r.rc}, expected {EX_USAGE}"
    assert r.stderr.strip(), "no usage message"


def test_unknown_command(t):
    cfg = write(t, config_text(t, [dummy_account()]))
    r = t.bridge("-c", cfg, "frobnicate")
    assert r.rc == EX_USAGE, f"exit {r.rc}, expected {EX_USAGE}"


def test_unknown_account_name(t):
    cfg = write(t, config_text(t, [dummy_account("known")]))
    r = t.bridge("-c", cfg, "run", "unknown")
    assert r.rc in (EX_USAGE, EX_CONFIG), f"exit {r.rc}, expected {EX_USAGE} or {EX_CONFIG}"
    assert "unknown" in r.stderr


def test_check_n_on_sample(t):
    sample = REPO_ROOT / "bridge.conf.sample"
    assert sample.exists(), f"{sample} is missing"
    r = t.bridge("-c", sample, "check", "-n")
    assert r.rc == 0, f"exit {r.rc}"
    assert "configuration OK" in r.output


def test_check_n_on_generated_config(t):
    a2 = dummy_account("a2", keep=False, flags=["\\Seen"])
    a2["pop3"] = dict(a2["pop3"], user="someone-else")
    cfg = write(t, config_text(t, [dummy_account("a1"), a2]))
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"exit {r.rc}"
    assert "configuration OK" in r.output


def test_check_n_one_pop3_mailbox_two_keeps(t):
    """Two accounts read one POP3 mailbox (spelled two ways) into two
    places, one keeping the mail and one deleting it: the second would
    take the mail from under the first.  A config error naming both."""
    a2 = dummy_account("a2", keep=False)
    a2["pop3"] = dict(a2["pop3"], url=DUMMY_POP3.upper().replace("POP3S://", "pop3s://") + "/")
    a2["imap"] = dict(a2["imap"], mailbox="Copy")
    cfg = write(t, config_text(t, [dummy_account("a1"), a2]))
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG, f"exit {r.rc}, expected {EX_CONFIG}"
    assert "a1" in r.stderr and "a2" in r.stderr and "keep" in r.stderr, r.stderr
    a2["keep"] = True
    cfg = write(t, config_text(t, [dummy_account("a1"), a2]), name="same.conf")
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"one POP3 mailbox into two places, both keep: exit {r.rc}"


def test_password_file_and_command(t):
    """password_file (first line) and password_command (first line of its
    output) work; a config without inline passwords may be 0644."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raw = varied_messages(t.name)[2][1]
    dc.deliver(src, raw)
    pwfile = t.tmp / "pop3.pw"
    pwfile.write_text(dc.users[src] + "\nsecond line is ignored\n")
    os.chmod(pwfile, 0o600)
    pop3 = dc.pop3_block(src)
    del pop3["password"]
    pop3["password_file"] = str(pwfile)
    imap = dc.imap_block(dst)
    del imap["password"]
    imap["password_command"] = f"printf '%s\\nignored\\n' '{dc.users[dst]}'"
    cfg = write(t, config_text(t, [make_account("sec", pop3, imap)]), mode=0o644)

    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"exit {r.rc}"
    assert dc.imap_count(dst) == 1


def test_every_command_answers_help(t):
    """`popbridge --help`, `-h`, `help`, `--version`, and `--help` after
    every command: the usage on stdout, exit 0.  Before the fix:
    "invalid option -- '-'" (64), and "unrecognized option" for migrate
    and batch."""
    for args in (["--help"], ["-h"], ["help"], ["--version"]):
        r = t.bridge(*args)
        assert r.rc == 0 and r.stdout.strip(), f"{args}: exit {r.rc}, stdout {r.stdout!r}"
    for cmd in ("run", "check", "daemon", "status", "retry", "add", "migrate", "batch"):
        for flag in ("--help", "-h"):
            r = t.bridge(cmd, flag)
            assert r.rc == 0, f"{cmd} {flag}: exit {r.rc}: {r.stderr[-200:]!r}"
            assert "usage" in r.stdout.lower() and cmd in r.stdout, \
                f"{cmd} {flag}: no usage on stdout: {r.stdout[:200]!r}"
