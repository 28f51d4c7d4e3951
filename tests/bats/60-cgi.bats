#!/usr/bin/env bats
# imgpipe.cgi run as a web server runs it (RFC 3875: meta-variables in the environment,
# the body on stdin) against the real Redis, FerretDB and versitygw: every status code of
# the upload and status routes, what a 202 leaves in S3, MongoDB and the Redis stream, and
# what a 503 does not leave behind; the status a page at a time, and the CSV streamed.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	stack_start redis ferretdb versitygw
	local d=$BATS_FILE_TMPDIR
	printf 'S. No.,Product Name,Input Image Urls\r\n1,Kite,"http://127.0.0.1/a.jpg, http://127.0.0.1/b.jpg"\r\n' >"$d/ok.csv"
	printf 'S. No.,Product Name,Input Image Urls\n1,Caf\351,http://127.0.0.1/a.jpg\n' >"$d/latin1.csv"
	printf 'S. No.,Product Name\n1,Kite\n' >"$d/no-urls.csv"
	: >"$d/empty"
	form "$d/form.body" file "$d/ok.csv" webhook_url "http://127.0.0.1:9/hook"
	form "$d/form-no-hook.body" file "$d/ok.csv"
	printf 'yes' >"$d/yes"
	form "$d/no-file.body" submit "$d/yes"
	printf 'ftp://127.0.0.1/hook' >"$d/ftp"
	form "$d/ftp-hook.body" file "$d/ok.csv" webhook_url "$d/ftp"
	head -c 100 "$d/form.body" >"$d/truncated.body"
	head -c -8 "$d/form.body" >"$d/unclosed.body"
	head -c 2000 /dev/urandom >"$d/garbage.body"
}

teardown_file() {
	stack_stop
}

BOUNDARY=imgpipe-test-boundary
FORM="multipart/form-data; boundary=$BOUNDARY"

