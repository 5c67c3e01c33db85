#!/usr/bin/env python3
"""Write the hand-made seed inputs into tests/fuzz/corpus/<target>/seed-*.

    python3 tests/fuzz/seeds.py

Inputs the fuzzers found (crash-*, and any kept on purpose) live next to
them and are left alone.  The layout of each target's input (control bytes
first for norm, pop3 and imap) is described at the top of its fuzz_*.c and
in tests/fuzz/README.md.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def chunks(*sizes, flags=0):
    """norm/pop3 control bytes: byte 0 = count | flags, then the sizes."""
    assert len(sizes) <= 7
    return bytes([len(sizes) | flags]) + bytes(sizes)


CRLF = "\r\n"


def crlf(text):
    return text.replace("\n", CRLF)


MSG = """Return-Path: <anna@example.org>
Received: from mx.example.org (mx.example.org [192.0.2.7])
\tby pop.example.net (Postfix) with ESMTPS id 4XyZ
\tfor <max@example.net>; Wed, 25 Nov 2026 10:20:31 +0100 (CET)
Date: Wed, 25 Nov 2026 10:20:30 +0100
From: Anna <anna@example.org>
To: max@example.net
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=
Message-ID: <20261125102030.1234@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hallo Max,

.a line that began with a dot
From the start of a line, mbox would have quoted this.
-- 
Anna
"""

# ---- norm: control byte(s), then the message ----
put("norm", "crlf-one-chunk", chunks() + crlf(MSG).encode())
put("norm", "lf-mbox-chunks", chunks(1, 7, 0x81) +
    ("From anna@example.org Wed Nov 25 10:20:30 2026\n" + MSG).encode())
put("norm", "mixed-endings", chunks(3, 5) +
    b"Date: 1 Jan 2024 00:00:00 -0800\r\nX: lf\nY: cr\rZ: crlf\r\n\r\nbody\n"
    b"bare\rcr\r\nlast\r")
put("norm", "nul-bytes", chunks(2) +
    b"Subject: nul\r\n\r\nbin\x00ary\x00\x00\r\nend")
put("norm", "from-colon-not-mbox", chunks(4) +
    b"From: someone@example.org\nDate: Thu, 29 Feb 2024 12:00:00 +0000\n\nhi")
put("norm", "from-line-only", chunks() + b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026")
put("norm", "empty", chunks())
put("norm", "fro-prefix", chunks(1) + b"Fro")
put("norm", "received-only", chunks(0x82) + crlf(
    "Received: by a; Mon, 1 Jan 2024 00:00:00 +0000\n"
    "Received: from b\n by c; 2 Jan 2024 12:00 GMT\n"
    "Received: (comment; not a date)\n"
    "Date: not a date\n\nbody\n").encode())
big = "Subject: big\n\n" + "".join("line %05d %s\n" % (i, "x" * 60)
                                   for i in range(140))
put("norm", "over-8k", chunks(0xc0, 0x83, 1) + big.encode())
bigger = "Subject: bigger\n\n" + "".join("line %05d %s\n" % (i, "y" * 60)
                                         for i in range(600))
put("norm", "over-32k", chunks(0xe0, 0xa3, 7) + bigger.encode())
put("norm", "refusing-sink", chunks(5, flags=0x80) + bytes([3]) +
    crlf(MSG).encode())
put("norm", "header-no-blank-line", chunks() +
    b"Date: 25-Nov-2026 10:20:30 +0100\nSubject: no body")
put("norm", "long-line", chunks(0x88) + b"Subject: long\r\n\r\n" +
    b"y" * 1500 + b"\r\n")
put("norm", "eight-bit-header", chunks(6) +
    "Subject: Entwürfe \xe4\xf6\xfc\nDate: (c) Tue, (d) 2 Jan (e) 2024 (f) 10:00 (g) EST\n\n\xff\xfe\n"
    .encode("latin-1"))
put("norm", "folded-date", chunks() +
    b"DATE:\r\n Sun, 31 Dec 9999\r\n\t23:59:60 -9959\r\n\r\n")
put("norm", "blank-first", chunks() + b"\r\nDate: 1 Jan 1970 00:00:00 +0000\r\n")
put("norm", "cr-only", chunks(1, 1) + b"\r\r\r\n\r")

# ---- date: the header field value ----
for i, d in enumerate([
    "Wed, 25 Nov 2026 10:20:30 +0100",
    "25 Nov 2026 10:20:30 +0100",
    "Wed,25 Nov 2026 10:20 +0100",
    "  wed, 5 nov 2026 01:02:03 -0000\r\n",
    "Wed, 25 Nov 2026\r\n 10:20:30 +0100 (CET)",
    "(x) Wed, (y) 25 (z) Nov (a) 2026 (b) 10:20:30 (c) +0100 (d \\) e)",
    "1 Jan 24 00:00:00 +0000",
    "1 Jan 124 00:00:00 +0000",
    "1 Jan 50 00:00:00 PDT",
    "1 Jan 2024 12:00:00 XYZ",
    "25-Nov-2026 10:20:30 +0100",
    "Thu, 29 Feb 2024 12:00:00 +0000",
    "Fri, 29 Feb 2023 12:00:00 +0000",
    "31 Dec 9999 23:59:60 -9959",
    "1 Jan 1900 00:00:00 +9959",
    "31 Dec 1969 23:59:59 +0000",
    "1 Jan 2024 24:00:00 +0000",
    "1 Jan 2024 00:00:00 +0060",
    "Monday, 1 January 2024 00:00:00 +0000",
    "1 Jan 2024 00:00:00 +01:00",
    "Sat, 01 Jan 2000 00:00:00 GMT (((((((((((",
    "1 Jan 2024 00:00:00 -",
    "32 Jan 2024 00:00:00 +0000",
    "Mo, 1 Jan 2024 00:00:00 +0000",
    "\x00\xff 1 Jan 2024",
    "1 Jan 0000 00:00:00 +0000",
    "01-Jan-2020 00:00:00 +0000",
]):
    put("date", "%02d" % i, d.encode("latin-1"))

# ---- pop3: control byte(s), then what follows the +OK ----
body = crlf(MSG).replace("\r\n.", "\r\n..")
put("pop3", "retr", chunks() + (body + ".\r\n+OK next reply\r\n").encode())
put("pop3", "retr-chunked", chunks(1, 2, 3, 0, 0x81) + (body + ".\r\n").encode())
put("pop3", "uidl", chunks(7) + b"1 whqtswO00WBw418f9t5JxYwZ\r\n"
    b"2 QhdPYR:00WBw1Ph7x7\r\n3 <20261125@example.org>\r\n.\r\n")
put("pop3", "list", chunks(2, 3) + b"1 120\r\n2 200\r\n3 1152921504606846975\r\n.\r\n")
put("pop3", "stat", chunks() + b"+OK 2 320\r\n+OK  4294967295  1152921504606846976 extra\r\n")
put("pop3", "stuffing", chunks(1) +
    b"..\r\n...\r\n.x\r\n.\rnot the end\r\n. \r\n.\r.\r\n")
put("pop3", "lf-terminator", chunks(4) + b"Subject: lf\n\nbody\n.\n")
put("pop3", "dovecot-leading-dot", chunks() + b".first line unstuffed\r\nrest\r\n.\r\n")
put("pop3", "duplicate-uidl", chunks() + b"1 same\r\n2 same\r\n3 other\r\n")
put("pop3", "overlong-uidl", chunks() + b"1 " + b"U" * 71 + b"\r\n2 " + b"V" * 70 + b"\r\n")
put("pop3", "numbers", chunks() + b"0 zero\r\n4294967296 x\r\n4294967295 y\r\n"
    b"1 18446744073709551615\r\n+OK 0 0\r\n")
put("pop3", "gaps", chunks() + b"2 b\r\n1 a\r\n3 c\r\n5 e\r\n")
put("pop3", "nul-and-cr", chunks(2) + b"a\x00b\rc\r\r\n\x00.\r\n.\r")
put("pop3", "only-end", chunks() + b".\r\n")
put("pop3", "spaces", chunks() + b"1  uidl-with-spaces   \r\n2\tx\r\n3 a b\r\n 4 c\r\n")
put("pop3", "held-dot-cr", chunks(1, 1, 1) + b"abc\r\n.\r")

# ---- imap: byte 0 = room for uid-set UIDs, then the server text ----
def imap(name, text, room=32):
    put("imap", name, bytes([room]) + (text.encode("latin-1") if isinstance(text, str) else text))

imap("fetch", "* 3 FETCH (UID 17 RFC822.SIZE 2311 BODY[]<0> {12}\r\nFrom: a\r\n\r\n)")
imap("fetch-order", "* 9 FETCH (BODY[]<0> {5}\r\nhello UID 4000000000 RFC822.SIZE 5)")
imap("fetch-quoted", "* 1 FETCH (UID 5 BODY[]<0> \"short body\")")
imap("fetch-extras", "* 12 FETCH (FLAGS (\\Seen $Forwarded) INTERNALDATE "
     "\"25-Nov-2026 10:20:30 +0100\" ENVELOPE (\"Wed, 25 Nov 2026\" {4}\r\n(s)) "
     "NIL ((\"A\" NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL NIL) UID 7 "
     "BODY[HEADER.FIELDS (DATE FROM)] {9}\r\nDate: x\r\n RFC822.SIZE 10)")
imap("fetch-lying-literal", "* 1 FETCH (UID 1 BODY[]<0> {999}\r\nshort)")
imap("fetch-binary", b"* 2 FETCH (UID 2 BODY[]<0> {6}\r\n\x00\x01)\r\n\xff)")
imap("appenduid", "OK [APPENDUID 1700000000 42] APPEND completed")
imap("trycreate", "NO [TRYCREATE] Mailbox doesn't exist: Archive")
imap("overquota", "no [overquota] Quota exceeded (mailbox for user is full)")
imap("limit", "NO [LIMIT] Too many concurrent APPENDs")
imap("bye", "BYE [UNAVAILABLE] shutting down")
imap("preauth", "PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ BINARY] ready")
imap("uidset", "38505 3955:3960,3970", 8)
imap("uidset-reversed", "7:4,9,1:1", 6)
imap("uidset-huge", "1:4294967295", 255)
imap("uidset-zero-room", "5", 0)
imap("caps", "IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS BINARY APPENDLIMIT=35651584]\nLITERAL+")
imap("caps-prefix", "IMAP4rev1 LITERAL-  LITERAL\nliteral")
imap("quote", "Entw&APw-rfe \"quoted\" back\\slash")
imap("long-code-arg", "OK [BADCHARSET " + "(UTF-8 " * 40 + ")] x")
imap("unclosed-code", "OK [ALERT text with no end")

# ---- csv: the batch's account list ----
HDR = "pop3_url,pop3_user,pop3_password,imap_url,imap_user,imap_password,mailbox,keep\n"
put("csv", "header-row", HDR + "pop3s://pop.gmx.net,max@gmx.net,file:/etc/pb/max,"
    "imaps://imap.example.org,max,env:IMAP_PW,INBOX,true\n")
put("csv", "quoted", HDR.replace("\n", "\r\n") +
    '"pop3s://a","u,1","pa""ss","imaps://b","v","multi\r\nline",,"false"\r\n')
put("csv", "quote-in-unquoted", HDR + 'a,b"c,d\nok,row\n')
put("csv", "text-after-quote", HDR + '"a"b,c\nnext,row\n')
put("csv", "unclosed", HDR + '"never closed,\n,more\n')
put("csv", "blank-lines", "\n\r\n" + HDR + "\n\n\r\nx,y\r\n\r\n")
put("csv", "no-final-newline", HDR + "a,b,c")
put("csv", "too-many-fields", ",".join("f%d" % i for i in range(65)) + "\nok\n")
put("csv", "field-4096", "a," + "x" * 4096 + "\n" + "b," + "y" * 4097 + "\nc\n")
put("csv", "empty-fields", ",,,\n,\n\"\"\n")
put("csv", "bom", "\ufeff" + HDR + "x\n")
put("csv", "cr-only", "a,b\rc,d\re")
put("csv", "nul", b"a,\x00b\n\"\x00\",c\n")
put("csv", "quoted-crlf-count", '"a\nb\nc",d\ne,f\n"g\r\nh"\n')

# ---- config: a file in libconfig syntax ----
with open(os.path.join(ROOT, "bridge.conf.sample"), "rb") as f:
    put("config", "sample", f.read())
ACCT = """accounts = (
  {
    name = "home";
    pop3 = { url = "pop3s://pop.gmx.net"; user = "max@gmx.net";
             password_file = "/etc/popbridge/home.pop3"; };
    imap = { url = "imaps://imap.example.org"; user = "max";
             password_command = "pass show mail/imap";
             mailbox = "INBOX"; };
    keep  = true;
    flags = [ ];
  }
);
"""
put("config", "readme", 'state_dir = "/var/lib/popbridge";\n' + ACCT)
put("config", "oauth2", """accounts = ( { name = "work@x";
  pop3 = { url = "pop3s://outlook.office365.com"; user = "a@b.c";
           auth = "xoauth2"; oauth2_token_command = "get-token pop"; };
  imap = { url = "imaps://imap.gmail.com:993/"; user = "a@b.c";
           auth = "oauthbearer"; oauth2_token_command = "get-token imap";
           pin = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="; };
} );
""")
put("config", "two-accounts-dup", ACCT.replace(");", "") + """,
  { name = "home"; pop3 = { url = "pop3://p"; user = "u"; password = "x"; tls = "none"; };
    imap = { url = "imap://[::1]:143"; user = "u"; password = "y"; }; }
);
""")
put("config", "tls-none-starttls", """timeout = 5; interval = 60; jobs = 64; max_backoff = 604800;
user = "popbridge"; pid_file = "/run/popbridge.pid";
accounts = ( { name = "a.b-c+d_e"; interval = 600;
  pop3 = { url = "pop3://127.0.0.1:1110"; user = "u"; password = "secret"; tls = "none"; auth = "login"; };
  imap = { url = "imap://localhost"; user = "u"; password_file = "rel/pw"; ca_file = "ca.pem"; auth = "plain"; mailbox = "Entw&APw-rfe"; };
  keep = false; flags = [ "\\\\Seen", "\\\\flagged", "pop", "$Label1" ]; } );
