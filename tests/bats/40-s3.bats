#!/usr/bin/env bats
# s3put and s3get against versitygw (SigV4 really checked), with independent checks by
# plain curl; the retry paths against the test HTTP server's failing routes.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	stack_start redis ferretdb versitygw
	httpd_start "$BATS_FILE_TMPDIR"
	# Keys of this run only, so that reruns never see an older object.
	RUN=t$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	export RUN
	convert -size 64x48 gradient:red-blue "$BATS_FILE_TMPDIR/in.jpg"
	convert -size 16x16 xc:green "$BATS_FILE_TMPDIR/in.png"
	head -c $((48 << 20)) /dev/urandom >"$BATS_FILE_TMPDIR/big.bin"
	printf 'S. No.,Product Name,Input Image Urls\n' >"$BATS_FILE_TMPDIR/in.csv"
	printf 'served after one 503\n' >"$BATS_FILE_TMPDIR/flaky.txt"
}

teardown_file() {
	httpd_stop
	stack_stop
}

@test "s3put FILE KEY prints the public URL, which opens without credentials" {
	run s3put "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/1-0.jpg"
	assert_success
	assert_output "$S3_PUBLIC_URL/images/$RUN/1-0.jpg"
	curl -sSf -o "$BATS_TEST_TMPDIR/public.jpg" "$output"
	cmp "$BATS_FILE_TMPDIR/in.jpg" "$BATS_TEST_TMPDIR/public.jpg"
	run curl -sSf -o /dev/null -w '%{content_type}' "$S3_PUBLIC_URL/images/$RUN/1-0.jpg"
	assert_output image/jpeg
}

@test "s3put FILE KEY sends the Content-Type KEY's suffix names, else FILE's" {
	declare -A type=([jpg]=image/jpeg [JPEG]=image/jpeg [png]=image/png [webp]=image/webp
		[gif]=image/gif [avif]=image/avif [heic]=image/heif [heif]=image/heif
		[tif]=image/tiff [tiff]=image/tiff [csv]=text/csv)
	for ext in "${!type[@]}"; do
		run s3put "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/types/x.$ext"
		assert_success
		run curl -sSf -o /dev/null -w '%{content_type}' "$S3_PUBLIC_URL/images/$RUN/types/x.$ext"
		assert_output "${type[$ext]}"
	done
	run s3put "$BATS_FILE_TMPDIR/in.png" "images/$RUN/types/no-suffix"
	assert_success
	run curl -sSf -o /dev/null -w '%{content_type}' "$S3_PUBLIC_URL/images/$RUN/types/no-suffix"
	assert_output image/png
}

@test "s3get round-trips a 48 MiB object, streaming it" {
	run s3put "$BATS_FILE_TMPDIR/big.bin" "images/$RUN/big.bin"
	assert_success
	/usr/bin/time -f %M -o "$BATS_TEST_TMPDIR/rss" s3get "images/$RUN/big.bin" >"$BATS_TEST_TMPDIR/big.out"
	cmp "$BATS_FILE_TMPDIR/big.bin" "$BATS_TEST_TMPDIR/big.out"
	# Peak memory in KiB: well below the object's size, so it was never held whole.
	[ "$(cat "$BATS_TEST_TMPDIR/rss")" -lt $((24 << 10)) ]
}

@test "s3put --private stores a CSV that s3get reads and anonymous curl cannot" {
	run s3put --private "$BATS_FILE_TMPDIR/in.csv" "uploads/$RUN.csv"
	assert_success
	run s3get "uploads/$RUN.csv"
	assert_success
	assert_output "S. No.,Product Name,Input Image Urls"
	run curl -sS -o /dev/null -w '%{http_code}' "$S3_PUBLIC_URL/uploads/$RUN.csv"
	assert_output 403
	run curl -sS -o /dev/null --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		-w '%{content_type}' "$S3_ENDPOINT/$S3_BUCKET/uploads/$RUN.csv"
	assert_output text/csv
}

