#!/bin/sh
# `make bench`: install what the benchmark needs beyond scripts/deps.sh,
# then run bench/bench.py (see bench/README.md for what it measures and
# the BENCH_* knobs).
#
# Idempotent and non-interactive: packages are installed only when missing,
# `apt-get update` runs only then, and no system service is started while
# they are configured (a policy-rc.d that denies starts is put in place and
# any existing one restored afterwards).  The benchmark starts its own
# private Dovecot on 127.0.0.1 (tests/harness.py); the system's Dovecot and
# fetchmail services are never touched.
set -eu
cd "$(dirname "$0")/.."

# fetchmail: the classic POP3 fetcher the benchmark compares against.
# mpop: a pipelining POP3 fetcher (Debian 12: 1.4.18), issue 15's peer;
#   optional: if it cannot be installed, bench.py says so and goes on.
# time: GNU time (/usr/bin/time -f %M) for peak RSS.
# dovecot-core: /usr/lib/dovecot/dovecot-lda, fetchmail's and mpop's
#   delivery agent.
PACKAGES="fetchmail time dovecot-core python3"
OPTIONAL="mpop"

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "bench/run.sh: not root and no sudo; the private Dovecot needs root" >&2
        exit 1
    fi
fi

missing=
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
optional=
for p in $OPTIONAL; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) optional="$optional $p" ;;
    esac
done

if [ -n "$missing$optional" ]; then
    echo "bench/run.sh: installing:$missing$optional"
    POLICY=/usr/sbin/policy-rc.d
    BACKUP=
    restore_policy() {
        $SUDO rm -f "$POLICY"
        if [ -n "$BACKUP" ]; then
            $SUDO mv -f "$BACKUP" "$POLICY"
        fi
    }
    if [ -e "$POLICY" ]; then
        BACKUP="$POLICY.popbridge-bench.$$"
        $SUDO cp -p "$POLICY" "$BACKUP"
    fi
    trap restore_policy EXIT
    trap 'exit 130' INT TERM
    printf '#!/bin/sh\n# temporary, written by popbridge bench/run.sh\nexit 101\n' \
        | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 0755 "$POLICY"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            $missing </dev/null
    fi
    for p in $optional; do
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "$p" </dev/null ||
            echo "bench/run.sh: $p could not be installed; the benchmark goes on without it"
    done
    restore_policy
    trap - EXIT INT TERM
    # fetchmail's Debian package ships a system service that is off by
    # default (START_DAEMON=no); make sure nothing was started anyway.
    for svc in fetchmail dovecot; do
        if command -v systemctl >/dev/null 2>&1 && \
           systemctl is-active --quiet "$svc" 2>/dev/null; then
            $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
        fi
    done
fi

for f in /usr/bin/fetchmail /usr/bin/time /usr/lib/dovecot/dovecot-lda; do
    if [ ! -x "$f" ]; then
        echo "bench/run.sh: $f is missing after the install" >&2
        exit 1
    fi
done

if [ ! -x bridge/popbridge ]; then
    echo "bench/run.sh: bridge/popbridge is not built (run \`make\` or \`make bench\`)" >&2
    exit 1
fi

# Each part runs even if one before it failed; the exit status is the
# first failure's.
status=0
$SUDO /usr/bin/python3 bench/bench.py "$@" || status=$?
# The batch scenario (issue 5): accounts per minute, memory and fds.
$SUDO /usr/bin/python3 bench/batch_bench.py || { rc=$?; [ $status -ne 0 ] || status=$rc; }
# What routing and the Gmail API cost (issues 16, 17): bench/RESULTS-route.md.
$SUDO /usr/bin/python3 bench/route_bench.py || { rc=$?; [ $status -ne 0 ] || status=$rc; }
exit $status
