#!/usr/bin/env bats
# Webhook delivery that survives its receiver and the dispatchers: pending deliveries are
# kept in Redis, retried with backoff by the dispatchers' deliverers, one attempt at a time,
# every attempt recorded on the batch with the same webhook-id.

load helpers

setup_file() {
	photos_start
	# deliveries that earlier files left, to receivers long gone, are not this file's
	redis-cli -u "$REDIS_URL" del imgpipe:webhooks >/dev/null
}

teardown_file() {
	photos_stop
}

setup() {
	DISPATCHERS=()
	LOG="$BATS_TEST_TMPDIR/dispatchers.log"
	hook_answers 200
}

teardown() {
	for pid in "${DISPATCHERS[@]}"; do
		stop_dispatcher KILL "$pid"
	done
	hook_answers 200
	redis-cli -u "$REDIS_URL" del imgpipe:webhooks >/dev/null   # a delivery this test left
	imgpipe stack up >/dev/null 2>&1
}

# A dispatcher of the test's own (the stack's is stopped first), logging to $LOG.
dispatcher() {
	imgpipe stack down dispatch >/dev/null 2>&1
	imgpipe-dispatch --claim-idle 3 "$@" 2>>"$LOG" &
	DISPATCHERS+=($!)
}

# stop_dispatcher SIGNAL PID: the dispatcher and the processes it started (its deliverer).
stop_dispatcher() {
	local child
	for child in $(pgrep -P "$2"); do kill -"$1" "$child" 2>/dev/null || true; done
	kill -"$1" "$2" 2>/dev/null || true
	wait "$2" 2>/dev/null || true
}

# submit_hooked [URL]: one product, its webhook URL (default the test server's /hook).
submit_hooked() {
	printf '%s\n' 'S. No.,Product Name,Input Image Urls' "1,One,$HTTPD_URL/autumn.jpg" >"$BATS_TEST_TMPDIR/one.csv"
	imgpipe submit "$BATS_TEST_TMPDIR/one.csv" --webhook "${1:-$HTTPD_URL/hook}" | jq -r .batch_id
}

# The requests the receiver had for batch $1.
hooks_of() {
	jq -c --arg id "$1" 'select((.body | fromjson).batch_id == $id)' "$HOOK_LOG"
}

# 1 while batch $1's event (its first ending) waits for delivery, else 0.
pending() {
	local hook
	hook=msg_$(printf '%s.0' "$1" | sha256sum | cut -c1-64)
	redis-cli -u "$REDIS_URL" zscore imgpipe:webhooks "$hook" | grep -c .
}

@test "the receiver failing for 15 s from the first attempt, then up: the batch ends at once, the event arrives once delivered, every attempt with one webhook-id" {
	hook_answers 503
	id=$(submit_hooked)
	wait_for "$id" 60 '.status == "completed"'
	# the job did not wait for its webhook: it is still pending
	assert_equal "$(field "$id" '[.webhook_deliveries[]? | select(.delivered)] | length')" 0
	for _ in $(seq 100); do [ -n "$(hooks_of "$id")" ] && break; sleep 0.1; done
	sleep 15
	hook_answers 200
	wait_for "$id" 60 'any(.webhook_deliveries[]?; .delivered)'
	hooks_of "$id" >"$BATS_TEST_TMPDIR/hooks"
	run jq -r .answer "$BATS_TEST_TMPDIR/hooks"
	assert_equal "$(grep -c 200 <<<"$output")" 1
	assert_equal "${lines[-1]}" 200
	# retried beyond notify's own 7.5 s of backoff, with one webhook-id, all signed
	[ "$(jq -s '.[-1].time - .[0].time' "$BATS_TEST_TMPDIR/hooks" | cut -d. -f1)" -ge 15 ]
	assert_equal "$(jq -r '.headers["webhook-id"]' "$BATS_TEST_TMPDIR/hooks" | sort -u | wc -l)" 1
	run verify_webhooks "$WEBHOOK_SECRET" --key-bytes <"$BATS_TEST_TMPDIR/hooks"
	assert_success
	# every attempt recorded, numbered, with that id: as many as the receiver had
	run field "$id" '[.webhook_deliveries[] | .attempt] | sort | map(tostring) | join(" ")'
	assert_output "$(seq -s ' ' "$(wc -l <"$BATS_TEST_TMPDIR/hooks")")"
	assert_equal "$(field "$id" '[.webhook_deliveries[].delivery] | unique | .[]')" \
		"$(jq -r '.headers["webhook-id"]' "$BATS_TEST_TMPDIR/hooks" | head -n 1)"
	assert_equal "$(field "$id" '[.webhook_deliveries[] | select(.delivered == false) | .status_code] | unique | .[]')" 503
	sleep 3
	assert_equal "$(hooks_of "$id" | wc -l)" "$(wc -l <"$BATS_TEST_TMPDIR/hooks")"
}

