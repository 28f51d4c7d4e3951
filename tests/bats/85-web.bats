#!/usr/bin/env bats
# The web page of imgpipe.cgi through the real web server and the whole stack: the upload
# form, the 303 after a browser's upload, error pages, escaping, the status page that
# refreshes itself and shows a page of products at a time, the image sizes behind it, the
# output CSV streamed through the web server, and a real browser (Debian's headless
# Chromium, driven by playwright-core in tests/browser/web.mjs) that uploads a CSV through
# the form and follows the batch to its end.  Set WEB_SCREENSHOT_DIR to keep its
# screenshots (docs/web-upload.png and docs/web-status.png come from there).

load helpers

setup_file() {
	photos_start
	cat >"$BATS_FILE_TMPDIR/products.csv" <<CSV
S. No.,Product Name,Input Image Urls
1,Autumn Print,"$HTTPD_URL/autumn.jpg, $HTTPD_URL/path.jpg"
2,Kite Poster,$HTTPD_URL/kite.jpg
3,Evening Glow Canvas,$HTTPD_URL/eveningglow.jpg
4,Colourful Cups,$HTTPD_URL/colorfulcups.jpg
5,Missing Poster,$HTTPD_URL/no-such-photo.jpg
CSV
	cat >"$BATS_FILE_TMPDIR/hostile.csv" <<CSV
S. No.,Product Name,Input Image Urls
1,"<script>alert(1)</script> & ""quotes""",$HTTPD_URL/kite.jpg?a=1&b=2
<b>,Bold,$HTTPD_URL/grey.jpg
CSV
	printf 'S. No.,Product Name\n1,Kite\n' >"$BATS_FILE_TMPDIR/no-urls.csv"
}

teardown_file() {
	photos_stop
}

# html URL [CURL-ARGS...]: a request as a browser makes it; the body on stdout, the
# headers in $BATS_TEST_TMPDIR/headers for status_line and header.
html() {
	local url=$1
	shift
	curl -sS -D "$BATS_TEST_TMPDIR/headers" \
		-H 'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' "$@" "$url"
}

status_line() { head -n 1 "$BATS_TEST_TMPDIR/headers" | tr -d '\r'; }
header() { sed -n "s/^$1: //Ip" "$BATS_TEST_TMPDIR/headers" | tr -d '\r'; }

# The text as HTML escapes it.
escaped() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' -e "s/'/\&#39;/g" <<<"$1"; }

# submit_wait CSV: uploads the CSV as curl does and waits for its batch to end; sets BATCH.
# Submits a CSV and waits for its batch to end, and for its event's delivery attempt to be
# recorded (the deliverer writes it a moment after the end): from then on the batch keeps
# still, and two reads of it agree.
submit_wait() {
	BATCH=$(imgpipe submit "$1" | jq -r .batch_id)
	imgpipe status "$BATCH" --wait >/dev/null
	for _ in $(seq 150); do
		[ "$(curl -sS "$IMGPIPE_URL/status/$BATCH" | jq '.webhook_deliveries | length')" -gt 0 ] && return
		sleep 0.1
	done
	fail "batch $BATCH: no delivery attempt recorded"
}

@test "GET / is the upload form for a browser and a JSON index for everyone else" {
	run html "$IMGPIPE_URL/"
	assert_success
	assert_equal "$(status_line)" "HTTP/1.1 200 OK"
	assert_equal "$(header Content-Type)" "text/html; charset=utf-8"
	assert_equal "$(header Referrer-Policy)" "same-origin"
	assert_line '<form method="post" action="/upload" enctype="multipart/form-data">'
	assert_line '<input id="file" name="file" type="file" accept=".csv,text/csv" required></p>'
	assert_line --regexp '^<input id="webhook_url" name="webhook_url" type="url" '
	assert_line '<p><input id="force" name="force" type="checkbox" value="1">'
	assert_line '<p><button type="submit">Upload</button></p>'
	run curl -sS "$IMGPIPE_URL/"
	assert_equal "$(jq -c .routes <<<"$output")" '["POST /upload","GET /status/ID","GET /status/ID?format=csv","POST /status/ID/retry","POST /status/ID/cancel","GET /healthz","GET /metrics"]'
}

