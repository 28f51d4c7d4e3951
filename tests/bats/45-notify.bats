#!/usr/bin/env bats
# notify against the test HTTP server's webhook receiver: Standard Webhooks headers and
# signatures checked by that convention's own library (tests/lib/verify-webhook.py), the
# webhook-id over attempts and reruns, retries on non-2xx answers, timeouts and refused
# connections.  The address policy is 47-egress's.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	stack_start redis ferretdb versitygw
	httpd_start "$BATS_FILE_TMPDIR"
	export HOOK="$HTTPD_URL/hook"
}

teardown_file() {
	httpd_stop
	stack_stop
}

setup() {
	: >"$HOOK_LOG"
	hook_answers 200
	unset WEBHOOK_URL WEBHOOK_SECRET
}

event() {
	printf '{"event": "batch.completed", "batch_id": "b1", "status": "completed", "message": "2 images", "progress": {"rows_total": 1, "images_done": 2}, "status_url": "/status/b1", "output_csv_url": "/status/b1?format=csv"%s}\n' "${1:-}"
}

# The webhook-id notify makes for a batch ending: msg_ and the hex SHA-256 of "BATCH.ENDING".
made_id() {
	echo "msg_$(printf '%s.%s' "$1" "$2" | sha256sum | cut -d' ' -f1)"
}

# A header of every request the test server got, one line each.
hook_header() {
	jq -r --arg h "$1" '.headers[$h]' "$HOOK_LOG"
}

@test "500 twice then 200: three deliveries of the same body and webhook-id, each verified" {
	hook_answers 500,500,200
	secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
	before=$(date +%s)
	# waits of 0.5 to 1 s, then 1 to 2 s: the attempts are seconds apart
	WEBHOOK_SECRET=$secret run notify --backoff 1000 < <(event ", \"webhook_url\": \"$HOOK\"")
	after=$(date +%s)
	assert_success
	id=$(made_id b1 0)
	assert_equal "$output" "{ \"batch_id\" : \"b1\", \"event\" : \"batch.completed\", \"delivery\" : \"$id\", \"url\" : \"$HOOK\", \"attempts\" : 3, \"status_code\" : 200, \"delivered\" : true }"
	assert_equal "$(jq -c .answer "$HOOK_LOG" | paste -sd,)" 500,500,200
	assert_equal "$(hook_header webhook-id | sort -u)" "$id"
	run verify_webhooks "$secret" <"$HOOK_LOG"
	assert_success
	assert_output "$(printf 'ok\nok\nok')"
	# each attempt has its own timestamp (and so its own signature)
	read -r first second third < <(hook_header webhook-timestamp | paste -sd' ')
	[ "$before" -le "$first" ]
	[ "$first" -le "$second" ]
	[ "$second" -le "$third" ]
	[ "$first" -lt "$third" ]
	[ "$third" -le "$after" ]
	while read -r hook; do
		assert_equal "$(jq -r '.headers["content-type"]' <<<"$hook")" application/json
		assert_equal "$(jq -r '.headers["x-imgpipe-event"]' <<<"$hook")" batch.completed
		assert_equal "$(jq -c '.headers | [has("x-imgpipe-signature"), has("x-imgpipe-delivery")]' <<<"$hook")" '[false,false]'
		# The body is the event record without webhook_url.
		assert_equal "$(jq -j .body <<<"$hook" | jq -cS .)" "$(event | jq -cS .)"
	done <"$HOOK_LOG"
}

@test "webhook-id: the same on a rerun of one batch ending, new for another ending, given by webhook_id" {
	export WEBHOOK_SECRET=plain-s3cret
	notify --url "$HOOK" < <(event) >/dev/null
	notify --url "$HOOK" < <(event ', "ending": 0') >/dev/null
	notify --url "$HOOK" < <(event ', "ending": 2') >/dev/null
	notify --url "$HOOK" < <(event ', "webhook_id": "msg_from-the-record"') >/dev/null
	assert_equal "$(hook_header webhook-id | paste -sd' ')" \
		"$(made_id b1 0) $(made_id b1 0) $(made_id b1 2) msg_from-the-record"
	# webhook_id is a header, not part of the body; ending stays in it
	assert_equal "$(jq -r '.body | fromjson | [has("webhook_id"), .ending] | @json' "$HOOK_LOG" | paste -sd' ')" \
		'[false,null] [false,0] [false,2] [false,null]'
	run verify_webhooks plain-s3cret --key-bytes <"$HOOK_LOG"
	assert_output "$(printf 'ok\nok\nok\nok')"
}

