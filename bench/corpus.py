"""Deterministic mail corpora for the benchmark.

Every message is a function of (kind, seed, index): the same settings give
the same bytes on every machine.  Messages are produced with LF line endings,
as a maildir stores them; the POP3 server serves them with CRLF, and what
lands in IMAP is `crlf(raw)`.

    small   about 4 KB each: a plain-text mail with a realistic header
    mixed   realistic sizes: mostly small text mail (1-60 KB), some with an
            attachment of 100 KB - 2 MB, a few with an attachment of
            2 - 20 MB (the first of those exactly 20 MB).  The kinds are
            spread evenly along the mailbox, so any prefix (the subset the
            slow clients get at 10 ms) has the same mix as the whole.
    big     one message with an attachment of the given size
"""

from __future__ import annotations

import base64
import email.utils
import math
import random

WORDS = ("the of and to in is that for it as was with be by on not he this are or his "
         "from at which but have an they you were her she there been one all we their "
         "meeting invoice project update report please thanks regards tomorrow attached "
         "schedule review contract delivery account password order shipping receipt "
         "newsletter offer family holiday photos weekend dinner budget draft quarterly "
         "Grüße Straße Köln café naïve résumé").split()

SMALL_P = 0.87      # text mail, 1-60 KB
MEDIUM_P = 0.115    # an attachment of 100 KB - 2 MB
LARGE_P = 0.015     # an attachment of 2 - 20 MB
KB = 1024
MB = 1024 * 1024


def crlf(raw: bytes) -> bytes:
    """What popbridge (and every client here) stores for `raw`: CRLF line
    endings and a final CRLF (the corpus has no mbox From lines)."""
    data = raw.replace(b"\r\n", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\n", b"\r\n")


def _date(rng, i):
    day = 1 + i % 28
    return (f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][i % 7]}, {day} "
            f"{['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][(i // 28) % 12]} "
            f"{2015 + (i // 336) % 10} {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
            f"{rng.randrange(60):02d} {rng.choice(['+0000', '+0100', '+0200', '-0500', '-0800'])}")


