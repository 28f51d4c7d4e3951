#!/usr/bin/env bats
# The whole flow through the real HTTP endpoint (lighttpd + imgpipe.cgi), the dispatcher,
# every stage, Redis, FerretDB and versitygw; photographs and the webhook receiver on a
# local HTTP server.

load helpers

setup_file() {
	photos_start
	cat >"$BATS_FILE_TMPDIR/products.csv" <<CSV
S. No.,Product Name,Input Image Urls
1,Autumn Print,"$HTTPD_URL/autumn.jpg, $HTTPD_URL/path.jpg"
2,Kite Poster,$HTTPD_URL/kite.jpg
3,,$HTTPD_URL/grey.jpg
4,Missing Poster,$HTTPD_URL/no-such-photo.jpg
CSV
	response=$(imgpipe submit "$BATS_FILE_TMPDIR/products.csv" --webhook "$HTTPD_URL/hook")
	export RESPONSE=$response BATCH
	BATCH=$(jq -r .batch_id <<<"$response")
	imgpipe status "$BATCH" --wait >"$BATS_FILE_TMPDIR/status.json"
}

teardown_file() {
	photos_stop
}

status_json() { cat "$BATS_FILE_TMPDIR/status.json"; }

# The public URL of a sample photograph's output: named by its SHA-256 and the settings.
output_url() {
	echo "$S3_PUBLIC_URL/images/$(sha256sum <"$BATS_FILE_TMPDIR/photos/$1" | cut -c1-64)-q50.jpg"
}

@test "upload answers 202 with a random batch id and the status URL" {
	run jq -r '[.status, .status_url] | join(" ")' <<<"$RESPONSE"
	assert_output "in queue /status/$BATCH"
	[[ $BATCH =~ ^[0-9a-f]{32}$ ]]
}

@test "the batch completes with exact counts in progress and message" {
	run jq -c '[.status, (.progress | {rows_total, rows_done, rows_failed, images_total, images_done, images_failed})]' < <(status_json)
	assert_output '["completed",{"rows_total":4,"rows_done":3,"rows_failed":1,"images_total":4,"images_done":3,"images_failed":1}]'
	# made afresh or reused from an earlier test's batch of the same photographs: each done once
	run jq '.progress | .images_compressed + .images_reused + .images_deduplicated' < <(status_json)
	assert_output 3
	run jq -r .message < <(status_json)
	assert_output "4 rows (3 valid, 1 rejected), 4 images (3 done, 1 failed)"
}

@test "MongoDB holds exactly the products of docs/design.md, each image in its slot" {
	run /usr/bin/python3 - "$MONGODB_URI" "$BATCH" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
batch = db.batches.find_one({"_id": sys.argv[2]})
print(batch["status"], batch["s3Key"])
for p in db.products.find({"batch_id": sys.argv[2]}).sort("serial_no"):
    assert isinstance(p["_id"], str) and "createdAt" in p and "updatedAt" in p
    print(p["serial_no"], p["product_name"], len(p["input_image_urls"]),
          sum(1 for u in p["output_image_urls"] if u), len(p["output_image_urls"]))
PY
	assert_success
	assert_output "$(printf 'completed uploads/%s.csv\n1 Autumn Print 2 2 2\n2 Kite Poster 1 1 1\n4 Missing Poster 1 0 1' "$BATCH")"
}

@test "the 404 image is a product error and an empty output slot" {
	run jq -c '.products[] | select(.serial_no == 4) | [.output_image_urls, (.errors | length), (.errors[0].error | test("404"))]' < <(status_json)
	assert_output '[[""],1,true]'
}

