#!/usr/bin/python3
"""popbridge demo: a private Dovecot on 127.0.0.1, six sample messages in a
POP3 mailbox, one `popbridge -v run`, and a look at what arrived over IMAP.

Run through scripts/demo.sh (or `make demo`).  The binary is $POPBRIDGE or
bridge/popbridge.  Everything lives in a temporary directory that is removed
at the end; nothing but 127.0.0.1 is contacted.
"""

import datetime as dt
import email
import email.header
import email.policy
import email.utils
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

SOURCE_USER = "alice-isp"      # the old provider's POP3 mailbox
TARGET_USER = "alice"          # the IMAP account mail should end up in


def zone(hours):
    return dt.timezone(dt.timedelta(hours=hours))


def sample_messages(now):
    """Six realistic messages as bytes, oldest first."""
    def base(sender, subject, when, msgid):
        m = EmailMessage()
        m["From"] = sender
        m["To"] = "Alice Martin <alice@example.net>"
        m["Subject"] = subject
        if when is not None:
            m["Date"] = email.utils.format_datetime(when)
        m["Message-ID"] = f"<{msgid}@demo.example>"
        return m

    out = []

    m = base("Bob Jones <bob@example.org>", "Lunch on Thursday?",
             (now - dt.timedelta(days=3, hours=2)).astimezone(zone(-5)), "lunch")
    m.set_content("Hi Alice,\n\nare you free for lunch on Thursday? The new place\n"
                  "on Main Street does a great soup.\n\nBob\n")
    out.append(m.as_bytes())

    m = base("Département Informatique <it@example.fr>", "Maintenance prévue samedi",
             (now - dt.timedelta(days=2, hours=7)).astimezone(zone(1)), "maint")
    m.set_content("Bonjour,\n\nle serveur de fichiers sera arrêté samedi de 8 h à 12 h.\n"
                  "Merci de votre compréhension.\n\n— L'équipe informatique\n")
    out.append(m.as_bytes())

    m = base("Example Shop <orders@shop.example>", "Your invoice #10442",
             (now - dt.timedelta(days=1, hours=5)).astimezone(dt.timezone.utc), "invoice")
    m.set_content("Thank you for your order.\n\nYour invoice is attached as a PDF.\n")
    m.add_attachment(tiny_pdf("Invoice #10442 - total 42.00 EUR"), maintype="application",
                     subtype="pdf", filename="invoice-10442.pdf")
    out.append(m.as_bytes())

    m = base("Carol Smith <carol@example.com>", "Re: Photos from the trip",
             (now - dt.timedelta(hours=20)).astimezone(zone(2)), "photos")
    m["In-Reply-To"] = "<trip@demo.example>"
    m.set_content("> Did you get the photos?\n\nYes, thanks! The one from the lighthouse\n"
                  "is my favourite.\n")
    out.append(m.as_bytes())

    # No Date header: popbridge takes INTERNALDATE from the newest Received line.
    received = (now - dt.timedelta(hours=6)).astimezone(zone(9))
    m = base("Kenji Sato <kenji@example.jp>", "会議の資料 (meeting notes)", None, "kenji")
    m["Received"] = (f"from mail.example.jp by mx.example.net; "
                     f"{email.utils.format_datetime(received)}")
    m.set_content("Alice さん\n\n明日の会議の資料を送ります。\n(Notes for tomorrow's meeting.)\n\n佐藤\n")
    out.append(m.as_bytes())

    m = base("Weekly Digest <digest@news.example>", "This week: 5 stories you missed",
             (now - dt.timedelta(hours=1)).astimezone(zone(-8)), "digest")
    m.set_content("1. The tallest sandcastle ever built\n2. A cat who rides the bus\n"
                  "3. Ten tips for a tidy inbox\n4. Why POP3 is still around\n"
                  "5. Tomorrow's weather\n")
    # mbox-style first line, as some old providers keep them: popbridge drops it.
    out.append(b"From digest@news.example " + now.strftime("%a %b %d %H:%M:%S %Y").encode()
               + b"\n" + m.as_bytes())
    return out


