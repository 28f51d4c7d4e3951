#!/usr/bin/env bats
# The local stack from nothing: each server answers over its real protocol, with
# independent clients (redis-cli, pymongo, curl's own SigV4), and stops cleanly.

load helpers

setup_file() {
	# A stack of its own, on its own ports and folder, so "from nothing" is true here.
	export IMGPIPE_HOME="$BATS_FILE_TMPDIR/home" IMGPIPE_PORT_BASE=28000
	imgpipe stack up redis ferretdb versitygw >&3 2>&1
	eval "$(imgpipe stack env)"
	export REDIS_PORT=28001 FERRETDB_PORT=28002 VERSITYGW_PORT=28003
}

teardown_file() {
	imgpipe stack down >&3 2>&1
}

s3() {
	curl -sS --aws-sigv4 "aws:amz:$AWS_REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

@test "stack status checks every server and succeeds" {
	run imgpipe stack status redis ferretdb versitygw
	assert_success
	assert_line --regexp '^redis +up'
	assert_line --regexp '^ferretdb +up'
	assert_line --regexp '^versitygw +up'
}

@test "stack up starts only what is not running" {
	before=$(cat "$IMGPIPE_HOME"/run/{redis,ferretdb,versitygw}.pid)
	run imgpipe stack up redis ferretdb versitygw
	assert_success
	assert_equal "$(cat "$IMGPIPE_HOME"/run/{redis,ferretdb,versitygw}.pid)" "$before"
}

@test "every server listens on 127.0.0.1 only" {
	for port in "$REDIS_PORT" "$FERRETDB_PORT" "$VERSITYGW_PORT"; do
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

@test "ferretdb stores and finds a document for an independent MongoDB client" {
	run /usr/bin/python3 - "$MONGODB_URI" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).get_default_database()
db.stacktest.insert_one({"_id": "probe", "n": 42})
print(db.name, db.stacktest.find_one({"_id": "probe"})["n"])
PY
	assert_success
	assert_output "imgpipe 42"
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

@test "stack down stops every server and frees its port" {
	# Uses a second stack so this file's own stack stays up for the other tests.
	export IMGPIPE_HOME="$BATS_TEST_TMPDIR/home2" IMGPIPE_PORT_BASE=28100
	imgpipe stack up redis ferretdb versitygw
	pids=$(cat "$IMGPIPE_HOME"/run/*.pid)
	run imgpipe stack down
	assert_success
	for pid in $pids; do
		# gone, or a zombie waiting for init to reap it
		run ps -o stat= -p "$pid"
		[[ -z $output || $output == Z* ]]
	done
	run ss -Hltn "( sport = :28101 or sport = :28102 or sport = :28103 )"
	assert_output ""
	run imgpipe stack status redis
	assert_failure
}
