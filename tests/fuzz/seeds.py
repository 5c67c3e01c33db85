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
# ---- pop3_session, imap_session: chunk sizes, flags, login, server ----
def session(target, name, login, stream, sizes=(), flags=0, f1=0, f2=None):
    """byte 0 (chunk count | flags), the sizes, byte 1 (and for IMAP byte
    2), the login transcript's length (2 bytes, big-endian), the
    transcript, the server's bytes after login."""
    if isinstance(login, str):
        login = login.encode("latin-1")
    if isinstance(stream, str):
        stream = stream.encode("latin-1")
    more = bytes([f1] if target == "pop3_session" else [f1, f2 or 0])
    put(target, name, chunks(*sizes, flags=flags) + more +
        len(login).to_bytes(2, "big") + login + stream)


def pop3_body(text):
    """A message as RETR sends it: CRLF, dot-stuffed, ".CRLF" after."""
    lines = crlf(text).split("\r\n")
    if lines[-1] == "":
        lines.pop()
    return "".join(("." + ln if ln.startswith(".") else ln) + "\r\n"
                   for ln in lines) + ".\r\n"


M1 = crlf(MSG)
M2 = crlf(MSG.replace("Gr=C3=BC=C3=9Fe", "zweite").replace("1234@", "5678@"))
HDR1 = M1[:M1.index("\r\n\r\n") + 4]
DOVECOT_POP3 = ("+OK Dovecot (Debian) ready.\r\n+OK\r\nCAPA\r\nTOP\r\nUIDL\r\n"
                "RESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\n"
                "SASL PLAIN LOGIN\r\n.\r\n+OK Logged in.\r\n")
CYRUS_POP3 = ("+OK localhost Cyrus POP3 3.6.1-Debian-3.6.1-4 server ready "
              "<1701736543.1896554327@localhost>\r\n"
              "+OK List of capabilities follows\r\nSASL PLAIN LOGIN\r\nSTLS\r\n"
              "EXPIRE NEVER\r\nLOGIN-DELAY 0\r\nTOP\r\nUIDL\r\nPIPELINING\r\n"
              "RESP-CODES\r\nAUTH-RESP-CODE\r\nUSER\r\n"
              "IMPLEMENTATION Cyrus POP3 3.6.1-Debian-3.6.1-4\r\n.\r\n"
              "+OK Mailbox locked and ready SESSIONID=<cyrus-1701736543-77-1-"
              "8234987213>\r\n")
COURIER_POP3 = ("+OK Hello there.\r\n+OK Here's what I can do:\r\nSTLS\r\nTOP\r\n"
                "USER\r\nLOGIN-DELAY 10\r\nPIPELINING\r\nUIDL\r\n"
                "IMPLEMENTATION Courier Mail Server\r\nUTF8 USER\r\n.\r\n"
                "+OK Password required.\r\n+OK logged in.\r\n")
POPA3D = "+OK\r\n-ERR Invalid or unsupported command\r\n+OK\r\n+OK\r\n"


def listing(pairs):
    return "".join("%d %s\r\n" % p for p in pairs) + ".\r\n"


sz1, sz2 = len(M1), len(M2)
session("pop3_session", "dovecot-pipelined", DOVECOT_POP3,
        "+OK 2 %d\r\n+OK 2 messages:\r\n" % (sz1 + sz2) +
        listing([(1, sz1), (2, sz2)]) + "+OK\r\n" +
        listing([(1, "00000001597e3d4c"), (2, "00000002597e3d4c")]) +
        "+OK %d octets\r\n" % sz1 + pop3_body(M1) +
        "+OK %d octets\r\n" % sz2 + pop3_body(M2) +
        "+OK Marked to be deleted.\r\n+OK Marked to be deleted.\r\n"
        "-ERR Message is deleted.\r\n-ERR Message is deleted.\r\n"
        "+OK Logging out, messages deleted.\r\n",
        sizes=(0x81, 0, 200), flags=0x30, f1=2)
