#!/usr/bin/env bats
# For the people who run it, through the real web server, dispatcher and stack: retrying
# what failed, cancelling, /healthz, /metrics (parsed by prometheus_client), the logfmt
# logs, the buttons of the status page, and each route's bad uses.

load helpers

setup_file() {
	photos_start
	export PHOTOS="$BATS_FILE_TMPDIR/photos"
}

teardown_file() {
	photos_stop
}

teardown() {
	for name in redis ferretdb versitygw; do   # what a test stopped goes on
		kill -CONT "$(cat "$IMGPIPE_HOME/run/$name.pid")" 2>/dev/null || true
	done
	imgpipe stack up >/dev/null 2>&1
	hook_answers 200
}

# submit CSV-TEXT: uploads it with the test server's webhook; prints the batch id.
submit() {
	printf '%s\n' "$1" >"$BATS_TEST_TMPDIR/upload.csv"
	imgpipe submit "$BATS_TEST_TMPDIR/upload.csv" --webhook "$HTTPD_URL/hook" | jq -r .batch_id
}

# answer METHOD PATH [CURL-ARGS...]: "CODE BODY", the JSON body on one line.
answer() {
	local method=$1 path=$2 out
	shift 2
	[ "$method" != POST ] || set -- --data-binary '' "$@"   # an empty body, with its length
	out=$(curl -sS -X "$method" -w '\n%{http_code}' "$@" "$IMGPIPE_URL$path")
	echo "${out##*$'\n'} $(jq -c . <<<"${out%$'\n'*}")"
}

# The webhook bodies the test server received for a batch, one JSON line each.
hooks_of() { jq -c --arg id "$1" '.body | fromjson | select(.batch_id == $id)' "$HOOK_LOG"; }

# Waits until the test server has received N webhooks for the batch.
wait_hooks() {
	for _ in $(seq 100); do [ "$(hooks_of "$1" | wc -l)" -ge "$2" ] && return 0; sleep 0.1; done
	return 1
}

# A CSV of N products, two photographs each.
products() {
	local csv=$RANDOM photos=(autumn fallenleaf path eveningglow kite colorfulcups onestandsout coldripple bythewater summer_1am darkesthour grey)
	echo "S. No.,Product Name,Input Image Urls"
	# every URL its own (the query differs): no slot is a copy, none reuses an earlier output
	for i in $(seq "$1"); do
		printf '%d,Product %d,"%s/%s.jpg?csv=%d&row=%d,%s/%s.jpg?csv=%d&row=%d"\n' "$i" "$i" \
			"$HTTPD_URL" "${photos[i % 12]}" "$csv" "$i" "$HTTPD_URL" "${photos[(i + 5) % 12]}" "$csv" "$i"
	done
}

# The samples of GET /metrics as prometheus_client's parser reads them: NAME{LABELS}<tab>VALUE.
metrics() {
	curl -sS -D "$BATS_TEST_TMPDIR/metrics.headers" "$IMGPIPE_URL/metrics" | /usr/bin/python3 -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("%s{%s}\t%g" % (s.name, labels, s.value))'
}

# metric 'NAME{LABELS}' in the output of metrics on stdin.
metric() { awk -F'\t' -v k="$1" '$1 == k { print $2 }'; }

# Waits until no job is pending: every process-batch has exited, its counting done.
wait_idle() {
	for _ in $(seq 100); do
		[ "$(metrics | metric 'imgpipe_jobs_pending{}')" = 0 ] && return 0
		sleep 0.1
	done
	return 1
}

