# shellcheck shell=bash
# Sourced by process-batch: a job's steps in the batch's chunks document, and the end of the
# batch: claimed once, summarised, announced.
# The variables and the callers are process-batch's:
# shellcheck disable=SC2154,SC2034,SC2120,SC2119

# Records this job's step (start HOST [ROWS], end [TOTAL], or claim REASON) and reads back
# the state to go on from: status, finisher ("-": none), cancelled, job_ended,
# batch_ending, planned_rows (the planning job's rows a chunk, fixed by its first start),
# and reason (the claim's, for an early end).
step() {
	local out
	out=$(dbrecord chunk "$id" "$ending" "$job" "$@") || return
	IFS=$'\t' read -r status finisher cancelled job_ended batch_ending planned_rows reason < <(jq -r \
		'[.status, .finisher // "-", .cancel_requested, .job_ended, .ending, .chunk_rows // 0,
		  .reason // ""] | @tsv' <<<"$out")
}

# Ends the batch with a status and a message, then announces it: for the finisher only.
# A cancel that comes now is too late: the batch is ending anyway.  The status is read
# back, since FerretDB's SQLite backend can lose a write that meets another write of the
# same document.
end_batch() {
	trap '' USR1
	hold_lease
	count_outcomes
	for _ in 1 2 3; do
		if ! { dbrecord batch "$id" "$1" "$2" && step claim; }; then
			log batch will_retry "database unavailable while ending"
			exit 75
		fi
		[ "$status" != "$1" ] || break
	done
	log batch "$1" "$2"
	announce
	exit 0
}

# The finisher, once every chunk has ended: the batch ends with its summary.
finish_chunks() {
	local summary
	summary=$(summarise) || { log batch will_retry "database unavailable"; exit 75; }
	end_batch "${summary%%$'\t'*}" "${summary#*$'\t'}"
}

# Goes on from the state step read, once the batch's end has begun: an ended batch is
# announced by its finisher only (by the planning job when it ended unclaimed: cancelled
# while queued); the finisher ends it (again, after a crash) with its claim's reason or
# its summary; another job's end is left to that job, which the planning job queues again
# in case it is gone.
settle() {
	case $status in
	completed | failed)
		if [ "$finisher" = "$job" ] || [ "$finisher$job" = -plan ]; then
			announce
		fi
		exit 0 ;;
	esac
	[ "$finisher" != - ] || return 0
	if [ "$finisher" = "$job" ]; then
		[ -z "$reason" ] || end_batch failed "$reason"
		finish_chunks
	fi
	if [ "$job" = plan ]; then
		queue_chunk "$finisher" || { log batch will_retry "Redis unavailable"; exit 75; }
	fi
	log batch left_to_finisher "job $finisher ends the batch"
	exit 0
}

# Ends the batch at once, failed with REASON, unless another job's end came first.
end_now() {
	step claim "$1" || { log batch will_retry "database unavailable while ending"; exit 75; }
	settle
}

# A backend is down: retry later, unless this is the last attempt.
temporary() {
	local n=${IMGPIPE_ATTEMPT:-}
	if [ "${IMGPIPE_LAST_ATTEMPT:-1}" = 1 ]; then
		end_now "${n:+gave up after $n attempt$([ "$n" = 1 ] || echo s)${chunk:+ at chunk $chunk}: }$1"
	fi
	count_outcomes
	log batch will_retry "$1"
	exit 75
}

# A backend is down (unavailable NAME ERRFILE): its error, which names internal hosts and
# ports, goes to the log; the batch's message, which the status shows, names the backend.
unavailable() {
	log "$1" unavailable "$(tail -n 1 "$2")"
	temporary "$1 unavailable"
}

# Queues the batch's webhook event for the dispatchers' deliverer (dispatch/deliver.c),
# unless a delivery of this ending already succeeded (a rerun announces once; a retry or
# cancel is a new ending, announced again).  The event carries its ending and its
# webhook-id, made from both as notify makes it; the delivery is keyed by that id, so a
# rerun that announces again queues nothing more.  Redis down: the finisher runs again.
announce() {
	local batch ending delivered webhook_id event
	batch=$(dbrecord show "$id" --no-products) || { log batch will_retry "database unavailable while announcing"; exit 75; }
	# (one jq for both: each start of jq 1.6 costs 35 ms of CPU, in the batch's last steps)
	read -r ending delivered < <(jq -r '(.ending // 0) as $ending
		| "\($ending) \(any(.webhook_deliveries[]?; .delivered and (.ending // 0) == $ending))"' <<<"$batch")
	[ "$delivered" != true ] || return 0
	webhook_id=msg_$(printf '%s.%s' "$id" "$ending" | sha256sum | cut -c1-64)
	event=$(jq -c --arg status_url "$status_url" --argjson ending "$ending" --arg webhook_id "$webhook_id" '{
		event: ("batch." + .status), batch_id, status, message, progress, ending: $ending,
		status_url: $status_url, output_csv_url: ($status_url + "?format=csv"), webhook_id: $webhook_id}
		+ (if .webhook_url then {webhook_url} else {} end)' <<<"$batch")
	queue_webhook "$webhook_id" "$event" || { log batch will_retry "Redis unavailable while announcing"; exit 75; }
	log notify queued "webhook $webhook_id queued for delivery"
}

# Queues one webhook delivery (queue_webhook WEBHOOK_ID EVENT), once: the hash
# imgpipe:webhook:ID and its member of imgpipe:webhooks, due now (lib/queue.h).
queue_webhook() {
	local once='if redis.call("HSETNX", KEYS[2], "event", ARGV[2]) == 1 then
		redis.call("HSET", KEYS[2], "queued_at", ARGV[3])
		redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
	end
	return redis.call("HGET", KEYS[2], "queued_at")'
	[[ $(redis EVAL "$once" 2 imgpipe:webhooks "imgpipe:webhook:$1" "$1" "$2" "$(now_ms)") =~ ^[0-9]+$ ]]
}

# "STATUS<tab>MESSAGE": the batch's final status and its summary line, from its counters
# counted once more from its products (an image's $inc can be lost in a crash, or to a
# concurrent write on FerretDB's SQLite backend), once each copy slot (a URL repeated in
# the batch) holds its first slot's outcome, so that the counts include the copies.  A
# cancel that never reached a run (Redis was down) still ends the batch cancelled.
summarise() {
	local copies
	copies=$(dbrecord copies "$id") || return
	copies=$(jq -r 'select(.copies > 0) | "\(.copies) copy slots, \(.updated) set"' <<<"$copies")
	[ -z "$copies" ] || log copies filled "$copies"
	dbrecord recount "$id" && dbrecord show "$id" --no-products | jq -r '.progress as $p
		| "\($p.rows_total) rows (\($p.rows_done) valid, \($p.rows_failed) rejected), \($p.images_total) images (\($p.images_done) done, \($p.images_failed) failed)" as $m
		| if .cancel_requested then "failed\tcancelled"
		  elif $p.rows_done == 0 then "failed\tno valid rows: \($m)"
		  elif $p.images_done == 0 then "failed\tnot one image succeeded: \($m)"
		  else "completed\t\($m)" end'
}
