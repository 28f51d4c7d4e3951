# shellcheck shell=bash
# Sourced by process-batch: the planning job, which records the rows and queues the chunks.
# The variables and the callers are process-batch's:
# shellcheck disable=SC2154,SC2034,SC2120,SC2119

# Queues the job of chunk N of this ending (XADD; the names are lib/queue.h's).
queue_chunk() {
	local entry
	entry=$(redis XADD imgpipe:jobs '*' batch "$id" chunk "$1" ending "$ending") &&
		[[ $entry =~ ^[0-9]+-[0-9]+$ ]]
}

# csvsplit's records, each valid row with its chunk number: rows 0 to N-1 are chunk 0.
number_chunks() {
	jq -c --unbuffered -n --argjson size "$planned_rows" 'foreach inputs as $r (-1;
		if $r.error then . else . + 1 end;
		if $r.error then $r else $r + {chunk: (. / $size | floor)} end)'
}

# Each valid row with the indexes of its slots whose URL stood in an earlier slot of the
# batch (an earlier row, or earlier in this one) as copies, when it has some: only a URL's
# first slot is fetched, and dbrecord copies gives the others its outcome at the end.
# One step a slot, then one a row.  The state holds the URLs seen as its keys and the
# row's copies so far under "" (no URL is empty), and is only ever changed at its top
# level: jq 1.6 copies the whole state when a nested path or a reduce changes it, which
# made 100,000 rows take minutes (this: seconds).
mark_copies() {
	jq -c --unbuffered -n 'foreach (inputs as $r | ($r.input_image_urls // [] | to_entries[] |
			{url: .value, index: .key}), {row: $r}) as $x ({};
		if $x.row then .
		else (if $x.index == 0 then .[""] = [] else . end)
			| if has($x.url) then .[""] = .[""] + [$x.index] else .[$x.url] = true end end;
		if $x.row == null then empty
		elif $x.row.error or .[""] == [] then $x.row else $x.row + {copies: .[""]} end)'
}

# dbrecord's echo of the rows it recorded, as the numbers of the chunks whose rows are
# all recorded: each once the next chunk's first row is, the last at the end.
recorded_chunks() {
	jq -r --unbuffered 'select(.error == null) | .chunk // empty' |
		awk 'NR > 1 && $0 != last { print last; fflush() } { last = $0 } END { if (NR) print last }'
}

# Queues each chunk named on stdin, unless it has ended already (a planning job run
# again), and lists it in chunks.list.
queue_chunks() {
	local n ended
	ended=" $(dbrecord chunks "$id" | jq -r --argjson e "$ending" \
		'select(.ending == $e and .chunk != null and .ended != null) | .chunk' | tr '\n' ' ') "
	while read -r n; do
		[[ $ended == *" $n "* ]] || queue_chunk "$n"
		echo "$n" >>"$work/chunks.list"
	done
}

# The planning job: the rows recorded, the chunks queued as their rows are, then the
# planning job's end with the number of chunks (it finishes the batch itself when every
# chunk has ended by then, or there are none).
plan() {
	local rc=0 total
	if [ "$job_ended" = true ]; then
		log plan planned_already "the job was queued twice"
		step end || temporary "database unavailable"
		[ "$finisher" != plan ] || finish_chunks
		return
	fi
	s3get "uploads/$id.csv" >"$work/upload.csv" 2>"$work/s3get.err" || rc=$?
	case $rc in
	0) ;;
	65) end_now "CSV missing: uploads/$id.csv is not in the bucket" ;;
	*) unavailable S3 "$work/s3get.err" ;;
	esac

	csvsplit --rank --batch "$id" "$work/upload.csv" >"$work/rows.ndjson" 2>"$work/csvsplit.err" || rc=$?
	case $rc in
	0) ;;
	65) end_now "bad CSV: $(tail -n 1 "$work/csvsplit.err" | sed 's/^csvsplit: //')" ;;
	*) temporary "csvsplit failed: $(tail -n 1 "$work/csvsplit.err")" ;;
	esac

	hold_lease
	[ "$planned_rows" -gt 0 ] || planned_rows=$chunk_rows
	: >"$work/chunks.list"
	number_chunks <"$work/rows.ndjson" | mark_copies | dbrecord --all-rows | recorded_chunks | queue_chunks &
	running=$!
	wait $running || temporary "database or Redis unavailable while recording rows"
	total=$(wc -l <"$work/chunks.list")
	log csvsplit rows_recorded "$(wc -l <"$work/rows.ndjson") rows recorded, $total chunks queued"
	hold_lease
	step end "$total" || temporary "database unavailable"
	[ "$finisher" != plan ] || finish_chunks
}
