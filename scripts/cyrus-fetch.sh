#!/bin/sh
# Fetch Cyrus IMAP (imapd + pop3d) from Debian 12 for popbridge's second-server tests,
# without installing it.
#
#   sh scripts/cyrus-fetch.sh            # prints the unpacked tree's path on stdout
#
# Debian's cyrus-imapd conflicts with every imap-server (dovecot-imapd is one) and
# cyrus-pop3d with every pop3-server, so `apt-get install` would remove Dovecot.  This
# script instead downloads the .debs (`apt-get download`) into a cache folder, unpacks
# them with `dpkg -x` into CACHE/root, and installs through apt only the shared libraries
# they need that are missing and do not conflict (libxapian30, libical3, ...).  Nothing
# is configured, no service is started, /etc is not touched.  tests/cyrus.py runs
# CACHE/root/usr/lib/cyrus/bin/master from there with LD_LIBRARY_PATH pointing into
# CACHE/root/usr/lib/x86_64-linux-gnu.
#
# Idempotent: a second run with the same candidate versions downloads nothing.  Safe to
# run concurrently (flock).  Needs root and apt; fails with a message saying what is
# missing.  CACHE is $POPBRIDGE_CYRUS_CACHE, default /var/cache/popbridge-cyrus.
set -eu

CACHE=${POPBRIDGE_CYRUS_CACHE:-/var/cache/popbridge-cyrus}
PKGS="cyrus-common cyrus-imapd cyrus-pop3d sasl2-bin"
# Binaries tests/cyrus.py runs; each must find all its libraries.
BINS="usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/lib/cyrus/bin/pop3d
      usr/lib/cyrus/bin/lmtpd usr/lib/cyrus/bin/ctl_cyrusdb usr/lib/cyrus/bin/cyr_info
      usr/sbin/saslpasswd2"
# Library dependencies of the packages that none of BINS links (cyr_virusscan needs
# libclamav12, notifyd libzephyr4): not installed, to keep the machine lean.
SKIP_LIBS="libclamav12 libzephyr4"

die() { echo "cyrus-fetch: $*" >&2; exit 1; }
say() { echo "cyrus-fetch: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get download/install)"
for tool in apt-get apt-cache dpkg-deb dpkg-query flock ldd; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: this needs a Debian system with apt"
done
case "$(dpkg --print-architecture)" in
    amd64) MULTIARCH=x86_64-linux-gnu ;;
    arm64) MULTIARCH=aarch64-linux-gnu ;;
    *) MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null) \
           || die "unknown architecture $(dpkg --print-architecture)" ;;
esac

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# One apt-cache call (each costs seconds on a busy machine): "pkg=candidate" lines.
versions() {
    # shellcheck disable=SC2086
    out=$(apt-cache policy $PKGS 2>/dev/null | awk '
        /^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) }
        /^ *Candidate:/ { if ($2 != "(none)") print pkg "=" $2 }') || return 1
    [ "$(printf '%s\n' "$out" | grep -c =)" = "$(echo "$PKGS" | wc -w)" ] || return 1
    printf '%s\n' "$out"
}

if ! WANT=$(versions); then
    say "apt does not know the Cyrus packages yet; running apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    WANT=$(versions) || die "no candidate for one of: $PKGS (is this Debian 12 with main enabled?)"
fi

ROOT="$CACHE/root"
have_tree() {
    [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$WANT" ] \
        && [ -x "$ROOT/usr/lib/cyrus/bin/master" ] && [ -x "$ROOT/usr/sbin/saslpasswd2" ]
}

if have_tree; then
    :
else
    # shellcheck disable=SC2086
    say "downloading $(printf "%s " $WANT)"
    rm -rf "$CACHE/debs.new" "$CACHE/root.new"
    mkdir -p "$CACHE/debs.new"
    # apt's download sandbox user must be able to write here.
    chown _apt "$CACHE/debs.new" 2>/dev/null || true
    # shellcheck disable=SC2086
    if ! (cd "$CACHE/debs.new" && apt-get download -q $WANT >&2); then
        rm -rf "$CACHE/debs.new"
        if [ -x "$ROOT/usr/lib/cyrus/bin/master" ]; then
            say "download failed; keeping the tree unpacked before ($(tr '\n' ' ' < "$CACHE/stamp" 2>/dev/null))"
        else
            die "apt-get download $WANT failed (no network to the Debian mirror?)"
        fi
    else
        mkdir -p "$CACHE/root.new"
        for deb in "$CACHE"/debs.new/*.deb; do
            dpkg -x "$deb" "$CACHE/root.new" || die "dpkg -x $deb failed"
        done
        rm -rf "$CACHE/root.old" "$CACHE/debs"
        [ -d "$ROOT" ] && mv "$ROOT" "$CACHE/root.old"
        mv "$CACHE/root.new" "$ROOT"
        mv "$CACHE/debs.new" "$CACHE/debs"
        rm -rf "$CACHE/root.old"
        printf '%s\n' "$WANT" > "$CACHE/stamp"
    fi
fi

# Shared libraries the packages depend on that are not installed: install them through
# apt (they conflict with nothing).  Already installed ones are left at their version.
# (One dpkg-deb/dpkg-query/ldd pipeline each: every process costs on a busy machine.)
deps=$(for deb in "$CACHE"/debs/*.deb; do dpkg-deb -f "$deb" Depends; echo ","; done \
       | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/ //g' | grep '^lib' | sort -u)
for skip in $SKIP_LIBS; do deps=$(printf '%s\n' "$deps" | grep -vx "$skip" || true); done
missing=""
if [ -n "$deps" ]; then
    # shellcheck disable=SC2086
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' $deps 2>/dev/null \
                | awk '$NF == "installed" {print $1}' || true)
    for dep in $deps; do
        printf '%s\n' "$installed" | grep -qx "$dep" || missing="$missing $dep"
    done
fi
if [ -n "$missing" ]; then
    say "installing libraries:$missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q --no-install-recommends $missing >&2; } \
        || die "apt-get install$missing failed"
fi

LIBDIR="$ROOT/usr/lib/$MULTIARCH"
files=""
for b in $BINS; do
    [ -x "$ROOT/$b" ] || die "$ROOT/$b missing from the unpacked packages"
    files="$files $ROOT/$b"
done
# shellcheck disable=SC2086
bad=$(LD_LIBRARY_PATH="$LIBDIR" ldd $files 2>&1 | awk '
    /^\// { bin = $1 } /not found/ { print "  " bin " " $1 }')
[ -z "$bad" ] || die "libraries still missing (LD_LIBRARY_PATH=$LIBDIR):
$bad"

echo "$ROOT"
