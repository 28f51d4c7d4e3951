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
	# Sources' hashes of this run only, for the content-addressed keys.
	SHA1=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	SHA2=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	export RUN SHA1 SHA2
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

@test "NDJSON mode uploads output_file to images/SHA256-SETTINGS.EXT and adds output_url" {
	in="$BATS_FILE_TMPDIR"
	run s3put <<-EOF
	{"batch_id": "$RUN", "serial_no": 7, "index": 0, "url": "http://x/a", "sha256": "$SHA1", "settings": "q50", "output_file": "$in/in.jpg", "format": "jpeg", "extra": [1, 2]}
	{"sha256": "$SHA1", "settings": "q50-png", "output_file": "$in/in.png", "uploaded": "stale"}
	EOF
	assert_success
	assert_line --index 0 "{ \"batch_id\" : \"$RUN\", \"serial_no\" : 7, \"index\" : 0, \"url\" : \"http://x/a\", \"sha256\" : \"$SHA1\", \"settings\" : \"q50\", \"output_file\" : \"$in/in.jpg\", \"format\" : \"jpeg\", \"extra\" : [ 1, 2 ], \"output_key\" : \"images/$SHA1-q50.jpg\", \"output_url\" : \"$S3_PUBLIC_URL/images/$SHA1-q50.jpg\", \"uploaded\" : true }"
	assert_line --index 1 "{ \"sha256\" : \"$SHA1\", \"settings\" : \"q50-png\", \"output_file\" : \"$in/in.png\", \"output_key\" : \"images/$SHA1-q50-png.png\", \"output_url\" : \"$S3_PUBLIC_URL/images/$SHA1-q50-png.png\", \"uploaded\" : true }"
	curl -sSf "$S3_PUBLIC_URL/images/$SHA1-q50-png.png" | cmp - "$in/in.png"
	run curl -sSf -o /dev/null -w '%{content_type}' "$S3_PUBLIC_URL/images/$SHA1-q50-png.png"
	assert_output image/png
}

@test "NDJSON mode: an object already there is not sent again, and keeps its first bytes" {
	rec() { echo "{\"sha256\": \"$SHA2\", \"settings\": \"q50\", \"output_file\": \"$BATS_FILE_TMPDIR/$1\", \"format\": \"jpeg\"}"; }
	before=$(s3count images/)
	run s3put <<<"$(rec in.jpg)"
	assert_equal "$(jq -c '[.uploaded, .output_key]' <<<"$output")" "[true,\"images/$SHA2-q50.jpg\"]"
	modified=$(curl -sSfI "$S3_PUBLIC_URL/images/$SHA2-q50.jpg" | grep -i '^last-modified:')
	sleep 1.1    # a new PUT would show in Last-Modified, which has whole seconds
	# Other bytes under the same key: the key says they are the same, so none are sent.
	run s3put <<<"$(rec in.png)"
	assert_success
	assert_equal "$(jq -c '[.uploaded, .output_key, .output_url, .error]' <<<"$output")" \
		"[false,\"images/$SHA2-q50.jpg\",\"$S3_PUBLIC_URL/images/$SHA2-q50.jpg\",null]"
	curl -sSf "$S3_PUBLIC_URL/images/$SHA2-q50.jpg" | cmp - "$BATS_FILE_TMPDIR/in.jpg"
	assert_equal "$(curl -sSfI "$S3_PUBLIC_URL/images/$SHA2-q50.jpg" | grep -i '^last-modified:')" "$modified"
	assert_equal "$(s3count images/)" $((before + 1))
}

@test "NDJSON mode objects are public, immutable for a year in caches, and name no batch" {
	run s3put <<<"{\"batch_id\": \"$RUN\", \"sha256\": \"$SHA1\", \"settings\": \"q50-s0.5\", \"output_file\": \"$BATS_FILE_TMPDIR/in.jpg\"}"
	url=$(jq -r .output_url <<<"$output")
	[[ $url == "$S3_PUBLIC_URL/images/$SHA1-q50-s0.5.jpg" && $url != *"$RUN"* ]]
	run curl -sSfI "$url"
	assert_success
	assert_line --regexp '^[Cc]ache-[Cc]ontrol: public, max-age=31536000, immutable'$'\r''?$'
	# s3put FILE KEY stays as it was: no Cache-Control.
	s3put "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/plain.jpg" >/dev/null
	run curl -sSfI "$S3_PUBLIC_URL/images/$RUN/plain.jpg"
	refute_line --regexp '^[Cc]ache-[Cc]ontrol:'
}

