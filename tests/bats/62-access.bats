#!/usr/bin/env bats
# Access through the real web server: a lighttpd of this file's own (the stack's stays
# open for the other files), started by `imgpipe stack up lighttpd` with
# IMGPIPE_API_TOKENS and IMGPIPE_MAX_IMAGES set, on the stack's Redis, FerretDB and
# versitygw.  Tokens (Bearer and Basic), tenants, what is kept of a token, the image
# limit, cross-site posts, credentials in URLs, and the imgpipe client's token.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	stack_start redis ferretdb versitygw
	local d=$BATS_FILE_TMPDIR
	TOKEN_A=$(openssl rand -hex 24)
	TOKEN_B=$(openssl rand -base64 36)
	export TOKEN_A TOKEN_B
	printf '# the test tenants\n\n%s\n  %s\t\n' "$TOKEN_A" "$TOKEN_B" >"$d/tokens"
	export SECURE_HOME=$d/home SECURE_PORT=$((IMGPIPE_PORT_BASE + 10))
	export SECURE_URL=http://127.0.0.1:$SECURE_PORT
	secure stack up lighttpd >&3 2>&1
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,"http://127.0.0.1:9/a.jpg, http://127.0.0.1:9/b.jpg"\n' >"$d/ok.csv"
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,"http://127.0.0.1:9/a.jpg, http://127.0.0.1:9/b.jpg"\n2,Cup,http://127.0.0.1:9/c.jpg\n3,Bad,not-a-url\n' >"$d/three.csv"
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,"http://127.0.0.1:9/a.jpg, http://127.0.0.1:9/b.jpg"\n2,Cup,"http://127.0.0.1:9/c.jpg,http://127.0.0.1:9/d.jpg"\n' >"$d/four.csv"
}

teardown_file() {
	secure stack down lighttpd >&3 2>&1
	stack_stop
}

# secure ARGS...: imgpipe ARGS for the lighttpd with tokens (at most 3 images a batch).
secure() {
	IMGPIPE_HOME=$SECURE_HOME LIGHTTPD_PORT=$SECURE_PORT IMGPIPE_API_TOKENS=$BATS_FILE_TMPDIR/tokens IMGPIPE_MAX_IMAGES=3 imgpipe "$@"
}

# req PATH [CURL-ARGS...]: one request to that lighttpd; the status code on the last line
# of the output, the headers in $BATS_TEST_TMPDIR/headers.
req() {
	local path=$1
	shift
	curl -sS -D "$BATS_TEST_TMPDIR/headers" -w '\n%{http_code}' "$@" "$SECURE_URL$path"
}

header() { sed -n "s/^$1: //Ip" "$BATS_TEST_TMPDIR/headers" | tr -d '\r'; }

# upload CSV [CURL-ARGS...]: the CSV as a form upload, as curl -F sends it.
upload() {
	local csv=$1
	shift
	req /upload -F "file=@$csv;type=text/csv" "$@"
}

# Sets BATCH from a 202 in $output.
accepted() {
	assert_equal "${lines[-1]}" 202
	BATCH=$(jq -r .batch_id <<<"${lines[0]}")
	[[ $BATCH =~ ^[0-9a-f]{32}$ ]]
}

# The JSON error of the response in $output, and its status code.
assert_refused() {
	assert_equal "${lines[-1]}" "$1"
	assert_equal "$(jq -r .error <<<"${lines[0]}")" "$2"
}

bearer() { echo "Authorization: Bearer $1"; }

@test "no token: 401 on every route with both challenges, as JSON and as a page" {
	for path in / /status/0123456789abcdef0123456789abcdef /nothing-here; do
		run req "$path"
		assert_refused 401 "an access token is needed: send Authorization: Bearer TOKEN, or HTTP Basic with the token as the password"
		assert_equal "$(header WWW-Authenticate)" "$(printf 'Basic realm="imgpipe"\nBearer realm="imgpipe"')"
	done
	run upload "$BATS_FILE_TMPDIR/ok.csv"
	assert_equal "${lines[-1]}" 401
	run req / -H 'Accept: text/html'
	assert_line '<h1>401 Unauthorized</h1>'
	assert_equal "$(header Content-Type)" "text/html; charset=utf-8"
	assert_equal "$(header WWW-Authenticate | head -n 1)" 'Basic realm="imgpipe"'
}

