#!/usr/bin/env bats
# The chaos run's short form (tests/chaos/run): two minutes of SIGKILLs of random parts of a
# stack of its own, with batches, cancels and retries meanwhile, then every invariant checked
# with independent clients.  The seed is fixed, so a failure replays with the same command.
# Then what the chaos run found, each as a test of its own.

load helpers

setup_file() {
	stack_start
}

teardown_file() {
	stack_stop
}

teardown() {
	imgpipe stack up ferretdb >/dev/null 2>&1
	[ -z "${RUN_PID:-}" ] || kill -KILL "$RUN_PID" 2>/dev/null || true
}

@test "chaos, seed 93: 36 faults planned over 5 batches in two minutes; nothing lost, run twice at once or announced twice" {
	IMGPIPE_CHAOS_HOME="$IMGPIPE_HOME/chaos" IMGPIPE_CHAOS_PORT_BASE=$((IMGPIPE_PORT_BASE + 50)) \
		run "$ROOT/tests/chaos/run" --seed 93 --minutes 2 --faults 36 --batches 5 --settle 240
	assert_success
	assert_line --regexp '^faults: (2[5-9]|[3-9][0-9]) injected'
	assert_line --regexp '^batches: [0-9]+ submitted, [3-9] accepted'
	assert_line 'lost = 0, duplicated = 0'
	assert_line --index $((${#lines[@]} - 1)) PASS
}

# A run of a planning job holding lease 41, whose first step waits for the database (down).
stuck_run() {
	id=$(/usr/bin/python3 -c 'import secrets; print(secrets.token_hex(16))')
	lease=imgpipe:lease:$id
	redis-cli -u "$REDIS_URL" set "$lease" 41 PX 60000 >/dev/null
	imgpipe stack down ferretdb
	IMGPIPE_LEASE=$lease IMGPIPE_FENCE=41 IMGPIPE_LEASE_MS=60000 "$ROOT/scripts/process-batch" "$id" \
		2>"$BATS_TEST_TMPDIR/run.log" &
	RUN_PID=$!
	for _ in $(seq 100); do pgrep -f "dbrecord chunk $id" >/dev/null && break; sleep 0.1; done
	sleep 1
	pgrep -f "dbrecord chunk $id"
}

# Seed 93 once had a run that lost its lease while its finisher's dbrecord waited for the
# database: the SIGTERM waited for dbrecord, and the job's next run began before it ended.
@test "a run whose lease is taken over while a step waits for the database stops within seconds" {
	stuck_run
	redis-cli -u "$REDIS_URL" set "$lease" 42 PX 60000 >/dev/null   # another run's now
	for _ in $(seq 60); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done   # the watch looks every 2 s
	run kill -0 "$RUN_PID"
	assert_failure
	rc=0
	wait "$RUN_PID" || rc=$?
	[ "$rc" -ne 0 ]   # not done: its job runs again
	grep -q 'stage=lease event=lost ' "$BATS_TEST_TMPDIR/run.log"
	run pgrep -f "dbrecord chunk $id"
	assert_failure   # nothing of the run goes on
}

# Seed 93 again: a process-batch killed alone (as the OOM killer would) left its steps
# running, and they went on writing beside the job's next run.
# CI once left a run hung for good: told to stop while a step's stderr went to a file, its
# trap exited with bash's copy of the log's pipe still open, and it waited for the log to end.
@test "a run told to stop (SIGTERM) while a step waits for the database exits once the step ends, and logs it" {
	stuck_run
	kill -TERM "$RUN_PID"
	imgpipe stack up ferretdb   # the step ends; bash runs the trap then
	for _ in $(seq 100); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
	run kill -0 "$RUN_PID"
	assert_failure
	rc=0
	wait "$RUN_PID" || rc=$?
	assert_equal "$rc" 143
	grep -q 'stage=batch event=stopped ms=[0-9]* msg="stopped by SIGTERM"' "$BATS_TEST_TMPDIR/run.log"
}

@test "a process-batch killed with SIGKILL: what it started stops once its lease is dropped" {
	stuck_run
	kill -KILL "$RUN_PID"
	redis-cli -u "$REDIS_URL" del "$lease" >/dev/null   # as its dispatcher does when it fails
	for _ in $(seq 60); do pgrep -f "dbrecord chunk $id" >/dev/null || break; sleep 0.1; done
	run pgrep -f "dbrecord chunk $id"
	assert_failure
	grep -q 'stage=lease event=lost ' "$BATS_TEST_TMPDIR/run.log"
}
