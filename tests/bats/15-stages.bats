#!/usr/bin/env bats
# The stage contract of docs/design.md "Stage records", the same for every NDJSON tool (they share
# lib/stage.c): a line that is not JSON becomes an error record naming the stage, the records
# around it still do their work, and the run exits 65; a record carrying "error" passes
# through byte for byte.  Each tool runs on its real backend: the test HTTP server, libvips,
# versitygw, FerretDB.

load helpers
bats_require_minimum_version 1.5.0

STAGES="fetchimg shrink s3put dbrecord notify"

setup_file() {
	# Under AddressSanitizer: third-party one-time allocations (libvips') are not our leaks.
	export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp}"
	stack_start redis ferretdb versitygw
	export WWW="$BATS_FILE_TMPDIR/www"
	mkdir -p "$WWW"
	convert -size 64x48 gradient:red-blue -quality 95 "$WWW/img.jpg"
	httpd_start "$WWW"
	export IMGPIPE_ALLOW_PRIVATE=1
	# Keys and ids of this run only, so that reruns never see older objects or products.
	ID=s$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	SHA=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	export ID SHA
}

teardown_file() {
	httpd_stop
	stack_stop
}

setup() {
	OUT="$BATS_TEST_TMPDIR/out"
	mkdir -p "$OUT"
	: >"$HOOK_LOG"
}

# stage TOOL: runs TOOL as a stage, stdin to stdout, with what it needs to do its work.
stage() {
	case $1 in
	fetchimg) fetchimg --dir "$OUT" --parallel 1 ;;
	shrink) shrink --out-dir "$OUT" ;;
	s3put) s3put ;;
	dbrecord) dbrecord ;;
	notify) notify --url "$HTTPD_URL/hook" ;;
	esac
}

# work TOOL N: a record that TOOL works on, the Nth of its kind.
work() {
	case $1 in
	fetchimg) printf '{"serial_no": %d, "url": "%s/img.jpg"}\n' "$2" "$HTTPD_URL" ;;
	shrink) printf '{"serial_no": %d, "file": "%s/img.jpg"}\n' "$2" "$WWW" ;;
	s3put) printf '{"batch_id": "%s", "serial_no": %d, "index": 0, "sha256": "%s", "settings": "q50", "output_file": "%s/img.jpg"}\n' "$ID" "$2" "$SHA" "$WWW" ;;
	dbrecord) printf '{"batch_id": "%s", "serial_no": %d, "product_name": "P%d", "input_image_urls": ["http://img/%d.jpg"]}\n' "$ID" "$2" "$2" "$2" ;;
	notify) printf '{"event": "batch.completed", "batch_id": "%s", "serial_no": %d}\n' "$ID" "$2" ;;
	esac
}

# done_ok TOOL LINE: the output line shows TOOL's work done, with no error.
done_ok() {
	local filter
	case $1 in
	fetchimg) filter='.content_type == "image/jpeg" and (.file | test("\\.jpg$"))' ;;
	shrink) filter='.format == "jpeg" and (.output_file | length > 0)' ;;
	s3put) filter='.output_url == env.S3_PUBLIC_URL + "/images/" + env.SHA + "-q50.jpg"' ;;
	dbrecord) filter='.product_name | startswith("P")' ;;
	notify) filter='.delivered' ;;
	esac
	jq -e "($filter) and (has(\"error\") | not)" <<<"$2" >/dev/null
}

@test "a line that is not JSON: an error record naming the stage, the others done, exit 65" {
	for tool in $STAGES; do
		in=$(work "$tool" 1; echo '{"not": json}'; work "$tool" 3)
		run --separate-stderr stage "$tool" <<<"$in"
		assert_failure 65
		assert_equal "${#lines[@]}" 3
		done_ok "$tool" "${lines[0]}"
		assert_equal "$(jq -r .input_line <<<"${lines[1]}")" 2
		assert_regex "$(jq -r .error <<<"${lines[1]}")" "^$tool: input line 2 is not a JSON object: .+"
		done_ok "$tool" "${lines[2]}"
		# shellcheck disable=SC2154 # bats' run --separate-stderr sets $stderr
		assert_equal "$(grep -c "^$tool: input line 2: " <<<"$stderr")" 1
	done
	# The work was really done: the products are in the database, the events were sent.
	run dbrecord show "$ID"
	assert_equal "$(jq -c '[.products[].serial_no]' <<<"$output")" '[1,3]'
	assert_equal "$(jq -r '.body | fromjson | .serial_no' "$HOOK_LOG" | paste -sd' ')" "1 3"
}

@test "a record carrying error passes through every stage byte for byte, its work not done" {
	# Every field a stage works on, written as no JSON library would print it again.
	rec=$(printf '{"batch_id":"%s","serial_no":2,"index":0,"url":"%s/img.jpg","file":"%s/img.jpg","output_file":"%s/img.jpg","event":"batch.completed","n":1.50,"s":"caf\\u00e9","error":"fetchimg: HTTP 404 from x"}' \
		"$ID" "$HTTPD_URL" "$WWW" "$WWW")
	# dbrecord records image errors: give it the product, so the record is recorded too.
	work dbrecord 2 | dbrecord >/dev/null
	for tool in $STAGES; do
		run --separate-stderr stage "$tool" <<<"$rec"
		assert_success
		assert_equal "$output" "$rec"
	done
	run ls -A "$OUT"
	assert_output ""
	assert_equal "$(wc -l <"$HOOK_LOG")" 0
	run dbrecord show "$ID"
	assert_equal "$(jq -c '.products[] | select(.serial_no == 2) | .errors[0].error' <<<"$output")" \
		'"fetchimg: HTTP 404 from x"'
}

@test "a record whose needed field is not a string gets an error naming the stage" {
	declare -A field=([fetchimg]=url [shrink]=file [s3put]=output_file)
	for tool in "${!field[@]}"; do
		run --separate-stderr stage "$tool" <<<"{\"${field[$tool]}\": 7}"
		assert_success
		assert_equal "$(jq -r .error <<<"$output")" "$tool: \"${field[$tool]}\" is not a string"
	done
}