@test "a wrong token, or a malformed Authorization: 401" {
	for auth in "Bearer ${TOKEN_A}x" "Bearer ${TOKEN_A:1}" "Basic $(printf 'x:%s!' "$TOKEN_A" | base64 -w0)" \
		"Basic $(printf '%s' "$TOKEN_A" | base64 -w0)" "Basic !!!!" "Digest $TOKEN_A"; do
		run req / -H "Authorization: $auth"
		assert_equal "${lines[-1]}" 401
		[ -n "$(header WWW-Authenticate)" ]
	done
	run req / -H "$(bearer "${TOKEN_A}x")"
	assert_refused 401 "the access token is not valid"
}

@test "Bearer, and Basic with the token as the password (any user): the token's own batches answer 200" {
	run req / -H "$(bearer "$TOKEN_A")"
	assert_equal "${lines[-1]}" 200
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$(bearer "$TOKEN_A")"
	accepted
	run req "/status/$BATCH" -H "$(bearer "$TOKEN_A")"
	assert_equal "${lines[-1]}" 200
	assert_equal "$(jq -r .batch_id <<<"${lines[0]}")" "$BATCH"
	for user in x someone-else ""; do
		run req "/status/$BATCH?format=csv" -u "$user:$TOKEN_A"
		assert_equal "${lines[-1]}" 200
		assert_line --index 0 'S. No.,Product Name,Input Image Urls,Output Image Urls'
	done
	run req "/status/$BATCH" -u "x:$TOKEN_A" -H 'Accept: text/html'
	assert_equal "${lines[-1]}" 200
	assert_line "<h1>Batch <code>$BATCH</code></h1>"
	# the second token, with its white space in the file, is a token too
	run upload "$BATS_FILE_TMPDIR/ok.csv" -u "x:$TOKEN_B"
	accepted
}

@test "in headless Chromium: refused without credentials or with a wrong token; with the token as Basic's password, the form uploads and leads to the batch's page" {
	[ -x /usr/bin/chromium ] || fail "no /usr/bin/chromium: run scripts/setup --test"
	local browser=$ROOT/tests/browser
	[ -d "$browser/node_modules/playwright-core" ] ||
		npm install --prefix "$browser" --no-audit --no-fund >"$BATS_FILE_TMPDIR/npm.log" 2>&1 ||
		fail "npm install failed: $(cat "$BATS_FILE_TMPDIR/npm.log")"
	run node "$browser/basic.mjs" "$SECURE_URL" "$TOKEN_A" "$BATS_FILE_TMPDIR/ok.csv" 2>"$BATS_TEST_TMPDIR/basic.err"
	[ "$status" -eq 0 ] || fail "$(cat "$BATS_TEST_TMPDIR/basic.err")"
	seen=$output
	batch=$(jq -r .batch <<<"$seen")
	[[ $batch =~ ^[0-9a-f]{32}$ ]]
	# (the browser joins the two WWW-Authenticate headers)
	assert_equal "$(jq -c '.challenge' <<<"$seen")" '[401,"Basic realm=\"imgpipe\", Bearer realm=\"imgpipe\""]'
	assert_equal "$(jq -c '[.without, .wrong, .with, .heading]' <<<"$seen")" \
		"[\"net::ERR_INVALID_AUTH_CREDENTIALS\",401,200,\"Batch $batch\"]"
	# the batch is the token's: another token does not see it
	run req "/status/$batch" -H "$(bearer "$TOKEN_A")"
	assert_equal "${lines[-1]}" 200
	run req "/status/$batch" -H "$(bearer "$TOKEN_B")"
	assert_refused 404 "no batch $batch"
}