@test "a browser's upload answers 303 See Other to its status page; curl still gets 202 JSON" {
	run html "$IMGPIPE_URL/upload" -F "file=@$BATS_FILE_TMPDIR/products.csv;type=text/csv" -F webhook_url=
	assert_success
	assert_equal "$(status_line)" "HTTP/1.1 303 See Other"
	location=$(header Location)
	[[ $location =~ ^/status/[0-9a-f]{32}$ ]]
	assert_line --partial "<a href=\"$location\">"
	# the browser's empty webhook field is no webhook
	run curl -sS "$IMGPIPE_URL$location"
	assert_equal "$(jq -c '[.batch_id, .webhook_url]' <<<"$output")" "[\"${location#/status/}\",null]"
	run html "$IMGPIPE_URL$location"
	assert_equal "$(status_line)" "HTTP/1.1 200 OK"
	assert_line "<h1>Batch <code>${location#/status/}</code></h1>"

	run curl -sS -D "$BATS_TEST_TMPDIR/headers" -F "file=@$BATS_FILE_TMPDIR/products.csv;type=text/csv" "$IMGPIPE_URL/upload"
	assert_equal "$(status_line)" "HTTP/1.1 202 Accepted"
	assert_equal "$(header Content-Type)" "application/json"
	assert_equal "$(jq -r .status <<<"$output")" "in queue"
}

@test "errors are pages for a browser, with the status code and the precise message" {
	json_error=$(curl -sS -F "file=@$BATS_FILE_TMPDIR/no-urls.csv;type=text/csv" "$IMGPIPE_URL/upload" | jq -r .error)
	assert_equal "${json_error:0:10}" "the header"
	run html "$IMGPIPE_URL/upload" -F "file=@$BATS_FILE_TMPDIR/no-urls.csv;type=text/csv"
	assert_equal "$(status_line)" "HTTP/1.1 400 Bad Request"
	assert_equal "$(header Content-Type)" "text/html; charset=utf-8"
	assert_line '<h1>400 Bad Request</h1>'
	assert_line "<p class=\"error\">$(escaped "$json_error")</p>"

	run html "$IMGPIPE_URL/status/0123456789abcdef0123456789abcdef"
	assert_equal "$(status_line)" "HTTP/1.1 404 Not Found"
	assert_line '<p class="error">no batch 0123456789abcdef0123456789abcdef</p>'
	run html "$IMGPIPE_URL/upload"
	assert_equal "$(status_line)" "HTTP/1.1 405 Method Not Allowed"
	assert_equal "$(header Allow)" "POST"
	assert_line '<p class="error">method GET not allowed on /upload; use POST</p>'
}

@test "the status page escapes every string; only http(s) URLs become links and images" {
	submit_wait "$BATS_FILE_TMPDIR/hostile.csv"
	run html "$IMGPIPE_URL/status/$BATCH"
	assert_success
	assert_line --partial '<td rowspan="1">&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;</td>'
	assert_line --partial "<a class=\"original\" href=\"$HTTPD_URL/kite.jpg?a=1&amp;b=2\" title=\"$HTTPD_URL/kite.jpg?a=1&amp;b=2\">original</a>"
	assert_line '<li>line 3: <span class="error">serial number &#39;&lt;b&gt;&#39; is not a positive integer</span></li>'
	refute_output --partial '<script>'
	refute_output --partial '<b>'

	# URLs that no CSV lets in, written straight into the database
	id=$(openssl rand -hex 16)
	jq -nc --arg b "$id" '{batch_id: $b, serial_no: 1, product_name: "x",
			input_image_urls: ["javascript:alert(2)"]},
		{batch_id: $b, serial_no: 1, index: 0, url: "javascript:alert(2)",
			output_url: "javascript:alert(3)"}' | dbrecord >/dev/null
	dbrecord batch "$id" completed "1 row"
	run html "$IMGPIPE_URL/status/$id"
	assert_line '<tr><td rowspan="1">1</td><td rowspan="1">x</td><td>javascript:alert(2)</td><td>javascript:alert(3)</td><td class="saving"></td></tr>'
	refute_output --partial '="javascript:'
}