@test "s3get of a missing key exits 65 with a clear message" {
	run s3get "images/$RUN/missing.jpg"
	assert_failure 65
	assert_output "s3get: GET s3://$S3_BUCKET/images/$RUN/missing.jpg: no such key"
}

@test "a wrong secret is refused with one clear line and exit 69" {
	AWS_SECRET_ACCESS_KEY=wrong-secret run s3put "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/forged.jpg"
	assert_failure 69
	assert_output "s3put: PUT s3://$S3_BUCKET/images/$RUN/forged.jpg refused: SignatureDoesNotMatch (check AWS_SECRET_ACCESS_KEY)"
	run curl -sS -o /dev/null -w '%{http_code}' "$S3_PUBLIC_URL/images/$RUN/forged.jpg"
	assert_output 404
}

@test "an unknown access key and a missing bucket are refused with exit 69" {
	AWS_ACCESS_KEY_ID=nobody run s3get "images/$RUN/1-0.jpg"
	assert_failure 69
	assert_output --regexp "^s3get: GET s3://$S3_BUCKET/images/$RUN/1-0.jpg refused: [A-Za-z]+ \(.+\)$"
	S3_BUCKET=no-such-bucket run s3get "images/$RUN/1-0.jpg"
	assert_failure 69
	assert_output "s3get: GET s3://no-such-bucket/images/$RUN/1-0.jpg refused: NoSuchBucket (check S3_BUCKET)"
}

@test "NDJSON mode uploads output_file to images/BATCH/SERIAL-INDEX.EXT and adds output_url" {
	in="$BATS_FILE_TMPDIR"
	run s3put <<-EOF
	{"batch_id": "$RUN", "serial_no": 7, "index": 0, "url": "http://x/a", "output_file": "$in/in.jpg", "format": "jpeg", "extra": [1, 2]}
	{"batch_id": "$RUN", "serial_no": 7, "index": 1, "output_file": "$in/in.png"}
	EOF
	assert_success
	assert_line --index 0 "{ \"batch_id\" : \"$RUN\", \"serial_no\" : 7, \"index\" : 0, \"url\" : \"http://x/a\", \"output_file\" : \"$in/in.jpg\", \"format\" : \"jpeg\", \"extra\" : [ 1, 2 ], \"output_key\" : \"images/$RUN/7-0.jpg\", \"output_url\" : \"$S3_PUBLIC_URL/images/$RUN/7-0.jpg\" }"
	assert_line --index 1 "{ \"batch_id\" : \"$RUN\", \"serial_no\" : 7, \"index\" : 1, \"output_file\" : \"$in/in.png\", \"output_key\" : \"images/$RUN/7-1.png\", \"output_url\" : \"$S3_PUBLIC_URL/images/$RUN/7-1.png\" }"
	curl -sSf "$S3_PUBLIC_URL/images/$RUN/7-1.png" | cmp - "$in/in.png"
	run curl -sSf -o /dev/null -w '%{content_type}' "$S3_PUBLIC_URL/images/$RUN/7-1.png"
	assert_output image/png
}

@test "NDJSON mode passes error records and records without output_file through untouched" {
	run s3put <<-EOF
	{"batch_id": "$RUN", "serial_no": 8, "index": 0, "output_file": "/nonexistent.jpg", "error": "fetch failed"}
	{"line": 3, "serial_no": 8, "product_name": "P", "input_image_urls": ["http://x/a"]}
	EOF
	assert_success
	assert_line --index 0 "{\"batch_id\": \"$RUN\", \"serial_no\": 8, \"index\": 0, \"output_file\": \"/nonexistent.jpg\", \"error\": \"fetch failed\"}"
	assert_line --index 1 '{"line": 3, "serial_no": 8, "product_name": "P", "input_image_urls": ["http://x/a"]}'
}

