#!/usr/bin/env bats
# Faults injected into the real stack: crashes and outages lose and duplicate nothing,
# and every accepted batch ends exactly once.

load helpers

setup_file() {
	photos_start
}

teardown_file() {
	photos_stop
}

teardown() {
	# a failed test shows what the dispatchers and their runs logged
	[ -n "${BATS_TEST_COMPLETED:-}" ] || grep -v -E "event=(progress|message) " "$LOG" 2>/dev/null | tail -n 80 || true
	for pid in "${DISPATCHERS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	imgpipe stack up >/dev/null 2>&1   # whatever a test stopped comes back
}

setup() {
	DISPATCHERS=()
	LOG="$BATS_TEST_TMPDIR/dispatchers.log"
}

# A dispatcher of the test's own (the stack's is stopped first), logging to $LOG.  It
# sweeps only when the test asks (--sweep-after): the batches earlier files left would
# otherwise be queued again, and keep its slots busy.
dispatcher() {
	imgpipe stack down dispatch >/dev/null 2>&1
	imgpipe-dispatch --sweep-after 0 "$@" 2>>"$LOG" &
	DISPATCHERS+=($!)
}

# The number of the first line of $LOG that matches the regular expression $1.
log_line() {
	grep -n -m 1 -E -- "$1" "$LOG" | cut -d: -f1
}

# A CSV of N products, two photographs each (and so 2N images), every URL its own (the
# query differs), so that no slot is a copy of another or reuses an earlier batch's output:
# each is real work.  With PATH, the photographs are under it at the image server (hold/:
# each answered half a second late).
products_csv() {
	local n=$1 url=$HTTPD_URL/${2:-} csv=$RANDOM photos=(autumn fallenleaf path eveningglow kite colorfulcups onestandsout coldripple bythewater summer_1am darkesthour grey)
	echo "S. No.,Product Name,Input Image Urls"
	for i in $(seq "$n"); do
		printf '%d,Product %d,"%s%s.jpg?csv=%d&row=%d,%s%s.jpg?csv=%d&row=%d"\n' "$i" "$i" \
			"$url" "${photos[i % 12]}" "$csv" "$i" "$url" "${photos[(i + 5) % 12]}" "$csv" "$i"
	done
}

# submit_products N [PATH]: a batch of products_csv N PATH; prints its id.
submit_products() {
	products_csv "$1" "${2:-}" >"$BATS_TEST_TMPDIR/products.csv"
	imgpipe submit "$BATS_TEST_TMPDIR/products.csv" --webhook "$HTTPD_URL/hook" | jq -r .batch_id
}

# Every product once, every slot filled, counters exact, one webhook for the batch.
assert_complete_once() {
	local id=$1 rows=$2
	run /usr/bin/python3 - "$MONGODB_URI" "$id" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
products = list(db.products.find({"batch_id": sys.argv[2]}))
serials = sorted(p["serial_no"] for p in products)
print(len(products), len(set(serials)), sum(1 for p in products for u in p["output_image_urls"] if u))
PY
	assert_output "$rows $rows $((2 * rows))"
	run field "$id" '[.status, .progress.rows_done, .progress.images_done, .progress.images_failed] | join(" ")'
	assert_output "completed $rows $((2 * rows)) 0"
	delivered() { jq -c --arg id "$id" 'select(.answer == 200 and (.body | fromjson).batch_id == $id)' "$HOOK_LOG" | wc -l; }
	for _ in $(seq 100); do [ "$(delivered)" -gt 0 ] && break; sleep 0.1; done
	sleep 1
	run delivered
	assert_output 1
}

@test "dispatcher and its batch killed mid-way: after a restart the batch completes, nothing duplicated" {
	export IMGPIPE_PARALLEL=1
	id=$(submit_products 12)
	wait_for "$id" 60 '.progress.images_done > 2'
	# the dispatcher's whole session: every run and the processes of its pipelines
	pkill -KILL -s "$(cat "$IMGPIPE_HOME/run/dispatch.pid")"
	run field "$id" '.status'
	assert_output "in progress"
	imgpipe stack up dispatch
	wait_for "$id" 120 '.status == "completed"'
	assert_complete_once "$id" 12
}

@test "a job queued while no dispatcher runs survives Redis killed with SIGKILL" {
	imgpipe stack down dispatch
	id=$(submit_products 2)
	kill -KILL "$(cat "$IMGPIPE_HOME/run/redis.pid")"
	imgpipe stack up redis dispatch
	wait_for "$id" 60 '.status == "completed"'
	assert_complete_once "$id" 2
}

@test "the database down during a batch: it waits, then completes when the database is back" {
	imgpipe stack down dispatch
	id=$(submit_products 3)
	imgpipe stack down ferretdb
	imgpipe stack up dispatch
	sleep 4
	imgpipe stack up ferretdb
	wait_for "$id" 120 '.status == "completed"'
	assert_complete_once "$id" 3
}