session("pop3_session", "cyrus", CYRUS_POP3,
        "+OK 2 %d\r\n+OK scan listing follows\r\n" % (sz1 + sz2) +
        listing([(1, sz1), (2, sz2)]) + "+OK unique-id listing follows\r\n" +
        listing([(1, "1795648383.1"), (2, "1795648383.2")]) +
        "+OK Message follows\r\n" + pop3_body(M1) +
        "+OK message deleted\r\n-ERR Message 1 has been deleted\r\n"
        "+OK\r\n", sizes=(17,), flags=0x20, f1=1)
session("pop3_session", "headers", COURIER_POP3,
        "+OK UTF8 enabled\r\n+OK 2 %d\r\n+OK\r\n" % (sz1 + sz2) +
        listing([(1, sz1), (2, sz2)]) + "+OK\r\n" +
        listing([(1, "UID1-1796429690"), (2, "UID2-1796429690")]) +
        "+OK\r\n" + pop3_body(M1) + "+OK\r\n" + pop3_body(M2) +
        "+OK headers follow.\r\n" + pop3_body(M2[:M2.index("\r\n\r\n") + 4])
        + "-ERR no such message\r\n+OK Bye-bye.\r\n",
        sizes=(0x85, 3), flags=0x10, f1=2)
session("pop3_session", "courier-utf8", COURIER_POP3,
        "+OK UTF8 enabled\r\n+OK 1 %d\r\n+OK POP3 clients that break here, "
        "they violate STD53.\r\n" % sz1 + listing([(1, sz1)]) + "+OK\r\n" +
        listing([(1, "UID1-1796429690")]) +
        "+OK %d octets follow.\r\n" % sz1 + pop3_body(M1) +
        "+OK Bye-bye.\r\n", f1=1)
session("pop3_session", "popa3d-same-uidl", POPA3D,
        "+OK 2 %d\r\n+OK\r\n" % (sz1 * 2) + listing([(1, sz1), (2, sz1)]) +
        "+OK\r\n" + listing([(1, "2b3c9f0e8d1a"), (2, "2b3c9f0e8d1a")]) +
        "+OK\r\n" + pop3_body(M1) + "+OK\r\n" + pop3_body(M1) + "+OK\r\n",
        sizes=(3, 0x82), flags=0x08, f1=2)
session("pop3_session", "standin-twins", "+OK ready\r\n+OK\r\nTOP\r\n.\r\n"
        "+OK\r\n+OK\r\n",
        "+OK 2 %d\r\n+OK\r\n" % (sz1 * 2) + listing([(1, sz1), (2, sz1)]) +
        "-ERR unknown command\r\n" +
        "+OK\r\n" + pop3_body(HDR1) + "+OK\r\n" + pop3_body(HDR1) +
        "+OK\r\n" + pop3_body(M1) + "+OK\r\n" + pop3_body(M1) +
        "+OK\r\n" + pop3_body(M1) + "+OK bye\r\n", f1=1)
session("pop3_session", "uidl-in-use", "+OK\r\n",
        "+OK 1 100\r\n+OK\r\n1 100\r\n.\r\n-ERR [IN-USE] Do you have another "
        "POP session running?\r\n+OK\r\n")
session("pop3_session", "out-of-step", DOVECOT_POP3,
        "+OK 1 %d\r\n+OK\r\n1 %d\r\n.\r\n+OK\r\n1 a\r\n.\r\n" % (sz1, sz1) +
        "+OK\r\n+OK %d octets\r\n" % sz1 + pop3_body(M1) + "+OK\r\n",
        f1=1)
session("pop3_session", "empty-maildrop", CYRUS_POP3,
        "+OK 0 0\r\n+OK\r\n.\r\n+OK\r\n.\r\n+OK\r\n")
session("pop3_session", "lf-and-dots", "+OK\n+OK\nUIDL\n.\n",
        "+OK 1 30\n+OK\n1 30\n.\n+OK\n1 x\n.\n+OK\n.leading\n..two\n"
        ".\rcr\nlast\n.\n+OK\n", sizes=(1,), f1=1)
session("pop3_session", "not-a-greeting", "* OK [CAPABILITY IMAP4rev1] hi\r\n",
        "")