@test "the status page refreshes itself every 2 seconds until the batch ends" {
	id=$(openssl rand -hex 16)
	for st in "in queue" "in progress"; do
		dbrecord batch "$id" "$st"
		run html "$IMGPIPE_URL/status/$id"
		assert_line '<meta http-equiv="refresh" content="2">'
		assert_line '<progress max="100" value="0">0%</progress>'
		assert_line '<p>No products yet.</p>'
	done
	assert_line --partial '<span class="status running">in progress</span>'
	for st in completed failed; do
		dbrecord batch "$id" "$st" "why & how"
		run html "$IMGPIPE_URL/status/$id"
		refute_output --partial 'http-equiv="refresh"'
		assert_line "<p><span class=\"status $st\">$st</span> why &amp; how</p>"
	done
}

@test "the status page shows a page of products, with links to the pages before and after" {
	id=$(openssl rand -hex 16)
	many_products "$id" 250
	run html "$IMGPIPE_URL/status/$id"
	assert_equal "$(status_line)" "HTTP/1.1 200 OK"
	assert_line '<meta http-equiv="refresh" content="2">'
	assert_line "<nav class=\"pages\">Products 1 to 100 of 250<a rel=\"next\" href=\"/status/$id?offset=100&amp;limit=100\">next &rarr;</a></nav>"
	assert_equal "$(grep -c '<tr><td rowspan' <<<"$output")" 100
	assert_line --partial '<tr><td rowspan="1">3</td><td rowspan="1">P3</td>'
	# outputs as thumbnails that load when scrolled to; the originals only linked
	assert_equal "$(grep -o '<img [^>]*>' <<<"$output" | grep -vc '^<img loading="lazy" src="http://s3/')" 0
	assert_equal "$(grep -o '<img ' <<<"$output" | wc -l)" "$((100 / 7))"
	assert_equal "$(grep -o '<a class="original" href="http://img/[0-9]*.jpg"' <<<"$output" | wc -l)" 100

	run html "$IMGPIPE_URL/status/$id?offset=100&limit=100"
	assert_line "<nav class=\"pages\"><a rel=\"prev\" href=\"/status/$id?offset=0&amp;limit=100\">&larr; previous</a>Products 101 to 200 of 250<a rel=\"next\" href=\"/status/$id?offset=200&amp;limit=100\">next &rarr;</a></nav>"
	run html "$IMGPIPE_URL/status/$id?offset=240&limit=50"
	assert_line "<nav class=\"pages\"><a rel=\"prev\" href=\"/status/$id?offset=190&amp;limit=50\">&larr; previous</a>Products 241 to 250 of 250</nav>"
	assert_equal "$(grep -c '<tr><td rowspan' <<<"$output")" 10
	run html "$IMGPIPE_URL/status/$id?offset=300"
	assert_line '<p>No products on this page.</p>'
	run html "$IMGPIPE_URL/status/$id?limit=1001"
	assert_equal "$(status_line)" "HTTP/1.1 400 Bad Request"
	assert_line "<p class=\"error\">limit must be a whole number from 1 to 1000, not &#39;1001&#39;</p>"

	# once the batch has ended, the page no longer refreshes itself; one page: no pager
	dbrecord batch "$id" completed "250 rows"
	run html "$IMGPIPE_URL/status/$id?limit=1000"
	refute_output --partial 'http-equiv="refresh"'
	refute_output --partial '<nav'
	assert_equal "$(grep -c '<tr><td rowspan' <<<"$output")" 250
}

