#!/usr/bin/env bats
# fetchimg against tests/lib/httpd.py on 127.0.0.1: every image format, streaming and
# parallel downloads, and each safety rule (addresses, redirects, sizes, timeouts, retries).

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	export WWW="$BATS_FILE_TMPDIR/www"
	mkdir -p "$WWW"
	for ext in jpg png webp gif avif heic tif; do
		convert -size 16x12 gradient:red-blue "$WWW/img.$ext"
	done
	cp "$WWW/img.png" "$WWW/png-named.jpg"
	echo "just some text, not a JPEG" >"$WWW/text.jpg"
	: >"$WWW/empty.jpg"
	printf '\0\1\2\3\4\5\6\7binary data here' >"$WWW/binary.jpg"
	httpd_start "$WWW"
}

teardown_file() {
	httpd_stop
}

setup() {
	export IMGPIPE_ALLOW_PRIVATE=1
	export IMGPIPE_HOME="$BATS_TEST_TMPDIR/home"   # its run/hosts/ holds the host slots
	OUT="$BATS_TEST_TMPDIR/out"
	mkdir -p "$OUT"
}

# fetch URL [OPTION...]: runs one record {"url": URL} through fetchimg --dir $OUT.
fetch() {
	local url=$1
	shift
	run --separate-stderr bash -c 'jq -nc --arg u "$1" "{url: \$u}" | fetchimg --dir "$2" "${@:3}"' \
		_ "$url" "$OUT" "$@"
}

# field NAME: that field of the record in $output ("null" when absent).
field() {
	jq -r --arg f "$1" '.[$f]' <<<"$output"
}

# A URL that redirects N times through the test server before reaching TARGET.
redirects() {
	local n=$1 url=$2
	for _ in $(seq "$n"); do
		url="$HTTPD_URL/redirect?to=$(jq -rn --arg u "$url" '$u | @uri')"
	done
	echo "$url"
}

# Asserts that $OUT holds no file: a failed download leaves nothing behind.
assert_no_files() {
	run ls -A "$OUT"
	assert_output ""
}

@test "--help and --version" {
	run fetchimg --help
	assert_success
	assert_line --index 0 --regexp '^usage: fetchimg \[--parallel N\] \[--dir DIR\]'
	run fetchimg --version
	assert_success
	assert_output --regexp '^fetchimg [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "usage errors exit 64" {
	run fetchimg --bogus
	assert_failure 64
	assert_line --index 0 "fetchimg: unknown option --bogus"
	run fetchimg --parallel 0
	assert_failure 64
	assert_output "fetchimg: --parallel wants a whole number from 1 to 1000, not '0'"
	run fetchimg --dir "$BATS_TEST_TMPDIR/missing"
	assert_failure 64
	assert_line --index 0 "fetchimg: --dir $BATS_TEST_TMPDIR/missing: No such file or directory"
	run fetchimg extra
	assert_failure 64
	assert_line --index 0 "fetchimg: unexpected argument: extra"
	run fetchimg --max-files 0
	assert_failure 64
	run fetchimg --max-retry-after 3601
	assert_failure 64
	IMGPIPE_HOST_CONNECTIONS=0 run fetchimg </dev/null
	assert_failure 64
	assert_output "fetchimg: IMGPIPE_HOST_CONNECTIONS wants a whole number from 1 to 1000, not '0'"
}

@test "every accepted format is sniffed, typed, hashed and stored byte for byte" {
	declare -A type=([jpg]=image/jpeg [png]=image/png [webp]=image/webp [gif]=image/gif
		[avif]=image/avif [heic]=image/heif [tif]=image/tiff)
	for ext in "${!type[@]}"; do
		fetch "$HTTPD_URL/img.$ext"
		assert_success
		assert_equal "$(field content_type)" "${type[$ext]}"
		assert_equal "$(field input_bytes)" "$(stat -c %s "$WWW/img.$ext")"
		assert_equal "$(field error)" null
		file=$(field file)
		[[ $file == "$OUT"/image-??????."$ext" ]]
		cmp "$file" "$WWW/img.$ext"
		assert_equal "$(field sha256)" "$(sha256sum <"$WWW/img.$ext" | cut -c1-64)"
	done
}

