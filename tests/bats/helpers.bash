# Shared by every bats file: paths, the stack, and the local HTTP server.
# shellcheck shell=bash

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
export PATH="$ROOT/bin:$PATH"
TESTDATA="$ROOT/tests/data"
export WEBHOOK_SECRET="${WEBHOOK_SECRET:-imgpipe-test-secret}"   # as in tests/run
export IMGPIPE_CLAIM_IDLE="${IMGPIPE_CLAIM_IDLE:-3}"   # as in tests/run
load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

# Brings up the named services of the local stack (all when none are named) unless they
# already run, and remembers whether this file started them, so it stops only those.
# Call from setup_file; stack_stop from teardown_file.
# shellcheck disable=SC2120  # the bats files name services; shellcheck sees only this file
stack_start() {
	if imgpipe stack status "$@" >/dev/null 2>&1; then
		export STACK_STARTED_HERE=
	else
		imgpipe stack up "$@" >&3 2>&1
		export STACK_STARTED_HERE="${*:-all}"
	fi
	eval "$(imgpipe stack env)"
}

stack_stop() {
	case "${STACK_STARTED_HERE:-}" in
	"") ;;
	all) imgpipe stack down >&3 2>&1 ;;
	*) read -ra services <<<"$STACK_STARTED_HERE"; imgpipe stack down "${services[@]}" >&3 2>&1 ;;
	esac
}

# Starts tests/lib/httpd.py serving DIR (default tests/data) on a free port.
# Sets HTTPD_URL, HTTPD_PID, HOOK_LOG (webhook requests, one JSON line each) and
# REQUEST_LOG (the path of every GET, one a line) and ANSWER_LOG (each GET's path, status
# and conditional headers, one JSON line each).
httpd_start() {
	local root=${1:-$TESTDATA} portfile="$BATS_FILE_TMPDIR/httpd.port"
	export HOOK_LOG="$BATS_FILE_TMPDIR/hooks.ndjson" REQUEST_LOG="$BATS_FILE_TMPDIR/requests.log"
	export ANSWER_LOG="$BATS_FILE_TMPDIR/answers.ndjson"
	: >"$HOOK_LOG"
	: >"$REQUEST_LOG"
	: >"$ANSWER_LOG"
	python3 "$ROOT/tests/lib/httpd.py" --root "$root" --hook-log "$HOOK_LOG" --request-log "$REQUEST_LOG" \
		--answer-log "$ANSWER_LOG" \
		>"$portfile" 2>"$BATS_FILE_TMPDIR/httpd.log" &
	export HTTPD_PID=$!
	for _ in $(seq 100); do [ -s "$portfile" ] && break; sleep 0.05; done
	HTTPD_URL="http://127.0.0.1:$(cat "$portfile")"
	export HTTPD_URL
}

httpd_stop() {
	[ -z "${HTTPD_PID:-}" ] || kill "$HTTPD_PID" 2>/dev/null || true
}

# The whole stack, and the twelve sample photographs served at $HTTPD_URL (which also
# receives webhooks).  photos_stop in teardown_file.
photos_start() {
	# shellcheck disable=SC2119  # the whole stack, not this function's arguments
	stack_start
	"$ROOT/scripts/sample-photos" "$BATS_FILE_TMPDIR/photos"
	httpd_start "$BATS_FILE_TMPDIR/photos"
}

photos_stop() {
	httpd_stop
	stack_stop
}

# Sets the answers of the test server's /hook (comma-separated HTTP codes; the last repeats).
hook_answers() {
	curl -sS -X POST "$HTTPD_URL/hook-codes?set=$1"
}

# How many objects the bucket holds under PREFIX (S3 ListObjectsV2, signed by curl's SigV4;
# the prefix percent-encoded, as SigV4's canonical query has it).  Fails on any other answer.
s3count() {
	local listing
	listing=$(curl -sS --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		"$S3_ENDPOINT/$S3_BUCKET?list-type=2&prefix=$(jq -rn --arg p "$1" '$p | @uri')") || return 1
	[[ $listing == *"<ListBucketResult"* ]] || { echo "s3count: $listing" >&2; return 1; }
	grep -o '<Key>' <<<"$listing" | wc -l
}

# field ID JQ: the jq expression on the batch's status JSON.
field() { curl -sS "$IMGPIPE_URL/status/$1" | jq -r "$2"; }

# wait_for ID SECONDS JQ: waits until the jq expression on the batch's status is true.
wait_for() {
	for _ in $(seq $(($2 * 5))); do
		[ "$(field "$1" "$3")" = true ] && return 0
		sleep 0.2
	done
	field "$1" . >&2
	return 1
}

# What a refused upload must not change: the objects under uploads/, and the batches.
leftovers() {
	echo "$(s3count uploads/) objects, $(/usr/bin/python3 -c 'import sys, pymongo
print(pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database().batches.count_documents({}))' "$MONGODB_URI") batches"
}

# Standard Webhooks' own verdict on the requests the test server recorded:
# verify_webhooks SECRET [--key-bytes] [--late SECONDS] < "$HOOK_LOG" (see tests/lib/verify-webhook.py),
# run with the venv scripts/setup --test makes for the standardwebhooks package.
WEBHOOK_PYTHON="${IMGPIPE_TOOLS:-/opt/imgpipe}/venv/bin/python"
verify_webhooks() {
	"$WEBHOOK_PYTHON" "$ROOT/tests/lib/verify-webhook.py" "$@"
}

# many_products BATCH N: writes batch BATCH and N products straight into MongoDB with
# pymongo, in a random order, serial numbers 3, 6, 9, ... (with gaps, as a CSV may have
# them), each with its rank in serial order as csvsplit --rank and dbrecord give it, one
# image each, every seventh done; then recounts the batch.  (FerretDB on SQLite
# commits each of dbrecord's upserts on its own, about 50 ms a product on a small machine:
# one insert_many makes thousands at once.)
many_products() {
	/usr/bin/python3 - "$MONGODB_URI" "$1" "$2" <<'PY'
import sys, random, datetime, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database()
batch, n = sys.argv[2], int(sys.argv[3])
now = datetime.datetime.now(datetime.timezone.utc)
serials = [3 * i for i in range(1, n + 1)]
random.shuffle(serials)
db.batches.insert_one({"_id": batch, "status": "in progress", "createdAt": now, "updatedAt": now})
db.products.insert_many([{"_id": f"{batch}-{s}", "batch_id": batch, "serial_no": s,
    "rank": s // 3 - 1, "rank_group": (s // 3 - 1) // 100, "product_name": f"P{s}", "input_image_urls": [f"http://img/{s}.jpg"],
    "output_image_urls": [f"http://s3/{s}.jpg" if s % 7 == 0 else ""], "errors": [],
    "createdAt": now, "updatedAt": now} for s in serials])
PY
	dbrecord recount "$1"
}

# assert_many_products_csv FILE N: FILE is the output CSV of a batch that many_products
# made with N products, read as a spreadsheet would: its header, then every product once in
# serial order, every seventh with its output.
assert_many_products_csv() {
	run python3 -c 'import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
print(rows[0]); print(" ".join(r[0] for r in rows[1:])); print(sum(1 for r in rows[1:] if r[3]))' "$1"
	assert_line --index 0 "['S. No.', 'Product Name', 'Input Image Urls', 'Output Image Urls']"
	assert_line --index 1 "$(seq -s ' ' 3 3 $((3 * $2)))"
	assert_line --index 2 "$(($2 / 7))"
}
