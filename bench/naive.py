#!/usr/bin/python3
"""The naive POP3-to-IMAP copier the benchmark compares popbridge with: what a
simple script written with Python's poplib and imaplib does.

One command at a time on each side: for each message RETR it, then APPEND it
with flags and its Date as INTERNALDATE; imaplib sends the APPEND with a
synchronising literal, so every message costs a round trip for RETR, one
for the APPEND's continuation request and one for its tagged reply.  The
POP3 messages are kept (no DELE), like popbridge with keep = true.

    NAIVE_POP3_PASSWORD=... NAIVE_IMAP_PASSWORD=... python3 bench/naive.py \\
        --pop3 localhost:PORT --pop3-user U --imap localhost:PORT \\
        --imap-user U --ca-file CA [--mailbox INBOX] [--limit N]

Prints one line of JSON: {"messages": N, "bytes": N}.  Exits non-zero if
anything fails.
"""

import argparse
import email.utils
import imaplib
import json
import os
import poplib
import re
import ssl
import sys

DATE_RE = re.compile(rb"^Date:[ \t]*(.*(?:\r\n[ \t].*)*)", re.M | re.I)


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pop3", required=True, type=hostport)
    ap.add_argument("--pop3-user", required=True)
    ap.add_argument("--imap", required=True, type=hostport)
    ap.add_argument("--imap-user", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--limit", type=int, default=0, help="copy at most N messages")
    args = ap.parse_args()

    ctx = ssl.create_default_context(cafile=args.ca_file)
    pop = poplib.POP3_SSL(*args.pop3, context=ctx, timeout=300)
    pop.user(args.pop3_user)
    pop.pass_(os.environ["NAIVE_POP3_PASSWORD"])
    imap = imaplib.IMAP4_SSL(*args.imap, ssl_context=ctx, timeout=300)
    imap.login(args.imap_user, os.environ["NAIVE_IMAP_PASSWORD"])

    count, _ = pop.stat()
    if args.limit:
        count = min(count, args.limit)
    total = 0
    for n in range(1, count + 1):
        _, lines, _ = pop.retr(n)
        msg = b"\r\n".join(lines) + b"\r\n"
        head = msg.split(b"\r\n\r\n", 1)[0]
        m = DATE_RE.search(head)
        date = None
        if m:
            try:
                date = email.utils.parsedate_to_datetime(
                    " ".join(m.group(1).decode("latin-1").split()))
            except (TypeError, ValueError):
                date = None
        typ, data = imap.append(args.mailbox, "()", date, msg)
        if typ != "OK":
            print(f"naive.py: APPEND of message {n} failed: {typ} {data}", file=sys.stderr)
            return 1
        total += len(msg)
    pop.quit()
    imap.logout()
    print(json.dumps({"messages": count, "bytes": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