@test "every output URL opens without credentials and is a quality-50 JPEG smaller than its input" {
	for pair in $(jq -r '.products[] | [.input_image_urls, .output_image_urls] | transpose[] | select(.[1] != "") | join("|")' < <(status_json)); do
		in=${pair%%|*} out=${pair#*|}
		# Content-addressed: the source's hash and the settings, no batch id.
		assert_equal "$out" "$(output_url "${in##*/}")"
		[[ $out != *"$BATCH"* ]]
		curl -sSf -o "$BATS_TEST_TMPDIR/in.jpg" "$in"
		curl -sSf -o "$BATS_TEST_TMPDIR/out.jpg" "$out"
		run identify -format '%m %Q' "$BATS_TEST_TMPDIR/out.jpg"
		assert_output "JPEG 50"
		[ "$(stat -c %s "$BATS_TEST_TMPDIR/out.jpg")" -lt "$(stat -c %s "$BATS_TEST_TMPDIR/in.jpg")" ]
	done
}

@test "the uploaded CSV is stored privately at the batch's s3Key" {
	run s3get "uploads/$BATCH.csv"
	assert_success
	assert_output "$(cat "$BATS_FILE_TMPDIR/products.csv")"
	run curl -s -o /dev/null -w '%{http_code}' "$S3_PUBLIC_URL/uploads/$BATCH.csv"
	assert_output 403
}

@test "the webhook arrives once, signed, with the final status" {
	for _ in $(seq 100); do [ -s "$HOOK_LOG" ] && break; sleep 0.1; done
	sleep 1
	run wc -l <"$HOOK_LOG"
	assert_output 1
	body=$(jq -r .body "$HOOK_LOG")
	run verify_webhooks "$WEBHOOK_SECRET" --key-bytes <"$HOOK_LOG"
	assert_output ok
	run jq -r '.headers["x-imgpipe-event"]' "$HOOK_LOG"
	assert_output batch.completed
	run jq -c '{event, batch_id, status, images_done: .progress.images_done, status_url, output_csv_url}' <<<"$body"
	assert_output "{\"event\":\"batch.completed\",\"batch_id\":\"$BATCH\",\"status\":\"completed\",\"images_done\":3,\"status_url\":\"$IMGPIPE_URL/status/$BATCH\",\"output_csv_url\":\"$IMGPIPE_URL/status/$BATCH?format=csv\"}"
}

@test "the output CSV lists every valid product with its URLs in one quoted field each" {
	out() { jq -r ".products[] | select(.serial_no == $1) | .output_image_urls | join(\",\")" < <(status_json); }
	assert_equal "$(out 1)" "$(output_url autumn.jpg),$(output_url path.jpg)"
	run imgpipe status "$BATCH" --csv
	assert_success
	assert_output "$(printf '%s\n' 'S. No.,Product Name,Input Image Urls,Output Image Urls' \
		"1,\"Autumn Print\",\"$HTTPD_URL/autumn.jpg,$HTTPD_URL/path.jpg\",\"$(out 1)\"" \
		"2,\"Kite Poster\",\"$HTTPD_URL/kite.jpg\",\"$(out 2)\"" \
		"4,\"Missing Poster\",\"$HTTPD_URL/no-such-photo.jpg\",\"\"")"
}

@test "outputs are public and immutable in caches; a second batch of the same images sends none again" {
	urls() { jq -r '[.products[].output_image_urls[] | select(. != "")] | sort | join(" ")' "$1"; }
	read -ra first < <(urls "$BATS_FILE_TMPDIR/status.json")
	assert_equal "${#first[@]}" 3
	for url in "${first[@]}"; do
		run curl -sSfI "$url"    # anonymous
		assert_line --regexp '^[Cc]ache-[Cc]ontrol: public, max-age=31536000, immutable'$'\r''?$'
		grep -i '^last-modified:' <<<"$output" >>"$BATS_TEST_TMPDIR/modified.before"
	done
	objects=$(s3count images/)
	sleep 1.1    # a PUT would show in Last-Modified, which has whole seconds
	id=$(imgpipe submit "$BATS_FILE_TMPDIR/products.csv" | jq -r .batch_id)
	imgpipe status "$id" --wait >"$BATS_TEST_TMPDIR/second.json"
	assert_equal "$(jq -r .status "$BATS_TEST_TMPDIR/second.json")" completed
	assert_equal "$(urls "$BATS_TEST_TMPDIR/second.json")" "${first[*]}"
	assert_equal "$(s3count images/)" "$objects"
	for url in "${first[@]}"; do
		curl -sSfI "$url" | grep -i '^last-modified:'
	done >"$BATS_TEST_TMPDIR/modified.after"
	cmp "$BATS_TEST_TMPDIR/modified.before" "$BATS_TEST_TMPDIR/modified.after"
}

@test "a batch of 200 images of 5 MB never holds more than pipelines x the byte cap on disk" {
	# A small JPEG padded to 5 MB with comment segments: big to fetch, quick to shrink.
	convert -size 64x48 gradient:red-blue "$BATS_TEST_TMPDIR/small.jpg"
	python3 - "$BATS_TEST_TMPDIR/small.jpg" "$BATS_FILE_TMPDIR/photos/big.jpg" <<-'PY'
		import sys
		data = open(sys.argv[1], "rb").read()
		comment = b"\xff\xfe\xff\xff" + bytes(65533)
		open(sys.argv[2], "wb").write(data[:2] + comment * 77 + data[2:])
	PY
	size=$(stat -c %s "$BATS_FILE_TMPDIR/photos/big.jpg")
	[ "$size" -gt 5000000 ]
	{
		echo "S. No.,Product Name,Input Image Urls"
		for i in $(seq 100); do
			echo "$i,Big $i,\"$HTTPD_URL/big.jpg?n=$i-a,$HTTPD_URL/big.jpg?n=$i-b\""
		done
	} >"$BATS_TEST_TMPDIR/big.csv"
	id=$(imgpipe submit "$BATS_TEST_TMPDIR/big.csv" | jq -r .batch_id)
	# The size of the batch's work folders (one a run: 100 rows are one chunk), every 0.1 s
	# while the batch runs (bounded in time).
	timeout 600 bash -c 'until imgpipe status "$1" | jq -e ".status | test(\"completed|failed\")" >/dev/null; do
		du -scb "$2"-* 2>/dev/null | tail -n 1 | cut -f1; sleep 0.1; done' _ "$id" "$IMGPIPE_HOME/tmp/$id" \
		>"$BATS_TEST_TMPDIR/sizes"
	run jq -c '[.status, .progress.images_done]' < <(imgpipe status "$id")
	assert_output '["completed",200]'
	peak=$(sort -n "$BATS_TEST_TMPDIR/sizes" | tail -n 1)
	pipelines=${IMGPIPE_PARALLEL:-$(($(nproc) + 1))}
	echo "# peak $peak bytes on disk, of $((200 * size)) fetched, $pipelines pipelines" >&3
	# The folder was seen at work, holding downloads ...
	[ "$peak" -gt "$size" ]
	# ... and never more than the pipelines' byte caps (fetchimg's default 50 MiB).
	[ "$peak" -le $((pipelines * 52428800)) ]
	# process-batch removes each run's folder as it exits, just after the batch has ended.
	for _ in $(seq 100); do compgen -G "$IMGPIPE_HOME/tmp/$id-*" >/dev/null || break; sleep 0.1; done
	run compgen -G "$IMGPIPE_HOME/tmp/$id-*"
	assert_failure
}

@test "HTTP errors: 400, 404, 405, 411, 413, 415 through the real web server" {
	code() { curl -s -o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' "$@"; }
	assert_equal "$(code -X POST -H 'Content-Type: text/csv' --data-binary '' "$IMGPIPE_URL/upload")" 400
	assert_equal "$(code "$IMGPIPE_URL/status/0123456789abcdef0123456789abcdef")" 404
	assert_equal "$(code -X DELETE "$IMGPIPE_URL/upload")" 405
	assert_equal "$(code -X POST -H 'Content-Type: application/json' --data-binary '{}' "$IMGPIPE_URL/upload")" 415
	head -c 11000000 /dev/zero | tr '\0' 'a' >"$BATS_TEST_TMPDIR/big.csv"
	assert_equal "$(code -X POST -H 'Content-Type: text/csv' --data-binary @"$BATS_TEST_TMPDIR/big.csv" "$IMGPIPE_URL/upload")" 413
	run jq -r .error "$BATS_TEST_TMPDIR/body"
	assert_output --partial "10485760"
	# a POST without Content-Length, by hand
	port=${IMGPIPE_URL##*:}
	exec 5<>"/dev/tcp/127.0.0.1/$port"
	printf 'POST /upload HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n\r\n' >&5
	run head -n 1 <&5
	exec 5<&-
	assert_output --regexp '^HTTP/1\.[01] 411'
}

@test "HTTP 503 when a backend is down, with nothing left half-made" {
	batches() { /usr/bin/python3 -c 'import sys, pymongo; print(pymongo.MongoClient(sys.argv[1]).get_default_database().batches.count_documents({}))' "$MONGODB_URI"; }
	before="$(batches) $(s3count uploads/)"
	imgpipe stack down redis
	run curl -s -w '\n%{http_code}' -F "file=@$BATS_FILE_TMPDIR/products.csv;type=text/csv" "$IMGPIPE_URL/upload"
	imgpipe stack up redis
	assert_line 503
	assert_output --partial '"error"'
	assert_equal "$(batches) $(s3count uploads/)" "$before"
}

@test "imgpipe run: plain progress lines for logs, the summary, and the output CSV beside the input" {
	cp "$BATS_FILE_TMPDIR/products.csv" "$BATS_TEST_TMPDIR/run.csv"
	run imgpipe run "$BATS_TEST_TMPDIR/run.csv"
	assert_success
	assert_line --regexp '^completed: rows 4/4 \(1 rejected\), images 4/4 \(1 failed\), [0-9.]+ img/s'
	assert_line --regexp '^batch [0-9a-f]{32} completed: 4 rows \(3 valid, 1 rejected\), 4 images \(3 done, 1 failed\)$'
	assert_line "output CSV: $BATS_TEST_TMPDIR/run.output.csv"
	run head -n 1 "$BATS_TEST_TMPDIR/run.output.csv"
	assert_output "S. No.,Product Name,Input Image Urls,Output Image Urls"
}

@test "imgpipe run on a terminal draws a progress bar" {
	cp "$BATS_FILE_TMPDIR/products.csv" "$BATS_TEST_TMPDIR/tty.csv"
	script -qec "imgpipe run $BATS_TEST_TMPDIR/tty.csv" "$BATS_TEST_TMPDIR/tty.out" >/dev/null
	run grep -c $'\r\e\\[K\\[##############################\\] completed: rows 4/4' "$BATS_TEST_TMPDIR/tty.out"
	assert_output 1
}