@test "an event without batch_id gets a random webhook-id, kept over its attempts" {
	hook_answers 500,200
	run notify --url "$HOOK" --backoff 10 < <(printf '%s\n' '{"event": "batch.completed"}')
	assert_success
	run notify --url "$HOOK" < <(printf '%s\n' '{"event": "batch.completed"}')
	assert_success
	run hook_header webhook-id
	assert_equal "${#lines[@]}" 3
	assert_regex "${lines[0]}" '^msg_[0-9a-f]{32}$'
	assert_equal "${lines[1]}" "${lines[0]}"
	refute [ "${lines[2]}" = "${lines[0]}" ]
}

@test "a plain secret signs with its own bytes, a whsec_ one with its decoded key" {
	WEBHOOK_SECRET=plain-s3cret run notify --url "$HOOK" < <(event)
	assert_success
	run verify_webhooks plain-s3cret --key-bytes <"$HOOK_LOG"
	assert_success
	: >"$HOOK_LOG"
	# unpadded base64 is accepted, as by Standard Webhooks' libraries
	WEBHOOK_SECRET=whsec_c2VjcmV0LWtleS1ieXRlcw run notify --url "$HOOK" < <(event)
	assert_success
	run verify_webhooks whsec_c2VjcmV0LWtleS1ieXRlcw <"$HOOK_LOG"
	assert_success
	run verify_webhooks secret-key-bytes --key-bytes <"$HOOK_LOG"
	assert_success
	run verify_webhooks whsec_c2VjcmV0LWtleS1ieXRlcw --key-bytes <"$HOOK_LOG"
	assert_failure
	assert_output "No matching signature found"
}

@test "a signature made with another secret does not verify" {
	WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw run notify --url "$HOOK" < <(event)
	assert_success
	run verify_webhooks whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx <"$HOOK_LOG"
	assert_failure
	assert_output "No matching signature found"
}

@test "a replay of a request more than 5 minutes after its webhook-timestamp is refused" {
	WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw run notify --url "$HOOK" < <(event)
	assert_success
	run verify_webhooks whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --late 290 <"$HOOK_LOG"
	assert_success
	run verify_webhooks whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --late 301 <"$HOOK_LOG"
	assert_failure
	assert_output "Message timestamp too old"
}

@test "without WEBHOOK_SECRET there is no signature header, but an id and a timestamp" {
	run notify --url "$HOOK" < <(event)
	assert_success
	assert_equal "$(jq -c '.headers | [has("webhook-signature"), .["webhook-id"], (.["webhook-timestamp"] | test("^[0-9]+$"))]' "$HOOK_LOG")" \
		"[false,\"$(made_id b1 0)\",true]"
}

@test "a whsec_ secret that is not base64 is a usage error; no request is made" {
	WEBHOOK_SECRET='whsec_not*base64' run notify --url "$HOOK" < <(event)
	assert_failure 64
	assert_output "notify: WEBHOOK_SECRET: what follows whsec_ is not a base64 key"
	assert_equal "$(wc -l <"$HOOK_LOG")" 0
}

@test "an event or webhook_id that would break the header lines is refused, not sent" {
	run --separate-stderr notify --url "$HOOK" < <(event ', "webhook_id": "a\r\nX-Injected: 1"'; event ', "webhook_id": ""')
	assert_failure 65
	assert_equal "$(jq -r .error <<<"${lines[0]}")" \
		'notify: not an event record: "event" and "webhook_id" must be printable ASCII of at most 256 characters'
	assert_equal "$(jq -r .error <<<"${lines[1]}")" "$(jq -r .error <<<"${lines[0]}")"
	assert_equal "$(wc -l <"$HOOK_LOG")" 0
}

@test "an unreachable webhook ends with exit 75 after the attempts set" {
	run notify --url http://127.0.0.1:1/hook --attempts 3 --backoff 10 < <(event)
	assert_failure 75
	assert_line --index 0 --regexp '^notify: batch.completed b1: not delivered after 3 attempts: .+'
	result=${lines[1]}
	assert_equal "$(jq -c '[.attempts, .status_code, .delivered, .url]' <<<"$result")" '[3,0,false,"http://127.0.0.1:1/hook"]'
	assert_regex "$(jq -r .error <<<"$result")" '^notify: not delivered after 3 attempts: .+'
}