""")
put("config", "bad-types", 'timeout = "5";\naccounts = ();\n')
put("config", "out-of-range", 'timeout = 4;\njobs = 65;\naccounts = ();\n')
put("config", "int64-hex", 'timeout = 0x78; interval = 300L; accounts = [ ];\n')
put("config", "unknown-key", ACCT.replace("keep  = true;", "keep = true; colour = \"red\";"))
put("config", "url-with-user", ACCT.replace("pop3s://pop.gmx.net", "pop3s://max:pw@pop.gmx.net"))
put("config", "url-bad-port", ACCT.replace("imaps://imap.example.org", "imaps://imap.example.org:99999/x"))
put("config", "bad-pin", ACCT.replace('mailbox = "INBOX";', 'mailbox = "INBOX"; pin = "sha256//short";'))
put("config", "bad-flags", ACCT.replace("flags = [ ];", 'flags = [ "(bad" ];'))
put("config", "mailbox-8bit", ACCT.replace('"INBOX"', '"Entwürfe"'))
put("config", "syntax-error", 'accounts = ( { name = "x"; pop3 = { url = ;\n')
put("config", "accounts-array", "accounts = [ 1, 2, 3 ];\n")
put("config", "nested-groups", "accounts = ( ( { } ), { a = { b = { c = (1, \"x\", [1.5]) } } } );\n")
put("config", "no-secret", ACCT.replace('password_command = "pass show mail/imap";', ''))
put("config", "two-secrets", ACCT.replace('password_command = "pass', 'password = "p"; password_command = "pass'))
put("config", "empty", b"")
# libconfig 1.5 leaks the string token of these (see README.md).
put("config", "libconfig-leak-empty-string", b'""')
put("config", "libconfig-leak-discarded-string", b'a"xoauth2";\n')
print("seeds written under", os.path.join(HERE, "corpus"), file=sys.stderr)