@test "sha256 is of the whole body, also of one streamed in many pieces and after a retry" {
	head -c 3000000 /dev/urandom >"$WWW/noise"
	printf '\xff\xd8\xff' | cat - "$WWW/noise" >"$WWW/big.jpg"
	fetch "$HTTPD_URL/flaky/big.jpg?fail=1&key=hash"
	assert_equal "$(field input_bytes)" 3000003
	assert_equal "$(field sha256)" "$(sha256sum <"$WWW/big.jpg" | cut -c1-64)"
}

@test "every signature gives its format's content_type and suffix" {
	# Bodies that start with a signature ('?' bytes as x) and end in filler: only the
	# first bytes decide, so no real image is needed.
	declare -A want=(['\xff\xd8\xff']="image/jpeg jpg" ['\x89PNG\r\n\x1a\n']="image/png png"
		[RIFFxxxxWEBP]="image/webp webp" [GIF87a]="image/gif gif" [GIF89a]="image/gif gif"
		[xxxxftypavif]="image/avif avif" [xxxxftypavis]="image/avif avif"
		[xxxxftypheic]="image/heif heic" [xxxxftypheix]="image/heif heic"
		[xxxxftypmif1]="image/heif heic" [xxxxftypmsf1]="image/heif heic"
		['II*\0']="image/tiff tif" ['MM\0*']="image/tiff tif")
	n=0
	for sig in "${!want[@]}"; do
		n=$((n + 1))
		printf "$sig%s" "-some-filler-bytes" >"$WWW/sig-$n"
		fetch "$HTTPD_URL/sig-$n"
		assert_success
		file=$(field file)
		assert_equal "$(field content_type) ${file##*.}" "${want[$sig]}"
		cmp "$file" "$WWW/sig-$n"
	done
}

@test "the type comes from the bytes, not from the name or the server" {
	fetch "$HTTPD_URL/png-named.jpg"
	assert_success
	assert_equal "$(field content_type)" image/png
	[[ $(field file) == *.png ]]
}

@test "files are named from batch_id, serial_no and index, and never overwritten" {
	rec='{"batch_id": "b-1", "serial_no": 7, "index": 2, "url": "'"$HTTPD_URL"'/img.jpg", "note": "kept"}'
	run --separate-stderr bash -c 'printf "%s\n%s\n" "$1" "$1" | fetchimg --dir "$2" --parallel 1' _ "$rec" "$OUT"
	assert_success
	first=$(sed -n 1p <<<"$output" | jq -r .file)
	second=$(sed -n 2p <<<"$output" | jq -r .file)
	assert_equal "$first" "$OUT/b-1-7-2.jpg"
	[[ $second == "$OUT"/b-1-7-2-??????.jpg ]]
	cmp "$first" "$WWW/img.jpg"
	cmp "$second" "$WWW/img.jpg"
	assert_equal "$(sed -n 1p <<<"$output" | jq -r .note)" kept
}

@test "a batch_id cannot lead the file out of --dir" {
	rec='{"batch_id": "../../etc/x", "serial_no": 1, "url": "'"$HTTPD_URL"'/img.jpg"}'
	run --separate-stderr bash -c 'echo "$1" | fetchimg --dir "$2"' _ "$rec" "$OUT"
	assert_success
	assert_equal "$(field file)" "$OUT/______etc_x-1.jpg"
}

@test "without --dir files go to the current directory" {
	cd "$OUT"
	run --separate-stderr bash -c 'echo "{\"serial_no\": 3, \"url\": \"$1/img.gif\"}" | fetchimg' _ "$HTTPD_URL"
	assert_success
	assert_equal "$(field file)" 3.gif
	cmp 3.gif "$WWW/img.gif"
}

@test "many downloads at once: every record comes out once, with its own file" {
	for i in $(seq 40); do
		echo '{"batch_id": "p", "serial_no": '"$i"', "index": 0, "url": "'"$HTTPD_URL"'/img.webp"}'
	done >"$BATS_TEST_TMPDIR/in.ndjson"
	run --separate-stderr bash -c 'fetchimg --dir "$1" --parallel 8 <"$2"' _ "$OUT" "$BATS_TEST_TMPDIR/in.ndjson"
	assert_success
	assert_equal "$(jq -s 'map(.serial_no) | sort == [range(1; 41)]' <<<"$output")" true
	assert_equal "$(jq -s 'map(select(.content_type == "image/webp")) | length' <<<"$output")" 40
	assert_equal "$(find "$OUT" -name 'p-*-0.webp' | wc -l)" 40
}

