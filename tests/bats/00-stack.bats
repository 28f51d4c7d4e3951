#!/usr/bin/env bats
# The local stack from nothing: each server answers over its real protocol, with
# independent clients (redis-cli, pymongo, psql, curl's own SigV4), keeps its keys to
# itself, and stops cleanly.  FerretDB stores in PostgreSQL here; the last test runs both
# backends.

load helpers

setup_file() {
	# A stack of its own, on its own ports and folder, so "from nothing" is true here.  The
	# folder is bats's, which only its owner may enter, as a clone under /root would be.
	export IMGPIPE_HOME="$BATS_FILE_TMPDIR/home" IMGPIPE_PORT_BASE=28000
	export IMGPIPE_FERRETDB_BACKEND=postgresql
	imgpipe stack up >&3 2>&1
	eval "$(imgpipe stack env)"
	export REDIS_PORT=28001 FERRETDB_PORT=28002 VERSITYGW_PORT=28003 LIGHTTPD_PORT=28004 \
		POSTGRESQL_PORT=28006
}

teardown_file() {
	imgpipe stack down >&3 2>&1
}

psql_as_ferretdb() {
	PGPASSWORD=$1 /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p "$POSTGRESQL_PORT" -U imgpipe \
		-d ferretdb -Atc "$2"
}

# Every process of the stack: those in its pid files and all of their descendants.
stack_processes() {
	ps -e -o pid=,ppid= | awk -v roots="$(cat "$IMGPIPE_HOME"/run/*.pid)" '
		{ parent[$1] = $2 }
		END {
			n = split(roots, todo)
			for (i = 1; i <= n; i++) keep[todo[i]] = 1
			do {
				more = 0
				for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; more = 1 }
			} while (more)
			for (p in keep) print p
		}'
}

