# shellcheck shell=bash
# Sourced by process-batch: a chunk job, which runs the image pipelines on its images.
# The variables and the callers are process-batch's:
# shellcheck disable=SC2154,SC2034,SC2120,SC2119

# A chunk job: the chunk's images still to do, then the chunk's end (it finishes the
# batch when it is the last to end).
run_chunk() {
	if [ "$job_ended" = false ]; then
		dbrecord pending "$id" --chunk "$chunk" >"$work/images.ndjson" || temporary "database unavailable"
		log images started "$(grep -c . "$work/images.ndjson") images to do, $jobs pipelines"
	fi
	if [ -s "$work/images.ndjson" ]; then
		hold_lease
		stages="fetchimg --dir $(printf %q "$work/in") --max-files 8 | shrink --out-dir $(printf %q "$work/out") | s3put --remove-files | dbrecord"
		parallel --pipe --recend '\n\n' -N1 --round-robin --jobs "$jobs" --halt now,fail=1 "$stages" \
			<"$work/images.ndjson" >"$work/outcomes.ndjson" &
		running=$!
		wait $running || temporary "image pipeline stopped (exit $?)"
		running=
		count_outcomes
		log images finished "images done"
	fi
	hold_lease
	step end || temporary "database unavailable"
	[ "$finisher" != "$job" ] || finish_chunks
}
