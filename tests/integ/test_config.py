"""Configuration and command line errors, and the secret sources."""

import os
import re
from pathlib import Path

from harness import REPO_ROOT, _lc_value, libconfig_text, make_account, varied_messages

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


def harness_value(v):
    """A Python value in libconfig syntax (a list of accounts: ( ... ))."""
    return _lc_value(v, 0)


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
    """The sample as installed next to its password file: check -n says OK;
    without the file, check -n names it (its path starts at the config's
    folder, as /etc/popbridge.conf's popbridge/home.pop3 is
    /etc/popbridge/home.pop3)."""
    sample = REPO_ROOT / "bridge.conf.sample"
    assert sample.exists(), f"{sample} is missing"
    cfg = t.tmp / "popbridge.conf"
    cfg.write_bytes(sample.read_bytes())
    os.chmod(cfg, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG and "home.pop3" in r.stderr, \
        f"the sample's password_file is missing, yet: exit {r.rc}: {r.stderr.strip()!r}"
    (t.tmp / "popbridge").mkdir(mode=0o700)
    pw = t.tmp / "popbridge" / "home.pop3"
    pw.write_text("sample-secret\n")
    os.chmod(pw, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"exit {r.rc}: {r.stderr.strip()!r}"
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


# ------------------------------------------------ issue 13: secret files
NOBODY = 65534


def _secret(path, text="pw-file-secret", mode=0o600, owner=None):
    path = Path(path)
    path.write_text(text + "\n")
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, owner)
    return str(path)


def _file_account(pwfile, name="acct"):
    acct = dummy_account(name)
    del acct["pop3"]["password"]
    acct["pop3"]["password_file"] = str(pwfile)
    del acct["imap"]["password"]
    acct["imap"]["password_command"] = "echo pw-imap-dummy"
    return acct


def test_check_n_checks_password_files(t):
    """check -n opens no connection but checks every password_file as the
    run will meet it: there, a regular file, readable by its owner only.
    Before the fix: "configuration OK" for a missing file and for a 0644
    one; only `run` noticed."""
    missing = t.tmp / "no-such.pw"
    cfg = write(t, config_text(t, [_file_account(missing)]), name="missing.conf")
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG, f"a missing password_file: exit {r.rc}: {r.output.strip()!r}"
    assert str(missing) in r.stderr and "No such file" in r.stderr, r.stderr
    assert_file_line(r.stderr, cfg, line_of(Path(cfg).read_text(), "password_file ="))

    loose = _secret(t.tmp / "loose.pw", mode=0o644)
    cfg = write(t, config_text(t, [_file_account(loose)]), name="loose.conf")
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_NOPERM, f"a 0644 password_file: exit {r.rc}: {r.output.strip()!r}"
    assert "chmod 600 " + loose in r.stderr, r.stderr
    assert "pw-file-secret" not in r.output

    good = _secret(t.tmp / "good.pw")
    cfg = write(t, config_text(t, [_file_account(good)]), name="good.conf")
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0 and "configuration OK" in r.output, f"exit {r.rc}: {r.stderr.strip()!r}"


def test_check_n_password_file_readable_by_the_runner(t):
    """The user that runs popbridge must be able to read its password
    files.  That is who can read the config: its owner (the systemd
    unit's user: the unit installs it with -o popbridge, add writes it
    so); for a config of root's, root when only root can read it (a daemon
    started as root reads the files before it becomes `user`), else its
    `user`.  Root only (it makes files for nobody).  Before the fix: check
    -n said "configuration OK" for root's 0600 password file in a config
    of nobody's, and the daemon the unit ran as that user failed at every
    poll: "password_file ...: Permission denied"."""
    if os.geteuid() != 0:
        t.note("not root: no other user's files to make")
        return
    folder = t.tmp / "secrets"
    folder.mkdir(mode=0o700)
    pw = _secret(folder / "acct.pop3")                 # root:root 0600
    text = config_text(t, [_file_account(pw)])
    cfg = write(t, text, name="unit.conf")
    os.chown(cfg, NOBODY, NOBODY)                      # the unit's config
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_NOPERM, f"root's file, nobody's config: exit {r.rc}: {r.output.strip()!r}"
    assert "cannot be read by nobody" in r.stderr and f"chown nobody {pw}" in r.stderr, r.stderr
    assert_file_line(r.stderr, cfg, line_of(text, "password_file ="))

    # The file is nobody's, but its folder is root's 0700: named, with the fix.
    os.chown(pw, NOBODY, NOBODY)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_NOPERM, f"a folder nobody cannot enter: exit {r.rc}: {r.output.strip()!r}"
    assert f"chown nobody {folder}" in r.stderr, r.stderr
    os.chown(folder, NOBODY, NOBODY)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0 and "configuration OK" in r.output, f"exit {r.rc}: {r.stderr.strip()!r}"

    # A config of root's that others can read: its `user` runs it too.
    os.chown(pw, 0, 0)
    os.chown(folder, 0, 0)
    cfg = write(t, text + 'user = "nobody";\n', name="shared.conf", mode=0o644)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_NOPERM and "user" in r.stderr and "nobody" in r.stderr, \
        f"root's 0644 config with user = nobody, root's file: exit {r.rc}: {r.output.strip()!r}"
    # Only root can read it: root starts popbridge and reads the files
    # before it becomes `user`.
    os.chmod(cfg, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"root's 0600 config with user = nobody: exit {r.rc}: {r.stderr.strip()!r}"


# ------------------------------------------------------------ @include
def _include_setup(t):
    etc = t.tmp / "etc"
    (etc / "popbridge.d").mkdir(parents=True)
    t.state_dir.mkdir(exist_ok=True)
    return etc


def test_include_relative_to_the_config(t):
    """`@include "popbridge.d/accounts.conf"` is found next to the config,
    whatever the working folder.  Before the fix: libconfig looked in the
    working folder: "cannot open include file" (78) unless started in
    /etc."""
    etc = _include_setup(t)
    inc = etc / "popbridge.d" / "accounts.conf"
    inc.write_text("accounts = " + harness_value([dummy_account("inc")]) + ";\n")
    os.chmod(inc, 0o600)
    cfg = etc / "popbridge.conf"
    cfg.write_text(f'state_dir = "{t.state_dir}";\n@include "popbridge.d/accounts.conf"\n')
    os.chmod(cfg, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")        # run from t.tmp, not etc/
    assert r.rc == 0 and "configuration OK" in r.output, f"exit {r.rc}: {r.stderr.strip()!r}"
    # An absolute name works as well.
    cfg.write_text(f'state_dir = "{t.state_dir}";\n@include "{inc}"\n')
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"an absolute @include: exit {r.rc}: {r.stderr.strip()!r}"
    # A missing one is named with where it was looked for.
    cfg.write_text(f'state_dir = "{t.state_dir}";\n@include "popbridge.d/nope.conf"\n')
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG and str(etc / "popbridge.d" / "nope.conf") in r.stderr, \
        f"a missing @include: exit {r.rc}: {r.stderr.strip()!r}"
    assert_file_line(r.stderr, str(cfg), 2)


def test_include_errors_name_their_file(t):
    """An error inside an included file is reported as INCLUDED:LINE, not
    as the main file with the included file's line number.  Before the
    fix: "popbridge.conf:3: account: unknown key ..." (the main file, the
    included file's line)."""
    etc = _include_setup(t)
    acct = dummy_account("inc")
    acct["kepp"] = True
    inc = etc / "popbridge.d" / "accounts.conf"
    inc_text = "# accounts\naccounts = " + harness_value([acct]) + ";\n"
    inc.write_text(inc_text)
    os.chmod(inc, 0o600)
    cfg = etc / "popbridge.conf"
    cfg.write_text(f'state_dir = "{t.state_dir}";\n@include "{inc}"\n')
    os.chmod(cfg, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG, f"exit {r.rc}"
    assert_file_line(r.stderr, str(inc), line_of(inc_text, "kepp"))
    assert "popbridge.conf:" not in r.stderr, f"the main file is blamed: {r.stderr.strip()!r}"

    # A syntax error in the included file, too.
    inc.write_text("accounts = ( { name = ; } );\n")
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG and re.search(r"accounts\.conf:1:", r.stderr), r.stderr


def test_include_with_password_must_be_private(t):
    """A password in an included file holds that file to the main file's
    rule: readable by its owner only (exit 77).  Before the fix: a 0644
    included file with a password passed ("configuration OK", and run
    used it)."""
    etc = _include_setup(t)
    inc = etc / "popbridge.d" / "accounts.conf"
    inc.write_text("accounts = " + harness_value([dummy_account("inc")]) + ";\n")
    os.chmod(inc, 0o644)
    cfg = etc / "popbridge.conf"
    cfg.write_text(f'state_dir = "{t.state_dir}";\n@include "{inc}"\n')
    os.chmod(cfg, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_NOPERM, f"a 0644 include with a password: exit {r.rc}: {r.output.strip()!r}"
    assert str(inc) in r.stderr and "chmod 600" in r.stderr, r.stderr
    assert "pw-pop3-dummy" not in r.output
    os.chmod(inc, 0o600)
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == 0, f"exit {r.rc}: {r.stderr.strip()!r}"


# ---------------------------------------------- password_command's stderr
def test_password_command_failure_shows_its_stderr(t):
    """A password_command that fails shows why, in its own words: the first
    lines of its stderr, cleaned and bounded, never its stdout (the secret),
    and the secret shown as *** should stderr hold it too.  Before the fix:
    "password_command failed (exit 1)" and nothing else."""
    acct = dummy_account()
    del acct["pop3"]["password"]
    leak = "Leak-" + os.urandom(4).hex()
    acct["pop3"]["password_command"] = (
        f"echo 'gpg: decryption failed: No secret key' >&2; echo {leak}; "
        f"echo \"trace: printf {leak}\" >&2; "
        "for i in 1 2 3 4 5; do echo \"noise $i\" >&2; done; exit 2")
    cfg = write(t, config_text(t, [acct]))
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 75, f"exit {r.rc}: {r.output.strip()!r}"
    assert "password_command failed (exit 2)" in r.stderr, r.stderr
    assert "gpg: decryption failed: No secret key" in r.stderr, \
        f"the command's own words are not shown: {r.stderr.strip()!r}"
    assert "trace: printf ***" in r.stderr, r.stderr
    assert leak not in r.output, "the command's stdout (the secret) is shown"
    assert "noise 5" not in r.stderr and "more lines" in r.stderr, \
        f"stderr is not cut to its first lines: {r.stderr.strip()!r}"

    # A token command that prints nothing: its stderr says why.
    acct = dummy_account()
    acct["pop3"] = {"url": DUMMY_POP3, "user": "someone", "auth": "xoauth2",
                    "oauth2_token_command": "echo 'token expired: log in again' >&2"}
    cfg = write(t, config_text(t, [acct]), name="token.conf")
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 75 and "printed no token: token expired: log in again" in r.stderr, \
        f"exit {r.rc}: {r.stderr.strip()!r}"