@test "NDJSON mode: a record without sha256 or settings is an error naming the missing field" {
	run --separate-stderr s3put <<-EOF
	{"settings": "q50", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	{"sha256": "$SHA1", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	{"sha256": "${SHA1^^}", "settings": "q50", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	{"sha256": "$SHA1", "settings": "../q50", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	EOF
	assert_success
	run jq -r .error <<<"$output"
	assert_line --index 0 "s3put: a record with output_file needs sha256 (64 lowercase hex digits, from fetchimg)"
	assert_line --index 1 "s3put: a record with output_file needs settings (lowercase letters, digits, . and -, from shrink)"
	assert_line --index 2 "s3put: a record with output_file needs sha256 (64 lowercase hex digits, from fetchimg)"
	assert_line --index 3 "s3put: a record with output_file needs settings (lowercase letters, digits, . and -, from shrink)"
}

@test "--remove-files removes each record's file and output_file once done, failed ones too" {
	d="$BATS_TEST_TMPDIR/files"
	mkdir "$d"
	for f in a.src a.out b.src b.out c.src d.src d.out; do cp "$BATS_FILE_TMPDIR/in.jpg" "$d/$f"; done
	failed="{\"file\": \"$d/c.src\", \"error\": \"shrink: not an image\", \"n\": 1.50}"
	run --separate-stderr s3put --remove-files <<-EOF
	{"sha256": "$SHA1", "settings": "q50", "file": "$d/a.src", "output_file": "$d/a.out", "format": "jpeg"}
	{"sha256": "$SHA1", "settings": "q50", "file": "$d/b.src", "output_file": "$d/b.out", "format": "jpeg"}
	$failed
	{"settings": "q50", "file": "$d/d.src", "output_file": "$d/d.out"}
	{"sha256": "$SHA1", "settings": "q7", "file": "$d/gone.src", "output_file": "$d/gone.out", "format": "jpeg"}
	EOF
	assert_success
	assert_equal "$(jq -c '[.output_key, .error]' <<<"${lines[0]}")" "[\"images/$SHA1-q50.jpg\",null]"
	assert_equal "$(jq -c '[.output_key, .error]' <<<"${lines[1]}")" "[\"images/$SHA1-q50.jpg\",null]"
	assert_equal "${lines[2]}" "$failed"
	assert_regex "$(jq -r .error <<<"${lines[3]}")" '^s3put: a record with output_file needs sha256'
	assert_regex "$(jq -r .error <<<"${lines[4]}")" '^s3put: PUT .*: cannot open '
	run ls -A "$d"
	assert_output ""
	run s3put --remove-files "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/x.jpg"
	assert_failure 64
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
	{"sha256": "$SHA1", "settings": "q80", "output_file": "$BATS_FILE_TMPDIR/none.jpg"}
	not json
	{"sha256": "$SHA1", "settings": "q90", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	EOF
	assert_failure 65
	assert_equal "$(jq -r .error <<<"${lines[0]}")" \
		"s3put: PUT s3://$S3_BUCKET/images/$SHA1-q80.jpg: cannot open $BATS_FILE_TMPDIR/none.jpg: No such file or directory"
	assert_equal "$(jq -r .input_line <<<"${lines[1]}")" 2
	assert_regex "$(jq -r .error <<<"${lines[1]}")" '^s3put: input line 2 is not a JSON object: '
	assert_equal "$(jq -r .output_url <<<"${lines[2]}")" "$S3_PUBLIC_URL/images/$SHA1-q90.jpg"
}

@test "a store that is down: exit 69 in single mode; in NDJSON mode record errors, then exit 69" {
	export S3_ENDPOINT=http://127.0.0.1:1 S3_PUBLIC_URL=http://127.0.0.1:1/imgpipe
	run s3put --retries 1 "$BATS_FILE_TMPDIR/in.jpg" "images/$RUN/down.jpg"
	assert_failure 69
	assert_output "s3put: PUT s3://$S3_BUCKET/images/$RUN/down.jpg: store unreachable after 2 attempts: Couldn't connect to server"
	run s3put --retries 1 <<-EOF
	{"sha256": "$SHA1", "settings": "q1", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	{"sha256": "$SHA1", "settings": "q2", "output_file": "$BATS_FILE_TMPDIR/in.jpg"}
	EOF
	assert_failure 69
	assert_equal "${#lines[@]}" 2
	run jq -r .error <<<"$output"
	# the reason is libcurl's generic one: the record's error reaches the status, and names
	# no internal address
	assert_line --index 0 "s3put: HEAD s3://$S3_BUCKET/images/$SHA1-q1.jpg: store unreachable after 2 attempts: Couldn't connect to server"
	# While the store stays down, later records try once instead of waiting out the retries.
	assert_line --index 1 "s3put: HEAD s3://$S3_BUCKET/images/$SHA1-q2.jpg: store unreachable after 1 attempt: Couldn't connect to server"
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
