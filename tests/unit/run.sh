#!/bin/bash
# Build and run the unit tests in tests/unit.
#
#   bash tests/unit/run.sh            every tests/unit/*_test.c
#   bash tests/unit/run.sh msg date   only msg_test.c and date_test.c
#
# Each test file names what it links in comment lines at its top:
#   // link: bridge/msg.c bridge/date.c      sources under test
#   // pkg: libconfig sqlite3                pkg-config packages (optional)
# bridge/xmalloc.c and bridge/log.c are always linked.  Programs go to
# tests/unit/build/ and are built with AddressSanitizer and UBSan.  Each
# program prints "N passed, N failed"; the last line here is the sum.  The
# exit status is non-zero on any failure, compile error, sanitizer report
# or crash.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
build=tests/unit/build
mkdir -p "$build"

CC=${CC:-cc}
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -g -fno-omit-frame-pointer \
-fsanitize=address,undefined -Ibridge"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

if [ $# -gt 0 ]; then
	tests=()
	for t in "$@"; do
		t=${t%.c}
		t=${t%_test}
		tests+=("tests/unit/${t##*/}_test.c")
	done
else
	tests=(tests/unit/*_test.c)
fi

total_pass=0
total_fail=0
bad=0
for src in "${tests[@]}"; do
	name=$(basename "$src" .c)
	echo "== $name"
	if [ ! -f "$src" ]; then
		echo "FAIL $src: no such test"
		total_fail=$((total_fail + 1))
		bad=1
		continue
	fi
	link=$(sed -n 's|^// link:||p' "$src" | head -n 1)
	pkgs=$(sed -n 's|^// pkg:||p' "$src" | head -n 1)
	srcs=()
	for f in $link bridge/xmalloc.c bridge/log.c; do
		case " ${srcs[*]-} " in
		*" $f "*) ;;
		*) srcs+=("$f") ;;
		esac
	done
	pkgflags=
	if [ -n "${pkgs// /}" ]; then
		if ! pkgflags=$(pkg-config --cflags --libs $pkgs); then
			echo "FAIL $src: pkg-config $pkgs failed"
			total_fail=$((total_fail + 1))
			bad=1
			continue
		fi
	fi
	# shellcheck disable=SC2086
	if ! $CC $CFLAGS -o "$build/$name" "$src" "${srcs[@]}" $pkgflags \
	    >"$build/$name.cc.log" 2>&1; then
		cat "$build/$name.cc.log"
		echo "FAIL $src: compile error"
		total_fail=$((total_fail + 1))
		bad=1
		continue
	fi
	# Warnings are shown but do not fail the run.
	[ -s "$build/$name.cc.log" ] && cat "$build/$name.cc.log"

	"$build/$name" >"$build/$name.out" 2>"$build/$name.err"
	rc=$?
	cat "$build/$name.out"
	if [ -s "$build/$name.err" ]; then
		echo "-- $name stderr:"
		cat "$build/$name.err"
	fi
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$build/$name.out" |
	    tail -n 1)
	if [ -n "$line" ]; then
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed}
	else
		echo "FAIL $name: no \"N passed, N failed\" line (exit $rc)"
		p=0
		f=1
	fi
	# UBSan reports in this process (children report through unit.h).
	ub=$(grep -c 'runtime error:' "$build/$name.err")
	if [ "$ub" -gt 0 ]; then
		echo "FAIL $name: $ub UndefinedBehaviorSanitizer report(s)"
		f=$((f + ub))
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		# e.g. LeakSanitizer after main returned
		echo "FAIL $name: exit status $rc with no failed check"
		f=1
	fi
	[ "$rc" -ne 0 ] || [ "$f" -ne 0 ] && bad=1
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
done

echo "$total_pass passed, $total_fail failed"
[ "$bad" -eq 0 ] && [ "$total_fail" -eq 0 ]