def _header(rng, tag, i, date, subject_words=6, extra=()):
    who = rng.choice(["anna", "bernd", "chloe", "dmitri", "emma", "farid", "gina", "hans"])
    dom = rng.choice(["example.org", "example.net", "mail.example.com", "example.de"])
    subj = " ".join(rng.choice(WORDS) for _ in range(subject_words))
    lines = [
        f"Return-Path: <{who}@{dom}>",
        f"Received: from mx{rng.randrange(1, 9)}.{dom} (mx.{dom} [192.0.2.{rng.randrange(1, 250)}])",
        f"\tby pop.example.net (Postfix) with ESMTPS id {rng.getrandbits(40):010X}",
        f"\tfor <max@example.net>; {date}",
        f"Date: {date}",
        f"From: {who.capitalize()} <{who}@{dom}>",
        "To: Max <max@example.net>",
        f"Subject: [{tag} {i}] {subj}",
        f"Message-ID: <{tag}.{i}.{rng.getrandbits(48):012x}@{dom}>",
        "MIME-Version: 1.0",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _text(rng, nbytes):
    """Plain text of about nbytes, lines up to 76 characters."""
    out, size, line = [], 0, []
    linelen = 0
    while size < nbytes:
        w = rng.choice(WORDS)
        if linelen + len(w) + 1 > 72:
            s = " ".join(line)
            if rng.random() < 0.01:
                s = "." + s             # a line that POP3 must dot-stuff
            out.append(s)
            size += len(s.encode()) + 1
            line, linelen = [], 0
            if rng.random() < 0.08:
                out.append("")
                size += 1
        line.append(w)
        linelen += len(w) + 1
    if line:
        out.append(" ".join(line))
    return "\n".join(out) + "\n"


def _b64(rng, nbytes):
    """base64 text (76-character lines) of about nbytes."""
    raw = rng.randbytes(max(1, nbytes * 3 // 4))
    return base64.encodebytes(raw).decode("ascii")


def small_message(seed, i, tag="small", target=4 * KB):
    rng = random.Random(f"{seed}/{tag}/{i}")
    date = _date(rng, i)
    head = _header(rng, tag, i, date, extra=(
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit"))
    body = _text(rng, max(200, target - len(head.encode()) + rng.randrange(-300, 300)))
    return (head + "\n" + body).encode("utf-8")


def attachment_message(rng, tag, i, nbytes, kind):
    date = _date(rng, i)
    boundary = f"=_b{rng.getrandbits(64):016x}"
    head = _header(rng, tag, i, date, extra=(
        f'Content-Type: multipart/mixed; boundary="{boundary}"',))
    text = _text(rng, rng.randrange(300, 3000))
    name, ctype = {"pdf": ("report.pdf", "application/pdf"),
                   "jpg": ("IMG_0001.jpg", "image/jpeg"),
                   "zip": ("files.zip", "application/zip")}[kind]
    pre = (f"{head}\nThis is a multi-part message in MIME format.\n\n--{boundary}\n"
           "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
           f"{text}\n--{boundary}\n"
           f'Content-Type: {ctype}; name="{name}"\nContent-Transfer-Encoding: base64\n'
           f'Content-Disposition: attachment; filename="{name}"\n\n')
    post = f"\n--{boundary}--\n"
    room = max(1000, nbytes - len(pre.encode()) - len(post))
    # base64 adds one newline per 76 characters.
    return (pre + _b64(rng, room * 76 // 77) + post).encode("utf-8")


def _spread(i, p):
    """True for an evenly spread fraction p of indices 0, 1, 2, ..."""
    return math.floor((i + 1) * p) > math.floor(i * p)


def mixed_kind(i):
    if _spread(i, LARGE_P):
        return "large"
    if _spread(i, MEDIUM_P):
        return "medium"
    return "small"


def mixed_message(seed, i, first_large_index):
    rng = random.Random(f"{seed}/mixed/{i}")
    kind = mixed_kind(i)
    if kind == "small":
        size = int(min(60 * KB, max(1 * KB, rng.lognormvariate(math.log(5 * KB), 0.8))))
        return small_message(seed, i, tag="mixed", target=size)
    if kind == "medium":
        size = int(math.exp(rng.uniform(math.log(100 * KB), math.log(2 * MB))))
        return attachment_message(rng, "mixed", i, size, rng.choice(["pdf", "jpg"]))
    if i == first_large_index:
        size = 20 * MB
    else:
        size = int(math.exp(rng.uniform(math.log(2 * MB), math.log(20 * MB))))
    return attachment_message(rng, "mixed", i, size, rng.choice(["pdf", "zip", "jpg"]))


def mixed_messages(seed, n):
    """Yield the n messages of the mixed corpus in mailbox order."""
    first_large = next((i for i in range(n) if mixed_kind(i) == "large"), -1)
    for i in range(n):
        yield mixed_message(seed, i, first_large)


def small_messages(seed, n, tag="small"):
    for i in range(n):
        yield small_message(seed, i, tag=tag)


def big_message(seed, nbytes):
    rng = random.Random(f"{seed}/big")
    return attachment_message(rng, "big", 0, nbytes, "zip")


def imap_date(raw: bytes) -> str:
    """The message's Date header as an IMAP date-time ("01-Nov-2024 10:00:00 +0000")."""
    head = raw.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    for line in head.split("\n"):
        if line.lower().startswith("date:"):
            d = email.utils.parsedate_to_datetime(line[5:].strip())
            off = d.utcoffset().total_seconds() // 60
            sign = "-" if off < 0 else "+"
            off = abs(int(off))
            return (f"{d.day:02d}-{d.strftime('%b')}-{d.year} {d:%H:%M:%S} "
                    f"{sign}{off // 60:02d}{off % 60:02d}")
    raise ValueError("message without a Date header")