@test "NDJSON mode turns a failed upload into that record's error and goes on" {
	run --separate-stderr s3put <<-EOF
	{"batch_id": "$RUN", "serial_no": 9, "index": 0, "output_file": "$BATS_FILE_TMPDIR/none.jpg"}
	{"batch_id": "../x", "serial_no": 9, "index": 1, "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	not json
	{"batch_id": "$RUN", "serial_no": 9, "index": 2, "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	EOF
	assert_failure 65
	assert_equal "$(jq -r .error <<<"${lines[0]}")" \
		"s3put: PUT s3://$S3_BUCKET/images/$RUN/9-0.jpg: cannot open $BATS_FILE_TMPDIR/none.jpg: No such file or directory"
	assert_equal "$(jq -r .error <<<"${lines[1]}")" \
		"s3put: a record with output_file needs batch_id (letters, digits, - and _), serial_no and index"
	assert_equal "$(jq -r .input_line <<<"${lines[2]}")" 3
	assert_regex "$(jq -r .error <<<"${lines[2]}")" '^s3put: input line 3 is not a JSON object: '
	assert_equal "$(jq -r .output_url <<<"${lines[3]}")" "$S3_PUBLIC_URL/images/$RUN/9-2.jpg"
}

@test "a store that is down: exit 69 in single mode, record errors in NDJSON mode" {
	export S3_ENDPOINT=http://127.0.0.1:1 S3_PUBLIC_URL=http://127.0.0.1:1/imgpipe
	run s3put --retries 1 "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/down.jpg"
	assert_failure 69
	assert_output --regexp "^s3put: PUT s3://$S3_BUCKET/images/$RUN/down.jpg: store unreachable after 2 attempts: .+"
	run s3put --retries 1 <<-EOF
	{"batch_id": "$RUN", "serial_no": 1, "index": 0, "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	{"batch_id": "$RUN", "serial_no": 2, "index": 0, "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	EOF
	assert_success
	assert_equal "${#lines[@]}" 2
	run jq -r .error <<<"$output"
	assert_line --index 0 --regexp "^s3put: PUT s3://$S3_BUCKET/images/$RUN/1-0.jpg: store unreachable after 2 attempts: .+"
	# While the store stays down, later records try once instead of waiting out the retries.
	assert_line --index 1 --regexp "^s3put: PUT s3://$S3_BUCKET/images/$RUN/2-0.jpg: store unreachable after 1 attempt: .+"
}

@test "a 503 is retried: the answer after it is streamed out" {
	# The test server's /flaky/FILE answers 503 once, then serves FILE.
	S3_ENDPOINT=$HTTPD_URL S3_BUCKET=flaky run s3get flaky.txt
	assert_success
	assert_output "served after one 503"
}

@test "a GET that breaks off resumes where it stopped, writing no byte twice" {
	head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/obj"
	python3 "$TESTDATA/s3/breakoff.py" "$BATS_TEST_TMPDIR/obj" >"$BATS_TEST_TMPDIR/port" 2>"$BATS_TEST_TMPDIR/ranges" &
	server=$!
	for _ in $(seq 100); do [ -s "$BATS_TEST_TMPDIR/port" ] && break; sleep 0.05; done
	S3_ENDPOINT="http://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")" s3get any/key >"$BATS_TEST_TMPDIR/got"
	kill "$server"
	cmp "$BATS_TEST_TMPDIR/obj" "$BATS_TEST_TMPDIR/got"
	assert_equal "$(paste -sd' ' "$BATS_TEST_TMPDIR/ranges")" "- bytes=50000-"
}

@test "5xx answers past the retries exit 75 with the status" {
	S3_ENDPOINT=$HTTPD_URL S3_BUCKET=status run s3get --retries 2 503
	assert_failure 75
	assert_output "s3get: GET s3://status/503 failed after 3 attempts: HTTP 503"
}

@test "usage errors exit 64; --help agrees with the man page" {
	run s3put only-one-arg
	assert_failure 64
	run s3get
	assert_failure 64
	run s3put --retries 11 a b
	assert_failure 64
	for tool in s3put s3get; do
		run "$tool" --help
		assert_success
		while read -r opt; do
			sed 's/\\//g' "$ROOT/tools/s3put/$tool.1" | grep -q -- "$opt"
		done < <(grep -o -- '--[a-z]\+' <<<"$output" | sort -u)
	done
}