@test "a receiver that never answers times out on each attempt" {
	python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(120)' >"$BATS_TEST_TMPDIR/port" &
	silent=$!
	for _ in $(seq 100); do [ -s "$BATS_TEST_TMPDIR/port" ] && break; sleep 0.05; done
	run notify --url "http://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")/hook" --attempts 2 --backoff 10 --timeout 1 < <(event)
	kill "$silent"
	assert_failure 75
	assert_equal "$(jq -r .attempts <<<"${lines[1]}")" 2
	assert_regex "$(jq -r .error <<<"${lines[1]}")" '^notify: not delivered after 2 attempts: Operation timed out'
}

@test "a receiver answering 404 every time gets the attempts set, then exit 75" {
	hook_answers 404
	run notify --url "$HOOK" --attempts 2 --backoff 10 < <(event)
	assert_failure 75
	assert_equal "$(wc -l <"$HOOK_LOG")" 2
	assert_equal "$(jq -c '[.attempts, .status_code, .delivered, .error]' <<<"${lines[1]}")" \
		'[2,404,false,"notify: not delivered after 2 attempts: HTTP 404"]'
}

@test "--url wins over webhook_url, which wins over WEBHOOK_URL" {
	export WEBHOOK_URL="$HOOK?from=env"
	run notify --url "$HOOK?from=flag" < <(event ", \"webhook_url\": \"$HOOK?from=record\"")
	assert_success
	run notify < <(event ", \"webhook_url\": \"$HOOK?from=record\""; event)
	assert_success
	assert_equal "$(jq -r .path "$HOOK_LOG" | paste -sd' ')" "/hook?from=flag /hook?from=record /hook?from=env"
}

@test "an event without any URL is skipped, not failed" {
	run --separate-stderr notify < <(event)
	assert_success
	# shellcheck disable=SC2154 # bats' run --separate-stderr sets $stderr
	assert_equal "$stderr" "notify: batch.completed b1: skipped: no webhook URL (--url, the record's webhook_url or WEBHOOK_URL)"
	assert_equal "$(jq -c '[.attempts, .status_code, .delivered, .url]' <<<"$output")" '[0,0,false,null]'
	assert_equal "$(jq -r .error <<<"$output")" \
		"notify: skipped: no webhook URL (--url, the record's webhook_url or WEBHOOK_URL)"
	assert_equal "$(wc -l <"$HOOK_LOG")" 0
}

@test "error records pass through; bad lines and non-events exit 65 after the rest" {
	run --separate-stderr notify --url "$HOOK" < <(printf '%s\n' '{"batch_id": "b0", "error": "upstream failed"}' 'not json' '{"batch_id": "b9"}'; event)
	assert_failure 65
	assert_line --index 0 '{"batch_id": "b0", "error": "upstream failed"}'
	assert_equal "$(jq -r .input_line <<<"${lines[1]}")" 2
	assert_regex "$(jq -r .error <<<"${lines[1]}")" '^notify: input line 2 is not a JSON object: '
	assert_equal "$(jq -r .error <<<"${lines[2]}")" 'notify: not an event record: no "event" string'
	assert_equal "$(jq -r .delivered <<<"${lines[3]}")" true
	assert_equal "${#lines[@]}" 4
	assert_equal "$(wc -l <"$HOOK_LOG")" 1
}

@test "an event not delivered exits 75 even after a bad line, before or after it" {
	hook_answers 500
	run --separate-stderr notify --url "$HOOK" --attempts 1 < <(echo 'not json'; event)
	assert_failure 75
	assert_equal "${#lines[@]}" 2
	run --separate-stderr notify --url "$HOOK" --attempts 1 < <(event; echo 'not json')
	assert_failure 75
	assert_equal "$(jq -r .delivered <<<"${lines[0]}")" false
	assert_equal "$(jq -r .input_line <<<"${lines[1]}")" 2
}

@test "usage errors exit 64; --help agrees with the man page" {
	run notify --attempts 0
	assert_failure 64
	run notify --bogus x
	assert_failure 64
	run notify --url
	assert_failure 64
	run notify --help
	assert_success
	while read -r opt; do
		sed 's/\\//g' "$ROOT/tools/notify/notify.1" | grep -q -- "$opt"
	done < <(grep -o -- '--[a-z]\+' <<<"$output" | sort -u)
}