session("pop3_session", "err-greeting", "-ERR [SYS/TEMP] too many "
        "connections\r\n", "+OK 0 0\r\n+OK\r\n")
session("pop3_session", "write-fails", DOVECOT_POP3,
        "+OK 1 5\r\n+OK\r\n1 5\r\n.\r\n+OK\r\n1 a\r\n.\r\n+OK\r\nabc\r\n.\r\n",
        flags=0x80 | 0x08, sizes=(2,), f1=(2 << 4) | 1)
session("pop3_session", "line-too-long", "+OK\r\n",
        "+OK 1 " + "9" * 4200 + "\r\n+OK bye\r\n")
bigmsg = "Subject: big\n\n" + "".join("line %05d %s\n" % (i, "z" * 60)
                                     for i in range(900))
bm = crlf(bigmsg)
session("pop3_session", "over-64k", DOVECOT_POP3,
        "+OK 1 %d\r\n+OK\r\n1 %d\r\n.\r\n+OK\r\n1 big\r\n.\r\n" %
        (len(bm), len(bm)) + "+OK\r\n" + pop3_body(bm) + "+OK\r\n",
        sizes=(0xff, 0, 0x90), f1=1)


# IMAP: byte 0 flags 0x08 chunked writes, 0x10 budget, 0x20 Archive,
# 0x40 Entwuerfe, 0x80 two batches; byte 1: batch sizes, 0x10 big, 0x20 NUL,
# 0x40 settle, 0x80 append_many; byte 2: budget.
DOVECOT_IMAP = (
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
    "LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n"
    "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
    "STARTTLS AUTH=PLAIN AUTH=LOGIN\r\n"
    "A001 OK Pre-login capabilities listed, post-login capabilities have "
    "more.\r\n"
    "A002 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
    "SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT "
    "MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY "
    "PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY "
    "SPECIAL-USE] Logged in\r\n")
CYRUS_IMAP = (
    "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN "
    "AUTH=LOGIN SASL-IR] localhost Cyrus IMAP 3.6.1-Debian-3.6.1-4 server "
    "ready\r\n"
    "A001 OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE LOGINDISABLED ACL "
    "RIGHTS=kxten QUOTA MAILBOX-REFERRALS NAMESPACE UIDPLUS NO_ATOMIC_RENAME "
    "UNSELECT CHILDREN MULTIAPPEND BINARY CATENATE CONDSTORE ESEARCH "
    "SEARCH=FUZZY SORT SORT=MODSEQ SORT=DISPLAY SORT=UID "
    "THREAD=ORDEREDSUBJECT THREAD=REFERENCES THREAD=REFS ANNOTATEMORE "
    "METADATA LIST-EXTENDED LIST-STATUS LIST-MYRIGHTS WITHIN QRESYNC SCAN "
    "XLIST XMOVE MOVE SPECIAL-USE CREATE-SPECIAL-USE DIGEST=SHA1 "
    "STATUS=SIZE OBJECTID SAVEDATE PREVIEW IDLE APPENDLIMIT=4294967295 "
    "URLAUTH URLAUTH=BINARY] User logged in "
    "SESSIONID=<cyrus-1701736543-4242-1-1183473612>\r\n")
COURIER_IMAP = (
    "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE "
    "THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION "
    "STARTTLS ENABLE UTF8=ACCEPT] Courier-IMAP ready. Copyright 1998-2018 "
    "Double Precision, Inc.  See COPYING for distribution information.\r\n"
    "* CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT "
    "THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS ENABLE "
    "UTF8=ACCEPT\r\nA001 OK CAPABILITY completed\r\nA002 OK LOGIN Ok.\r\n")
GMAIL_IMAP = (
    "* OK Gimap ready for requests from 192.0.2.1 h3mb1023456\r\n"
    "A001 OK [CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST "
    "CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE "
    "ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE "
    "APPENDLIMIT=35651584] max@example.net authenticated (Success)\r\n")


def lit(b):
    return "{%d}\r\n%s" % (len(b), b)


HASHED = crlf("From: x@example.org\nSubject: one\n\nhashed body\n")
MSGID = "Message-ID: <1@example.org>\r\n\r\n"