@test "records without url, or carrying error, pass through untouched" {
	in='{"serial_no": 1, "other": {"a": [1, 2]}}
{"url": "'"$HTTPD_URL"'/img.jpg", "error": "failed earlier", "z": true}'
	run --separate-stderr bash -c 'echo "$1" | fetchimg --dir "$2"' _ "$in" "$OUT"
	assert_success
	assert_equal "$output" "$in"
	assert_no_files
}

@test "a line that is not JSON gets an error record, the others go on, exit 65" {
	in='not json
{"url": "'"$HTTPD_URL"'/img.png"}'
	run --separate-stderr bash -c 'echo "$1" | fetchimg --dir "$2"' _ "$in" "$OUT"
	assert_failure 65
	assert_equal "$(sed -n 1p <<<"$output" | jq -r .input_line)" 1
	sed -n 1p <<<"$output" | jq -e '.error | startswith("fetchimg: input line 1 is not a JSON object")'
	assert_equal "$(sed -n 2p <<<"$output" | jq -r .content_type)" image/png
}

@test "records stream: a result comes out while stdin is still open" {
	coproc FETCH { fetchimg --dir "$OUT"; }
	pid=$FETCH_PID
	echo '{"url": "'"$HTTPD_URL"'/img.jpg"}' >&"${FETCH[1]}"
	# A bound so that a broken build fails instead of hanging; not a measurement.
	read -r -t 30 line <&"${FETCH[0]}"
	exec {FETCH[1]}>&-
	wait "$pid"
	assert_equal "$(jq -r .content_type <<<"$line")" image/jpeg
}

@test "a text file named .jpg is not an image, and leaves no file" {
	fetch "$HTTPD_URL/text.jpg"
	assert_success
	assert_equal "$(field error)" "fetchimg: not an image (starts with text)"
	assert_equal "$(field file)" null
	assert_no_files
}

@test "an empty file is not an image" {
	fetch "$HTTPD_URL/empty.jpg"
	assert_success
	assert_equal "$(field error)" "fetchimg: not an image (empty body)"
	assert_no_files
}

@test "binary that is no image is named by its first bytes" {
	fetch "$HTTPD_URL/binary.jpg"
	assert_equal "$(field error)" "fetchimg: not an image (starts with bytes 00 01 02 03)"
	assert_no_files
}

@test "a 404 names the status and the URL, and is not retried" {
	fetch "$HTTPD_URL/missing.jpg"
	assert_success
	assert_equal "$(field error)" "fetchimg: HTTP 404 from $HTTPD_URL/missing.jpg"
	assert_equal "$stderr" ""
}

@test "a 503 that recovers on retry succeeds" {
	fetch "$HTTPD_URL/flaky/img.jpg?fail=2&key=recovers"
	assert_success
	assert_equal "$(field content_type)" image/jpeg
	assert_equal "$(field error)" null
	cmp "$(field file)" "$WWW/img.jpg"
	assert_equal "$(grep -c 'HTTP 503 from .*; retry [12] of 3$' <<<"$stderr")" 2
}

# request_times KEY: the times the test server saw the /flaky requests of KEY, one a line.
request_times() {
	curl -sS "$HTTPD_URL/flaky-times?key=$1" | jq '.[]'
}

# gap KEY: seconds from the first to the second request of KEY.
gap() {
	request_times "$1" | jq -s '.[1] - .[0]'
}

@test "a 429 with Retry-After: 2 is waited out, then the download succeeds" {
	fetch "$HTTPD_URL/flaky/img.jpg?fail=1&key=ra-seconds&code=429&retry_after=2"
	assert_success
	assert_equal "$(field error)" null
	cmp "$(field file)" "$WWW/img.jpg"
	assert_equal "$(request_times ra-seconds | wc -l)" 2
	assert [ "$(jq -n "$(gap ra-seconds) >= 2")" = true ]
	assert_equal "$stderr" "fetchimg: $HTTPD_URL/flaky/img.jpg?fail=1&key=ra-seconds&code=429&retry_after=2: HTTP 429 from $HTTPD_URL/flaky/img.jpg?fail=1&key=ra-seconds&code=429&retry_after=2; retry 1 of 3 in 2s, as Retry-After asks"
}

