#!/usr/bin/env bats
# dbrecord's chunk commands on the real database: each job's record, the one finisher of a
# batch ending however many jobs end at once, early ends, and a chunk's images still to do.

load helpers

setup_file() {
	stack_start ferretdb
}

teardown_file() {
	stack_stop
}

setup() {
	ID=chunks-$BATS_TEST_NUMBER-$$
	dbrecord batch "$ID" "in queue"
}

@test "the planning job's start puts a queued batch in progress; its first start fixes the rows a chunk" {
	run bash -c "dbrecord chunk $ID - plan start hostA 20 | jq -r '[.status, .ending, .job, .job_ended, .chunk_rows, .finisher] | @tsv'"
	assert_output $'in progress\t0\tplan\tfalse\t20\t'
	run bash -c "dbrecord chunk $ID - plan start hostB 50 | jq -r .chunk_rows"
	assert_output 20
	run /usr/bin/python3 - "$MONGODB_URI" "$ID" <<'PY'
import sys, pymongo
doc = pymongo.MongoClient(sys.argv[1]).get_default_database().chunks.find_one({"_id": sys.argv[2] + ":0:plan"})
print(doc["host"], ",".join(doc["hosts"]), doc["chunk_rows"], "ended" in doc)
PY
	assert_output "hostB hostA,hostB 20 False"
}

@test "the last of the plan and its chunks to end is the finisher, and only it" {
	dbrecord chunk "$ID" - plan start hostA 10 >/dev/null
	run bash -c "dbrecord chunk $ID 0 0 end | jq -r '.finisher // \"none\"'"
	assert_output none
	run bash -c "dbrecord chunk $ID 0 plan end 2 | jq -r '.finisher // \"none\"'"
	assert_output none
	run bash -c "dbrecord chunk $ID 0 1 end | jq -r .finisher"
	assert_output 1
	# ending again changes nothing
	run bash -c "dbrecord chunk $ID 0 0 end | jq -r .finisher"
	assert_output 1
	run bash -c "dbrecord chunks $ID | jq -r 'select(.chunk != null) | [.chunk, (.ended != null)] | @tsv'"
	assert_output $'0\ttrue\n1\ttrue'
}

@test "a plan that ends after all its chunks is the finisher; one of no chunks too" {
	dbrecord chunk "$ID" - plan start hostA 10 >/dev/null
	dbrecord chunk "$ID" 0 0 end >/dev/null
	run bash -c "dbrecord chunk $ID 0 plan end 1 | jq -r .finisher"
	assert_output plan
	other=$ID-empty
	dbrecord batch "$other" "in queue"
	dbrecord chunk "$other" - plan start hostA 10 >/dev/null
	run bash -c "dbrecord chunk $other 0 plan end 0 | jq -r .finisher"
	assert_output plan
}

@test "twelve chunks ending at once: exactly one finisher, every end recorded" {
	dbrecord chunk "$ID" - plan start hostA 10 >/dev/null
	dbrecord chunk "$ID" 0 plan end 12 >/dev/null
	for n in $(seq 0 11); do
		dbrecord chunk "$ID" 0 "$n" end >"$BATS_TEST_TMPDIR/end.$n" &
	done
	wait
	run bash -c "cat '$BATS_TEST_TMPDIR'/end.* | jq -r '.finisher // empty' | sort -u | wc -l"
	assert_output 1
	run bash -c "dbrecord chunks $ID | jq -s '[.[] | select(.chunk != null and .ended != null)] | length'"
	assert_output 12
}

@test "an early claim wins over the chunks' ends, with its reason; a later claim loses" {
	dbrecord chunk "$ID" - plan start hostA 10 >/dev/null
	run bash -c "dbrecord chunk $ID 0 3 claim 'gave up after 5 attempts at chunk 3: process-batch killed by signal 9' | jq -r '[.finisher, .reason] | @tsv'"
	assert_output $'3\tgave up after 5 attempts at chunk 3: process-batch killed by signal 9'
	run bash -c "dbrecord chunk $ID 0 plan claim cancelled | jq -r '[.finisher, .reason] | @tsv'"
	assert_output $'3\tgave up after 5 attempts at chunk 3: process-batch killed by signal 9'
}

@test "each ending has its own records and its own finisher" {
	dbrecord chunk "$ID" - plan start hostA 10 >/dev/null
	dbrecord chunk "$ID" 0 plan end 0 >/dev/null
	run bash -c "dbrecord chunk $ID 1 plan start hostA 10 | jq -r '[.job_ended, .finisher // \"none\"] | @tsv'"
	assert_output $'false\tnone'
}

@test "pending: a chunk's empty output slots, product by product, a blank line after each" {
	dbrecord >/dev/null <<EOF
{"batch_id":"$ID","serial_no":1,"product_name":"a","input_image_urls":["http://x/1","http://x/2"],"chunk":0}
{"batch_id":"$ID","serial_no":2,"product_name":"b","input_image_urls":["http://x/3"],"chunk":0}
{"batch_id":"$ID","serial_no":3,"product_name":"c","input_image_urls":["http://x/4"],"chunk":1}
{"batch_id":"$ID","serial_no":1,"index":0,"url":"http://x/1","output_url":"http://s3/1"}
EOF
	run dbrecord pending "$ID" --chunk 0
	assert_output "$(printf '%s\n' \
		"{ \"batch_id\" : \"$ID\", \"serial_no\" : 1, \"index\" : 1, \"url\" : \"http://x/2\", \"recorded\" : { \"input_urls\" : 2, \"errors\" : [  ] } }" '' \
		"{ \"batch_id\" : \"$ID\", \"serial_no\" : 2, \"index\" : 0, \"url\" : \"http://x/3\", \"recorded\" : { \"input_urls\" : 1, \"errors\" : [  ] } }")"
	run bash -c "dbrecord pending $ID | grep -c url"
	assert_output 3
}

@test "usage errors exit 64; an unknown batch 65" {
	run dbrecord chunk "$ID" 0 plan
	assert_failure 64
	run dbrecord chunk "$ID" 0 zero start hostA
	assert_failure 64
	run dbrecord chunk "$ID" 0 plan start hostA 0
	assert_failure 64
	run dbrecord chunk no-such-batch 0 0 end
	assert_failure 65
	assert_output --partial "no batch no-such-batch"
}
