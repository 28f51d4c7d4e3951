#!/usr/bin/env bats
# A URL repeated in one batch (in a row, across rows, across chunks run by two
# dispatchers) is fetched and compressed once; every slot that names it gets the same
# output URL, or the same error, and counts as done or failed.

load helpers

setup_file() {
	photos_start
	# two dispatchers of this file's own, as two hosts, cutting batches into chunks of 2 rows
	imgpipe stack down dispatch >/dev/null
	for host in dedupe-a dedupe-b; do
		HOSTNAME=$host IMGPIPE_CHUNK_ROWS=2 imgpipe-dispatch --claim-idle 3 2>>"$BATS_FILE_TMPDIR/dispatch.log" &
		echo $! >>"$BATS_FILE_TMPDIR/dispatchers"
	done
	# file order is not serial order: serial 9 comes first, and owns grey.jpg
	cat >"$BATS_FILE_TMPDIR/repeats.csv" <<CSV
S. No.,Product Name,Input Image Urls
9,Grey,$HTTPD_URL/grey.jpg
1,Autumn Pair,"$HTTPD_URL/autumn.jpg, $HTTPD_URL/path.jpg, $HTTPD_URL/autumn.jpg"
2,Kite,$HTTPD_URL/kite.jpg
3,Path Again,"$HTTPD_URL/path.jpg, $HTTPD_URL/grey.jpg"
4,Missing,"$HTTPD_URL/later.jpg, $HTTPD_URL/kite.jpg"
5,Autumn Again,$HTTPD_URL/autumn.jpg
6,Missing Again,"$HTTPD_URL/later.jpg, $HTTPD_URL/later.jpg"
CSV
	BATCH=$(imgpipe submit "$BATS_FILE_TMPDIR/repeats.csv" | jq -r .batch_id)
	export BATCH
	timeout 120 imgpipe status "$BATCH" --wait >/dev/null
}

teardown_file() {
	while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$BATS_FILE_TMPDIR/dispatchers"
	imgpipe stack up dispatch >/dev/null 2>&1 || true
	photos_stop
}

# Each slot of the batch, one a line in serial order: SERIAL INDEX URL-NAME OUTPUT how=HOW
# sizes=IN/OUT errors=ERROR (the output "-" when empty; the error's text up to its URL).
slots() {
	/usr/bin/python3 - "$MONGODB_URI" "$BATCH" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
for p in db.products.find({"batch_id": sys.argv[2]}).sort("serial_no"):
    for i, url in enumerate(p["input_image_urls"]):
        size = p.get("image_sizes", {}).get(str(i), {})
        errs = [e["error"].split(" from ")[0] for e in p["errors"] if e["index"] == i]
        print(p["serial_no"], i, url.rsplit("/", 1)[1], p["output_image_urls"][i] or "-",
              "how=%s" % size.get("how", "-"),
              "sizes=%s/%s" % (size.get("input_bytes", "-"), size.get("output_bytes", "-")),
              "errors=%s" % "|".join(errs))
PY
}
export -f slots    # for run bash -c

# How many GETs the image server had for NAME.
fetched() { grep -c "^/$1\$" "$REQUEST_LOG" || true; }

@test "the planning job marks each slot whose URL stood in an earlier slot of the file as a copy" {
	run /usr/bin/python3 - "$MONGODB_URI" "$BATCH" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
for p in db.products.find({"batch_id": sys.argv[2]}).sort("serial_no"):
    print(p["serial_no"], p["chunk"], p.get("copies"))
PY
	assert_output "$(printf '%s\n' '1 0 [2]' '2 1 None' '3 1 [0, 1]' '4 2 [1]' '5 2 [0]' '6 3 [0, 1]' '9 0 None')"
}

@test "each distinct URL is fetched once, over the batch's four chunks" {
	for name in grey.jpg autumn.jpg path.jpg kite.jpg later.jpg; do
		assert_equal "$name $(fetched "$name")" "$name 1"
	done
	run bash -c "dbrecord chunks $BATCH | jq -s '[.[] | select(.chunk != null)] | length'"
	assert_output 4
}