# Writes a multipart/form-data body to OUT: form OUT NAME VALUE... where a VALUE that is a
# file is the part's content, sent as a file; any other VALUE is sent as text.
form() {
	local out=$1 name value
	shift
	{
		while [ $# -gt 0 ]; do
			name=$1 value=$2
			shift 2
			printf -- '--%s\r\n' "$BOUNDARY"
			if [ -f "$value" ]; then
				printf 'Content-Disposition: form-data; name="%s"; filename="%s"\r\n' "$name" "${value##*/}"
				printf 'Content-Type: text/csv\r\n\r\n'
				cat "$value"
			else
				printf 'Content-Disposition: form-data; name="%s"\r\n\r\n%s' "$name" "$value"
			fi
			printf '\r\n'
		done
		printf -- '--%s--\r\n' "$BOUNDARY"
	} >"$out"
}

# cgi METHOD PATH_INFO [QUERY_STRING] [CONTENT_TYPE] [BODY_FILE]: one request; CONTENT_LENGTH
# is the body's size unless LENGTH says otherwise.
cgi() {
	local body=${5:-/dev/null}
	local length=${LENGTH-$([ -n "${5:-}" ] && stat -c %s "$body")}
	REQUEST_METHOD=$1 PATH_INFO=$2 QUERY_STRING=${3:-} CONTENT_TYPE=${4:-} \
		CONTENT_LENGTH=$length imgpipe.cgi <"$body"
}

# After `run --separate-stderr cgi ...`: the status code and the JSON error of the response.
assert_answer() {
	assert_line --index 0 --regexp "^Status: $1 "
	assert_line 'Content-Type: application/json'
	assert_line 'Cache-Control: no-store'
	[ -z "${2:-}" ] || assert_equal "$(jq -r .error <<<"${lines[-1]}")" "$2"
}

# Sets BATCH from a 202 response and checks its JSON.
accepted() {
	assert_answer 202
	BATCH=$(jq -r .batch_id <<<"${lines[-1]}")
	[[ $BATCH =~ ^[0-9a-f]{32}$ ]]
	assert_equal "$(jq -c . <<<"${lines[-1]}")" \
		"{\"batch_id\":\"$BATCH\",\"status\":\"in queue\",\"status_url\":\"/status/$BATCH\"}"
	assert_line "Location: /status/$BATCH"
}

mongo() {
	/usr/bin/python3 - "$MONGODB_URI" "$@" <<'PY'
import json, sys, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database()
b = db.batches.find_one({"_id": sys.argv[2]})
print(json.dumps(b and {k: b.get(k) for k in ("status", "s3Key", "webhook_url")}))
PY
}

@test "--help, --version, and a refusal to run outside a web server" {
	run imgpipe.cgi --help
	assert_success
	assert_line --partial 'POST /upload'
	run imgpipe.cgi --version
	assert_output "imgpipe.cgi 0.1.0"
	run env -u REQUEST_METHOD imgpipe.cgi
	assert_failure 64
}

@test "text/csv upload: 202, the CSV byte for byte in S3, the batch in MongoDB, the job on the stream" {
	run --separate-stderr cgi POST /upload "" "text/csv; charset=utf-8" "$BATS_FILE_TMPDIR/ok.csv"
	accepted
	run s3get "uploads/$BATCH.csv"
	assert_success
	cmp <(s3get "uploads/$BATCH.csv") "$BATS_FILE_TMPDIR/ok.csv"
	run mongo "$BATCH"
	assert_output --regexp "^\{\"status\": \"(in queue|in progress|completed|failed)\", \"s3Key\": \"uploads/$BATCH.csv\", \"webhook_url\": null\}$"
	run redis-cli -u "$REDIS_URL" --raw XRANGE imgpipe:jobs - +
	assert_output --partial "$(printf 'batch\n%s' "$BATCH")"
}

@test "multipart upload: 202, the part \"file\" in S3, the part \"webhook_url\" on the batch" {
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/form.body"
	accepted
	cmp <(s3get "uploads/$BATCH.csv") "$BATS_FILE_TMPDIR/ok.csv"
	run mongo "$BATCH"
	assert_output --partial "\"s3Key\": \"uploads/$BATCH.csv\", \"webhook_url\": \"http://127.0.0.1:9/hook\""
	run redis-cli -u "$REDIS_URL" --raw XRANGE imgpipe:jobs - +
	assert_output --partial "$(printf 'batch\n%s' "$BATCH")"
}

@test "text/csv upload takes its webhook from ?webhook_url=, percent-decoded" {
	run --separate-stderr cgi POST /upload "webhook_url=https%3A%2F%2F127.0.0.1%3A9%2Fa%3Fb%3Dc" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	accepted
	run mongo "$BATCH"
	assert_output --partial '"webhook_url": "https://127.0.0.1:9/a?b=c"'
}

@test "two uploads get two different batch ids" {
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	accepted
	first=$BATCH
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/form-no-hook.body"
	accepted
	[ "$first" != "$BATCH" ]
}

@test "GET /status/ID answers the JSON of docs/design.md; ?format=csv the output CSV" {
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	accepted
	run --separate-stderr cgi GET "/status/$BATCH"
	assert_answer 200
	run jq -r '[.batch_id, .s3Key, (.status | IN("in queue", "in progress", "completed", "failed")),
		(keys - ["webhook_url", "attempts"] | join(" ")),
		(.progress | keys | join(" ")), (.products | type)] | join("|")' <<<"${lines[-1]}"
	assert_output "$BATCH|uploads/$BATCH.csv|true|batch_id created_at limit message next offset products products_total progress row_errors row_errors_dropped s3Key status updated_at|bytes_saved images_compressed images_deduplicated images_done images_failed images_reused images_total rows_done rows_failed rows_total|array"
	run --separate-stderr cgi GET "/status/$BATCH" "format=json"
	assert_answer 200
	run --separate-stderr cgi GET "/status/$BATCH" "format=csv"
	assert_line --index 0 'Status: 200 OK'
	assert_line 'Content-Type: text/csv; charset=utf-8'
	assert_line "Content-Disposition: attachment; filename=\"$BATCH.csv\""
	assert_line --regexp '^S\. No\.,Product Name,Input Image Urls,Output Image Urls'
}

# After `run --separate-stderr cgi ...`: the response's body, its header block left out.
body() { sed '1,/^$/d' <<<"$output"; }

