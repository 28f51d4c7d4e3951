#!/usr/bin/env bats
# imgpipe-dispatch on a real Redis: jobs are taken reliably, acknowledged only when the
# batch ended, taken over from a dead dispatcher, and run once with two dispatchers.
# The batch runner is tests/lib/record-batch, which records each run it is given.

load helpers

setup_file() {
	stack_start redis
	# the stack's own dispatcher would take these tests' jobs: pause it meanwhile
	if imgpipe stack status dispatch >/dev/null 2>&1; then
		imgpipe stack down dispatch
		export RESTART_DISPATCH=1
	fi
}

teardown_file() {
	[ -z "${RESTART_DISPATCH:-}" ] || imgpipe stack up dispatch
	stack_stop
}

setup() {
	redis-cli -u "$REDIS_URL" del imgpipe:jobs >/dev/null
	export JOB_LOG="$BATS_TEST_TMPDIR/jobs.log" JOB_DIR="$BATS_TEST_TMPDIR"
	: >"$JOB_LOG"
	DISPATCHERS=()
}

teardown() {
	for pid in "${DISPATCHERS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

dispatcher() {
	imgpipe-dispatch --script "$ROOT/tests/lib/record-batch" "$@" 2>>"$BATS_TEST_TMPDIR/dispatch.log" &
	DISPATCHERS+=($!)
}

enqueue() {
	redis-cli -u "$REDIS_URL" xadd imgpipe:jobs '*' batch "$1" >/dev/null
}

pending() {
	redis-cli -u "$REDIS_URL" xpending imgpipe:jobs dispatchers | head -n 1
}

# Waits up to 30 s for the job log to have N lines.
wait_runs() {
	for _ in $(seq 300); do
		[ "$(wc -l <"$JOB_LOG")" -ge "$1" ] && return 0
		sleep 0.1
	done
	cat "$JOB_LOG" "$BATS_TEST_TMPDIR/dispatch.log" >&2
	return 1
}

wait_acked() {
	for _ in $(seq 100); do [ "$(pending)" = 0 ] && return 0; sleep 0.1; done
	return 1
}

@test "a job queued before any dispatcher ran is taken, run once and acknowledged" {
	enqueue b1
	dispatcher
	wait_runs 1
	wait_acked
	sleep 1
	assert_equal "$(cat "$JOB_LOG")" "b1 1 0"
}

@test "a batch that asks to be retried is run again, with the last attempt flagged" {
	echo 75 >"$JOB_DIR/b2.exit"
	dispatcher --claim-idle 1 --max-attempts 3
	enqueue b2
	wait_runs 3
	run cat "$JOB_LOG"
	assert_output "$(printf 'b2 1 0\nb2 2 0\nb2 3 1')"
}

@test "a job of a dispatcher killed mid-batch is taken over by another, not before" {
	export JOB_SLEEP=3
	dispatcher --claim-idle 2
	enqueue b3
	wait_runs 1
	kill -KILL "${DISPATCHERS[0]}"
	JOB_SLEEP=0 dispatcher --claim-idle 2
	wait_runs 2
	wait_acked
	assert_equal "$(cut -d' ' -f1,2 "$JOB_LOG")" "$(printf 'b3 1\nb3 2')"
}

@test "a long batch keeps its job: no other dispatcher takes it while it runs" {
	export JOB_SLEEP=8
	dispatcher --claim-idle 3 --jobs 1
	dispatcher --claim-idle 3 --jobs 1
	enqueue b4
	wait_runs 1
	sleep 10
	wait_acked
	assert_equal "$(cat "$JOB_LOG")" "b4 1 0"
}

@test "two dispatchers on one queue run every batch exactly once" {
	dispatcher --jobs 2
	dispatcher --jobs 2
	for i in $(seq 20); do enqueue "m$i"; done
	wait_runs 20
	wait_acked
	sleep 1
	assert_equal "$(cut -d' ' -f1 "$JOB_LOG" | sort)" "$(seq 20 | sed 's/^/m/' | sort)"
}

@test "--jobs runs that many batches at once" {
	export JOB_SLEEP=2
	dispatcher --jobs 3
	for i in 1 2 3; do enqueue "p$i"; done
	wait_runs 3
	# all three started before the first could end
	run wc -l <"$JOB_LOG"
	assert_output 3
	run pending
	assert_output 3
}

@test "SIGTERM stops it cleanly and leaves the running batch pending for later" {
	export JOB_SLEEP=30
	dispatcher
	enqueue b5
	wait_runs 1
	kill -TERM "${DISPATCHERS[0]}"
	wait "${DISPATCHERS[0]}"
	assert_equal "$(pending)" 1
	run grep -c "stopped" "$BATS_TEST_TMPDIR/dispatch.log"
	assert_output 1
}

@test "it reconnects when Redis restarts and takes the jobs queued meanwhile" {
	dispatcher
	enqueue b6
	wait_runs 1
	wait_acked
	redis-cli -u "$REDIS_URL" shutdown >/dev/null 2>&1 || true
	imgpipe stack up redis >/dev/null 2>&1
	enqueue b7
	wait_runs 2
	wait_acked
	assert_equal "$(cut -d' ' -f1 "$JOB_LOG")" "$(printf 'b6\nb7')"
}

@test "usage errors exit 64" {
	run imgpipe-dispatch --jobs 0
	assert_failure 64
	run imgpipe-dispatch --bogus
	assert_failure 64
}