def settle_replies(tag, uidvalidity, uidnext, uids, uidplus=True,
                   select_uidnext=True):
    """SELECT, the two listings, the hash, the exists and the removal."""
    t = tag
    out = ("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
           "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
           "\\Draft \\*)] Flags permitted.\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
           "* OK [UIDVALIDITY %d] UIDs valid\r\n" % (len(uids), uidvalidity))
    if select_uidnext:
        out += "* OK [UIDNEXT %d] Predicted next UID\r\n" % uidnext
    out += "p%d OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n" % t
    t += 1
    lo = uidnext - 3 if select_uidnext and uidnext > 3 else 1
    out += "".join("* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (i + 1, u, 300 + u)
                   for i, u in enumerate(uids) if u >= lo)
    out += "p%d OK Fetch completed (0.002 + 0.000 secs).\r\n" % t
    t += 1
    out += "".join("* %d FETCH (UID %d RFC822.SIZE %d BODY[HEADER.FIELDS "
                   "(MESSAGE-ID)] %s)\r\n" % (i + 1, u, 300 + u,
                                            lit(MSGID.replace("1@", "%d@" % u)))
                   for i, u in enumerate(uids))
    out += "p%d OK Fetch completed (0.001 + 0.000 secs).\r\n" % t
    t += 1
    out += "".join("* %d FETCH (UID %d BODY[] %s)\r\n" % (i + 1, u, lit(HASHED))
                   for i, u in enumerate(uids) if u >= lo)
    out += "p%d OK Fetch completed (0.003 + 0.000 secs).\r\n" % t
    t += 1
    out += "* %d FETCH (UID %d RFC822.SIZE %d)\r\np%d OK Fetch completed.\r\n" % (
        len(uids), uids[-1] if lo > 1 else uids[0], 300 + uids[-1], t)
    t += 1
    out += "p%d OK Store completed (0.001 + 0.000 secs).\r\n" % t
    t += 1
    if uidplus:
        out += "* %d EXPUNGE\r\np%d OK Expunge completed.\r\n" % (len(uids), t)
        t += 1
    return out, t


s1, t = settle_replies(3, 1701736543, 14, [3, 11, 12, 13])
session("imap_session", "dovecot-multiappend", DOVECOT_IMAP,
        "* STATUS INBOX (MESSAGES 3 UIDNEXT 12 UIDVALIDITY 1701736543)\r\n"
        "p1 OK Status completed (0.001 + 0.000 secs).\r\n"
        "p2 OK [APPENDUID 1701736543 12:13] Append completed (0.004 + 0.000 "
        "+ 0.003 secs).\r\n" + s1 +
        "* BYE Logging out\r\np%d OK Logout completed (0.001 + 0.000 secs)."
        "\r\n" % t, sizes=(0x81, 0, 97), flags=0x08, f1=0x41, f2=0)
session("imap_session", "cyrus-two-batches", CYRUS_IMAP,
        '* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared Folders/" '
        '"/"))\r\np1 OK Completed\r\n'
        "p2 NO Mailbox does not exist\r\np3 OK Completed\r\n"
        "p5 OK [APPENDUID 1701736600 3:4] Completed\r\n"
        "p4 OK [APPENDUID 1701736600 1:2] Completed\r\n"
        "* BYE LOGOUT received\r\np6 OK Completed\r\n",
        flags=0x20 | 0x80, f1=0x05)
session("imap_session", "courier-sync", COURIER_IMAP,
        "* CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE "
        "THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL "
        "ACL2=UNION ENABLE UTF8=ACCEPT\r\np1 OK CAPABILITY completed\r\n"
        '* NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." "."))'
        "\r\np2 OK NAMESPACE completed.\r\n"
        '* STATUS "INBOX.Archive" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY '
        "1796429690)\r\np3 OK STATUS Completed.\r\n"
        "+ OK\r\n* OK [ALERT] Your IMAP client does not appear to correctly "
        "implement Unicode messages, see https://tools.ietf.org/html/rfc6855."
        "html\r\np4 OK [APPENDUID 1796429690 1] APPEND Ok.\r\n+ OK\r\n"
        "p5 OK [APPENDUID 1796429690 2] APPEND Ok.\r\n+ OK\r\n"
        "p6 OK [APPENDUID 1796429690 3] APPEND Ok.\r\n" +
        settle_replies(7, 1796429690, 4, [1, 2, 3], select_uidnext=False)[0]
        + "* BYE Courier-IMAP server shutting down\r\np14 OK LOGOUT completed"
        "\r\n", sizes=(9, 0x83), flags=0x20, f1=0x42)