@test "a 503's Retry-After as an HTTP date is waited out too" {
	when=$(date -u -d '+3 seconds' '+%a, %d %b %Y %H:%M:%S GMT')
	fetch "$HTTPD_URL/flaky/img.jpg?fail=1&key=ra-date&retry_after=$(jq -rn --arg d "$when" '$d | @uri')"
	assert_success
	assert_equal "$(field error)" null
	# The date has whole seconds, so the wait is at least the 2 of them still to come.
	assert [ "$(jq -n "$(gap ra-date) >= 2")" = true ]
}

@test "a Retry-After longer than --max-retry-after is cut to it, within the retries" {
	fetch "$HTTPD_URL/flaky/img.jpg?fail=1&key=ra-long&code=429&retry_after=3600" --max-retry-after 1
	assert_success
	assert_equal "$(field error)" null
	assert [ "$(jq -n "$(gap ra-long) >= 1 and $(gap ra-long) < 60")" = true ]
	fetch "$HTTPD_URL/flaky/img.jpg?fail=5&key=ra-spent&code=429&retry_after=1" --retries 1
	assert_equal "$(field error)" "fetchimg: HTTP 429 from $HTTPD_URL/flaky/img.jpg?fail=5&key=ra-spent&code=429&retry_after=1"
	assert_equal "$(request_times ra-spent | wc -l)" 2
}

# held_max: the most /hold requests the test server has had at once since the last call.
held_max() {
	curl -sS "$HTTPD_URL/held?reset=1" | jq .max
}

@test "IMGPIPE_HOST_CONNECTIONS bounds the downloads from one host over several fetchimg processes" {
	for i in $(seq 8); do
		echo '{"serial_no": '"$i"', "url": "'"$HTTPD_URL"'/hold/img.jpg?ms=300"}'
	done >"$BATS_TEST_TMPDIR/in.ndjson"
	held_max >/dev/null
	pids=()
	for p in 1 2 3; do
		IMGPIPE_HOST_CONNECTIONS=2 fetchimg --dir "$OUT" --parallel 8 <"$BATS_TEST_TMPDIR/in.ndjson" >"$BATS_TEST_TMPDIR/out$p.ndjson" &
		pids+=($!)
	done
	wait "${pids[@]}"
	assert_equal "$(held_max)" 2
	assert_equal "$(cat "$BATS_TEST_TMPDIR"/out?.ndjson | jq -s 'map(select(.sha256)) | length')" 24
	# Within one process as well; and the default is 8: never more, and more than the 2 above
	# (exactly 8 at once depends on how fast the machine starts them, so is not asserted).
	fetchimg --dir "$OUT" --parallel 12 <<<"$(cat "$BATS_TEST_TMPDIR/in.ndjson" "$BATS_TEST_TMPDIR/in.ndjson")" >/dev/null
	max=$(held_max)
	assert [ "$max" -le 8 ]
	assert [ "$max" -gt 2 ]
	ls "$IMGPIPE_HOME/run/hosts/127.0.0.1."{0..7}
}

@test "--max-files: no download starts while N of the files written are still there" {
	for i in 1 2 3; do
		echo '{"serial_no": '"$i"', "url": "'"$HTTPD_URL"'/img.png"}'
	done >"$BATS_TEST_TMPDIR/in.ndjson"
	coproc FETCH { fetchimg --dir "$OUT" --parallel 1 --max-files 2 <"$BATS_TEST_TMPDIR/in.ndjson"; }
	pid=$FETCH_PID
	read -r -t 30 first <&"${FETCH[0]}"
	read -r -t 30 second <&"${FETCH[0]}"
	run ls "$OUT"
	assert_output "$(printf '1.png\n2.png')"
	# Until a file goes, the third waits (for a while here: the files stay).
	sleep 1
	run ls "$OUT"
	assert_output "$(printf '1.png\n2.png')"
	rm "$(jq -r .file <<<"$first")"
	read -r -t 30 third <&"${FETCH[0]}"
	wait "$pid"
	assert_equal "$(jq -r .file <<<"$second") $(jq -r .file <<<"$third")" "$OUT/2.png $OUT/3.png"
}

