#!/usr/bin/env bats
# scripts/inbox, which the systemd path unit and the cron example run: each file dropped in
# the inbox goes through `imgpipe run` and lands in STATE/done or STATE/failed with its
# output, leaving the inbox empty; a run that was killed is finished by the next one.

load helpers

setup_file() {
	photos_start
}

teardown_file() {
	imgpipe stack up dispatch >/dev/null 2>&1 || true   # if a test stopped it
	photos_stop
}

setup() {
	inbox="$BATS_TEST_TMPDIR/inbox" state="$BATS_TEST_TMPDIR/inbox.state"
	mkdir -p "$inbox"
}

kite_csv() {
	printf 'S. No.,Product Name,Input Image Urls\n1,Kite,%s/kite.jpg\n' "$HTTPD_URL" >"$1"
}

batches() {
	/usr/bin/python3 - "$MONGODB_URI" <<'PY'
import sys, pymongo
print(pymongo.MongoClient(sys.argv[1]).get_default_database().batches.count_documents({}))
PY
}

@test "a good CSV ends in done/ with its output CSV, a bad one in failed/ with the reason" {
	kite_csv "$inbox/good.csv"
	printf 'S. No.,Name Only\n1,Kite\n' >"$inbox/bad.csv"
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_line "inbox: good.csv -> done/"
	assert_line "inbox: bad.csv -> failed/"
	assert_equal "$(ls "$state/done")" "$(printf 'good.csv\ngood.log\ngood.output.csv')"
	run grep -c "^1,\"Kite\",\"$HTTPD_URL/kite.jpg\",\"$S3_PUBLIC_URL/images/" "$state/done/good.output.csv"
	assert_output 1
	run cat "$state/failed/bad.log"
	assert_output --partial "Input Image Urls"
	assert_equal "$(ls -A "$state/work")" ""
}

@test "the inbox is empty after a run, so a DirectoryNotEmpty= path unit stops firing" {
	kite_csv "$inbox/one.csv"
	printf 'not a CSV at all\n' >"$inbox/notes.txt"
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_line "inbox: notes.txt -> failed/"
	assert_equal "$(ls -A "$inbox")" ""
	[ -f "$state/done/one.csv" ]
	[ -f "$state/failed/notes.txt" ]
}

@test "a name with spaces and a newline goes through, and so does a second file of the same name" {
	name=$'two words\nand a line.csv'
	kite_csv "$inbox/$name"
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_output "inbox: \$'two words\\nand a line.csv' -> done/"
	kite_csv "$inbox/$name"
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	[ -f "$state/done/$name" ] && [ -f "$state/done/$name.~1~" ]
	run grep -c "^1,\"Kite\",\"$HTTPD_URL/kite.jpg\",\"$S3_PUBLIC_URL/images/" \
		"$state/done/${name%.csv}.output.csv"
	assert_output 1
}

@test "a run killed after submitting is finished by the next run, without a second batch" {
	kite_csv "$inbox/crash.csv"
	imgpipe stack down dispatch   # the batch stays in queue while the run waits
	before=$(batches)
	setsid "$ROOT/scripts/inbox" "$inbox" >"$BATS_TEST_TMPDIR/first.out" 2>&1 &
	first=$!
	for _ in $(seq 100); do
		[ -s "$state/work/crash.csv/batch" ] && break
		sleep 0.1
	done
	[ -s "$state/work/crash.csv/batch" ]
	kill -KILL -- "-$first"   # the whole run, as a crash or systemd's stop would
	id=$(cat "$state/work/crash.csv/batch")
	[ ! -e "$state/done/crash.csv" ]
	imgpipe stack up dispatch
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_output "inbox: crash.csv -> done/"
	assert_equal "$(batches)" "$((before + 1))"
	run cat "$state/done/crash.log"
	assert_line "imgpipe: batch $id submitted"
	assert_line "imgpipe: batch $id resumed"
	assert_line "batch $id completed: 1 rows (1 valid, 0 rejected), 1 images (1 done, 0 failed)"
	assert_equal "$(ls -A "$state/work")" ""
}

@test "a run that cannot reach the endpoint keeps the file in work/ for the next run" {
	kite_csv "$inbox/later.csv"
	IMGPIPE_URL=http://127.0.0.1:1 run "$ROOT/scripts/inbox" "$inbox"
	assert_failure 75
	assert_output --partial "inbox: later.csv waits in $state/work/later.csv"
	assert_equal "$(ls -A "$inbox")" ""
	[ ! -e "$state/work/later.csv/batch" ]
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_output "inbox: later.csv -> done/"
}

@test "an empty inbox is a quiet success; a missing one, or STATE inside it, is a usage error" {
	run "$ROOT/scripts/inbox" "$inbox"
	assert_success
	assert_output ""
	run "$ROOT/scripts/inbox" "$BATS_TEST_TMPDIR/no-such-dir"
	assert_failure 64
	run "$ROOT/scripts/inbox" --state "$inbox/state" "$inbox"
	assert_failure 64
	[ ! -e "$inbox/state" ]
}