session("imap_session", "gmail-literal-minus", GMAIL_IMAP,
        "* STATUS INBOX (MESSAGES 10 UIDNEXT 211 UIDVALIDITY 1)\r\n"
        "p1 OK Success\r\np2 OK [APPENDUID 1 211] (Success)\r\n"
        "p3 NO [OVERQUOTA] Account exceeded storage quota\r\n"
        "* BYE LOGOUT Requested\r\np4 OK 73 good day (Success)\r\n", f1=0x01)
session("imap_session", "gmail-big-sync", GMAIL_IMAP,
        "* STATUS INBOX (MESSAGES 10 UIDNEXT 211 UIDVALIDITY 1)\r\n"
        "p1 OK Success\r\n+ go ahead\r\np2 OK [APPENDUID 1 211] (Success)\r\n"
        "p3 NO [TRYCREATE] No folder\r\n"
        "* BYE LOGOUT Requested\r\np4 OK 73 good day (Success)\r\n",
        f1=0x11)
session("imap_session", "dovecot-refused-multi", DOVECOT_IMAP,
        "* STATUS INBOX (MESSAGES 3 UIDNEXT 12 UIDVALIDITY 1701736543)\r\n"
        "p1 OK Status completed.\r\n"
        "p2 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"
        "p4 BAD Error in IMAP command APPEND: Invalid arguments.\r\n"
        "p3 OK [APPENDUID 1701736543 12] Append completed.\r\n"
        "p5 NO [LIMIT] Mail size is larger than the maximum size allowed by "
        "server configuration\r\n"
        "* BYE Logging out\r\np6 OK Logout completed.\r\n", f1=0x02)
session("imap_session", "utf7-create-bye", CYRUS_IMAP,
        '* NAMESPACE (("" "/")) NIL NIL\r\np1 OK Completed\r\n'
        "p2 NO Mailbox does not exist\r\n"
        "* BYE [UNAVAILABLE] Server shutting down, try again in 30 seconds"
        "\r\n", flags=0x40, f1=0x20)
session("imap_session", "preauth-nul-binary", "* PREAUTH [CAPABILITY IMAP4rev1 "
        "LITERAL+ BINARY UIDPLUS] ready\r\n",
        "* CAPABILITY IMAP4rev1 LITERAL+ BINARY UIDPLUS\r\np1 OK done\r\n"
        "* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 9)\r\np2 OK done\r\n"
        "p3 OK [APPENDUID 9 1] done\r\n* BYE bye\r\np4 OK bye\r\n", f1=0x20)
# Found by fuzz_imap_session: an OK to an APPEND whose synchronising
# literal never went out (no "+" came) was taken as stored.
session("imap_session", "sync-ok-before-plus", "* PREAUTH [CAPABILITY IMAP4rev1 "
        "LITERAL+ BINARY UIDPLUS] ready\r\n",
        "* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 9)\r\np1 OK done\r\n"
        "p2 OK [APPENDUID 9 1] done\r\n* BYE bye\r\np3 OK bye\r\n", f1=0x20)
session("imap_session", "not-a-greeting", "+OK Dovecot ready.\r\n", "")
session("imap_session", "write-fails", DOVECOT_IMAP,
        "* STATUS INBOX (MESSAGES 3 UIDNEXT 12 UIDVALIDITY 1701736543)\r\n"
        "p1 OK Status completed.\r\np2 OK [APPENDUID 1701736543 12:13] "
        "Append completed.\r\n", flags=0x10 | 0x08, sizes=(5,), f1=0x01, f2=9)


