#!/bin/sh
# Install the Debian packages needed to build and test popbridge.
#
# Idempotent: only packages that are not installed yet are installed, and
# `apt-get update` runs only when something is missing. Runs without stdin.
# Installing Dovecot must not leave the system dovecot service running: the
# tests start their own private instances, so starts are denied during the
# install (policy-rc.d) and the service is stopped afterwards if it runs.
set -eu

PACKAGES="build-essential pkg-config libcurl4-openssl-dev libssl-dev
libconfig-dev libsqlite3-dev libxml2-dev libjansson-dev clang libclang-rt-14-dev dovecot-imapd dovecot-pop3d openssl python3
sqlite3 ca-certificates
libcourier-unicode4 libgamin0 libidn12 libltdl7 socat
libmicrohttpd-dev chromium chromium-driver python3-selenium prometheus"

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "deps.sh: not root and no sudo; cannot install packages" >&2
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

if [ -z "$missing" ]; then
    echo "deps.sh: all build and test packages are installed"
    exit 0
fi

echo "deps.sh: installing:$missing"

POLICY=/usr/sbin/policy-rc.d
BACKUP=
restore_policy() {
    $SUDO rm -f "$POLICY"
    if [ -n "$BACKUP" ]; then
        $SUDO mv -f "$BACKUP" "$POLICY"
    fi
}

case "$missing" in
    *dovecot*)
        # Deny service starts while packages are configured; keep (and
        # restore afterwards) any policy-rc.d that is already there.
        if [ -e "$POLICY" ]; then
            BACKUP="$POLICY.popbridge-deps.$$"
            $SUDO cp -p "$POLICY" "$BACKUP"
        fi
        trap restore_policy EXIT
        trap 'exit 130' INT TERM
        printf '#!/bin/sh\n# temporary, written by popbridge scripts/deps.sh\nexit 101\n' \
            | $SUDO tee "$POLICY" >/dev/null
        $SUDO chmod 0755 "$POLICY"
        ;;
esac

export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    $missing </dev/null

case "$missing" in
    *dovecot*)
        restore_policy
        trap - EXIT
        # Stop the system service if it was started anyway; never fail here.
        if command -v systemctl >/dev/null 2>&1 && \
           systemctl is-active --quiet dovecot 2>/dev/null; then
            $SUDO systemctl stop dovecot >/dev/null 2>&1 || true
        fi
        if command -v service >/dev/null 2>&1 && \
           service dovecot status >/dev/null 2>&1; then
            $SUDO service dovecot stop >/dev/null 2>&1 || true
        fi
        ;;
esac

echo "deps.sh: done"
