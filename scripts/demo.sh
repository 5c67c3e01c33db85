#!/bin/sh
# popbridge demo: starts a private Dovecot on 127.0.0.1, fills a POP3
# mailbox with sample mail, runs `bridge/popbridge -v run` and shows what
# arrived over IMAP.  `make demo` runs it after scripts/deps.sh and make.
# Set POPBRIDGE to use another binary.
set -eu
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ -z "${POPBRIDGE:-}" ] && [ ! -x bridge/popbridge ]; then
    echo "demo: bridge/popbridge is missing; run 'make' first" >&2
    exit 1
fi
if [ ! -x /usr/sbin/dovecot ]; then
    echo "demo: Dovecot is not installed; run scripts/deps.sh first" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: needs root (the private Dovecot runs mail as uid 5000)" >&2
    exit 1
fi

exec "$PY" tests/demo.py "$@"