# ---- net_lines: flags, errbuf, subject CN, SAN names, login transcript ----
def net(name, login, imap=False, oauth2=False, tls=0, rc=0, err=0,
        cn="pop.example.net", sans=("pop.example.net",)):
    if isinstance(login, str):
        login = login.encode("latin-1")
    if isinstance(cn, str):
        cn = cn.encode("latin-1")
    blob = b"".join(bytes([len(n)]) + (n.encode("latin-1")
                                       if isinstance(n, str) else n)
                    for n in sans)
    b0 = int(imap) | int(oauth2) << 1 | tls << 2 | rc << 4
    put("net_lines", name, bytes([b0, err, len(cn)]) + cn +
        bytes([len(blob)]) + blob + login)


# rc: 0 LOGIN_DENIED, 1 USE_SSL_FAILED, 2 PEER_FAILED_VERIFICATION,
# 3 CACERT_BADFILE, 4 PINNED, 5 TIMEDOUT, 6 SSL_CONNECT_ERROR, 8 WEIRD
net("dovecot-pop3-refused", DOVECOT_POP3.replace(
    "+OK Logged in.\r\n", "-ERR [AUTH] Authentication failed.\r\n"))
net("cyrus-pop3-login-delay", CYRUS_POP3.replace(
    "+OK Mailbox locked", "-ERR [LOGIN-DELAY] Logins must be at least 1 "
    "minute apart\r\n+OK x").split("+OK x")[0])
net("courier-pop3-no-sasl", COURIER_POP3, rc=1)
net("popa3d", POPA3D + "-ERR Authentication failed (bad password?)\r\n")
net("pop3-err-greeting", "-ERR [SYS/TEMP] too many connections, try again "
    "in 30 seconds\r\n", rc=8)
net("dovecot-imap-refused", DOVECOT_IMAP.split("A002")[0] +
    "A002 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", imap=True)
net("cyrus-imap-bye", CYRUS_IMAP.split("A001")[0] +
    "* BYE [UNAVAILABLE] Too many connections, try again in 30 seconds\r\n",
    imap=True, rc=10)
net("courier-imap-starttls", COURIER_IMAP, imap=True, rc=1, tls=2)
net("gmail-xoauth2", GMAIL_IMAP.split("A001")[0] +
    "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL"
    "21haWwuZ29vZ2xlLmNvbS8ifQ==\r\nA001 NO [AUTHENTICATIONFAILED] Invalid "
    "credentials (Failure)\r\n", imap=True, oauth2=True)
net("cert-names-mismatch", DOVECOT_POP3, rc=2, err=6, tls=0,
    cn="mail.example.org\x1b[31m", sans=("mail.example.org", "*.example.org",
                                        b"bad\x00name\r\n", "@mail", "x" * 200))
net("cert-self-signed", DOVECOT_IMAP, imap=True, rc=12, err=3, cn="",
    sans=())
net("not-a-greeting", "HTTP/1.1 400 Bad Request\r\n", rc=8)
net("plaintext-on-tls", "", rc=6, err=5, tls=0)
net("timeout-silent", "", rc=5, imap=True, tls=1)
net("long-transcript", "+OK\r\n" + "".join("X-%05d %s\r\n" % (i, "c" * 60)
                                           for i in range(260)), rc=0)


# ---- throttle: byte 0 (cut, lead), then the server's words ----
for i, t in enumerate([
    "NO [LIMIT] Too many simultaneous connections, try again in 30 seconds",
    "-ERR [LOGIN-DELAY] Logins must be at least 1 minute apart",
    "* BYE [UNAVAILABLE] Server busy, please retry after 2 minutes",
    "-ERR [SYS/TEMP] System busy, wait 5 min",
    "NO [AUTHENTICATIONFAILED] Too many invalid login attempts, try again later",
    "Retry-After: 120",
    "NO Account is temporarily unavailable",
    "NO [INUSE] Mailbox in use",
    "-ERR [IN-USE] Do you have another POP session running?",
    "try again in 1.5 s",
    "wait 99999 hours",
    "await 5 seconds, try again in about approximately 10 minutes",
    "NO Rate limit exceeded (Failure)",
    "-ERR [AUTH] Authentication failed.",
    "NO [ALERT] Please log in via your web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)",
    "* BYE Temporary system problem, back in 1 hour",
    "NO Throttled: 0 seconds",
    "try again in 1234567890 seconds",
]):
    put("throttle", "%02d" % i, bytes([i * 37 % 256, 7, 3 * i, 2, i]) +
        t.encode())