@test "retry: only the two failed images are fetched again; the done ones keep their URLs" {
	id=$(submit "S. No.,Product Name,Input Image Urls
1,Autumn,$HTTPD_URL/autumn.jpg
2,Later,\"$HTTPD_URL/kite.jpg,$HTTPD_URL/later-a.jpg\"
3,Also Later,$HTTPD_URL/later-b.jpg")
	wait_for "$id" 60 '.status == "completed"'
	run field "$id" '[.progress.images_done, .progress.images_failed] | @tsv'
	assert_output $'2\t2'
	wait_hooks "$id" 1
	before=$(field "$id" '[.products[].output_image_urls] | tojson')
	seen=$(wc -l <"$REQUEST_LOG")
	cp -L "$PHOTOS/grey.jpg" "$PHOTOS/later-a.jpg"
	cp -L "$PHOTOS/path.jpg" "$PHOTOS/later-b.jpg"

	run imgpipe retry "$id"
	assert_success
	assert_equal "$(jq -c . <<<"$output")" "{\"batch_id\":\"$id\",\"status\":\"in queue\",\"status_url\":\"/status/$id\"}"
	wait_for "$id" 60 '.status == "completed"'
	run field "$id" '[.progress.images_done, .progress.images_failed, ([.products[].errors[]] | length), .message] | @tsv'
	assert_output $'4\t0\t0\t3 rows (3 valid, 0 rejected), 4 images (4 done, 0 failed)'
	# the images done before: the same URLs, in the same slots
	after=$(field "$id" '[.products[].output_image_urls] | tojson')
	assert_equal "$(jq -c '[.[][] | select(. != "")]' <<<"$before")" \
		"$(jq -c --argjson b "$before" '[to_entries[] | .key as $p | .value | to_entries[] | select($b[$p][.key] != "") | .value]' <<<"$after")"
	run bash -c "tail -n +$((seen + 1)) '$REQUEST_LOG' | sort"
	assert_output "$(printf '/later-a.jpg\n/later-b.jpg')"
	# a new ending, so a new webhook event, with the fresh counts
	wait_hooks "$id" 2
	run bash -c "jq -c --arg id '$id' '.body | fromjson | select(.batch_id == \$id) | [.event, .progress.images_done, .progress.images_failed]' '$HOOK_LOG'"
	assert_output "$(printf '%s\n' '["batch.completed",2,2]' '["batch.completed",4,0]')"
	wait_for "$id" 10 '[.webhook_deliveries[] | select(.delivered)] | length == 2'
	run field "$id" '[.ending, [.webhook_deliveries[] | .ending]] | tojson'
	assert_output '[1,[0,1]]'
}

@test "a retry whose job cannot be queued is undone: 503, and the batch as it was" {
	id=$(submit "S. No.,Product Name,Input Image Urls
1,Gone,$HTTPD_URL/gone-for-good.jpg")
	wait_for "$id" 60 '.status == "failed"'
	before=$(field "$id" '[.status, .message, .ending] | tojson')
	# in database 1 the stream's name holds a string, so XADD fails after the update
	redis-cli -u "$REDIS_URL" -n 1 SET imgpipe:jobs not-a-stream >/dev/null
	run env REQUEST_METHOD=POST PATH_INFO="/status/$id/retry" REDIS_URL="$REDIS_URL/1" imgpipe.cgi
	redis-cli -u "$REDIS_URL" -n 1 DEL imgpipe:jobs >/dev/null
	assert_line "Status: 503 Service Unavailable"
	assert_output --partial '{ "error" : "Redis unavailable" }'
	assert_line --partial "503: Redis unavailable: XADD: WRONGTYPE"   # the server's log
	assert_equal "$(field "$id" '[.status, .message, .ending] | tojson')" "$before"
	run answer POST "/status/$id/retry"
	assert_output --regexp '^202 '
	wait_for "$id" 60 '.status == "failed" and .ending == 1'
}

@test "cancel a running batch of 200 rows: it ends cancelled within 10 s and fetches no more" {
	products 200 >"$BATS_TEST_TMPDIR/big.csv"
	id=$(imgpipe submit "$BATS_TEST_TMPDIR/big.csv" --webhook "$HTTPD_URL/hook" | jq -r .batch_id)
	wait_for "$id" 60 '.progress.images_done >= 4'
	# its jobs (a chunk a job) are pending while they run
	metrics >"$BATS_TEST_TMPDIR/running"
	run metric 'imgpipe_jobs_pending{}' <"$BATS_TEST_TMPDIR/running"
	[ "$output" -ge 1 ]
	run metric 'imgpipe_oldest_pending_job_age_seconds{}' <"$BATS_TEST_TMPDIR/running"
	awk -v age="$output" 'BEGIN { exit !(age > 0) }'
	run answer POST "/status/$id/cancel"
	assert_output "202 {\"batch_id\":\"$id\",\"status\":\"in progress\",\"status_url\":\"/status/$id\"}"
	wait_for "$id" 10 '.status == "failed"'
	run field "$id" '.message'
	assert_output cancelled
	fetched=$(wc -l <"$REQUEST_LOG")
	sleep 2
	assert_equal "$(wc -l <"$REQUEST_LOG")" "$fetched"
	# what was done stays recorded, and the rest is not
	run field "$id" '.progress | .images_done > 0 and .images_done + .images_failed < .images_total'
	assert_output true
	wait_hooks "$id" 1
	sleep 1
	run hooks_of "$id"
	assert_output --regexp '^\{"event":"batch.failed","batch_id":"'"$id"'","status":"failed","message":"cancelled",'
	assert_equal "$(hooks_of "$id" | wc -l)" 1
	run answer POST "/status/$id/cancel"
	assert_output "409 {\"error\":\"batch $id has ended: there is nothing to cancel\"}"
}

@test "cancel a queued batch: it ends at once and never starts; retry while queued is 409" {
	imgpipe stack down dispatch
	id=$(submit "S. No.,Product Name,Input Image Urls
1,Never,$HTTPD_URL/never-fetched.jpg")
	run answer POST "/status/$id/retry"
	assert_output "409 {\"error\":\"batch $id is running (in queue or in progress): retry it once it has ended\"}"
	run imgpipe cancel "$id"
	assert_success
	assert_output --partial '"status" : "failed"'
	run field "$id" '[.status, .message] | @tsv'
	assert_output $'failed\tcancelled'
	imgpipe stack up dispatch
	wait_hooks "$id" 1
	sleep 1
	run hooks_of "$id"
	assert_output --regexp '"event":"batch.failed".*"message":"cancelled"'
	assert_equal "$(hooks_of "$id" | wc -l)" 1
	run grep -c never-fetched "$REQUEST_LOG"
	assert_output 0
	run field "$id" '.progress.rows_total'
	assert_output 0
}

@test "each route's bad uses: 404 unknown, 405 wrong method, all JSON errors" {
	unknown=0123456789abcdef0123456789abcdef
	for action in retry cancel; do
		run answer POST "/status/$unknown/$action"
		assert_output "404 {\"error\":\"no batch $unknown\"}"
		run answer POST "/status/not-an-id/$action"
		assert_output "404 {\"error\":\"no such batch: a batch id is 32 lowercase hex digits\"}"
		run answer GET "/status/$unknown/$action"
		assert_output "405 {\"error\":\"method GET not allowed on /status/ID/$action; use POST\"}"
	done
	run curl -sS -o /dev/null -D - -X GET "$IMGPIPE_URL/status/$unknown/retry"
	assert_line --partial "Allow: POST"
	for route in /healthz /metrics; do
		run answer POST "$route"
		assert_output "405 {\"error\":\"method POST not allowed on $route; use GET\"}"
	done
	run imgpipe retry "$unknown"
	assert_failure 65
	run imgpipe cancel
	assert_failure 64
}

@test "healthz: 200 when all answer, 503 naming FerretDB while it is down, and a hung Redis within the bound" {
	run answer GET /healthz
	assert_output '200 {"ok":true,"backends":{"mongodb":"ok","redis":"ok","s3":"ok"}}'
	imgpipe stack down ferretdb
	run answer GET /healthz -m 5
	assert_output '503 {"ok":false,"error":"mongodb: unavailable","backends":{"mongodb":"unavailable","redis":"ok","s3":"ok"}}'
	# scripts/stack agrees: the database is down, the web server answers
	run imgpipe stack status ferretdb lighttpd
	assert_failure
	assert_line --regexp '^ferretdb +DOWN$'
	assert_line --regexp '^lighttpd +up '
	imgpipe stack up ferretdb
	run answer GET /healthz
	assert_output --regexp '^200 '
	# a stopped server accepts connections and never answers: each check has its bound
	kill -STOP "$(cat "$IMGPIPE_HOME/run/redis.pid")"
	run answer GET /healthz -m 4
	kill -CONT "$(cat "$IMGPIPE_HOME/run/redis.pid")"
	assert_output '503 {"ok":false,"error":"redis: unavailable","backends":{"mongodb":"ok","redis":"unavailable","s3":"ok"}}'
}

@test "metrics: Prometheus text that prometheus_client parses, with the counters moving as batches run" {
	wait_idle
	metrics >"$BATS_TEST_TMPDIR/before"
	assert_equal "$(sed -n 's/^Content-Type: //Ip' "$BATS_TEST_TMPDIR/metrics.headers" | tr -d '\r')" \
		"text/plain; version=0.0.4; charset=utf-8"
	for name in 'imgpipe_batches{status=in queue}' 'imgpipe_batches{status=in progress}' \
		'imgpipe_batches{status=completed}' 'imgpipe_batches{status=failed}' \
		'imgpipe_images_done_total{}' 'imgpipe_images_failed_total{}' 'imgpipe_images_reused_total{}' \
		'imgpipe_jobs_queued{}' 'imgpipe_jobs_pending{}' 'imgpipe_oldest_pending_job_age_seconds{}' \
		'imgpipe_webhook_deliveries_failed_total{}' 'imgpipe_webhooks_pending{}' 'imgpipe_stage_errors_total{stage=fetchimg}' \
		'imgpipe_stage_errors_total{stage=shrink}'; do
		[ -n "$(metric "$name" <"$BATS_TEST_TMPDIR/before")" ] || { echo "no $name" >&2; return 1; }
	done
	before() { metric "$1" <"$BATS_TEST_TMPDIR/before"; }

	vips copy "$PHOTOS/grey.jpg" "$PHOTOS/grey.tif"   # fetchimg takes TIFF, shrink does not
	hook_answers 503
	id=$(submit "S. No.,Product Name,Input Image Urls
1,Two,\"$HTTPD_URL/autumn.jpg,$HTTPD_URL/kite.jpg\"
2,Missing,$HTTPD_URL/not-there.jpg
3,Tiff,$HTTPD_URL/grey.tif")
	wait_for "$id" 120 '.status == "completed" and (.webhook_deliveries | length) > 0'
	wait_idle
	metrics >"$BATS_TEST_TMPDIR/after"
	hook_answers 200
	after() { metric "$1" <"$BATS_TEST_TMPDIR/after"; }
	assert_equal "$(after 'imgpipe_images_done_total{}')" "$(($(before 'imgpipe_images_done_total{}') + 2))"
	assert_equal "$(after 'imgpipe_images_failed_total{}')" "$(($(before 'imgpipe_images_failed_total{}') + 2))"
	assert_equal "$(after 'imgpipe_stage_errors_total{stage=fetchimg}')" \
		"$(($(before 'imgpipe_stage_errors_total{stage=fetchimg}') + 1))"
	assert_equal "$(after 'imgpipe_stage_errors_total{stage=shrink}')" \
		"$(($(before 'imgpipe_stage_errors_total{stage=shrink}') + 1))"
	# the delivery failing is retried, not failed (91-webhooks: given up, then counted)
	assert_equal "$(after 'imgpipe_webhooks_pending{}')" "$(($(before 'imgpipe_webhooks_pending{}') + 1))"
	assert_equal "$(after 'imgpipe_webhook_deliveries_failed_total{}')" "$(before 'imgpipe_webhook_deliveries_failed_total{}')"
	assert_equal "$(after 'imgpipe_batches{status=completed}')" "$(($(before 'imgpipe_batches{status=completed}') + 1))"
	# the photographs may have been made by an earlier file's batch: reused as the batch says
	assert_equal "$(after 'imgpipe_images_reused_total{}')" \
		"$(($(before 'imgpipe_images_reused_total{}') + $(field "$id" .progress.images_reused)))"
	# nothing left waiting or running
	assert_equal "$(after 'imgpipe_jobs_queued{}') $(after 'imgpipe_oldest_pending_job_age_seconds{}')" "0 0"
}

@test "metrics: a job no dispatcher has taken yet is counted as queued" {
	imgpipe stack down dispatch
	id=$(submit "S. No.,Product Name,Input Image Urls
1,Waiting,$HTTPD_URL/autumn.jpg")
	metrics >"$BATS_TEST_TMPDIR/queued"
	run metric 'imgpipe_jobs_queued{}' <"$BATS_TEST_TMPDIR/queued"
	assert_output 1
	imgpipe stack up dispatch
	wait_for "$id" 60 '.status == "completed"'
}

@test "logs: one logfmt line an event, with the batch, the host and the stage, across dispatcher and stages" {
	id=$(submit "S. No.,Product Name,Input Image Urls
1,One,$HTTPD_URL/autumn.jpg
2,Gone,$HTTPD_URL/gone.jpg")
	wait_for "$id" 60 '.status == "completed"'
	for _ in $(seq 100); do
		grep -q "batch=$id chunk=0 stage=dispatch event=ended " "$IMGPIPE_HOME/log/dispatch.log" && break
		sleep 0.1
	done
	run grep "batch=$id " "$IMGPIPE_HOME/log/dispatch.log"
	assert_success
	logfmt='^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z host=[^ ]+ batch='"$id"'( chunk=[0-9]+)?( run=[0-9]+)? stage=[a-z0-9_.-]+ event=[a-z_]+( ms=[0-9]+)? msg="([^"\\]|\\.)*"$'
	while IFS= read -r line; do
		[[ $line =~ $logfmt ]] || { echo "not logfmt: $line" >&2; return 1; }
	done <<<"$output"
	assert_line --regexp "stage=dispatch event=started "
	assert_line --regexp "stage=batch event=completed .*msg=\"2 rows \(2 valid, 0 rejected\), 2 images \(1 done, 1 failed\)\""
	assert_line --regexp "stage=fetchimg event=image_failed .*msg=\"product 2 image 0: (fetchimg: )?HTTP 404 "
	assert_line --regexp "stage=dispatch event=ended "
}

@test "the status page: a cancel button while a batch runs, a retry button once it failed, 303 back" {
	imgpipe stack down dispatch
	id=$(submit "S. No.,Product Name,Input Image Urls
1,Missing,$HTTPD_URL/missing-for-the-page.jpg")
	page() { curl -sS -H 'Accept: text/html' "$IMGPIPE_URL/status/$id"; }
	run page
	assert_line "<form class=\"action\" method=\"post\" action=\"/status/$id/cancel\"><button type=\"submit\">Cancel</button></form>"
	refute_output --partial "/retry"
	imgpipe stack up dispatch
	wait_for "$id" 60 '.status == "failed"'
	run page
	assert_line "<form class=\"action\" method=\"post\" action=\"/status/$id/retry\"><button type=\"submit\">Retry the failed images</button></form>"
	refute_output --partial "/cancel"
	# the browser's post: 303 to the status page
	run curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Accept: text/html' -X POST \
		-H 'Content-Type: application/x-www-form-urlencoded' --data-binary '' "$IMGPIPE_URL/status/$id/retry"
	assert_output "303 $IMGPIPE_URL/status/$id"
	wait_for "$id" 60 '.status == "failed" and .ending == 1'
}
