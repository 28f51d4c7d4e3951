#!/usr/bin/env bats
# One batch spread over several worker hosts.  Each "host" is a set of namespaces of its
# own (tests/lib/fake-host: PID, mount and UTS; its own hostname and IMGPIPE_HOME) running
# `imgpipe worker` with one job and one pipeline at a time, all sharing the stack's servers
# on loopback.  Every host takes chunks, every product is recorded once, and the batch ends
# once with one webhook, also when a host dies whole mid-batch, or one joins.

load helpers

ROWS=600        # 30 chunks of 20 rows, one small image a row

setup_file() {
	stack_start
	# the stack's own dispatcher would take these tests' jobs: stop it meanwhile
	if imgpipe stack status dispatch >/dev/null 2>&1; then
		imgpipe stack down dispatch
		export RESTART_DISPATCH=1
	fi
	"$ROOT/tests/lib/small-jpegs" "$BATS_FILE_TMPDIR/photos" "$ROWS"
	httpd_start "$BATS_FILE_TMPDIR/photos"
	products_csv "$HTTPD_URL" "" >"$BATS_FILE_TMPDIR/products.csv"
	# the same through /hold/: each download 0.6 s, so that a chunk runs for seconds
	products_csv "$HTTPD_URL/hold" "?ms=600" >"$BATS_FILE_TMPDIR/slow.csv"
}

# products_csv URL_BASE QUERY [N]: a CSV of N products (default ROWS), one image each,
# URL_BASE/img-K.jpg followed by QUERY.
products_csv() {
	echo "S. No.,Product Name,Input Image Urls"
	for i in $(seq "${3:-$ROWS}"); do echo "$i,Product $i,$1/img-$((i - 1)).jpg$2"; done
}

teardown_file() {
	httpd_stop
	[ -z "${RESTART_DISPATCH:-}" ] || imgpipe stack up dispatch
	stack_stop
}

setup() {
	HOSTS="$BATS_TEST_TMPDIR/hosts"
	: >"$HOSTS"
}

teardown() {
	local name pid
	while read -r name pid; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done <"$HOSTS"
}

# Starts host NAME [WORKER_ARGS...]: chunks of CHUNK_ROWS rows (default 20), one job
# (unless WORKER_ARGS say otherwise) and one pipeline at a time.
host_up() {
	mkdir -p "$BATS_TEST_TMPDIR/$1"
	IMGPIPE_HOME="$BATS_TEST_TMPDIR/$1" IMGPIPE_PARALLEL=1 IMGPIPE_CHUNK_ROWS=${CHUNK_ROWS:-20} \
		"$ROOT/tests/lib/fake-host" "$1" --jobs 1 --claim-idle 3 --sweep-after 0 "${@:2}" \
		2>"$BATS_TEST_TMPDIR/$1.log" &
	echo "$1 $!" >>"$HOSTS"
}

# The PID 1 of host NAME's namespace, as the rest of the machine sees it.
host_init() {
	local pid children
	pid=$(awk -v name="$1" '$1 == name { print $2 }' "$HOSTS")
	read -r children <"/proc/$pid/task/$pid/children"
	echo "$children"
}

# The PIDs of every process of host NAME, one a line: one stat(1) over all of /proc, not
# a readlink a process, so that a sweep is quick on a loaded machine.
host_pids() {
	local ns
	ns=$(stat -L -c %i "/proc/$(host_init "$1")/ns/pid")
	{ stat -L -c '%i %n' /proc/[0-9]*/ns/pid 2>/dev/null || true; } |
		awk -v ns="$ns" '$1 == ns { split($2, p, "/"); print p[3] }'
}

# Freezes host NAME (SIGSTOP to every process), so that it can neither end the chunk it
# holds nor start another while the test looks.  A process forked during a sweep is
# missed by it, so sweeps go on until every process is stopped; then a pause lets what
# was already sent to the database land.
host_freeze() {
	local pid stat state moving
	for _ in $(seq 50); do
		moving=
		for pid in $(host_pids "$1"); do
			if ! kill -STOP "$pid" 2>/dev/null || ! read -r stat 2>/dev/null <"/proc/$pid/stat"; then
				continue   # it has just exited
			fi
			state=${stat##*) } state=${state%% *}
			case $state in T | t | Z | X) ;; *) moving=$pid ;; esac
		done
		[ -n "$moving" ] || break
		sleep 0.1
	done
	[ -z "$moving" ] || { echo "host $1: process $moving does not stop" >&2; return 1; }
	sleep 0.5
}

host_thaw() {
	local pid
	for pid in $(host_pids "$1"); do kill -CONT "$pid" 2>/dev/null || true; done
}

# Submits CSV (default: the file's products.csv) with the webhook; prints the batch id.
submit() {
	imgpipe submit "${1:-$BATS_FILE_TMPDIR/products.csv}" --webhook "$HTTPD_URL/hook" | jq -r .batch_id
}