# ---- discover: byte 0 (parser | address << 2 | room >> 8 << 4), byte 1 ----
def disc(name, mode, data, addr=0, room=255):
    if isinstance(data, str):
        data = data.encode("utf-8")
    put("discover", name, bytes([mode | addr << 2 | (room >> 8) << 4,
                                 room & 255]) + data)


AUTOCONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="gmx.net">
    <domain>gmx.net</domain>
    <displayName>GMX Freemail</displayName>
    <incomingServer type="imap">
      <hostname>imap.gmx.net</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.gmx.net</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.gmx.net</hostname>
      <port>110</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>mail.gmx.net</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""
disc("autoconfig-gmx", 0, AUTOCONFIG)
disc("autoconfig-oauth2-only", 0, AUTOCONFIG.replace(
    "password-cleartext", "OAuth2"), addr=1)
disc("autoconfig-cdata-placeholder", 0, AUTOCONFIG.replace(
    "<hostname>pop.gmx.net</hostname>\n      <port>995</port>",
    "<hostname><![CDATA[pop.%EMAILDOMAIN%]]> </hostname>\n      <port> 0995</port>"
    ).replace("%EMAILLOCALPART%", "%EMAILLOCALPART%%"), addr=3)
disc("autoconfig-dtd", 0, '<?xml version="1.0"?>\n<!DOCTYPE clientConfig '
     '[<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n'
     '<clientConfig><emailProvider><incomingServer type="pop3"><hostname>'
     '&b;</hostname></incomingServer></emailProvider></clientConfig>\n')
disc("autoconfig-bad-port", 0, AUTOCONFIG.replace("<port>995</port>",
     "<port>99999</port>").replace("<port>110</port>", "<port>-1</port>"),
     addr=2)
disc("autoconfig-plain-comment", 0, '<clientConfig version="1.1"><!-- x -->'
     '<emailProvider id="e"><incomingServer type="pop3"><hostname>mail.'
     'example.net.</hostname><socketType>plain</socketType><username>'
     '</username><authentication>password-encrypted</authentication>'
     '<authentication>OAuth2</authentication></incomingServer>'
     '</emailProvider></clientConfig>')


def dns_name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".") if l) \
        + b"\x00"


def srv_answer(records, rcode=0):
    q = dns_name("_pop3s._tcp.example.net")
    msg = b"\x12\x34\x81" + bytes([0x80 | rcode]) + b"\x00\x01" + \
        len(records).to_bytes(2, "big") + b"\x00\x00\x00\x00" + q + \
        b"\x00\x21\x00\x01"
    for prio, weight, port, target in records:
        rd = prio.to_bytes(2, "big") + weight.to_bytes(2, "big") + \
            port.to_bytes(2, "big") + (target if isinstance(target, bytes)
                                       else dns_name(target))
        msg += b"\xc0\x0c\x00\x21\x00\x01\x00\x00\x0e\x10" + \
            len(rd).to_bytes(2, "big") + rd
    return msg


disc("srv-two", 1, srv_answer([(10, 0, 995, "pop.example.net"),
                               (5, 10, 995, "pop2.example.net")]))
disc("srv-dot", 1, srv_answer([(0, 0, 0, ".")]))
disc("srv-compressed", 1, srv_answer([(1, 1, 995, b"\x03pop\xc0\x18"),
                                      (1, 5, 1995, b"\x04mail\xc0\x18")]),
     room=9)
disc("srv-nxdomain", 1, srv_answer([], rcode=3))
disc("srv-loop-pointer", 1, srv_answer([(1, 1, 995, b"\xc0\x2d")]))
disc("srv-built", 2, bytes([1, 5, 0, 1, 200, 3, 7, 4, 9, 2, 1, 0, 99, 8,
                            3, 2, 1, 1, 60, 5, 4, 1, 6]), room=300)