@test "GET /status/ID answers one page of products: ?offset=N&limit=M, next, the last page" {
	id=$(openssl rand -hex 16)
	many_products "$id" 250
	page() {
		run --separate-stderr cgi GET "/status/$id" "$1"
		assert_answer 200
		body | jq -c '[.products_total, .offset, .limit, (.products | length), .products[0].serial_no, .products[-1].serial_no, .next]'
	}
	assert_equal "$(page "")" "[250,0,100,100,3,300,\"/status/$id?offset=100&limit=100\"]"
	assert_equal "$(page "offset=100&limit=100")" "[250,100,100,100,303,600,\"/status/$id?offset=200&limit=100\"]"
	assert_equal "$(page "limit=100&offset=200")" '[250,200,100,50,603,750,null]'
	assert_equal "$(page "offset=250")" '[250,250,100,0,null,null,null]'
	assert_equal "$(page "offset=999999")" '[250,999999,100,0,null,null,null]'
	assert_equal "$(page "limit=1000")" '[250,0,1000,250,3,750,null]'
	assert_equal "$(page "limit=1&offset=249&format=json")" '[250,249,1,1,750,750,null]'
	# next is a path that this route answers, the page after
	run --separate-stderr cgi GET "/status/$id" "limit=80"
	next=$(body | jq -r .next)
	run --separate-stderr cgi GET "${next%%\?*}" "${next#*\?}"
	assert_equal "$(body | jq -c '[.offset, .limit, .products[0].serial_no]')" '[80,80,243]'
}

@test "400 with the parameter named: offset or limit out of bounds, not a number, unknown, repeated" {
	local id=0123456789abcdef0123456789abcdef
	for limit in 0 1001 -1 abc 1.5 +5 99999999999; do
		run --separate-stderr cgi GET "/status/$id" "limit=$limit"
		assert_answer 400 "limit must be a whole number from 1 to 1000, not '$limit'"
	done
	run --separate-stderr cgi GET "/status/$id" "limit=%205"
	assert_answer 400 "limit must be a whole number from 1 to 1000, not ' 5'"
	for offset in -1 x 2147483648 0x10; do
		run --separate-stderr cgi GET "/status/$id" "offset=$offset&limit=10"
		assert_answer 400 "offset must be a whole number from 0 to 2147483647, not '$offset'"
	done
	run --separate-stderr cgi GET "/status/$id" "offset="
	assert_answer 400 "query parameter 'offset' is empty or not decodable"
	run --separate-stderr cgi GET "/status/$id" "limit=5&limit=6"
	assert_answer 400 "repeated query parameter 'limit'"
	run --separate-stderr cgi GET "/status/$id" "page=2"
	assert_answer 400 "unknown query parameter 'page'"
	run --separate-stderr cgi GET "/status/$id" "format=csv&offset=10"
	assert_answer 400 "format=csv is every product: no offset or limit"
}

@test "?format=csv streams every product of a big batch once, in serial order" {
	id=$(openssl rand -hex 16)
	many_products "$id" 3000
	run --separate-stderr cgi GET "/status/$id" "format=csv"
	assert_line --index 0 'Status: 200 OK'
	# streamed: no length known before the end
	refute_line --partial 'Content-Length:'
	body >"$BATS_TEST_TMPDIR/out.csv"
	assert_many_products_csv "$BATS_TEST_TMPDIR/out.csv" 3000
}

@test "400: an empty CSV, as text/csv and as the part \"file\"" {
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/empty"
	assert_answer 400 "the CSV is empty"
	form "$BATS_TEST_TMPDIR/body" file "$BATS_FILE_TMPDIR/empty"
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_TEST_TMPDIR/body"
	assert_answer 400 "the CSV is empty"
}

@test "400: a CSV that is not UTF-8" {
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/latin1.csv"
	assert_answer 400
	assert_line --partial '"the input is not UTF-8 text (line 2'
}

@test "400: a header that lacks a required column" {
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/no-urls.csv"
	assert_answer 400
	assert_line --partial "lacks the column 'Input Image Urls'"
}

@test "400: a CSV with its header and no product rows" {
	printf 'S. No.,Product Name,Input Image Urls\r\n\r\n' >"$BATS_TEST_TMPDIR/header-only.csv"
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_TEST_TMPDIR/header-only.csv"
	assert_answer 400
	assert_line --partial "the CSV has a header but no product rows"
}

@test "400: a form without the part \"file\"" {
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/no-file.body"
	assert_answer 400 'no part named "file" in the multipart/form-data body'
}

@test "400: a truncated multipart body, and one whose closing boundary never comes" {
	for body in truncated unclosed; do
		run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/$body.body"
		assert_answer 400 "truncated multipart/form-data body: the closing boundary \"--$BOUNDARY--\" never comes"
	done
}