@test "every slot of a URL holds the same output URL and sizes; the copies say how" {
	run slots
	assert_success
	# the owners' outputs, then every slot of the same URL
	for name in grey.jpg autumn.jpg path.jpg kite.jpg; do
		mapfile -t lines < <(grep " $name " <<<"$output")
		[ "${#lines[@]}" -ge 2 ]
		owner=$(grep " $name " <<<"$output" | grep -v how=copied)
		[ "$(wc -l <<<"$owner")" = 1 ]
		read -r _ _ _ out how sizes errors <<<"$owner"
		[[ $out == "$S3_PUBLIC_URL/images/"* ]]
		[ "$how" != how=copied ] && [ "$errors" = errors= ]
		for line in "${lines[@]}"; do
			read -r _ _ _ o h s e <<<"$line"
			assert_equal "$o $s $e" "$out $sizes $errors"
		done
	done
	assert_equal "$(grep -c 'how=copied' <<<"$output")" 5
}

@test "a repeated URL that fails gives each of its slots the same error, each counted failed" {
	run bash -c "slots | grep ' later.jpg '"
	assert_output "$(printf '%s\n' '4 0 later.jpg - how=- sizes=-/- errors=fetchimg: HTTP 404' \
		'6 0 later.jpg - how=- sizes=-/- errors=fetchimg: HTTP 404' \
		'6 1 later.jpg - how=- sizes=-/- errors=fetchimg: HTTP 404')"
	run field "$BATCH" '[.status, .progress.images_total, .progress.images_done, .progress.images_failed, .message] | @tsv'
	assert_output $'completed\t12\t9\t3\t7 rows (7 valid, 0 rejected), 12 images (9 done, 3 failed)'
}

@test "dbrecord copies again changes nothing; a copy slot lost is set again" {
	run bash -c "dbrecord copies $BATCH | jq -c '[.copies, .updated]'"
	assert_output '[7,0]'
	/usr/bin/python3 - "$MONGODB_URI" "$BATCH" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
db.products.update_one({"_id": sys.argv[2] + "-5"},
                       {"$set": {"output_image_urls.0": ""}, "$unset": {"image_sizes.0": ""}})
PY
	run bash -c "dbrecord copies $BATCH | jq -c '[.copies, .updated]'"
	assert_output '[7,1]'
	run bash -c "slots | grep '^5 0 '"
	assert_output --regexp "^5 0 autumn.jpg $S3_PUBLIC_URL/images/[0-9a-f]{64}-q50.jpg how=copied sizes=[0-9]+/[0-9]+ errors=\$"
}

@test "pending lists no copy slot" {
	run bash -c "dbrecord pending $BATCH | jq -c 'select(.index != null) | [.serial_no, .index]'"
	assert_output '[4,0]'
}

@test "a retry after the missing image exists fetches it once and fills every slot of it" {
	cp "$BATS_FILE_TMPDIR/photos/colorfulcups.jpg" "$BATS_FILE_TMPDIR/photos/later.jpg"
	imgpipe retry "$BATCH" >/dev/null
	timeout 120 imgpipe status "$BATCH" --wait >/dev/null
	assert_equal "$(fetched later.jpg)" 2
	run bash -c "slots | grep ' later.jpg ' | awk '{ print \$1, \$2, (\$5 == \"how=copied\"), \$7, (\$4 == \"-\") }'"
	assert_output "$(printf '%s\n' '4 0 0 errors= 0' '6 0 1 errors= 0' '6 1 1 errors= 0')"
	[ "$(slots | grep ' later.jpg ' | awk '{ print $4 }' | sort -u | wc -l)" = 1 ]
	run field "$BATCH" '[.status, .progress.images_done, .progress.images_failed] | @tsv'
	assert_output $'completed\t12\t0'
}

@test "dbrecord copies wants one batch ID; --help and the man page name it" {
	run dbrecord copies
	assert_failure 64
	run dbrecord copies "$BATCH" "$BATCH"
	assert_failure 64
	run dbrecord --help
	assert_output --partial "copies ID"
	grep -qF '.B copies' "$ROOT/tools/dbrecord/dbrecord.1"
	# a batch without copies: nothing to do
	run bash -c "dbrecord copies no-such-batch | jq -c ."
	assert_output '{"batch_id":"no-such-batch","copies":0,"updated":0}'
}