@test "the status page names the rejected rows that are not kept" {
	id=$(openssl rand -hex 16)
	for line in $(seq 2 5); do
		echo "{\"line\": $line, \"batch_id\": \"$id\", \"error\": \"bad row $line\"}"
	done | IMGPIPE_MAX_ROW_ERRORS=2 dbrecord --all-rows >/dev/null
	run html "$IMGPIPE_URL/status/$id"
	assert_output --partial "$(printf '%s\n' '<h2>Rejected rows</h2>' '<ul>' \
		'<li>line 2: <span class="error">bad row 2</span></li>' \
		'<li>line 3: <span class="error">bad row 3</span></li>' '<li>and 2 more</li>' '</ul>')"
}

@test "the status JSON stays for JSON clients and ?format=json, and gains image_sizes" {
	submit_wait "$BATS_FILE_TMPDIR/products.csv"
	run curl -sS -D "$BATS_TEST_TMPDIR/headers" "$IMGPIPE_URL/status/$BATCH"
	assert_equal "$(header Content-Type)" "application/json"
	status_json=$output
	run html "$IMGPIPE_URL/status/$BATCH?format=json"
	assert_equal "$(header Content-Type)" "application/json"
	assert_equal "$output" "$status_json"
	run html "$IMGPIPE_URL/status/$BATCH?format=csv"
	assert_equal "$(header Content-Type)" "text/csv; charset=utf-8"
	# (streamed: whether lighttpd then sends it chunked or with a length depends on how much
	# it has read when it starts answering, so that is not a thing to check here)
	assert_equal "$output" "$(dbrecord show "$BATCH" --csv)"

	# each image's input size is the photograph's, its output size the stored object's
	assert_equal "$(jq -c '[.products[].image_sizes | map(. != null)]' <<<"$status_json")" \
		'[[true,true],[true],[true],[true],[false]]'
	for pair in $(jq -r '.products[] | [.input_image_urls, .output_image_urls, .image_sizes]
			| transpose[] | select(.[2]) | "\(.[0])|\(.[1])|\(.[2].input_bytes)|\(.[2].output_bytes)"' <<<"$status_json"); do
		IFS='|' read -r in out in_bytes out_bytes <<<"$pair"
		assert_equal "$in_bytes" "$(stat -L -c %s "$BATS_FILE_TMPDIR/photos/${in##*/}")"
		assert_equal "$out_bytes" "$(curl -sSf "$out" | wc -c)"
	done
}

@test "in headless Chromium: upload through the form, follow the page to the end, screenshot it" {
	[ -x /usr/bin/chromium ] || fail "no /usr/bin/chromium: run scripts/setup --test"
	local browser=$ROOT/tests/browser shots=("$BATS_FILE_TMPDIR")
	[ -d "$browser/node_modules/playwright-core" ] ||
		npm install --prefix "$browser" --no-audit --no-fund >"$BATS_FILE_TMPDIR/npm.log" 2>&1 ||
		fail "npm install failed: $(cat "$BATS_FILE_TMPDIR/npm.log")"
	[ -z "${WEB_SCREENSHOT_DIR:-}" ] || shots+=("$WEB_SCREENSHOT_DIR")

	run node "$browser/web.mjs" "$IMGPIPE_URL" "$BATS_FILE_TMPDIR/products.csv" "$HTTPD_URL/hook" "${shots[@]}" 2>"$BATS_TEST_TMPDIR/web.err"
	[ "$status" -eq 0 ] || fail "$(cat "$BATS_TEST_TMPDIR/web.err")"
	seen=$output
	batch=$(jq -r .batch <<<"$seen")
	[[ $batch =~ ^[0-9a-f]{32}$ ]]
	check() { assert_equal "$(jq -c "$1" <<<"$seen")" "$2"; }
	check '[.home_status, .form, .fields]' '[200,["post","/upload","multipart/form-data"],["file:file","webhook_url:url","force:checkbox"]]'
	check '[.heading, .status, .progress, .refreshes_when_ended]' "[\"Batch $batch\",\"completed\",100,0]"
	check '[.products[] | .[0:2] | select(length == 2 and (.[0] | test("^[0-9]+$")))]' \
		'[["1","Autumn Print"],["2","Kite Poster"],["3","Evening Glow Canvas"],["4","Colourful Cups"],["5","Missing Poster"]]'
	# sizes before and after and the saving of every compressed image (reused, when this
	# file's earlier tests made it from the same catalog); the 404's error
	check '[.products[:-1][] | .[-3:] | (.[0] | test("^original [0-9.]+ (B|kB|MB)$")) and (.[1] | test("^[0-9.]+ (B|kB|MB)( reused)?$")) and (.[2] | test("^[0-9]+% smaller$"))] | unique' '[true]'
	check '.products[-1]' "[\"5\",\"Missing Poster\",\"original\",\"fetchimg: HTTP 404 from $HTTPD_URL/no-such-photo.jpg\",\"\"]"
	# the originals are links, not images a browser would fetch whole; the outputs load lazily
	check '.originals' "[\"$HTTPD_URL/autumn.jpg\",\"$HTTPD_URL/path.jpg\",\"$HTTPD_URL/kite.jpg\",\"$HTTPD_URL/eveningglow.jpg\",\"$HTTPD_URL/colorfulcups.jpg\",\"$HTTPD_URL/no-such-photo.jpg\"]"
	check '[.after, .lazy]' '[{"count":5,"loaded":5},[true]]'
	check "[.after_srcs[] | test(\"^$S3_PUBLIC_URL/images/[0-9a-f]{64}-q50[.]jpg$\")] | unique" '[true]'
	check '[.csv_link, .csv_header]' "[\"/status/$batch?format=csv\",\"S. No.,Product Name,Input Image Urls,Output Image Urls\"]"
	for shot in web-upload web-status; do
		run identify -format '%m %w' "$BATS_FILE_TMPDIR/$shot.png"
		assert_output "PNG 1100"
	done
	# the form's webhook URL was the batch's
	for _ in $(seq 100); do grep -q "$batch" "$HOOK_LOG" && break; sleep 0.1; done
	run jq -r 'select(.body | fromjson | .batch_id == "'"$batch"'") | .body | fromjson | .event' "$HOOK_LOG"
	assert_output batch.completed
}

@test "every page under valgrind: no memory error, no definite leak" {
	! nm -D "$ROOT/bin/imgpipe.cgi" | grep -q __asan_init || skip "built with AddressSanitizer, which valgrind cannot run"
	id=$(openssl rand -hex 16)
	jq -nc --arg b "$id" '{batch_id: $b, serial_no: 1, product_name: "A & B", input_image_urls: ["http://x.test/a.jpg", "http://x.test/b.jpg"]},
		{batch_id: $b, serial_no: 1, index: 0, url: "http://x.test/a.jpg", output_url: "http://x.test/o.jpg", input_bytes: 2000, output_bytes: 500},
		{batch_id: $b, serial_no: 1, index: 1, url: "http://x.test/b.jpg", error: "HTTP 404"},
		{batch_id: $b, line: 3, error: "no name"}' | dbrecord >/dev/null
	dbrecord batch "$id" completed "1 row"
	get() {
		HTTP_ACCEPT=text/html REQUEST_METHOD=GET PATH_INFO=$1 valgrind -q --leak-check=full \
			--errors-for-leak-kinds=definite --error-exitcode=99 \
			--log-file="$BATS_TEST_TMPDIR/vg.log" imgpipe.cgi
	}
	for path in / "/status/$id" /status/0123456789abcdef0123456789abcdef /upload; do
		run get "$path"
		[ "$status" -eq 0 ] || fail "GET $path: $(cat "$BATS_TEST_TMPDIR/vg.log")"
	done
	assert_line --index 0 "Status: 405 Method Not Allowed"
}