@test "400: binary garbage, and a form without a boundary" {
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/garbage.body"
	assert_answer 400 "no part in the multipart/form-data body: no line \"--$BOUNDARY\" opens one"
	run --separate-stderr cgi POST /upload "" "multipart/form-data" "$BATS_FILE_TMPDIR/form.body"
	assert_answer 400 "multipart/form-data needs a boundary parameter"
}

@test "400: a webhook_url that is not an absolute http(s) URL, in the form or the query" {
	local why="webhook_url must be an absolute http(s) URL of at most 2048 printable ASCII characters"
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/ftp-hook.body"
	assert_answer 400 "$why"
	for hook in /hook javascript:alert%281%29 http%3A%2F%2F "http://a%20b/"; do
		run --separate-stderr cgi POST /upload "webhook_url=$hook" text/csv "$BATS_FILE_TMPDIR/ok.csv"
		assert_answer 400 "$why"
	done
	run --separate-stderr cgi POST /upload "webhook_url=http://a/" "$FORM" "$BATS_FILE_TMPDIR/form.body"
	assert_answer 400 "webhook_url given both in the query and the form"
	run --separate-stderr cgi POST /upload "hook=http://a/" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 400 "unknown query parameter 'hook'"
}

@test "400: a body shorter than its Content-Length, and a Content-Length that is no number" {
	LENGTH=1000 run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 400 "truncated body: $(stat -c %s "$BATS_FILE_TMPDIR/ok.csv") of 1000 bytes"
	LENGTH=-5 run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 400 "Content-Length is not a number"
}

@test "400: a status query other than format=csv or format=json" {
	run --separate-stderr cgi GET /status/0123456789abcdef0123456789abcdef "format=xml"
	assert_answer 400 "format must be csv or json"
	run --separate-stderr cgi GET /status/0123456789abcdef0123456789abcdef "id=1"
	assert_answer 400 "unknown query parameter 'id'"
}

@test "404: an unknown id, a path traversal, a long id, an upper-case id, an unknown route" {
	run --separate-stderr cgi GET /status/0123456789abcdef0123456789abcdef
	assert_answer 404 "no batch 0123456789abcdef0123456789abcdef"
	run --separate-stderr cgi GET /status/0123456789abcdef0123456789abcdef format=csv
	assert_answer 404 "no batch 0123456789abcdef0123456789abcdef"
	for id in ../../../etc/passwd "$(printf 'a%.0s' {1..64})" 0123456789ABCDEF0123456789ABCDEF ""; do
		# MONGODB_URI unset: the database is never asked about such ids
		MONGODB_URI='' run --separate-stderr cgi GET "/status/$id"
		assert_answer 404 "no such batch: a batch id is 32 lowercase hex digits"
	done
	run --separate-stderr cgi GET /nothing-here
	assert_answer 404 "no such route: /nothing-here"
}

@test "405 with an Allow header: wrong methods on both routes" {
	run --separate-stderr cgi GET /upload
	assert_answer 405 "method GET not allowed on /upload; use POST"
	assert_line "Allow: POST"
	run --separate-stderr cgi DELETE /status/0123456789abcdef0123456789abcdef
	assert_answer 405 "method DELETE not allowed on /status/ID; use GET"
	assert_line "Allow: GET"
}

@test "411: an upload without Content-Length" {
	run --separate-stderr cgi POST /upload "" text/csv
	assert_answer 411 "no Content-Length: send the body with its length"
}

@test "413: an upload over IMGPIPE_MAX_UPLOAD, refused without reading the body" {
	# stdin is empty: had the body been read, the answer would be 400 "truncated body"
	LENGTH=10485761 run --separate-stderr cgi POST /upload "" text/csv
	assert_answer 413 "the upload has 10485761 bytes, more than the 10485760 allowed"
	IMGPIPE_MAX_UPLOAD=10 run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 413 "the upload has $(stat -c %s "$BATS_FILE_TMPDIR/ok.csv") bytes, more than the 10 allowed"
}

