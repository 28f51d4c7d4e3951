#!/usr/bin/env bats
# imgpipe-dispatch on a real Redis: jobs are taken reliably, acknowledged (and deleted)
# only when done, taken over from a dead dispatcher but never from a live one, run at most
# once at a time, handed back on SIGTERM, and given up after --max-attempts.
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
	redis-cli -u "$REDIS_URL" --scan --pattern 'imgpipe:lease:*' | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null
	export JOB_LOG="$BATS_TEST_TMPDIR/jobs.log" JOB_DIR="$BATS_TEST_TMPDIR"
	: >"$JOB_LOG"
	: >"$JOB_LOG.runs"
	DISPATCHERS=()
}

teardown() {
	for pid in "${DISPATCHERS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# No sweeping: the database may hold other tests' batches, which are not these tests' jobs.
dispatcher() {
	imgpipe-dispatch --script "$ROOT/tests/lib/record-batch" --sweep-after 0 "$@" 2>>"$BATS_TEST_TMPDIR/dispatch.log" &
	DISPATCHERS+=($!)
}

enqueue() {
	redis-cli -u "$REDIS_URL" xadd imgpipe:jobs '*' batch "$1" >/dev/null
}

pending() {
	redis-cli -u "$REDIS_URL" xpending imgpipe:jobs dispatchers | head -n 1
}

entries() {
	redis-cli -u "$REDIS_URL" xlen imgpipe:jobs
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

@test "a job queued before any dispatcher ran is taken, run once, acknowledged and deleted" {
	enqueue b1
	dispatcher
	wait_runs 1
	wait_acked
	sleep 1
	assert_equal "$(cat "$JOB_LOG")" "b1 1 0"
	assert_equal "$(entries)" 0
	run redis-cli -u "$REDIS_URL" exists imgpipe:lease:b1
	assert_output 0
}

@test "a chunk job runs as BATCH CHUNK ENDING, under a lease of its own" {
	redis-cli -u "$REDIS_URL" xadd imgpipe:jobs '*' batch c1 chunk 4 ending 2 >/dev/null
	dispatcher
	wait_runs 1
	wait_acked
	assert_equal "$(cat "$JOB_LOG")" "c1:4 1 0"
	run grep -c "batch=c1 chunk=4 stage=dispatch event=started " "$BATS_TEST_TMPDIR/dispatch.log"
	assert_output 1
}

@test "a batch that asks to be retried is run again, the last attempt flagged, then given up" {
	echo 75 >"$JOB_DIR/b2.exit"
	dispatcher --claim-idle 1 --max-attempts 3
	enqueue b2
	wait_runs 4
	wait_acked
	run cat "$JOB_LOG"
	assert_output "$(printf 'b2 1 0\nb2 2 0\nb2 3 1\nb2 3 1 gave up: gave up after 3 attempts: process-batch exited 75')"
}

@test "a run killed by a signal every time is given up after --max-attempts, with the reason" {
	echo KILL >"$JOB_DIR/b8.exit"
	dispatcher --claim-idle 1 --max-attempts 2
	enqueue b8
	wait_runs 3
	wait_acked
	run cat "$JOB_LOG"
	assert_output "$(printf 'b8 1 0\nb8 2 1\nb8 2 1 gave up: gave up after 2 attempts: process-batch killed by signal 9')"
	assert_equal "$(entries)" 0
}

@test "a job whose attempts were spent elsewhere is given up by the dispatcher that takes it" {
	export JOB_SLEEP=30
	dispatcher --claim-idle 1 --max-attempts 1
	enqueue b12
	wait_runs 1
	kill -KILL "${DISPATCHERS[0]}"
	JOB_SLEEP=0 dispatcher --claim-idle 1 --max-attempts 1
	wait_runs 2
	wait_acked
	run cat "$JOB_LOG"
	assert_output "$(printf 'b12 1 1\nb12 2 1 gave up: gave up after 1 attempt: no attempt ended')"
}

# Runs batch $1 on a dispatcher, sends it signal $2 mid-batch, and starts another, which
# takes the job over; waits until that one is done.
take_over() {
	dispatcher --claim-idle 2
	enqueue "$1"
	wait_runs 1
	kill "-$2" "${DISPATCHERS[0]}"
	JOB_SLEEP=0 dispatcher --claim-idle 2
	wait_runs 2
	wait_acked
}

@test "a job of a dispatcher killed mid-batch is taken over by another, not before" {
	export JOB_SLEEP=3
	take_over b3 KILL
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

@test "a dispatcher stopped longer than --claim-idle loses its job, and stops its run rather than take it back" {
	export JOB_SLEEP=8
	take_over b10 STOP
	kill -CONT "${DISPATCHERS[0]}"
	first=$(awk '$1 == "start" { print $4; exit }' "$JOB_LOG.runs")
	for _ in $(seq 50); do kill -0 "$first" 2>/dev/null || break; sleep 0.1; done
	run kill -0 "$first"
	assert_failure
	run grep -c 'batch=b10 stage=dispatch event=lease_lost msg="lease lost (the job was taken over); stopping its run' "$BATS_TEST_TMPDIR/dispatch.log"
	assert_output 1
	sleep 3
	assert_equal "$(wc -l <"$JOB_LOG")" 2
	assert_equal "$(pending) $(entries)" "0 0"
}

@test "a job queued twice never runs twice at once: the second waits for the lease" {
	export JOB_SLEEP=3
	# one job each: a dispatcher with a free slot could take both entries itself, and
	# then refuses the second as run_not_exited, never meeting the lease
	dispatcher --claim-idle 1 --jobs 1
	dispatcher --claim-idle 1 --jobs 1
	enqueue b11
	enqueue b11
	wait_runs 2
	wait_acked
	run cut -d' ' -f1 "$JOB_LOG.runs"
	assert_output "$(printf 'start\nend\nstart\nend')"
	run grep -c "batch=b11 stage=dispatch event=lease_held " "$BATS_TEST_TMPDIR/dispatch.log"
	[ "$output" -ge 1 ]
}

@test "SIGTERM hands the running job back: another dispatcher takes it at once, the attempt not counted" {
	export JOB_SLEEP=30
	dispatcher --claim-idle 20
	enqueue b9
	wait_runs 1
	JOB_SLEEP=0 dispatcher --claim-idle 20
	kill -TERM "${DISPATCHERS[0]}"
	wait "${DISPATCHERS[0]}"
	for _ in $(seq 50); do [ "$(wc -l <"$JOB_LOG")" -ge 2 ] && break; sleep 0.1; done
	run cat "$JOB_LOG"
	assert_output "$(printf 'b9 1 0\nb9 1 0')"
	wait_acked
	run grep -c 'batch=b9 stage=dispatch event=handed_back msg="process-batch killed by signal 15;' "$BATS_TEST_TMPDIR/dispatch.log"
	assert_output 1
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