@test "another token's batch is 404 on every route, as a batch that never was" {
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$(bearer "$TOKEN_A")"
	accepted
	run req "/status/$BATCH" -H "$(bearer "$TOKEN_B")"
	assert_refused 404 "no batch $BATCH"
	run req "/status/$BATCH?format=json" -u "x:$TOKEN_B"
	assert_refused 404 "no batch $BATCH"
	run req "/status/$BATCH?format=csv" -H "$(bearer "$TOKEN_B")"
	assert_refused 404 "no batch $BATCH"
	run req "/status/$BATCH" -H "$(bearer "$TOKEN_B")" -H 'Accept: text/html'
	assert_equal "${lines[-1]}" 404
	assert_line "<p class=\"error\">no batch $BATCH</p>"
	refute_output --partial Kite
	for action in retry cancel; do
		run req "/status/$BATCH/$action" --data-binary '' -H "$(bearer "$TOKEN_B")"
		assert_refused 404 "no batch $BATCH"
	done
	# and one that never was answers the same
	run req /status/0123456789abcdef0123456789abcdef -H "$(bearer "$TOKEN_B")"
	assert_refused 404 "no batch 0123456789abcdef0123456789abcdef"
}

@test "the batch keeps the token's SHA-256 as its owner, never the token; no log holds it" {
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$(bearer "$TOKEN_A")"
	accepted
	run /usr/bin/python3 - "$MONGODB_URI" "$BATCH" "$TOKEN_A" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database()
batch, token = db.batches.find_one({"_id": sys.argv[2]}), sys.argv[3]
def strings(v):
    if isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    else:
        yield str(v)
print(batch["owner"])
print(sum(token in s for s in strings(batch)))
PY
	assert_success
	assert_equal "${lines[0]}" "$(printf '%s' "$TOKEN_A" | sha256sum | cut -d' ' -f1)"
	assert_equal "${lines[1]}" 0
	run req "/status/$BATCH" -H "$(bearer "$TOKEN_A")"
	refute_output --partial '"owner"'
	run grep -rlF -e "$TOKEN_A" -e "$TOKEN_B" "$SECURE_HOME/log"
	assert_failure 1
}

@test "a token file with a short token, or none at all: 500 naming IMGPIPE_API_TOKENS, and a log line" {
	local tokens=$BATS_FILE_TMPDIR/tokens
	cp "$tokens" "$BATS_TEST_TMPDIR/tokens"
	echo 'too-short-a-token' >>"$tokens"
	run req / -H "$(bearer "$TOKEN_A")"
	cp "$BATS_TEST_TMPDIR/tokens" "$tokens"
	assert_refused 500 "IMGPIPE_API_TOKENS: line 5 of its file holds a token of 17 bytes; a token needs at least 32"
	grep -qF 'imgpipe.cgi: 500: IMGPIPE_API_TOKENS: line 5 of its file holds a token of 17 bytes' "$SECURE_HOME/log/lighttpd.log"

	printf '# no token here\n' >"$tokens"
	run req /
	cp "$BATS_TEST_TMPDIR/tokens" "$tokens"
	assert_refused 500 "IMGPIPE_API_TOKENS: its file lists no token"
	run req / -H "$(bearer "$TOKEN_A")"
	assert_equal "${lines[-1]}" 200
}

@test "/healthz needs no token" {
	run req /healthz
	[ "${lines[-1]}" != 404 ] || skip "no /healthz route yet"
	[ "${lines[-1]}" = 200 ] || [ "${lines[-1]}" = 503 ]
}

@test "more images than IMGPIPE_MAX_IMAGES: 413 with the count, nothing created" {
	run upload "$BATS_FILE_TMPDIR/three.csv" -H "$(bearer "$TOKEN_A")"
	accepted
	before=$(leftovers)
	run upload "$BATS_FILE_TMPDIR/four.csv" -H "$(bearer "$TOKEN_A")"
	assert_refused 413 "the CSV lists 4 images; at most 3 (IMGPIPE_MAX_IMAGES)"
	assert_equal "$(leftovers)" "$before"
}

@test "a cross-site form POST is 403 and creates nothing; the same origin and API clients go through" {
	local auth
	auth=$(bearer "$TOKEN_A")
	before=$(leftovers)
	for from in "Origin: http://evil.example" "Origin: null" "Origin: $SECURE_URL.evil.example" \
		"Origin: http://127.0.0.1:$((SECURE_PORT + 1))" "Origin: https://127.0.0.1:$SECURE_PORT"; do
		run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth" -H "$from"
		assert_refused 403 "a POST from another site's page is refused: its Origin header names another origin than this endpoint's"
	done
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth" -H "Referer: http://evil.example/form.html"
	assert_refused 403 "a POST from another site's page is refused: its Referer header names another origin than this endpoint's"
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth" -H "Origin: http://evil.example" -H 'Accept: text/html'
	assert_equal "${lines[-1]}" 403
	assert_line '<h1>403 Forbidden</h1>'
	assert_equal "$(leftovers)" "$before"

	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth" -H "Origin: $SECURE_URL"
	accepted
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth" -H "Referer: $SECURE_URL/"
	accepted
	# the origin the request was sent to (its Host), for a proxy that IMGPIPE_URL does not name
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth" -H "Host: imgpipe.example" -H "Origin: http://IMGPIPE.example:80"
	accepted
	run upload "$BATS_FILE_TMPDIR/ok.csv" -H "$auth"
	accepted
}