@test "413: more images than IMGPIPE_MAX_IMAGES (default 100000), counted as csvsplit counts them" {
	# 1562 rows of 64 URLs and one of 33: 100001 images, and a row whose URL is no URL
	/usr/bin/python3 - "$BATS_TEST_TMPDIR/many.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("S. No.,Product Name,Input Image Urls\n")
    for row in range(1, 1564):
        n = 64 if row < 1563 else 33
        f.write('%d,P%d,"%s"\n' % (row, row, ",".join("http://h/%d-%d.jpg" % (row, i) for i in range(n))))
    f.write("1564,No URL,not-a-url\n")
PY
	assert_equal "$(csvsplit "$BATS_TEST_TMPDIR/many.csv" | jq -s 'map(.input_image_urls // [] | length) | add')" 100001
	IMGPIPE_MAX_IMAGES=2 run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	accepted
	before=$(leftovers)
	run --separate-stderr cgi POST /upload "" text/csv "$BATS_TEST_TMPDIR/many.csv"
	assert_answer 413 "the CSV lists 100001 images; at most 100000 (IMGPIPE_MAX_IMAGES)"
	IMGPIPE_MAX_IMAGES=1 run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/form.body"
	assert_answer 413 "the CSV lists 2 images; at most 1 (IMGPIPE_MAX_IMAGES)"
	IMGPIPE_MAX_IMAGES=many run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 500 "IMGPIPE_MAX_IMAGES is not a positive number"
	assert_equal "$(leftovers)" "$before"
}

@test "415: other content types, other charsets, no content type" {
	run --separate-stderr cgi POST /upload "" application/json "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 415 'unsupported Content-Type application/json: send multipart/form-data (part "file") or text/csv'
	run --separate-stderr cgi POST /upload "" "text/csv; charset=iso-8859-1" "$BATS_FILE_TMPDIR/latin1.csv"
	assert_answer 415 "text/csv in charset iso-8859-1 is not supported: send UTF-8"
	run --separate-stderr cgi POST /upload "" "" "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 415 'no Content-Type: send multipart/form-data (part "file") or text/csv'
}

@test "503 when Redis is down, and nothing left in S3 or MongoDB; its address only in the log" {
	before=$(leftovers)
	imgpipe stack down redis
	run --separate-stderr cgi POST /upload "" "$FORM" "$BATS_FILE_TMPDIR/form.body"
	imgpipe stack up redis 3>&-   # the server must not hold bats's output open
	assert_answer 503 "Redis unavailable"
	assert_equal "$stderr" "imgpipe.cgi: 503: Redis unavailable: 127.0.0.1:${REDIS_URL##*:}: Connection refused"
	assert_equal "$(leftovers)" "$before"
}

@test "503 when the job cannot be queued: the CSV and the batch already made are undone" {
	# In database 1 the stream's name holds a string, so XADD fails after the S3 PUT and
	# the batch insert have succeeded.
	redis-cli -u "$REDIS_URL" -n 1 SET imgpipe:jobs not-a-stream >/dev/null
	before=$(leftovers)
	REDIS_URL="$REDIS_URL/1" run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	redis-cli -u "$REDIS_URL" -n 1 DEL imgpipe:jobs >/dev/null
	assert_answer 503 "Redis unavailable"
	[[ $stderr == *"Redis unavailable: XADD: WRONGTYPE"* ]]
	assert_equal "$(leftovers)" "$before"
}

@test "503 when MongoDB or S3 is unreachable, and nothing left behind" {
	before=$(leftovers)
	MONGODB_URI="mongodb://127.0.0.1:1/imgpipe" run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 503 "MongoDB unavailable"
	[[ $stderr == "imgpipe.cgi: 503: MongoDB unavailable: "*"127.0.0.1:1"* ]]
	for query in "" format=csv; do
		MONGODB_URI="mongodb://127.0.0.1:1/imgpipe" run --separate-stderr cgi GET /status/0123456789abcdef0123456789abcdef "$query"
		assert_answer 503 "MongoDB unavailable"
	done
	S3_ENDPOINT=http://127.0.0.1:1 run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 503 "S3 unavailable"
	[[ $stderr == "imgpipe.cgi: 503: S3 unavailable: PUT s3://"*": store unreachable after "*"Couldn't connect to server" ]]
	S3_ENDPOINT='' run --separate-stderr cgi POST /upload "" text/csv "$BATS_FILE_TMPDIR/ok.csv"
	assert_answer 503 "S3 unavailable"
	assert_equal "$stderr" "imgpipe.cgi: 503: S3 unavailable: S3_ENDPOINT is not set"
	assert_equal "$(leftovers)" "$before"
}
