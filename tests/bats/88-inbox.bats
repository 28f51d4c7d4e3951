#!/usr/bin/env bats
# scripts/inbox, which the systemd path unit and the cron example run: each CSV dropped
# in the inbox goes through `imgpipe run` and lands in done/ or failed/ with its output.

load helpers

setup_file() {
	photos_start
}

teardown_file() {
	photos_stop
}

@test "a good CSV ends in done/ with its output CSV, a bad one in failed/ with the reason" {
	inbox="$BATS_TEST_TMPDIR/inbox"
	mkdir -p "$inbox"
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,%s/kite.jpg\n' "$HTTPD_URL" >"$inbox/good.csv"
	printf 'S. No.,Name Only\n1,Kite\n' >"$inbox/bad.csv"
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_line "inbox: good.csv -> done/"
	assert_line "inbox: bad.csv -> failed/"
	run ls "$inbox"/*.csv
	assert_failure
	assert_equal "$(ls "$inbox/done")" "$(printf 'good.csv\ngood.log\ngood.output.csv')"
	run grep -c "^1,\"Kite\",\"$HTTPD_URL/kite.jpg\",\"$S3_PUBLIC_URL/images/" "$inbox/done/good.output.csv"
	assert_output 1
	run cat "$inbox/failed/bad.log"
	assert_output --partial "Input Image Urls"
}

@test "an empty inbox is a quiet success; a missing one is a usage error" {
	mkdir -p "$BATS_TEST_TMPDIR/empty"
	run "$ROOT/scripts/inbox" "$BATS_TEST_TMPDIR/empty"
	assert_success
	assert_output ""
	run "$ROOT/scripts/inbox" "$BATS_TEST_TMPDIR/no-such-dir"
	assert_failure 64
}
