#!/usr/bin/env bats
# Reuse across batches, through the whole stack: a catalog sent again is answered by 304s
# (and a server without validators by the same bytes) and reuses its outputs with no
# compression and no upload; a changed image is made again; force makes everything again;
# the counters of progress match the products.

load helpers

setup_file() {
	photos_start
	local photos=$BATS_FILE_TMPDIR/photos
	cp "$photos/path.jpg" "$photos/changing.jpg"
	# an image that cannot get smaller: its output is its source ("kept": "source")
	convert -size 64x64 plasma:fractal -quality 10 -strip "$photos/tiny.jpg"
	cat >"$BATS_FILE_TMPDIR/products.csv" <<CSV
S. No.,Product Name,Input Image Urls
1,Autumn Print,"$HTTPD_URL/autumn.jpg, $HTTPD_URL/tiny.jpg"
2,Kite Poster,$HTTPD_URL/plain/kite.jpg
3,Changing Poster,$HTTPD_URL/changing.jpg
CSV
	export FIRST SECOND FORCED
	FIRST=$(run_batch first)
	# the same URL, other bytes, a later time: a new ETag and Last-Modified
	cp --remove-destination "$photos/grey.jpg" "$photos/changing.jpg"
	touch -d '+2 seconds' "$photos/changing.jpg"
	SECOND=$(run_batch second)
	FORCED=$(run_batch forced --force)
}

teardown_file() {
	photos_stop
}

# run_batch NAME [SUBMIT OPTION...]: submits the catalog, waits for its end, keeps its
# status as NAME.json, the test server's answers to it as NAME.answers, the count of
# objects under images/ after it as NAME.objects, and when each URL's source was last
# written as NAME.sources; prints the batch id.
run_batch() {
	local name=$1 seen id
	shift
	seen=$(wc -l <"$ANSWER_LOG")
	id=$(imgpipe submit "$BATS_FILE_TMPDIR/products.csv" "$@" | jq -r .batch_id)
	imgpipe status "$id" --wait >"$BATS_FILE_TMPDIR/$name.json"
	tail -n +$((seen + 1)) "$ANSWER_LOG" >"$BATS_FILE_TMPDIR/$name.answers"
	s3count images/ >"$BATS_FILE_TMPDIR/$name.objects"
	/usr/bin/python3 - "$MONGODB_URI" "$HTTPD_URL/" >"$BATS_FILE_TMPDIR/$name.sources" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
for s in db.sources.find({"_id": {"$regex": "^" + sys.argv[2]}}).sort("_id"):
    print(s["_id"][len(sys.argv[2]):], s["updatedAt"].isoformat())
PY
	echo "$id"
}

# answers NAME: the test server's answers to that batch, "PATH STATUS CONDITIONS" sorted,
# CONDITIONS being which of If-None-Match (inm) and If-Modified-Since (ims) came.
answers() {
	jq -r '[.path, .status, ([if .if_none_match then "inm" else empty end,
		if .if_modified_since then "ims" else empty end] | join(",") | if . == "" then "-" else . end)]
		| join(" ")' <"$BATS_FILE_TMPDIR/$1.answers" | sort
}

