#!/usr/bin/python3
"""The IMAP server's own ceiling: the corpus appended through one IMAPS
connection as fast as the protocol allows, with no POP3 side at all.

    CEILING_IMAP_PASSWORD=... python3 bench/ceiling.py --imap localhost:PORT \\
        --user U --ca-file CA --corpus DIR [--mode multiappend|append] \\
        [--batch 64] [--batch-bytes 16777216] [--limit N]

DIR holds the messages as they must land in IMAP (CRLF) and a manifest
(manifest.tsv: file name, size, IMAP date-time).  --mode multiappend
(the default) sends MULTIAPPEND commands (RFC 3502) of up to --batch
messages / --batch-bytes bytes, each message as a LITERAL+ literal
(RFC 7888), and pipelines the commands: the next batch goes out while the
server stores the previous one.  Where the server lacks MULTIAPPEND it falls
back to pipelined single LITERAL+ APPENDs (--mode append forces that).
Every message gets the same flags (none) and date as popbridge gives it.

Prints one line of JSON: {"messages": N, "bytes": N, "mode": "..."}.
Exits non-zero if the server refuses anything.
"""

import argparse
import asyncio
import json
import os
import re
import ssl
import sys

READ = 1024 * 1024


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_manifest(d, limit):
    items = []
    with open(os.path.join(d, "manifest.tsv")) as f:
        for line in f:
            name, size, date = line.rstrip("\n").split("\t")
            items.append((os.path.join(d, name), int(size), date))
    return items[:limit] if limit else items


class Conn:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.seq = 0

    def tag(self):
        self.seq += 1
        return f"c{self.seq}"

    async def line(self):
        s = await self.r.readline()
        if not s:
            raise ConnectionError("server closed the connection")
        return s.decode("utf-8", "replace").rstrip("\r\n")

    async def simple(self, cmd):
        """Send one command without literals; return (tagged line, untagged)."""
        t = self.tag()
        self.w.write(f"{t} {cmd}\r\n".encode())
        await self.w.drain()
        untagged = []
        while True:
            s = await self.line()
            if s.startswith(t + " "):
                return s, untagged
            untagged.append(s)


async def send_file(w, path, size):
    sent = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(READ)
            if not chunk:
                break
            w.write(chunk)
            sent += len(chunk)
            await w.drain()
    if sent != size:
        raise RuntimeError(f"{path}: {sent} bytes, manifest says {size}")


async def run(args):
    items = load_manifest(args.corpus, args.limit)
    ctx = ssl.create_default_context(cafile=args.ca_file)
    host, port = args.imap
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx,
                                                   server_hostname=host,
                                                   limit=1 << 20)
    c = Conn(reader, writer)
    greeting = await c.line()
    if not greeting.startswith("* OK"):
        raise RuntimeError(f"bad greeting: {greeting}")
    pw = os.environ["CEILING_IMAP_PASSWORD"]
    ok, _ = await c.simple(f"LOGIN {quote(args.user)} {quote(pw)}")
    if " OK" not in ok:
        raise RuntimeError(f"LOGIN refused: {ok}")
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", ok)
    if m:
        caps = set(m.group(1).upper().split())
    else:
        _, untagged = await c.simple("CAPABILITY")
        caps = set()
        for u in untagged:
            if u.upper().startswith("* CAPABILITY "):
                caps |= set(u[13:].upper().split())
    if "LITERAL+" not in caps:
        raise RuntimeError("the server offers no LITERAL+; this client needs it")
    mode = args.mode
    if mode == "multiappend" and "MULTIAPPEND" not in caps:
        mode = "append"

    # Group the messages into commands.
    batch = args.batch if mode == "multiappend" else 1
    commands, cur, cur_bytes = [], [], 0
    for it in items:
        if cur and (len(cur) >= batch or cur_bytes + it[1] > args.batch_bytes):
            commands.append(cur)
            cur, cur_bytes = [], 0
        cur.append(it)
        cur_bytes += it[1]
    if cur:
        commands.append(cur)

    tags = [c.tag() for _ in commands]
    mbox = quote(args.mailbox)

    async def writer_task():
        for t, cmd in zip(tags, commands):
            first = True
            for path, size, date in cmd:
                lead = f"{t} APPEND {mbox} " if first else " "
                writer.write(f'{lead}() "{date}" {{{size}+}}\r\n'.encode())
                first = False
                await send_file(writer, path, size)
            writer.write(b"\r\n")
            await writer.drain()

    async def reader_task():
        pending = set(tags)
        while pending:
            s = await c.line()
            if s.startswith("* ") or s.startswith("+ "):
                if s.startswith("* BYE"):
                    raise RuntimeError(f"server said {s}")
                continue
            t, _, rest = s.partition(" ")
            if t not in pending:
                raise RuntimeError(f"unexpected line: {s}")
            if not rest.startswith("OK"):
                raise RuntimeError(f"APPEND refused: {s}")
            pending.discard(t)

    wt = asyncio.create_task(writer_task())
    try:
        await reader_task()
    finally:
        if not wt.done():
            wt.cancel()
    await wt
    await c.simple("LOGOUT")
    writer.close()
    return {"messages": len(items), "bytes": sum(i[1] for i in items), "mode": mode,
            "commands": len(commands)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imap", required=True, type=hostport)
    ap.add_argument("--user", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--mode", choices=("multiappend", "append"), default="multiappend")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batch-bytes", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    try:
        res = asyncio.run(run(args))
    except Exception as e:
        print(f"ceiling.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