@test "a 503 that persists fails once --retries are spent" {
	fetch "$HTTPD_URL/status/503" --retries 1
	assert_success
	assert_equal "$(field error)" "fetchimg: HTTP 503 from $HTTPD_URL/status/503"
	assert_equal "$stderr" "fetchimg: $HTTPD_URL/status/503: HTTP 503 from $HTTPD_URL/status/503; retry 1 of 1"
}

@test "five redirects are followed, a sixth is refused" {
	fetch "$(redirects 5 "$HTTPD_URL/img.png")"
	assert_equal "$(field content_type)" image/png
	rm "$(field file)"
	url=$(redirects 6 "$HTTPD_URL/img.png")
	fetch "$url"
	assert_equal "$(field error)" "fetchimg: more than 5 redirects from $url"
	assert_no_files
}

@test "a redirect loop stops after 5 redirects" {
	fetch "$HTTPD_URL/loop"
	assert_success
	assert_equal "$(field error)" "fetchimg: more than 5 redirects from $HTTPD_URL/loop"
}

@test "a redirect to 169.254.169.254 is refused, even with IMGPIPE_ALLOW_PRIVATE=1" {
	fetch "$HTTPD_URL/redirect?to=http://169.254.169.254/latest/meta-data/"
	assert_success
	assert_equal "$(field error)" "fetchimg: refused address for host 169.254.169.254 (cloud metadata)"
}

@test "only http and https, also after a redirect" {
	fetch "ftp://127.0.0.1/img.jpg"
	assert_equal "$(field error)" "fetchimg: unsupported protocol (http and https only): ftp://127.0.0.1/img.jpg"
	fetch "$HTTPD_URL/redirect?to=file:///etc/passwd"
	assert_equal "$(field error)" "fetchimg: unsupported protocol (http and https only): file:///etc/passwd"
	assert_no_files
}

