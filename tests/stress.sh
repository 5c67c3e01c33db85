#!/bin/sh
# `make stress`: fault injection and kill -9 at length (issue 6).
#
#   1. the kill -9 loop with at least $POPBRIDGE_STRESS_KILLS kills (500),
#      in segments of $POPBRIDGE_STRESS_SEGMENT (50), each run again at once,
#      half of each segment with two CPU-bound processes beside it --
#      tests/stress_kill.py (harness.InterruptLoop, as test_crash);
#   1b. the same loop with SIGTERM and with SIGINT, at least
#      $POPBRIDGE_STRESS_SIGNALS (500) of each: every signalled run must
#      stop by itself (exit 75), and nothing be lost or imported twice;
#   2. the fault tests (tests/integ/test_faults.py) $POPBRIDGE_STRESS_ROUNDS
#      times (5), each round with another seed for its kill loop;
#   3. the hostile-server tests (tests/integ/test_hostile.py)
#      $POPBRIDGE_STRESS_HOSTILE times (1).
#
# Every message-by-message check appends its lost / duplicated / changed
# counts to a tally; the totals are printed and must all be 0.  Ends with
# "N passed, N failed" like tests/check.sh; exits non-zero if anything
# failed or anything was lost or duplicated.  $POPBRIDGE selects the binary.
set -u
cd "$(dirname "$0")/.."

KILLS=${POPBRIDGE_STRESS_KILLS:-500}
SIGNALS=${POPBRIDGE_STRESS_SIGNALS:-500}
ROUNDS=${POPBRIDGE_STRESS_ROUNDS:-5}
HOSTILE=${POPBRIDGE_STRESS_HOSTILE:-1}
SEED=${POPBRIDGE_TEST_SEED:-$(date +%s)}
PY=/usr/bin/python3

tally=$(mktemp /tmp/popbridge-stress-tally.XXXXXX)
trap 'rm -f "$tally" "$tally.out" "$tally.rc"' EXIT INT TERM
export POPBRIDGE_STRESS_TALLY="$tally"

total_pass=0
total_fail=0
status=0

run_part() {
	name=$1
	shift
	echo "== $name"
	{ "$@" 2>&1; echo "$?" > "$tally.rc"; } | tee "$tally.out"
	rc=$(cat "$tally.rc")
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tally.out" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$name: no summary line; counted as one failure"
		total_fail=$((total_fail + 1))
		status=1
		return
	fi
	p=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/')
	f=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/')
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	[ "$f" -eq 0 ] || status=1
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "$name: exited $rc; counted as one failure"
		total_fail=$((total_fail + 1))
		status=1
	fi
}

run_part "kill -9 loop, $KILLS kills" \
	env POPBRIDGE_TEST_SEED="$SEED" $PY tests/stress_kill.py --signal KILL --kills "$KILLS"

for sig in TERM INT; do
	run_part "SIG$sig loop, $SIGNALS signals" \
		env POPBRIDGE_TEST_SEED="$SEED" $PY tests/stress_kill.py --signal "$sig" --kills "$SIGNALS"
done

i=1
while [ "$i" -le "$ROUNDS" ]; do
	run_part "fault tests, round $i of $ROUNDS" \
		env POPBRIDGE_TEST_SEED=$((SEED + 1000 * i)) $PY tests/run_integ.py -k test_faults
	i=$((i + 1))
done

i=1
while [ "$i" -le "$HOSTILE" ]; do
	run_part "hostile-server tests, round $i of $HOSTILE" \
		$PY tests/run_integ.py -k test_hostile
	i=$((i + 1))
done

# The message-by-message verdicts of every check above.
counts=$($PY - "$tally" <<'EOF'
import json, sys
lost = dup = changed = checks = 0
for line in open(sys.argv[1]):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    checks += 1
    lost += rec.get("lost", 0)
    dup += rec.get("dup", 0)
    changed += rec.get("corrupt", 0)
print(checks, lost, dup, changed)
EOF
)
set -- $counts
echo
echo "message checks: $1; lost: $2; duplicated: $3; changed: $4"
if [ "$2" -ne 0 ] || [ "$3" -ne 0 ]; then
	echo "messages were lost or duplicated"
	status=1
fi
echo "$total_pass passed, $total_fail failed"
exit $status
