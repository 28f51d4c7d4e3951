#!/usr/bin/env bats
# The one address policy of outgoing requests (lib/netpolicy.c), as on a server facing the
# internet (no IMGPIPE_ALLOW_PRIVATE): webhooks to internal addresses refused at delivery
# (notify never connects: the test server on loopback sees no request) and at upload
# (POST /upload through lighttpd: 400, nothing created), downloads refused alike, and cloud
# metadata refused even with IMGPIPE_ALLOW_PRIVATE=1.  Only loopback is ever connected:
# every other address here is refused before a socket is opened for it.

load helpers
bats_require_minimum_version 1.5.0

# HOST|KIND: how a URL spells the host, and the kind of network the refusal names.
REFUSED='127.0.0.1|loopback
localhost|loopback
10.0.0.5|private network
169.254.169.254|cloud metadata
100.100.100.200|cloud metadata
[fd00:ec2::254]|cloud metadata
[::ffff:127.0.0.1]|loopback
[::ffff:7f00:1]|loopback
[64:ff9b::7f00:1]|loopback
[2002:7f00:1::]|loopback'
METADATA='169.254.169.254
100.100.100.200
[fd00:ec2::254]
[::ffff:169.254.169.254]'

setup_file() {
	stack_start
	local d=$BATS_FILE_TMPDIR
	{ printf '\377\330\377\340'; head -c 200 /dev/zero; } >"$d/img.jpg"
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,http://127.0.0.1/a.jpg\n' >"$d/ok.csv"
	printf 'S. No.,Product Name\n1,Kite\n' >"$d/bad.csv"
	httpd_start "$d"
	export PORT=${HTTPD_URL##*:}
	strict_web_start
}

teardown_file() {
	[ -z "${STRICT_PID:-}" ] || kill "$STRICT_PID" 2>/dev/null || true
	httpd_stop
	stack_stop
}

setup() {
	: >"$HOOK_LOG"
	unset IMGPIPE_ALLOW_PRIVATE
}

# A second lighttpd running the stack's CGI with the stack's environment less
# IMGPIPE_ALLOW_PRIVATE (which the stack sets).  Sets STRICT_URL and STRICT_PID.
strict_web_start() {
	local d="$BATS_FILE_TMPDIR/strict" run="$IMGPIPE_HOME/run" port
	mkdir -p "$d"
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	grep -v '"IMGPIPE_ALLOW_PRIVATE"' "$run/lighttpd-env.conf" >"$d/env.conf"
	sed -e "s|^server.port .*|server.port = $port|" -e "s|$run/lighttpd-env.conf|$d/env.conf|" \
		-e "s|$IMGPIPE_HOME/log/|$d/|" "$run/lighttpd.conf" >"$d/lighttpd.conf"
	lighttpd -D -f "$d/lighttpd.conf" >"$d/lighttpd.out" 2>&1 3>&- &
	export STRICT_PID=$! STRICT_URL="http://127.0.0.1:$port"
	for _ in $(seq 100); do curl -s -o /dev/null "$STRICT_URL/healthz" && break; sleep 0.05; done
}

event() {
	printf '{"event": "batch.completed", "batch_id": "b1", "status": "completed", "status_url": "/status/b1"%s}\n' "${1:-}"
}

# fetch URL: one record {"url": URL} through fetchimg.
fetch() {
	mkdir -p "$BATS_TEST_TMPDIR/out"
	run --separate-stderr bash -c 'jq -nc --arg u "$1" "{url: \$u}" | fetchimg --retries 0 --dir "$2"' \
		_ "$1" "$BATS_TEST_TMPDIR/out"
}

# upload BASE_URL WEBHOOK_URL CSV: a multipart POST /upload; prints "CODE ERROR".
upload() {
	local code
	code=$(curl -s -o "$BATS_TEST_TMPDIR/answer" -w '%{http_code}' -F "file=@$3;type=text/csv" \
		--form-string "webhook_url=$2" "$1/upload")
	echo "$code $(jq -r .error "$BATS_TEST_TMPDIR/answer")"
}

# What a failed upload must not change: the CSVs stored, and the batches.
leftovers() {
	echo "$(s3count uploads/) uploads, $(/usr/bin/python3 -c 'import sys, pymongo
print(pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database().batches.count_documents({}))' "$MONGODB_URI") batches"
}

@test "notify refuses webhooks to internal addresses, without connecting or retrying" {
	while IFS='|' read -r host kind; do
		run --separate-stderr notify --attempts 5 --backoff 1000 < <(event ", \"webhook_url\": \"http://$host:$PORT/hook\"")
		assert_failure 65
		assert_equal "$(jq -c '[.attempts, .status_code, .delivered, .error]' <<<"$output")" \
			"[1,0,false,\"notify: refused address for host $host ($kind)\"]"
	done <<<"$REFUSED"
	assert_equal "$(wc -l <"$HOOK_LOG")" 0
	# the control: allowed, the same loopback webhook arrives
	IMGPIPE_ALLOW_PRIVATE=1 run notify --url "http://127.0.0.1:$PORT/hook" < <(event)
	assert_success
	assert_equal "$(wc -l <"$HOOK_LOG")" 1
}

@test "fetchimg refuses the same addresses, naming the host and never what it resolved to" {
	while IFS='|' read -r host kind; do
		fetch "http://$host:$PORT/img.jpg"
		assert_success
		assert_equal "$(jq -r .error <<<"$output")" "fetchimg: refused address for host $host ($kind)"
	done <<<"$REFUSED"
	run ls -A "$BATS_TEST_TMPDIR/out"
	assert_output ""
	IMGPIPE_ALLOW_PRIVATE=1 fetch "http://127.0.0.1:$PORT/img.jpg"
	assert_equal "$(jq -r .content_type <<<"$output")" image/jpeg
}

@test "cloud metadata stays refused with IMGPIPE_ALLOW_PRIVATE=1, for webhooks and downloads" {
	export IMGPIPE_ALLOW_PRIVATE=1
	while read -r host; do
		run --separate-stderr notify < <(event ", \"webhook_url\": \"http://$host/hook\"")
		assert_failure 65
		assert_equal "$(jq -r .error <<<"$output")" "notify: refused address for host $host (cloud metadata)"
		fetch "http://$host/latest/meta-data/"
		assert_equal "$(jq -r .error <<<"$output")" "fetchimg: refused address for host $host (cloud metadata)"
		# nor through a redirect from a host that may be reached
		fetch "$HTTPD_URL/redirect?to=http://$host/latest/meta-data/"
		assert_equal "$(jq -r .error <<<"$output")" "fetchimg: refused address for host $host (cloud metadata)"
	done <<<"$METADATA"
}

@test "an upload whose webhook resolves only to refused addresses is 400, and nothing is created" {
	local before
	before=$(leftovers)
	while IFS='|' read -r host kind; do
		assert_equal "$(upload "$STRICT_URL" "http://$host:$PORT/hook" "$BATS_FILE_TMPDIR/ok.csv")" \
			"400 webhook_url: refused address ($kind)"
	done <<<"$REFUSED"
	assert_equal "$(upload "$STRICT_URL" "http://no-such-host.invalid/hook" "$BATS_FILE_TMPDIR/ok.csv")" \
		"400 webhook_url: host does not resolve"
	assert_equal "$(leftovers)" "$before"
	assert_equal "$(wc -l <"$HOOK_LOG")" 0
	# The control: a public address passes (nothing is connected at upload), so a bad CSV
	# gets the answer it gets without a webhook.
	assert_equal "$(upload "$STRICT_URL" "http://192.0.2.1/hook" "$BATS_FILE_TMPDIR/bad.csv")" \
		"$(upload "$STRICT_URL" "" "$BATS_FILE_TMPDIR/bad.csv")"
}

@test "with IMGPIPE_ALLOW_PRIVATE=1 a loopback webhook passes the upload check, a metadata one never" {
	local before
	before=$(leftovers)
	while read -r host; do
		assert_equal "$(upload "$IMGPIPE_URL" "http://$host/hook" "$BATS_FILE_TMPDIR/ok.csv")" \
			"400 webhook_url: refused address (cloud metadata)"
	done <<<"$METADATA"
	assert_equal "$(leftovers)" "$before"
	assert_equal "$(upload "$IMGPIPE_URL" "http://127.0.0.1:$PORT/hook" "$BATS_FILE_TMPDIR/bad.csv")" \
		"$(upload "$IMGPIPE_URL" "" "$BATS_FILE_TMPDIR/bad.csv")"
	assert_equal "$(upload "$STRICT_URL" "http://127.0.0.1:$PORT/hook" "$BATS_FILE_TMPDIR/bad.csv")" \
		"400 webhook_url: refused address (loopback)"
}
