#!/bin/bash
# Build and run the libFuzzer targets in tests/fuzz.
#
#   bash tests/fuzz/run.sh SECONDS            every tests/fuzz/fuzz_*.c
#   bash tests/fuzz/run.sh SECONDS norm date  only fuzz_norm.c, fuzz_date.c
#
# `make check` runs it with 5 seconds per target, `make fuzz` with
# FUZZ_SECONDS.  For each target:
#   1. build tests/fuzz/build/fuzz_NAME with clang -fsanitize=fuzzer,
#      address,undefined (only when a source is newer than the program),
#      linked with the sources its "// link:" line names plus
#      bridge/xmalloc.c and bridge/log.c, and the pkg-config packages of
#      its "// pkg:" line;
#   2. replay every file of the committed corpus tests/fuzz/corpus/NAME/,
#      so that an input that crashed once fails every run until fixed;
#   3. fuzz for SECONDS on a temporary copy of that corpus (the committed
#      one is not touched), with -max_len from the "// max_len:" line and
#      the dictionary tests/fuzz/dict/NAME.dict if there is one.
# A crash, sanitizer report, leak, timeout or out-of-memory is copied to
# tests/fuzz/crashes/ and fails the target.  One line per target,
# "PASS fuzz_NAME (N runs, M s)" or "FAIL fuzz_NAME: why", then
# "N passed, N failed"; the exit status is non-zero on any failure,
# including a missing clang or libFuzzer.
#
# The whole script is one { ... } block, read before it runs: editing it
# while a long run goes on cannot change what that run does.
{
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
fz=tests/fuzz
build=$fz/build
crashes=$fz/crashes

usage() {
	echo "usage: bash tests/fuzz/run.sh SECONDS [TARGET...]" >&2
	echo "0 passed, 1 failed"
	exit 2
}
[ $# -ge 1 ] || usage
secs=$1
shift
case $secs in
''|*[!0-9]*) usage ;;
esac
[ "$secs" -ge 1 ] || usage

if [ $# -gt 0 ]; then
	srcs=()
	for t in "$@"; do
		t=${t%.c}
		t=${t#fuzz_}
		srcs+=("$fz/fuzz_${t##*/}.c")
	done
else
	srcs=("$fz"/fuzz_*.c)
fi
ntargets=${#srcs[@]}

CC=${FUZZ_CC:-clang}
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -g -O1 \
-fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=all -Ibridge"
# halt_on_error: a UBSan report is a crash (as -fno-sanitize-recover makes
# it); detect_leaks: LeakSanitizer after each input (libFuzzer's default).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

mkdir -p "$build"
# A new compiler or new flags rebuild everything.
if [ "$(cat "$build/.cc-flags" 2>/dev/null)" != "$CC $CFLAGS" ]; then
	echo "$CC $CFLAGS" >"$build/.cc-flags"
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/popbridge-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Without clang and libFuzzer nothing here can run: fail, loudly.
toolchain_fail() {
	echo "FAIL fuzz toolchain: $1"
	echo "  (on Debian: apt-get install clang libclang-rt-14-dev, or set" \
	    "FUZZ_CC to a clang with libFuzzer)"
	for src in "${srcs[@]}"; do
		echo "FAIL $(basename "$src" .c): not built (no toolchain)"
	done
	echo "0 passed, $ntargets failed"
	exit 1
}
command -v "$CC" >/dev/null 2>&1 || toolchain_fail "no $CC in PATH"
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
    >"$tmp/probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined -o "$tmp/probe" \
    "$tmp/probe.c" >"$tmp/probe.log" 2>&1; then
	sed 's/^/  /' "$tmp/probe.log" | head -n 20
	toolchain_fail "$CC cannot link -fsanitize=fuzzer,address,undefined"
fi

# A "// key: value" line from the top of a target.
meta() {
	sed -n "s|^// $2:[[:space:]]*||p" "$1" | head -n 1
}

# Build one target; 0 if the program is there and up to date.
build_one() {
	local src=$1 name bin link pkgs f deps pkgflags= stale=0 s
	local -a files=()
	name=$(basename "$src" .c)
	bin=$build/$name
	link=$(meta "$src" link)
	pkgs=$(meta "$src" pkg)
	for f in $link bridge/xmalloc.c bridge/log.c; do
		case " ${files[*]-} " in
		*" $f "*) ;;
		*) files+=("$f") ;;
		esac
	done
	deps=("$src" "$fz/fuzz.h" bridge/bridge.h "$fz/run.sh" "$build/.cc-flags"
	    "${files[@]}")
	# So do a private header (imap_int.h) and a module included whole
	# (to reach its static functions).
	for f in $(sed -n 's|^#include "\(\.\./\.\./\)*\(bridge/\)*\([a-z0-9_]*\.[ch]\)".*|\3|p' \
	    "$src"); do
		[ -f "bridge/$f" ] && deps+=("bridge/$f")
	done
	if [ -n "${pkgs// /}" ]; then
		if ! pkgflags=$(pkg-config --cflags --libs $pkgs 2>&1); then
			echo "$pkgflags" >"$bin.cc.log"
			echo "pkg-config $pkgs failed" >>"$bin.cc.log"
			return 1
		fi
	fi
	[ -x "$bin" ] || stale=1
	for s in "${deps[@]}"; do
		[ -e "$s" ] || { echo "no such file: $s" >"$bin.cc.log"; return 1; }
		[ "$s" -nt "$bin" ] && stale=1
	done
	[ "$stale" -eq 0 ] && return 0
	# shellcheck disable=SC2086
	if ! $CC $CFLAGS -o "$bin.new" "$src" "${files[@]}" $pkgflags \
	    >"$bin.cc.log" 2>&1; then
		rm -f "$bin.new"
		return 1
	fi
	mv -f "$bin.new" "$bin"
}

# Build every target first, two at a time.
declare -A built
for src in "${srcs[@]}"; do
	[ -f "$src" ] || continue
	name=$(basename "$src" .c)
	build_one "$src" &
	pids[$!]=$name
	while [ "$(jobs -rp | wc -l)" -ge 2 ]; do
		wait -n
	done
done
for pid in "${!pids[@]}"; do
	if wait "$pid"; then
		built[${pids[$pid]}]=1
	else
		built[${pids[$pid]}]=0
	fi
done

# The sanitizer or check report of a log: from its first line on, bounded.
show_report() {
	local at
	at=$(grep -n -m 1 -E 'ERROR: |FUZZ CHECK FAILED|runtime error:|==ERROR|deadly signal|Timeout|out-of-memory' "$1" |
	    cut -d: -f1)
	if [ -n "$at" ]; then
		sed -n "$at,$((at + 45))p" "$1"
	else
		tail -n 45 "$1"
	fi | sed 's/^/  /'
}

pass=0
failed=0
fail_target() {
	echo "FAIL $1: $2"
	failed=$((failed + 1))
}

# Keep an artifact: tests/fuzz/crashes/NAME-crash-SHA1.
keep_artifacts() {
	local name=$1 dir=$2 a kept=
	mkdir -p "$crashes"
	for a in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
		[ -f "$a" ] || continue
		cp "$a" "$crashes/$name-$(basename "$a")"
		kept="$kept $crashes/$name-$(basename "$a")"
	done
	echo "$kept"
}

for src in "${srcs[@]}"; do
	name=$(basename "$src" .c)
	short=${name#fuzz_}
	bin=$build/$name
	if [ ! -f "$src" ]; then
		fail_target "$name" "no such target $src"
		continue
	fi
	if [ "${built[$name]:-0}" != 1 ]; then
		sed 's/^/  /' "$bin.cc.log" 2>/dev/null | head -n 40
		fail_target "$name" "does not build"
		continue
	fi
	[ -s "$bin.cc.log" ] && sed 's/^/  /' "$bin.cc.log"
	: >"$bin.cc.log"

	maxlen=$(meta "$src" max_len)
	maxlen=${maxlen:-4096}
	opts=(-timeout=10 -rss_limit_mb=2048)
	dict=$fz/dict/$short.dict
	corpus=$fz/corpus/$short
	work=$tmp/$name
	mkdir -p "$work/corpus" "$work/art"

	# 1. The committed corpus, every file once, as it is.
	files=()
	if [ -d "$corpus" ]; then
		while IFS= read -r -d '' f; do
			files+=("$f")
		done < <(find "$corpus" -maxdepth 1 -type f -print0 | sort -z)
	fi
	if [ ${#files[@]} -gt 0 ]; then
		if ! "$bin" "${opts[@]}" -artifact_prefix="$work/art/" \
		    "${files[@]}" >"$work/replay.log" 2>&1; then
			show_report "$work/replay.log"
			bad=$(sed -n 's/^Running: //p' "$work/replay.log" |
			    tail -n 1)
			kept=$(keep_artifacts "$name" "$work/art")
			fail_target "$name" "corpus input ${bad:-?} fails on replay${kept:+ (kept:$kept)}"
			continue
		fi
		cp "${files[@]}" "$work/corpus/"
	fi

	# 2. Fuzz on the copy.
	fopts=("${opts[@]}" -max_total_time="$secs" -max_len="$maxlen"
	    -print_final_stats=1 -artifact_prefix="$work/art/")
	[ -f "$dict" ] && fopts+=(-dict="$dict")
	start=$(date +%s)
	"$bin" "${fopts[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
	    "$work/fuzz.log" | tail -n 1)
	kept=$(keep_artifacts "$name" "$work/art")
	if [ "$rc" -ne 0 ] || [ -n "$kept" ] ||
	    grep -q -e 'runtime error:' -e '^==[0-9]*==ERROR' \
	    "$work/fuzz.log"; then
		show_report "$work/fuzz.log"
		grep -E '^(MS:|0x|Base64:|artifact_prefix)' "$work/fuzz.log" |
		    tail -n 4 | cut -c1-300 | sed 's/^/  /'
		for k in $kept; do
			echo "  reproduce: $k"
			echo "    $bin $k"
		done
		fail_target "$name" "exit $rc after ${runs:-?} runs, ${took} s${kept:+ (kept:$kept)}"
		continue
	fi
	echo "PASS $name (${runs:-?} runs, $took s)"
	pass=$((pass + 1))
done

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
exit
}
