#!/usr/bin/env bats
# Every tool, on a normal run, under valgrind: no memory error and no definite leak.

load helpers

setup_file() {
	stack_start redis ferretdb versitygw
	httpd_start
	"$ROOT/scripts/sample-photos" "$BATS_FILE_TMPDIR/photos"
}

setup() {
	# valgrind cannot run a program built with AddressSanitizer (make asan)
	if ldd "$ROOT/bin/csvsplit" | grep -q libasan; then
		skip "the programs are built with AddressSanitizer"
	fi
}

teardown_file() {
	httpd_stop
	stack_stop
}

# Runs a command under valgrind; fails on any error or definitely lost block.
vg() {
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
		--log-file="$BATS_TEST_TMPDIR/vg.log" "$@"
}

assert_clean() {
	[ "$status" -ne 99 ] || { cat "$BATS_TEST_TMPDIR/vg.log"; return 1; }
}

@test "csvsplit" {
	printf 'S. No.,Product Name,Input Image Urls\n1,A,http://x.test/a.jpg\n2,,http://x.test/b.jpg\n' >"$BATS_TEST_TMPDIR/in.csv"
	run vg csvsplit --batch b "$BATS_TEST_TMPDIR/in.csv"
	assert_success
}

@test "fetchimg" {
	cp "$BATS_FILE_TMPDIR/photos/kite.jpg" "$BATS_TEST_TMPDIR/"
	printf '{"url": "%s/missing.jpg"}\n' "$HTTPD_URL" >"$BATS_TEST_TMPDIR/in.ndjson"
	run vg env IMGPIPE_ALLOW_PRIVATE=1 fetchimg --dir "$BATS_TEST_TMPDIR" <"$BATS_TEST_TMPDIR/in.ndjson"
	assert_clean
	assert_success
}

@test "shrink" {
	run vg shrink "$BATS_FILE_TMPDIR/photos/kite.jpg" "$BATS_TEST_TMPDIR/out.jpg"
	assert_clean
	assert_success
}

@test "s3put and s3get" {
	printf 'bytes\n' >"$BATS_TEST_TMPDIR/f.txt"
	run vg s3put "$BATS_TEST_TMPDIR/f.txt" images/vg/f.txt
	assert_clean
	assert_success
	run vg s3get images/vg/f.txt
	assert_clean
	assert_output bytes
}

@test "dbrecord" {
	printf '{"batch_id": "vg", "line": 2, "serial_no": 1, "product_name": "A", "input_image_urls": ["http://x.test/a.jpg"]}\n' |
		vg dbrecord >/dev/null
	run vg dbrecord show vg
	assert_clean
	assert_success
}

@test "notify" {
	run vg notify --url "$HTTPD_URL/hook" <<<'{"event": "batch.completed", "batch_id": "vg"}'
	assert_clean
	assert_success
}

@test "imgpipe.cgi" {
	run vg env REQUEST_METHOD=GET PATH_INFO=/status/0123456789abcdef0123456789abcdef imgpipe.cgi
	assert_clean
	assert_output --partial "Status: 404"
}