# made NAME: each image's output URL, how it was made and what was kept, one a line.
made() {
	jq -r '.products[] | . as $p | range($p.input_image_urls | length) as $i
		| [$p.serial_no, $i, $p.output_image_urls[$i], $p.image_sizes[$i].how,
		   ($p.image_sizes[$i].kept // "-")] | join(" ")' <"$BATS_FILE_TMPDIR/$1.json"
}

output_of() { echo "$S3_PUBLIC_URL/images/$(sha256sum <"$1" | cut -c1-64)-q50.jpg"; }

@test "the first batch compresses every image and asks without conditions" {
	run answers first
	assert_output "$(printf '%s\n' '/autumn.jpg 200 -' '/changing.jpg 200 -' '/plain/kite.jpg 200 -' '/tiny.jpg 200 -')"
	run jq -c '.progress | [.images_done, .images_compressed, .images_reused, .images_deduplicated]' \
		"$BATS_FILE_TMPDIR/first.json"
	assert_output '[4,4,0,0]'
	run made first
	assert_line --index 0 "1 0 $(output_of "$BATS_FILE_TMPDIR/photos/autumn.jpg") compressed -"
	assert_line --index 1 "1 1 $(output_of "$BATS_FILE_TMPDIR/photos/tiny.jpg") compressed source"
}

@test "sources holds each URL's validators, hash and output under q50" {
	run /usr/bin/python3 - "$MONGODB_URI" "$HTTPD_URL" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
for name in ["autumn.jpg", "tiny.jpg", "plain/kite.jpg"]:
    s = db.sources.find_one({"_id": f"{sys.argv[2]}/{name}"})
    out = s["outputs"]["q50"]
    print(name, "etag" in s, "last_modified" in s, len(s["sha256"]), s["content_type"],
          s["input_bytes"] > 0, out["output_key"] == out["output_url"].split("/imgpipe/")[1],
          out["format"], out.get("kept", "-"))
PY
	assert_success
	assert_output "$(printf '%s\n' 'autumn.jpg True True 64 image/jpeg True True jpeg -' \
		'tiny.jpg True True 64 image/jpeg True True jpeg source' \
		'plain/kite.jpg False False 64 image/jpeg True True jpeg -')"
}

@test "sent again: 304s and a same-bytes 200 reuse their outputs, a changed image is redone" {
	run answers second
	# the server with validators is asked conditionally; the one without gets a plain GET
	assert_output "$(printf '%s\n' '/autumn.jpg 304 inm,ims' '/changing.jpg 200 inm,ims' \
		'/plain/kite.jpg 200 -' '/tiny.jpg 304 inm,ims')"
	run made second
	assert_output "$(printf '%s\n' \
		"1 0 $(output_of "$BATS_FILE_TMPDIR/photos/autumn.jpg") reused -" \
		"1 1 $(output_of "$BATS_FILE_TMPDIR/photos/tiny.jpg") reused source" \
		"2 0 $(output_of "$BATS_FILE_TMPDIR/photos/kite.jpg") reused -" \
		"3 0 $(output_of "$BATS_FILE_TMPDIR/photos/grey.jpg") compressed -")"
	# the changed image is one object more; the reused ones were not uploaded again
	assert_equal "$(cat "$BATS_FILE_TMPDIR/second.objects")" "$(($(cat "$BATS_FILE_TMPDIR/first.objects") + 1))"
	run jq -c '.progress | [.images_done, .images_failed, .images_compressed, .images_reused]' \
		"$BATS_FILE_TMPDIR/second.json"
	assert_output '[4,0,1,3]'
}

@test "sent again: a source found unchanged is not written again; the changed one is" {
	run join "$BATS_FILE_TMPDIR/first.sources" "$BATS_FILE_TMPDIR/second.sources"
	assert_equal "${#lines[@]}" 4
	# autumn and tiny answered 304, kite the same bytes with no validators either time
	for url in autumn.jpg plain/kite.jpg tiny.jpg; do
		assert_line --regexp "^$url ([^ ]+) \1$"
	done
	refute_line --regexp "^changing.jpg ([^ ]+) \1$"
}

@test "the same output URLs as the first batch for the unchanged images" {
	run diff <(made first | sed -n 1,3p | cut -d' ' -f1-3) <(made second | sed -n 1,3p | cut -d' ' -f1-3)
	assert_success
}

@test "force: every image downloaded without conditions and compressed again" {
	run answers forced
	assert_output "$(printf '%s\n' '/autumn.jpg 200 -' '/changing.jpg 200 -' '/plain/kite.jpg 200 -' '/tiny.jpg 200 -')"
	run jq -c '[.force, .progress.images_compressed, .progress.images_reused]' "$BATS_FILE_TMPDIR/forced.json"
	assert_output '[true,4,0]'
	run sort -u < <(made forced | cut -d' ' -f4)
	assert_output compressed
}

@test "IMGPIPE_FORCE=1 gives no record a reuse; the batch unforced does" {
	/usr/bin/python3 - "$MONGODB_URI" "$SECOND" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
db.products.update_many({"batch_id": sys.argv[2]}, {"$set": {"output_image_urls.0": ""}})
PY
	run bash -c "dbrecord pending $SECOND | jq -r 'select(.url) | [.serial_no, (.reuse.settings // \"-\")] | join(\" \")'"
	assert_output "$(printf '%s\n' '1 q50' '2 q50' '3 q50')"
	run bash -c "IMGPIPE_FORCE=1 dbrecord pending $SECOND | jq -r 'select(.url) | .reuse // \"none\"' | sort -u"
	assert_output none
}

@test "the counters of progress match the products, live and recounted" {
	for id in "$FIRST" "$FORCED"; do
		run /usr/bin/python3 - "$MONGODB_URI" "$id" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
how, saved = {}, 0
for p in db.products.find({"batch_id": sys.argv[2]}):
    for s in p.get("image_sizes", {}).values():
        how[s["how"]] = how.get(s["how"], 0) + 1
        saved += s["input_bytes"] - s["output_bytes"]
pr = db.batches.find_one({"_id": sys.argv[2]})["progress"]
print(pr["images_compressed"] == how.get("compressed", 0), pr["images_reused"] == how.get("reused", 0),
      pr.get("images_deduplicated", 0) == how.get("copied", 0), pr["bytes_saved"] == saved, saved > 0)
PY
		assert_output "True True True True True"
	done
	# the second batch's, from its status JSON (before the test above changed its products)
	run /usr/bin/python3 - "$BATS_FILE_TMPDIR/second.json" <<'PY'
import sys, json
st = json.load(open(sys.argv[1]))
sizes = [s for p in st["products"] for s in p["image_sizes"] if s]
pr = st["progress"]
print(pr["images_reused"] == sum(s["how"] == "reused" for s in sizes),
      pr["bytes_saved"] == sum(s["input_bytes"] - s["output_bytes"] for s in sizes))
PY
	assert_output "True True"
}

@test "the status page shows the counters and the kept source" {
	run curl -sS -H 'Accept: text/html' "$IMGPIPE_URL/status/$SECOND"
	assert_output --partial "3 reused"
	assert_output --partial "1 compressed"
	assert_output --partial "kept as source"
}

@test "a raw text/csv upload takes ?force=1; a bad force value is refused" {
	run curl -sS -H 'Content-Type: text/csv' --data-binary @"$BATS_FILE_TMPDIR/products.csv" \
		"$IMGPIPE_URL/upload?force=1"
	id=$(jq -r .batch_id <<<"$output")
	run field "$id" .force
	assert_output true
	run curl -sS -w ' %{http_code}' -H 'Content-Type: text/csv' --data-binary @"$BATS_FILE_TMPDIR/products.csv" \
		"$IMGPIPE_URL/upload?force=maybe"
	assert_output --partial "force must be 1 or true"
	assert_output --partial " 400"
	imgpipe status "$id" --wait >/dev/null
}

@test "dbrecord's live counts: a compressed and a reused image move progress as recount sets it" {
	id=reuse-live-$$
	dbrecord batch "$id" "in progress"
	jq -nc --arg b "$id" --arg u "$HTTPD_URL" '
		{batch_id: $b, serial_no: 1, product_name: "P", input_image_urls: ["\($u)/a.jpg", "\($u)/b.jpg"]},
		{batch_id: $b, serial_no: 1, index: 0, url: "\($u)/a.jpg", sha256: ("a" * 64), input_bytes: 1000,
		 output_bytes: 400, settings: "q50", output_key: "images/a-q50.jpg", output_url: "http://s3/a.jpg", format: "jpeg"},
		{batch_id: $b, serial_no: 1, index: 1, url: "\($u)/b.jpg", sha256: ("b" * 64), input_bytes: 300,
		 output_bytes: 300, kept: "source", reused: true, settings: "q50", output_key: "images/b-q50.jpg",
		 output_url: "http://s3/b.jpg", format: "jpeg"}' | dbrecord >/dev/null
	counts='[.progress | .images_done, .images_compressed, .images_reused, .images_deduplicated, .bytes_saved]'
	run bash -c "dbrecord show $id | jq -c '$counts'"
	assert_output '[2,1,1,0,600]'
	dbrecord recount "$id"
	run bash -c "dbrecord show $id | jq -c '$counts, .products[0].image_sizes'"
	assert_line --index 0 '[2,1,1,0,600]'
	assert_line --index 1 '[{"input_bytes":1000,"output_bytes":400,"how":"compressed"},{"input_bytes":300,"output_bytes":300,"how":"reused","kept":"source"}]'
}