def tiny_pdf(text):
    """A small, valid one-page PDF showing `text`."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    pdf = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return pdf


def header_text(msg_bytes, name):
    msg = email.message_from_bytes(msg_bytes, policy=email.policy.default)
    value = msg.get(name, "")
    return " ".join(str(value).split())


def attachments(msg_bytes):
    msg = email.message_from_bytes(msg_bytes, policy=email.policy.default)
    return [p.get_filename() for p in msg.iter_attachments() if p.get_filename()]


def width(s):
    """Terminal columns of s (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def clip(s, n):
    if width(s) <= n:
        return s
    out = ""
    for c in s:
        if width(out + c) > n - 1:
            break
        out += c
    return out + "…"


def pad(s, n):
    return s + " " * (n - width(s))


def print_table(rows, headers):
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print(("  " + "  ".join(pad(h, w) for h, w in zip(headers, widths))).rstrip())
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print(("  " + "  ".join(pad(c, w) for c, w in zip(r, widths))).rstrip())


def step(n, text):
    print(f"\n[{n}/5] {text}")


def main():
    exe = harness.popbridge_path()
    if not os.access(exe, os.X_OK):
        print(f"popbridge demo: {exe} not found; build it first with `make`.", file=sys.stderr)
        return 1

    print("popbridge demo: copy mail from a POP3 mailbox into an IMAP folder")
    print("(everything runs on 127.0.0.1, in a temporary directory)")

    tmp = Path(tempfile.mkdtemp(prefix="popbridge-demo-"))
    os.chmod(tmp, 0o755)
    try:
        step(1, "Starting a private Dovecot (IMAP + POP3, TLS with a throw-away CA)")
        with harness.Dovecot(tmp=str(tmp), name=f"pbdemo{os.getpid()}") as dc:
            print(f"      pop3s://localhost:{dc.pop3s_port}   imaps://localhost:{dc.imaps_port}")

            step(2, f"Putting 6 messages into the POP3 mailbox of {SOURCE_USER!r}")
            dc.add_user(SOURCE_USER, "old-provider-secret")
            dc.add_user(TARGET_USER, "new-provider-secret")
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            raws = sample_messages(now)
            for raw in raws:
                dc.deliver(SOURCE_USER, raw)
                extra = attachments(raw)
                note = f"  [attachment: {', '.join(extra)}]" if extra else ""
                print(f"      {pad(clip(header_text(raw, 'From'), 40), 40)}  "
                      f"{clip(header_text(raw, 'Subject'), 38)}{note}")
            print(f"      POP3 says: {dc.pop3_count(SOURCE_USER)} messages waiting")

            step(3, "Writing the popbridge configuration (mode 0600)")
            conf = tmp / "popbridge.conf"
            state = tmp / "state"
            state.mkdir()
            acct = dc.account("alice", SOURCE_USER, TARGET_USER, keep=True)
            harness.write_config(conf, [acct], state)
            for line in conf.read_text().splitlines():
                if "password" in line:
                    line = line.split("=")[0] + '= "********";'
                print("      " + line)

            step(4, f"Running: popbridge -c {conf.name} -v run")
            p = subprocess.run([exe, "-c", str(conf), "-v", "run"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace", timeout=300)
            for line in (p.stdout + p.stderr).splitlines():
                print("      | " + line)
            print(f"      exit status {p.returncode}")

            again = subprocess.run([exe, "-c", str(conf), "-v", "run"], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, errors="replace", timeout=300)
            summary = [line for line in again.stderr.splitlines() if " new, " in line]
            print("      Running it again imports nothing new:")
            for line in summary or again.stderr.splitlines()[-1:]:
                print("      | " + line)

            step(5, f"What arrived in the INBOX of {TARGET_USER!r}, read back over IMAP")
            msgs = dc.imap_messages(TARGET_USER)
            rows = []
            for m in msgs:
                flags = " ".join(sorted(m["flags"])) or "(none: unread)"
                rows.append([str(m["uid"]), m["internaldate_raw"], flags,
                             clip(header_text(m["body"], "From"), 34),
                             clip(header_text(m["body"], "Subject"), 36)])
            print()
            print_table(rows, ["UID", "INTERNALDATE", "FLAGS", "From", "Subject"])
            print()
            ok = (p.returncode == 0 and again.returncode == 0 and len(msgs) == len(raws))
            if ok:
                print(f"Done: all {len(raws)} messages were imported, unread, with their "
                      f"original dates;\nthe POP3 copies were kept (keep = true). "
                      f"Cleaning up.")
            else:
                print(f"The import did not complete: {len(msgs)} of {len(raws)} messages "
                      f"arrived, popbridge exited {p.returncode} (second run: {again.returncode}).")
                print("Dovecot's log, last lines:")
                print(dc.log_tail(15), end="")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