# Waits up to $2 seconds for batch $1 to end.
wait_ended() {
	for _ in $(seq "$2"); do
		case $(curl -sS "$IMGPIPE_URL/status/$1" | jq -r .status) in completed | failed) return 0 ;; esac
		sleep 1
	done
	tail -n 5 "$BATS_TEST_TMPDIR"/*.log >&2
	return 1
}

# The batch's chunks, one a line: "CHUNK HOST ended|running HOSTS" (HOST: the last that
# ran it; HOSTS: every host that did).
chunk_hosts() {
	/usr/bin/python3 - "$MONGODB_URI" "$1" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
for c in db.chunks.find({"batch_id": sys.argv[2], "chunk": {"$exists": True}}).sort("chunk"):
    print(c["chunk"], c["host"], "ended" if "ended" in c else "running", ",".join(c["hosts"]))
PY
}

# The chunks of batch ID that host NAME runs now.
running_on() { chunk_hosts "$1" | awk -v host="$2" '$2 == host && $3 == "running" { print $1 }'; }

# Every product once with its image, the summary exact, one webhook delivered.
assert_batch_once() {
	run /usr/bin/python3 - "$MONGODB_URI" "$1" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
products = list(db.products.find({"batch_id": sys.argv[2]}, {"serial_no": 1, "output_image_urls": 1}))
print(len(products), len({p["serial_no"] for p in products}),
      sum(1 for p in products for url in p["output_image_urls"] if url))
PY
	assert_output "$ROWS $ROWS $ROWS"
	run jq -r '[.status, .message] | join(": ")' < <(curl -sS "$IMGPIPE_URL/status/$1")
	assert_output "completed: $ROWS rows ($ROWS valid, 0 rejected), $ROWS images ($ROWS done, 0 failed)"
	local id=$1
	delivered() { jq -c --arg id "$id" 'select(.answer == 200 and (.body | fromjson).batch_id == $id)' "$HOOK_LOG" | wc -l; }
	for _ in $(seq 100); do [ "$(delivered)" -gt 0 ] && break; sleep 0.1; done
	sleep 1
	assert_equal "$(delivered)" 1
}

@test "one batch over three hosts: every host takes chunks, every product once, one webhook" {
	host_up hostA
	host_up hostB
	host_up hostC
	id=$(submit)
	wait_ended "$id" 300
	assert_batch_once "$id"
	run chunk_hosts "$id"
	assert_equal "$(grep -c ' ended ' <<<"$output")" $((ROWS / 20))
	for host in hostA hostB hostC; do
		assert_line --regexp "^[0-9]+ $host ended "
	done
	# no image downloaded twice: no chunk was run by two hosts
	run bash -c "sort '$REQUEST_LOG' | uniq -c | awk '\$1 != 1'"
	assert_output ""
	assert_equal "$(sort -u "$REQUEST_LOG" | wc -l)" "$ROWS"
}

@test "a host killed whole mid-batch: the others take its chunk over, nothing lost or duplicated" {
	host_up hostA
	host_up hostB
	host_up hostC
	id=$(submit "$BATS_FILE_TMPDIR/slow.csv")
	# once hostB has done a chunk and runs another, frozen so that what it holds stays held
	held=
	for _ in $(seq 300); do
		if chunk_hosts "$id" | grep -q ' hostB ended '; then
			host_freeze hostB
			held=$(running_on "$id" hostB)
			[ -n "$held" ] && break
			host_thaw hostB
		fi
		sleep 0.5
	done
	[ -n "$held" ]
	kill -KILL "$(host_init hostB)"   # PID 1 of its namespace: every process of it dies
	wait_ended "$id" 300
	assert_batch_once "$id"
	run chunk_hosts "$id"
	assert_equal "$(grep -c ' ended ' <<<"$output")" $((ROWS / 20))
	# each chunk it held was finished by another host, after hostB began it
	for chunk in $held; do
		assert_line --regexp "^$chunk host[AC] ended hostB,host[AC]$"
	done
}

@test "a host that joins mid-batch takes chunks at once" {
	host_up hostA
	host_up hostB
	id=$(submit)
	for _ in $(seq 300); do
		[ "$(chunk_hosts "$id" | grep -c ' ended ')" -ge 5 ] && break
		sleep 0.5
	done
	host_up hostC
	wait_ended "$id" 300
	assert_batch_once "$id"
	run chunk_hosts "$id"
	assert_line --regexp "^[0-9]+ hostC ended hostC$"
}

@test "a host's chunk jobs share its pipelines: two chunks at once, one pipeline's downloads at a time" {
	CHUNK_ROWS=3 host_up hostA --jobs 2
	products_csv "$HTTPD_URL/hold" "?ms=3000" 6 >"$BATS_TEST_TMPDIR/held.csv"
	curl -sS "$HTTPD_URL/held?reset=1" >/dev/null
	mkdir -p "$BATS_TEST_TMPDIR/hostA/run/pipelines/999999"   # a dispatcher gone
	id=$(submit "$BATS_TEST_TMPDIR/held.csv")
	wait_ended "$id" 120
	# the two chunk jobs ran at once ...
	run /usr/bin/python3 - "$MONGODB_URI" "$id" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).get_default_database()
c = {d["chunk"]: d for d in db.chunks.find({"batch_id": sys.argv[2], "chunk": {"$exists": True}})}
print(sorted(c), c[1]["started"] < c[0]["ended"] and c[0]["started"] < c[1]["ended"])
PY
	assert_output "[0, 1] True"
	# ... but the host's one pipeline was taken by one at a time: at most a chunk's three
	# downloads were under way together, where two pipelines side by side made six
	run jq .max < <(curl -sS "$HTTPD_URL/held")
	[ "$output" -le 3 ]
	run jq -r .status < <(curl -sS "$IMGPIPE_URL/status/$id")
	assert_output completed
	# the slots are the dispatcher's (PID 1 of the host's namespace); a gone one's removed
	run ls "$BATS_TEST_TMPDIR/hostA/run/pipelines"
	assert_output 1
}