@test "the database down during an upload: 503, and no S3 object or queue entry left behind" {
	products_csv 1 >"$BATS_TEST_TMPDIR/one.csv"
	before_s3=$(s3count uploads/)
	before_queue=$(redis-cli -u "$REDIS_URL" xlen imgpipe:jobs)
	imgpipe stack down ferretdb
	run curl -s -w '\n%{http_code}' -H 'Content-Type: text/csv' --data-binary @"$BATS_TEST_TMPDIR/one.csv" "$IMGPIPE_URL/upload"
	imgpipe stack up ferretdb
	assert_line 503
	assert_output --regexp '"error" ?: ?"[^"]+"'
	assert_equal "$(s3count uploads/)" "$before_s3"
	assert_equal "$(redis-cli -u "$REDIS_URL" xlen imgpipe:jobs)" "$before_queue"
}

@test "the S3 store down for a whole batch: it ends failed with the reason, nothing half-recorded" {
	imgpipe stack down dispatch
	id=$(submit_products 1)
	imgpipe stack down versitygw
	imgpipe stack up dispatch
	wait_for "$id" 120 '.status == "failed"'
	run field "$id" .message
	assert_output --partial "S3"
	# what failed, but not where the store is
	run curl -sS "$IMGPIPE_URL/status/$id"
	refute_output --partial "${S3_ENDPOINT#*://}"
}

@test "the S3 store down for 8 s mid-batch: the images it failed are made again, none ends failed" {
	export IMGPIPE_PARALLEL=1
	dispatcher --claim-idle 3
	id=$(submit_products 40 hold/)   # slow downloads: the outage meets the uploads
	wait_for "$id" 60 '.progress.images_done > 2'
	imgpipe stack down versitygw
	sleep 8   # longer than s3put's retries of one record (about 4 s)
	imgpipe stack up versitygw
	wait_for "$id" 180 '.status == "completed" or .status == "failed"'
	assert_complete_once "$id" 40
	# the run s3put failed (exit 69) was tried again
	grep -q "batch=$id chunk=0 stage=dispatch event=will_retry msg=\"process-batch exited 75" "$LOG"
	grep -q "batch=$id chunk=0 stage=dispatch event=started msg=\"job .*, attempt 2," "$LOG"
}

@test "the webhook receiver down: the batch still completes, the failed attempt is recorded, then delivered" {
	hook_answers 503
	id=$(submit_products 1)
	wait_for "$id" 120 '.status == "completed" and (.webhook_deliveries | length) > 0'
	run field "$id" '.webhook_deliveries[0] | [.attempt, .delivered, .status_code] | map(tostring) | join(" ")'
	hook_answers 200
	assert_output "1 false 503"
	wait_for "$id" 60 'any(.webhook_deliveries[]; .delivered)'
	run field "$id" '.webhook_deliveries | [(map(select(.delivered)) | length), .[-1].attempt == length] | map(tostring) | join(" ")'
	assert_output "1 true"
}

@test "two dispatchers on one queue: every batch processed exactly once" {
	IMGPIPE_HOME="$IMGPIPE_HOME" imgpipe-dispatch --claim-idle 3 2>"$BATS_TEST_TMPDIR/second.log" &
	second=$!
	ids=()
	for _ in 1 2 3 4; do ids+=("$(submit_products 2)"); done
	for id in "${ids[@]}"; do wait_for "$id" 120 '.status == "completed"'; done
	kill -TERM "$second"
	wait "$second"
	for id in "${ids[@]}"; do assert_complete_once "$id" 2; done
}

@test "a dispatcher cut off longer than --claim-idle: its run stops before the take-over, the batch ends once" {
	export IMGPIPE_PARALLEL=1
	dispatcher --claim-idle 3 --jobs 1
	first=${DISPATCHERS[0]}
	# slow downloads: the run is still far from done when its lease runs out
	id=$(submit_products 40 hold/)
	wait_for "$id" 60 '.progress.images_done > 2'
	kill -STOP "$first"
	dispatcher --claim-idle 3 --jobs 1
	for _ in $(seq 100); do [ "$(grep -c "batch=$id chunk=0 run=[0-9]* stage=images event=started " "$LOG")" -ge 2 ] && break; sleep 0.2; done
	kill -CONT "$first"
	wait_for "$id" 120 '.status == "completed"'
	assert_complete_once "$id" 40
	# the first run saw its lease about to expire unrenewed (or, on a loaded machine whose
	# watch woke late, already taken), and stopped before the second began
	started() { sed -n "s/.* batch=$id chunk=0 stage=dispatch event=started msg=\"job .*, attempt $1, run \([0-9]*\),.*/\1/p" "$LOG" | head -n 1; }
	stale=$(started 1) taken=$(started 2)
	[ -n "$stale" ] && [ -n "$taken" ]
	grep -q -E "batch=$id chunk=0 run=$stale stage=lease event=(expiring|lost) " "$LOG"
	[ "$(log_line "batch=$id chunk=0 run=$stale stage=batch event=stopped ")" -lt "$(log_line "batch=$id chunk=0 run=$taken stage=images event=started ")" ]
}