s3() {
	curl -sS --aws-sigv4 "aws:amz:$AWS_REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

@test "stack status checks every server and succeeds" {
	run imgpipe stack status
	assert_success
	for name in redis postgresql ferretdb versitygw lighttpd dispatch; do
		assert_line --regexp "^$name +up"
	done
}

@test "stack up starts only what is not running; ferretdb brings its postgresql" {
	before=$(cat "$IMGPIPE_HOME"/run/{redis,postgresql,ferretdb,versitygw}.pid)
	run imgpipe stack up redis ferretdb versitygw
	assert_success
	assert_equal "$(cat "$IMGPIPE_HOME"/run/{redis,postgresql,ferretdb,versitygw}.pid)" "$before"
	run imgpipe stack status ferretdb
	assert_line --regexp '^postgresql +up'
}

@test "every server listens on 127.0.0.1 only" {
	for port in "$REDIS_PORT" "$FERRETDB_PORT" "$VERSITYGW_PORT" "$LIGHTTPD_PORT" "$POSTGRESQL_PORT"; do
		run ss -Hltn "sport = :$port"
		assert_success
		assert_output --regexp "127\.0\.0\.1:$port"
		refute_output --regexp "(\*|0\.0\.0\.0|\[::\]):$port"
	done
}

@test "redis answers PING and keeps an append-only file" {
	run redis-cli -p "$REDIS_PORT" ping
	assert_output PONG
	run redis-cli -p "$REDIS_PORT" config get appendonly
	assert_line yes
}

mongo_round_trip() {
	/usr/bin/python3 - "$MONGODB_URI" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database()
db.stacktest.replace_one({"_id": "probe"}, {"n": 42}, upsert=True)
print(db.name, db.stacktest.find_one({"_id": "probe"})["n"])
PY
}

@test "ferretdb stores and finds a document for an independent MongoDB client, in postgresql" {
	run mongo_round_trip
	assert_success
	assert_output "imgpipe 42"
	run psql_as_ferretdb "$(cat "$IMGPIPE_HOME/data/postgresql.password")" \
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'imgpipe' AND table_name LIKE 'stacktest%'"
	assert_output 1
	# with the GIN indexes that FerretDB's lookups by _id and batch_id can use
	run psql_as_ferretdb "$(cat "$IMGPIPE_HOME/data/postgresql.password")" \
		"SELECT string_agg(indexdef, ' ') FROM pg_indexes WHERE schemaname = 'imgpipe' AND tablename LIKE 'stacktest%' AND indexdef LIKE '%USING gin%'"
	assert_output --partial "gin (((_jsonb -> '_id'::text)))"
	assert_output --partial "gin (((_jsonb -> 'batch_id'::text)))"
}

@test "postgresql runs unprivileged and lets in only who has FerretDB's password" {
	local pid
	pid=$(cat "$IMGPIPE_HOME/run/postgresql.pid")
	if [ "$(id -u)" = 0 ]; then
		# It refuses to run as root: a user namespace of its own, as a plain user there.
		assert [ "$(readlink "/proc/$pid/ns/user")" != "$(readlink /proc/self/ns/user)" ]
		run awk '$1 == "CapEff:" { print $2 }' "/proc/$pid/status"
		assert_output 0000000000000000
	else
		run ps -o user= -p "$pid"
		assert_output "$(id -un)"
	fi
	run psql_as_ferretdb wrong-password "SELECT 1"
	assert_failure
	assert_output --partial 'password authentication failed for user "imgpipe"'
	run psql_as_ferretdb "$(cat "$IMGPIPE_HOME/data/postgresql.password")" "SELECT 1"
	assert_output 1
}

@test "no process of the stack has a secret on its command line" {
	secrets=("$AWS_SECRET_ACCESS_KEY" "$WEBHOOK_SECRET" "$(cat "$IMGPIPE_HOME/data/postgresql.password")")
	pids=$(stack_processes)
	[ "$(wc -w <<<"$pids")" -ge 8 ]   # the six servers and PostgreSQL's own processes
	for pid in $pids; do
		cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue   # gone meanwhile
		for secret in "${secrets[@]}"; do
			[[ $cmdline != *"$secret"* ]] || fail "pid $pid has a secret on its command line: $cmdline"
		done
	done
}

@test "the files that hold secrets are the stack user's only, and so is the rest of its folder" {
	grep -qF "$AWS_SECRET_ACCESS_KEY" "$IMGPIPE_HOME/run/lighttpd-env.conf"
	grep -qF "$WEBHOOK_SECRET" "$IMGPIPE_HOME/run/lighttpd-env.conf"
	for file in run/lighttpd-env.conf data/postgresql.password; do
		assert_equal "$(stat -c %a "$IMGPIPE_HOME/$file")" 600
	done
	assert_equal "$(stat -c %a "$IMGPIPE_HOME/run")" 700
	# at most passing through a folder to PostgreSQL's own
	run find "$IMGPIPE_HOME" ! -type l -perm /o=rw
	assert_output ""
}

@test "versitygw takes a SigV4 PUT and GET, and refuses a wrong secret" {
	printf 'round trip\n' >"$BATS_TEST_TMPDIR/obj"
	run s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -T "$BATS_TEST_TMPDIR/obj" \
		-w '%{http_code}' "$S3_ENDPOINT/$S3_BUCKET/uploads/probe.txt"
	assert_output 200
	run s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$S3_ENDPOINT/$S3_BUCKET/uploads/probe.txt"
	assert_output "round trip"
	run s3 --user "$AWS_ACCESS_KEY_ID:wrong-secret" -T "$BATS_TEST_TMPDIR/obj" \
		-w '\n%{http_code}' "$S3_ENDPOINT/$S3_BUCKET/uploads/forged.txt"
	assert_output --partial SignatureDoesNotMatch
	assert_line 403
}

@test "objects under images/ open without credentials; uploads/ do not" {
	printf 'public\n' >"$BATS_TEST_TMPDIR/obj"
	s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -T "$BATS_TEST_TMPDIR/obj" "$S3_ENDPOINT/$S3_BUCKET/images/probe.txt"
	s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -T "$BATS_TEST_TMPDIR/obj" "$S3_ENDPOINT/$S3_BUCKET/uploads/probe.txt"
	run curl -sS "$S3_PUBLIC_URL/images/probe.txt"
	assert_output public
	run curl -sS -o /dev/null -w '%{http_code}' "$S3_PUBLIC_URL/uploads/probe.txt"
	assert_output 403
}

@test "stack env prints export lines an eval can use" {
	run imgpipe stack env
	assert_line "export MONGODB_URI=mongodb://127.0.0.1:$FERRETDB_PORT/imgpipe"
	assert_line "export S3_ENDPOINT=http://127.0.0.1:$VERSITYGW_PORT"
	assert_line "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

@test "on either backend, ferretdb stores documents, and stack down stops every server and frees its port" {
	# Uses a second stack so this file's own stack stays up for the other tests.
	export IMGPIPE_PORT_BASE=28100
	eval "$(imgpipe stack env)"
	for backend in sqlite postgresql; do
		export IMGPIPE_HOME="$BATS_TEST_TMPDIR/home-$backend" IMGPIPE_FERRETDB_BACKEND=$backend
		imgpipe stack up redis ferretdb versitygw
		run mongo_round_trip
		assert_output "imgpipe 42"
		pids=$(cat "$IMGPIPE_HOME"/run/*.pid)
		[ "$(wc -w <<<"$pids")" -eq "$([ $backend = sqlite ] && echo 3 || echo 4)" ]
		run imgpipe stack down
		assert_success
		for pid in $pids; do
			# gone, or a zombie waiting for init to reap it
			run ps -o stat= -p "$pid"
			[[ -z $output || $output == Z* ]]
		done
		run ss -Hltn "( sport = :28101 or sport = :28102 or sport = :28103 or sport = :28106 )"
		assert_output ""
		run imgpipe stack status redis
		assert_failure
	done
}
