#!/usr/bin/env bats
# notify against the test HTTP server's webhook receiver: headers, an HMAC checked
# independently with openssl, retries on non-2xx answers, timeouts and refused connections.

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

# The signature a receiver computes from the body it got, with openssl alone.
hmac() {
	printf %s "$1" | openssl dgst -sha256 -hmac "$2" | sed 's/.* /sha256=/'
}

@test "500 twice then 200: three deliveries of the same signed body, one result" {
	hook_answers 500,500,200
	secret=s3cret-for-tests
	WEBHOOK_SECRET=$secret run notify --backoff 20 < <(event ", \"webhook_url\": \"$HOOK\"")
	assert_success
	assert_equal "$(wc -l <"$HOOK_LOG")" 3
	delivery=$(jq -r '.headers["x-imgpipe-delivery"]' "$HOOK_LOG" | sort -u)
	assert_equal "$(wc -l <<<"$delivery")" 1
	assert_regex "$delivery" '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
	assert_equal "$(jq -c .answer "$HOOK_LOG" | paste -sd,)" 500,500,200
	while read -r hook; do
		body=$(jq -j .body <<<"$hook")
		assert_equal "$(jq -r '.headers["x-imgpipe-signature"]' <<<"$hook")" "$(hmac "$body" "$secret")"
		assert_equal "$(jq -r '.headers["content-type"]' <<<"$hook")" application/json
		assert_equal "$(jq -r '.headers["x-imgpipe-event"]' <<<"$hook")" batch.completed
		# The body is the event record without webhook_url.
		assert_equal "$(jq -cS . <<<"$body")" "$(event | jq -cS .)"
	done <"$HOOK_LOG"
	assert_equal "$output" "{ \"batch_id\" : \"b1\", \"event\" : \"batch.completed\", \"delivery\" : \"$delivery\", \"url\" : \"$HOOK\", \"attempts\" : 3, \"status_code\" : 200, \"delivered\" : true }"
}

@test "a signature made with another secret does not match" {
	WEBHOOK_SECRET=right-secret run notify --url "$HOOK" < <(event)
	assert_success
	body=$(jq -j .body "$HOOK_LOG")
	sig=$(jq -r '.headers["x-imgpipe-signature"]' "$HOOK_LOG")
	assert_equal "$sig" "$(hmac "$body" right-secret)"
	refute [ "$sig" = "$(hmac "$body" wrong-secret)" ]
}

@test "without WEBHOOK_SECRET there is no signature header" {
	run notify --url "$HOOK" < <(event)
	assert_success
	assert_equal "$(jq -r '.headers | has("x-imgpipe-signature")' "$HOOK_LOG")" false
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
