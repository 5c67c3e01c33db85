#!/bin/sh
# Fetch Courier-IMAP, Courier POP3, courier-authlib and popa3d from Debian 12 for
# popbridge's tests, without installing them.
#
#   sh scripts/courier-fetch.sh          # prints the unpacked tree's path on stdout
#
# Debian's courier-imap conflicts with every imap-server (dovecot-imapd is one), and
# courier-pop and popa3d with every pop3-server, so `apt-get install` would remove
# Dovecot.  This script downloads the .debs instead (`apt-get download`) into a cache
# folder and unpacks them with `dpkg -x` into CACHE/root.  Through apt it installs only
# what the unpacked binaries need and that conflicts with nothing: their shared
# libraries (libcourier-unicode4, libgamin0, libidn12, libltdl7, ...) and socat, which
# puts popa3d (an inetd-style server) on a TCP port.  Nothing is configured, no service
# is started, no user is created, /etc is not touched: tests/courier.py runs the
# binaries in a private mount namespace where CACHE/root/usr is laid over /usr.
#
# Idempotent and quiet when done already: a second run with the same candidate
# versions downloads nothing and prints only the path.  Safe to run concurrently
# (flock).  Needs root and apt; fails with a message saying what is missing.  CACHE is
# $POPBRIDGE_COURIER_CACHE, default /var/cache/popbridge-courier.
set -eu

CACHE=${POPBRIDGE_COURIER_CACHE:-/var/cache/popbridge-courier}
PKGS="courier-imap courier-pop courier-base courier-authlib courier-authdaemon
      courier-authlib-userdb popa3d"
# Tools the tests run on the host side, not from the unpacked tree.
TOOLS="socat"
# Binaries tests/courier.py runs; each must find all its libraries with
# LD_LIBRARY_PATH=ROOT/usr/lib:ROOT/usr/lib/courier-authlib.
BINS="usr/bin/imapd usr/bin/couriertls usr/sbin/couriertcpd usr/sbin/authtest
      usr/lib/courier/courier/imaplogin usr/lib/courier/courier/courierpop3login
      usr/lib/courier/courier/courierpop3d usr/lib/courier/courier-authlib/authdaemond
      usr/lib/courier/courier-authlib/makedatprog usr/lib/courier-authlib/libauthuserdb.so.0
      usr/sbin/popa3d"

die() { echo "courier-fetch: $*" >&2; exit 1; }
say() { echo "courier-fetch: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get download/install)"
for tool in apt-get apt-cache dpkg-deb dpkg-query flock ldd perl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: this needs a Debian system with apt"
done

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# One apt-cache call: "pkg=candidate" lines, one per package of PKGS.
versions() {
    # shellcheck disable=SC2086
    out=$(apt-cache policy $PKGS 2>/dev/null | awk '
        /^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) }
        /^ *Candidate:/ { if ($2 != "(none)") print pkg "=" $2 }') || return 1
    [ "$(printf '%s\n' "$out" | grep -c =)" = "$(echo $PKGS | wc -w)" ] || return 1
    printf '%s\n' "$out"
}

ROOT="$CACHE/root"
have_tree() {
    for b in $BINS; do [ -e "$ROOT/$b" ] || return 1; done
}

updated=no
if ! WANT=$(versions); then
    say "apt does not know the Courier packages yet; running apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed (no network to the Debian mirror?)"
    updated=yes
    WANT=$(versions) || die "no candidate for one of: $(echo $PKGS) (is this Debian 12 with main enabled?)"
fi

if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$WANT" ] && have_tree; then
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
        if have_tree; then
            say "download failed; keeping the tree unpacked before ($(tr '\n' ' ' < "$CACHE/stamp" 2>/dev/null))"
        else
            die "apt-get download of $(echo $PKGS) failed (no network to the Debian mirror, or an old package list: try apt-get update)"
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

# Libraries the packages depend on ("libgamin0 | libfam0": the first) and the tools,
# where not installed yet: through apt, at the candidate version.  They conflict with
# nothing Dovecot needs.
deps=$(for deb in "$CACHE"/debs/*.deb; do dpkg-deb -f "$deb" Depends; echo ","; done \
       | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/ //g' | grep '^lib' | sort -u)
missing=""
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $deps $TOOLS 2>/dev/null \
            | awk '$NF == "installed" {print $1}' || true)
for dep in $deps $TOOLS; do
    printf '%s\n' "$installed" | grep -qx "$dep" || missing="$missing $dep"
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
        </dev/null >&2 \
        || { [ "$updated" = no ] && apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q --no-install-recommends $missing </dev/null >&2; } \
        || die "apt-get install$missing failed"
fi

files=""
for b in $BINS; do
    [ -e "$ROOT/$b" ] || die "$ROOT/$b missing from the unpacked packages"
    files="$files $ROOT/$b"
done
LIBS="$ROOT/usr/lib:$ROOT/usr/lib/courier-authlib"
# shellcheck disable=SC2086
bad=$(LD_LIBRARY_PATH="$LIBS" ldd $files 2>&1 | awk '
    /^\// { bin = $1 } /not found/ { print "  " bin " " $1 }')
[ -z "$bad" ] || die "libraries still missing (LD_LIBRARY_PATH=$LIBS):
$bad"
command -v socat >/dev/null 2>&1 || die "socat is not installed"

echo "$ROOT"