disc("srv-built-tight", 2, bytes([2, 3, 1, 7, 9, 2, 1, 5, 6, 7, 8, 9, 1,
                                  2, 3]), room=12)
with open(os.path.join(ROOT, "config", "providers.conf"), "rb") as f:
    disc("presets-shipped", 3, f.read(), addr=0)
disc("presets-broken", 3, "example.net pop3s://pop.example.net - Example\n"
     "example.org  pop3://pop.example.org:110  imaps://imap.example.org  "
     "Example Org\t \nbad line\n", addr=1)
disc("presets-long-line", 3, "# " + "x" * 1100 + "\nexample.net x\n")


# ---- batch_row: byte 0 (trust | dir << 1 | prefix << 2 | std header << 3),
# then the CSV file ----
HDR = ("pop3_url,pop3_user,pop3_password,imap_url,imap_user,imap_password,"
       "mailbox,keep,pop3_ca_file,imap_ca_file,flags\r\n")
put("batch_row", "rows", bytes([0x06]) + (HDR +
    "pop3s://pop.gmx.net,max@gmx.net,Secr3tPop,imaps://imap.example.org,"
    "max,env:PBFUZZ_PW,INBOX,true,,,\\Seen\r\n"
    "pop3s://pop.gmx.net:995/,anna@gmx.net,file:tests/fuzz/fuzz.h,"
    "imaps://imap.example.org,anna,\"pw,with\"\"quote\",Archiv/2024,false,"
    "/etc/ssl/ca.pem,,\"\\Seen, \\Flagged\"\r\n"
    "pop3://[::1]:1110,u,p4ssword,imap://localhost,u,p4ssword,"
    "Entwürfe,no,,,$Label1\r\n").encode())
put("batch_row", "refusals", bytes([0x02]) + (HDR +
    "pop3s://max:Hunter2pw@pop.gmx.net,max,Hunter2pw,imaps://imap.x.org,"
    "max,pw,INBOX,true,,,\r\n"
    "pop3s://pop.gmx.net,\"max\r\nDELE 1\",pw1234,imaps://imap.x.org,m,pw,"
    ",,,,\r\n"
    "pop3s://pop.gmx.net,max,file:/etc/shadow,imaps://imap.x.org,m,pw,,,,,\r\n"
    "pop3s://pop.gmx.net,max,file:tests/fuzz/../../etc/passwd,imaps://i.x.org,"
    "m,pw,,,,,\r\n"
    "pop3s://pop.gmx.net,max,env:AWS_SECRET_ACCESS_KEY,imaps://i.x.org,m,pw,"
    ",,,,\r\n"
    "pop3s://pop.gmx.net,max,env:OTHER_PW,imaps://i.x.org,m,pw,,maybe,,,\r\n"
    "pop3s://pop.gmx.net,max,pw,imaps://i.x.org,m,pw,INBOX,1,,,(bad\r\n"
    "pop3s://pop.gmx.net,max,pw,imaps://i.x.org:99999,m,pw,&Jjo-,1,,,\r\n"
    "pop3s://pop.gmx.net,max,pw,imaps://i.x.org,m,,INBOX,1,,,,extra\r\n"
    "pop3s://pop.gmx.net,max,env:PBFUZZ_EMPTY,imaps://i.x.org,m,pw,\r\n"
    "ftp://pop.gmx.net,max,pw,imaps://i.x.org,m,pw\r\n").encode())
put("batch_row", "trusted", bytes([0x09]) + (
    "pop3s://pop.web.de,a@web.de,env:OTHER_PW,imaps://imap.example.org,a,"
    "file:../secret,INBOX.Archive,TRUE,,,\r\n").encode())
put("batch_row", "odd-header", bytes([0x00]) + (
    "imap_password,imap_user,imap_url,pop3_password,pop3_user,pop3_url,"
    "pop3_url\r\npw,u,imaps://h.example,pw2,u2,nonsense,pop3s://p.example\r\n"
    "pw\r\n").encode())

print("seeds written under", os.path.join(HERE, "corpus"), file=sys.stderr)
