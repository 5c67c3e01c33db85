"""Reading mailboxes back over IMAP, for the tests' asserts: every message
with its bytes, flags and INTERNALDATE; how many there are; which mailboxes
a user has.  One place for it, so every test reads the same way (read-only
SELECT, BODY.PEEK so nothing is marked \\Seen, UID order).

    with imapread.session(dc.imap(user)) as c:
        msgs = imapread.messages(c, "INBOX", who=user)

Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re

_MONTHS = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}

ALL = "(UID FLAGS INTERNALDATE BODY.PEEK[])"
BODIES = "(UID BODY.PEEK[])"


def parse_internaldate(s):
    """'25-Nov-2025 21:55:00 +0200' -> timezone-aware datetime."""
    m = re.fullmatch(r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*", s)
    if not m:
        raise ValueError(f"bad INTERNALDATE {s!r}")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    off = _dt.timedelta(hours=int(oh), minutes=int(om))
    if sign == "-":
        off = -off
    return _dt.datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                        tzinfo=_dt.timezone(off))


def quote_mailbox(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def logout(c):
    """LOGOUT, ignoring a connection that is already gone."""
    try:
        c.logout()
    except Exception:
        pass


@contextlib.contextmanager
def session(c):
    """A logged-in imaplib client, logged out when the block ends."""
    try:
        yield c
    finally:
        logout(c)


def count(c, mailbox="INBOX"):
    """Messages in `mailbox` (read-only SELECT); None if it cannot be selected."""
    typ, data = c.select(quote_mailbox(mailbox), readonly=True)
    return int(data[0] or 0) if typ == "OK" else None


def _message(meta: str, body: bytes):
    uid = int(re.search(r"\bUID (\d+)", meta).group(1))
    flags_m = re.search(r"\bFLAGS \(([^)]*)\)", meta)
    flags = set(flags_m.group(1).split()) if flags_m else set()
    flags.discard("\\Recent")
    msg = {"uid": uid, "body": body, "flags": flags}
    date_m = re.search(r'\bINTERNALDATE "([^"]+)"', meta)
    if date_m:
        msg["internaldate_raw"] = date_m.group(1)
        msg["internaldate"] = parse_internaldate(date_m.group(1))
    return msg


def messages(c, mailbox="INBOX", who="", items=ALL):
    """Every message of `mailbox`, in UID order, as dicts {uid, body (bytes),
    flags (set of str, without \\Recent), internaldate (aware datetime),
    internaldate_raw}; with items=BODIES only uid and body (quicker for
    hundreds of mailboxes).  A mailbox that cannot be selected is an
    AssertionError."""
    typ, data = c.select(quote_mailbox(mailbox), readonly=True)
    if typ != "OK":
        raise AssertionError(f"IMAP SELECT {mailbox} for {who}: {typ} {data}")
    if int(data[0] or 0) == 0:
        return []
    typ, data = c.uid("FETCH", "1:*", items)
    if typ != "OK":
        raise AssertionError(f"IMAP FETCH for {who}: {typ} {data}")
    out = [_message(item[0].decode("latin-1"), item[1])
           for item in data if isinstance(item, tuple)]
    out.sort(key=lambda m: m["uid"])
    return out


def mailboxes(c, selectable=False):
    """Names of every mailbox (LIST "" "*"), decoded from the quoted, atom
    or literal form the server answers with; selectable: without those
    marked \\Noselect or \\NonExistent."""
    typ, data = c.list('""', "*")
    assert typ == "OK", f"IMAP LIST: {typ} {data}"
    names = []
    for item in data:
        if item is None:
            continue
        literal = None
        if isinstance(item, tuple):      # the name is a literal
            item, literal = item[0], item[1].decode("utf-8", "replace")
        line = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        m = re.match(r'\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.*)$', line)
        assert m, f"unexpected LIST line {line!r}"
        if selectable and ("\\Noselect" in m.group("attrs")
                           or "\\NonExistent" in m.group("attrs")):
            continue
        name = literal if literal is not None else m.group("name")
        if literal is None and name.startswith('"') and name.endswith('"'):
            name = re.sub(r'\\(.)', r'\1', name[1:-1])
        names.append(name)
    return names