@test "a batch accepted but never queued is run by the sweeper within --sweep-after" {
	id=$(/usr/bin/python3 -c 'import secrets; print(secrets.token_hex(16))')
	products_csv 2 >"$BATS_TEST_TMPDIR/orphan.csv"
	s3put --private "$BATS_TEST_TMPDIR/orphan.csv" "uploads/$id.csv" >/dev/null
	/usr/bin/python3 - "$MONGODB_URI" "$id" "$HTTPD_URL/hook" <<'PY'
import sys, datetime, pymongo
now = datetime.datetime.now(datetime.timezone.utc)
pymongo.MongoClient(sys.argv[1]).get_default_database().batches.insert_one({
    "_id": sys.argv[2], "status": "in queue", "s3Key": "uploads/%s.csv" % sys.argv[2],
    "webhook_url": sys.argv[3], "createdAt": now, "updatedAt": now})
PY
	# an earlier test's dispatcher, SIGKILLed, may hold this minute's sweep (the lock lasts
	# its own period, up to 60 s): this one's period is what the test is about
	redis-cli -u "$REDIS_URL" del imgpipe:sweep >/dev/null
	dispatcher --claim-idle 3 --sweep-after 3
	wait_for "$id" 30 '.status == "completed"'
	assert_complete_once "$id" 2
	grep -q "batch=$id stage=dispatch event=swept msg=\"no job queued or running, unchanged for 3 s; queued again\"" "$LOG"
}

@test "a job whose process-batch is killed every time ends failed after --max-attempts, with the reason" {
	dispatcher --claim-idle 1 --max-attempts 3 --script "$ROOT/tests/lib/doomed-batch"
	id=$(submit_products 1)
	wait_for "$id" 60 '.status == "failed"'
	run field "$id" .message
	# the job killed: the planning one, or the chunk's if the planning was quicker than the kill
	assert_output --regexp '^gave up after 3 attempts( at chunk 0)?: process-batch killed by signal 9$'
	delivered() { jq -c --arg id "$id" 'select(.answer == 200 and (.body | fromjson | .batch_id == $id and .event == "batch.failed"))' "$HOOK_LOG" | wc -l; }
	for _ in $(seq 100); do [ "$(delivered)" -gt 0 ] && break; sleep 0.1; done
	run delivered
	assert_output 1
}

@test "acknowledged jobs are deleted: the stream is empty once the batches end" {
	# a job an earlier test's killed dispatcher held stays pending until --claim-idle:
	# only this test's jobs are looked at
	pending() { redis-cli -u "$REDIS_URL" xpending imgpipe:jobs dispatchers - + 1000 | awk 'NR % 4 == 1'; }
	pending >"$BATS_TEST_TMPDIR/pending.before"
	ids=("$(submit_products 1)" "$(submit_products 1)")
	ours() { redis-cli -u "$REDIS_URL" xrange imgpipe:jobs - + | grep -c -F -e "${ids[0]}" -e "${ids[1]}"; }
	for id in "${ids[@]}"; do wait_for "$id" 60 '.status == "completed"'; done
	for _ in $(seq 100); do [ "$(ours)" = 0 ] && break; sleep 0.1; done
	run ours
	assert_output 0
	run comm -13 <(sort "$BATS_TEST_TMPDIR/pending.before") <(pending | sort)
	assert_output ""
}

@test "a batch queued twice runs once at a time and ends once, with one webhook" {
	dispatcher --claim-idle 3
	dispatcher --claim-idle 3
	id=$(submit_products 6)
	redis-cli -u "$REDIS_URL" xadd imgpipe:jobs '*' batch "$id" >/dev/null
	wait_for "$id" 120 '.status == "completed"'
	assert_complete_once "$id" 6
}

@test "the folder of a run killed outright is removed by a later run; a live run's folder is not" {
	mkdir -p "$IMGPIPE_HOME/tmp/abandoned-plan-1/in" "$IMGPIPE_HOME/tmp/alive-plan-2"
	# a process of a live run holds its folder's lock, as every process of a run does
	(exec {fd}>"$IMGPIPE_HOME/tmp/alive-plan-2/.lock" && flock -s "$fd" && exec sleep 60) &
	holder=$!
	for _ in $(seq 50); do flock -n "$IMGPIPE_HOME/tmp/alive-plan-2/.lock" true || break; sleep 0.1; done
	touch -d '2 minutes ago' "$IMGPIPE_HOME/tmp/abandoned-plan-1" "$IMGPIPE_HOME/tmp/alive-plan-2"
	id=$(submit_products 1)
	wait_for "$id" 60 '.status == "completed"'
	kill "$holder"
	[ ! -e "$IMGPIPE_HOME/tmp/abandoned-plan-1" ]
	[ -d "$IMGPIPE_HOME/tmp/alive-plan-2" ]
	rm -rf "$IMGPIPE_HOME/tmp/alive-plan-2"
	grep -q 'event=removed_abandoned ms=[0-9]* msg="abandoned-plan-1: left by a run killed outright"' "$IMGPIPE_HOME/log/dispatch.log"
}