@test "a dispatcher killed (SIGKILL) while a delivery is pending: another delivers it after its restart" {
	hook_answers 503
	dispatcher
	id=$(submit_hooked)
	wait_for "$id" 60 '(.webhook_deliveries // [] | length) > 0'
	stop_dispatcher KILL "${DISPATCHERS[0]}"
	assert_equal "$(pending "$id")" 1
	hook_answers 200
	dispatcher
	wait_for "$id" 90 'any(.webhook_deliveries[]?; .delivered)'
	assert_equal "$(hooks_of "$id" | jq -r 'select(.answer == 200) | .answer')" 200
	assert_equal "$(pending "$id")" 0
}

@test "two dispatchers: no delivery attempted twice at once, every attempt recorded" {
	hook_answers 503,503,503,503,200
	dispatcher
	dispatcher
	id=$(submit_hooked "$HTTPD_URL/hook?ms=1500")
	wait_for "$id" 90 'any(.webhook_deliveries[]?; .delivered)'
	hooks_of "$id" >"$BATS_TEST_TMPDIR/hooks"
	assert_equal "$(wc -l <"$BATS_TEST_TMPDIR/hooks")" 5
	# each attempt began after the one before had its answer
	run jq -s '[range(1; length) as $i | .[$i].time >= .[$i - 1].done] | all' "$BATS_TEST_TMPDIR/hooks"
	assert_output true
	run field "$id" '[.webhook_deliveries[] | .attempt] | sort | map(tostring) | join(" ")'
	assert_output "1 2 3 4 5"
	# the deliverers logged each attempt once
	assert_equal "$(grep 'event=webhook_' "$LOG" | grep -c "$id")" 5
}

@test "IMGPIPE_WEBHOOK_RETRY_FOR=3 and the receiver gone: given up after 3 s, recorded, counted once" {
	failed() { redis-cli -u "$REDIS_URL" hget imgpipe:metrics webhook_deliveries_failed; }
	before=$(failed)
	IMGPIPE_WEBHOOK_RETRY_FOR=3 dispatcher
	id=$(submit_hooked "http://127.0.0.1:9/hook")
	wait_for "$id" 60 'any(.webhook_deliveries[]?; .gave_up)'
	run field "$id" '.webhook_deliveries | [length > 1, all(.delivered == false), (map(select(.gave_up)) | length), (.[-1].error | test("connect"; "i"))] | map(tostring) | join(" ")'
	assert_output "true true 1 true"
	assert_equal "$(failed)" "$((${before:-0} + 1))"
	assert_equal "$(pending "$id")" 0
	assert_equal "$(curl -sS "$IMGPIPE_URL/metrics" | grep '^imgpipe_webhooks_pending ')" "imgpipe_webhooks_pending 0"
	attempts=$(field "$id" '.webhook_deliveries | length')
	sleep 3
	assert_equal "$(field "$id" '.webhook_deliveries | length')" "$attempts"
	assert_equal "$(failed)" "$((${before:-0} + 1))"
}