@test "loopback is refused without IMGPIPE_ALLOW_PRIVATE=1, however it is spelt" {
	unset IMGPIPE_ALLOW_PRIVATE
	port=${HTTPD_URL##*:}
	# libcurl's URL parser writes every IPv4 spelling as dotted quads
	for host in 127.0.0.1 127.1 2130706433 0x7f000001; do
		fetch "http://$host:$port/img.jpg"
		assert_success
		assert_equal "$(field error)" "fetchimg: refused address for host 127.0.0.1 (loopback)"
	done
	for host in '[::ffff:127.0.0.1]' '[::1]' '[::127.0.0.1]' '[64:ff9b:1::7f00:1]'; do
		fetch "http://$host:$port/img.jpg"
		assert_equal "$(field error)" "fetchimg: refused address for host $host (loopback)"
	done
	# The check is on the address connected, so a name that resolves to loopback fails too,
	# and the error names the host, not what it resolved to.
	fetch "http://localhost:$port/img.jpg"
	assert_equal "$(field error)" "fetchimg: refused address for host localhost (loopback)"
	IMGPIPE_ALLOW_PRIVATE=0 fetch "$HTTPD_URL/img.jpg"
	assert_equal "$(field error)" "fetchimg: refused address for host 127.0.0.1 (loopback)"
	assert_no_files
}

@test "private, link-local, multicast, reserved and unspecified addresses are refused before connecting" {
	unset IMGPIPE_ALLOW_PRIVATE
	declare -A kind=([10.1.2.3]="private network" [172.16.5.4]="private network"
		[192.168.1.1]="private network" [100.64.0.1]="private network"
		[169.254.1.1]=link-local [169.254.169.254]="cloud metadata"
		[100.100.100.200]="cloud metadata" [224.0.0.1]=multicast [0.0.0.0]=unspecified
		[0.1.2.3]=unspecified [192.0.0.8]=reserved [198.18.0.1]=reserved
		[198.19.255.255]=reserved [240.0.0.1]=reserved [255.255.255.255]=broadcast
		[fc00::1]="private network" [fec0::1]=site-local [fe80::1]=link-local
		[ff02::1]=multicast [fd00:ec2::254]="cloud metadata" [2001::1]=Teredo
		[::ffff:10.0.0.5]="private network" [::ffff:169.254.169.254]="cloud metadata"
		[64:ff9b::a00:5]="private network" [2002:a9fe:a9fe::]="cloud metadata")
	for ip in "${!kind[@]}"; do
		host=$ip
		[[ $ip == *:* ]] && host="[$ip]"
		fetch "http://$host/img.jpg" --retries 0
		assert_equal "$(field error)" "fetchimg: refused address for host $host (${kind[$ip]})"
	done
}

@test "IMGPIPE_ALLOW_PRIVATE=1 opens loopback and private networks, nothing else" {
	# Only loopback is connected here: every other address is refused before a socket is
	# opened.  (NAT64 and 6to4 forms of loopback are judged loopback too, but connecting
	# them would leave this host, so they are tested refused only.)
	fetch "http://[::ffff:127.0.0.1]:${HTTPD_URL##*:}/img.jpg"
	assert_equal "$(field content_type)" image/jpeg
	for ip in 169.254.1.1 198.18.0.1 240.0.0.1 fec0::1 2001::1 ff02::1; do
		host=$ip
		[[ $ip == *:* ]] && host="[$ip]"
		fetch "http://$host/img.jpg" --retries 0
		assert_regex "$(field error)" "^fetchimg: refused address for host "
	done
}

@test "an unknown host is a DNS error" {
	fetch "http://no-such-host.invalid/img.jpg"
	assert_success
	assert_equal "$(field error)" "fetchimg: DNS lookup failed: Could not resolve host: no-such-host.invalid"
}

@test "a server that sends one byte a second trips the low-speed limit" {
	fetch "$HTTPD_URL/slow" --speed-time 2 --retries 0
	assert_success
	assert_equal "$(field error)" "fetchimg: too slow: under 1024 bytes/s for 2s"
	assert_no_files
}

@test "the total timeout ends a download that crawls on" {
	fetch "$HTTPD_URL/slow" --timeout 2 --retries 0
	assert_success
	assert_equal "$(field error)" "fetchimg: timed out after 2s"
	assert_no_files
}

@test "a server that never accepts trips the connect timeout" {
	# A listener whose one-place backlog is taken: the kernel drops further SYNs.
	python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
filler = socket.create_connection(s.getsockname())
print(s.getsockname()[1], flush=True)
time.sleep(120)' >"$BATS_TEST_TMPDIR/port" &
	pid=$!
	until [ -s "$BATS_TEST_TMPDIR/port" ]; do sleep 0.05; done
	fetch "http://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")/img.jpg" --connect-timeout 1 --retries 0
	kill "$pid"
	assert_equal "$(field error)" "fetchimg: connect timed out after 1s"
}

@test "a 60 MB body is refused at the default cap of 50 MiB" {
	fetch "$HTTPD_URL/big?mb=60"
	assert_success
	assert_equal "$(field error)" "fetchimg: larger than 52428800 bytes"
	assert_no_files
	fetch "$HTTPD_URL/img.tif" --max-bytes 100
	assert_equal "$(field error)" "fetchimg: larger than 100 bytes"
}

@test "the cap holds while streaming a body of no announced length" {
	# An HTTP/1.0 answer without Content-Length: only counting the bytes can stop it.
	python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.recv(65536)
try:
    c.sendall(b"HTTP/1.0 200 OK\r\n\r\n\xff\xd8\xff\xe0" + bytes(3 << 20))
except OSError:
    pass' >"$BATS_TEST_TMPDIR/port" &
	pid=$!
	until [ -s "$BATS_TEST_TMPDIR/port" ]; do sleep 0.05; done
	fetch "http://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")/img.jpg" --max-bytes 1048576 --retries 0
	wait "$pid"
	assert_equal "$(field error)" "fetchimg: larger than 1048576 bytes"
	assert_no_files
}

@test "a Content-Length that lies is an incomplete body, retried, and leaves no file" {
	size=$(stat -c %s "$WWW/img.jpg")
	fetch "$HTTPD_URL/lie?file=img.jpg" --retries 1
	assert_success
	assert_equal "$(field error)" "fetchimg: incomplete body: got $size of $((2 * size)) bytes from $HTTPD_URL/lie?file=img.jpg"
	assert_equal "$stderr" "fetchimg: $HTTPD_URL/lie?file=img.jpg: incomplete body: got $size of $((2 * size)) bytes from $HTTPD_URL/lie?file=img.jpg; retry 1 of 1"
	assert_no_files
}

