#!/bin/sh
# The whole test suite, as `make check` runs it: the unit tests of the pure
# modules, then the integration tests against a private Dovecot.  Each runner
# prints its own "N passed, N failed"; this script adds them up and ends
# with the total, exiting non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."

total_pass=0
total_fail=0
status=0

run_part() {
	name=$1
	shift
	echo "== $name"
	out=$(mktemp)
	{ "$@" 2>&1; echo "exit status $?" > "$out.rc"; } | tee "$out"
	rc=$(sed -n 's/^exit status //p' "$out.rc")
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$name: no summary line; counted as one failure"
		total_fail=$((total_fail + 1))
		status=1
	else
		p=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/')
		f=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/')
		total_pass=$((total_pass + p))
		total_fail=$((total_fail + f))
		[ "$f" -eq 0 ] || status=1
	fi
	if [ "${rc:-1}" -ne 0 ] && [ "$status" -eq 0 ]; then
		echo "$name: runner exited $rc; counted as one failure"
		total_fail=$((total_fail + 1))
		status=1
	fi
	rm -f "$out" "$out.rc"
}


run_part "unit tests" bash tests/unit/run.sh
if [ -f tests/fuzz/run.sh ]; then
	run_part "fuzz targets (a few seconds each)" bash tests/fuzz/run.sh 5
fi
run_part "integration tests (private Dovecot on 127.0.0.1)" \
	/usr/bin/python3 tests/run_integ.py -j "${POPBRIDGE_TEST_JOBS:-3}"

echo
echo "$total_pass passed, $total_fail failed"
exit $status