@test "the status shows no credentials of URLs: input URLs, image errors, the webhook" {
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,"http://alice:s3cret@127.0.0.1:9/a.jpg, http://127.0.0.1:9/b@c.jpg"\n' >"$BATS_TEST_TMPDIR/creds.csv"
	run upload "$BATS_TEST_TMPDIR/creds.csv" -H "$(bearer "$TOKEN_A")" \
		--form-string "webhook_url=https://hook:h00kpw@127.0.0.1:9/hook"
	accepted
	# the rows and one failed image, recorded as the pipeline records them
	s3get "uploads/$BATCH.csv" | csvsplit --batch "$BATCH" | dbrecord >/dev/null
	jq -nc --arg b "$BATCH" '{batch_id: $b, serial_no: 1, index: 0, url: "http://alice:s3cret@127.0.0.1:9/a.jpg",
		error: "fetchimg: HTTP 404 from http://alice:s3cret@127.0.0.1:9/a.jpg"}' | dbrecord >/dev/null
	run req "/status/$BATCH" -H "$(bearer "$TOKEN_A")"
	assert_equal "${lines[-1]}" 200
	refute_output --partial s3cret
	refute_output --partial h00kpw
	refute_output --partial alice
	assert_equal "$(jq -c '[.products[0].input_image_urls, .products[0].errors[0].error, .webhook_url]' <<<"${lines[0]}")" \
		'[["http://***@127.0.0.1:9/a.jpg","http://127.0.0.1:9/b@c.jpg"],"fetchimg: HTTP 404 from http://***@127.0.0.1:9/a.jpg","https://***@127.0.0.1:9/hook"]'
	run req "/status/$BATCH" -H "$(bearer "$TOKEN_A")" -H 'Accept: text/html'
	assert_equal "${lines[-1]}" 200
	refute_output --partial s3cret
	refute_output --partial h00kpw
	# the pipeline still has them
	[[ $(dbrecord show "$BATCH") == *'"http://alice:s3cret@127.0.0.1:9/a.jpg"'* ]]
}

@test "imgpipe submit and status send IMGPIPE_TOKEN; submit --webhook @FILE sends the text, not the file" {
	run env IMGPIPE_URL="$SECURE_URL" imgpipe submit "$BATS_FILE_TMPDIR/ok.csv"
	assert_failure 65
	assert_output --partial 'an access token is needed'
	run env IMGPIPE_URL="$SECURE_URL" IMGPIPE_TOKEN="$TOKEN_A" imgpipe submit "$BATS_FILE_TMPDIR/ok.csv"
	assert_success
	id=$(jq -r .batch_id <<<"$output")
	run env IMGPIPE_URL="$SECURE_URL" IMGPIPE_TOKEN="$TOKEN_A" imgpipe status "$id"
	assert_success
	assert_equal "$(jq -r .batch_id <<<"$output")" "$id"
	run env IMGPIPE_URL="$SECURE_URL" IMGPIPE_TOKEN="$TOKEN_B" imgpipe status "$id" --csv
	assert_failure 65
	assert_output --partial "no batch $id"

	# with -F, curl would send this file's content, a valid webhook URL
	printf 'http://127.0.0.1:9/hook' >"$BATS_TEST_TMPDIR/url"
	for webhook in "@$BATS_TEST_TMPDIR/url" "<$BATS_TEST_TMPDIR/url"; do
		run env IMGPIPE_URL="$SECURE_URL" IMGPIPE_TOKEN="$TOKEN_A" imgpipe submit "$BATS_FILE_TMPDIR/ok.csv" --webhook "$webhook"
		assert_failure 65
		assert_output --partial 'webhook_url must be an absolute http(s) URL'
	done
}