# ---- conditional requests: a record with "reuse" (dbrecord pending's) ----

# reuse_of FIELDS_JQ: a reuse of img.jpg as fetched now (its validators, hash and size),
# with a made-up stored output, changed by the jq expression.
reuse_of() {
	fetch "$HTTPD_URL/img.jpg"
	jq -c "{etag, last_modified, sha256, input_bytes, settings: \"q50\", output_url: \"http://s3/o.jpg\",
		output_key: \"images/o.jpg\", output_bytes: 99, format: \"jpeg\", kept: \"source\"} | $1" <<<"$output"
	rm -f "$OUT"/*
}

# fetch_reusing URL REUSE: one record {"url": URL, "reuse": REUSE} through fetchimg.
fetch_reusing() {
	run --separate-stderr bash -c 'jq -nc --arg u "$1" --argjson r "$2" "{url: \$u, reuse: \$r}" | fetchimg --dir "$3"' \
		_ "$1" "$2" "$OUT"
}

@test "a 200 keeps the server's ETag and Last-Modified" {
	fetch "$HTTPD_URL/img.jpg"
	[[ $(field etag) =~ ^\"[0-9a-f]+-[0-9a-f]+\"$ ]]
	assert_equal "$(field last_modified)" "$(TZ=GMT date -r "$WWW/img.jpg" '+%a, %d %b %Y %H:%M:%S GMT')"
	fetch "$HTTPD_URL/plain/img.jpg"
	assert_equal "$(jq -c '[.etag, .last_modified]' <<<"$output")" '[null,null]'
}

@test "a record with reuse asks with If-None-Match and If-Modified-Since; a 304 reuses it with no file" {
	reuse=$(reuse_of .)
	: >"$ANSWER_LOG"
	fetch_reusing "$HTTPD_URL/img.jpg" "$reuse"
	assert_success
	got=$output
	run jq -c '[.status, .if_none_match == $r.etag, .if_modified_since == $r.last_modified]' \
		--argjson r "$reuse" "$ANSWER_LOG"
	assert_output '[304,true,true]'
	run jq -c --argjson r "$reuse" '[.reused, .reuse, .file, .sha256 == $r.sha256, .input_bytes == $r.input_bytes,
		.output_url, .output_key, .output_bytes, .format, .kept, .settings, .etag == $r.etag, .source_unchanged]' <<<"$got"
	assert_output '[true,null,null,true,true,"http://s3/o.jpg","images/o.jpg",99,"jpeg","source","q50",true,true]'
	assert_no_files
}

@test "a 200 of the same bytes (no validators) reuses it; other bytes are fetched afresh" {
	reuse=$(reuse_of 'del(.etag, .last_modified)')
	fetch_reusing "$HTTPD_URL/plain/img.jpg" "$reuse"
	assert_equal "$(jq -c '[.reused, .output_url, .file, .source_unchanged]' <<<"$output")" '[true,"http://s3/o.jpg",null,true]'
	assert_no_files
	# the same bytes, but the server no longer sends the validators sources knew: reused,
	# and the source is to be written again
	fetch_reusing "$HTTPD_URL/plain/img.jpg" "$(reuse_of .)"
	assert_equal "$(jq -c '[.reused, .etag, .source_unchanged]' <<<"$output")" '[true,null,null]'
	# img.png under a reuse of img.jpg: its ETag does not match, its bytes neither
	fetch_reusing "$HTTPD_URL/img.png" "$(reuse_of .)"
	run jq -c '[.reused, .reuse, .output_url, .content_type, (.etag | type), (.file | type)]' <<<"$output"
	assert_output '[null,null,null,"image/png","string","string"]'
}

@test "a failed download with reuse is an error, and leaves its reuse behind" {
	fetch_reusing "$HTTPD_URL/status/404" "$(reuse_of .)"
	assert_equal "$(jq -c '[.error, .reuse, .reused]' <<<"$output")" "[\"fetchimg: HTTP 404 from $HTTPD_URL/status/404\",null,null]"
	assert_no_files
}
