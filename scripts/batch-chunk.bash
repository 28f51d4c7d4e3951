# shellcheck shell=bash
# Sourced by process-batch: a chunk job, which runs the image pipelines on its images.
# The variables and the callers are process-batch's:
# shellcheck disable=SC2154,SC2034,SC2120,SC2119

# Deals the chunk's products (a blank line after each) in turn into one file a pipeline,
# images-K.ndjson, so that all of a product's slots are written by one pipeline
# (docs/design.md, 12.1).
deal_products() {
	awk -v n="$jobs" -v dir="$work" 'BEGIN { RS = ""; ORS = "\n\n" }
		{ print > (dir "/images-" (NR - 1) % n ".ndjson") }' "$work/images.ndjson"
}

# Runs one pipeline a file of deal_products, each process a child of this shell (so that
# stop_step stops them all), pipeline K's outcomes into outcomes-K.ndjson; the first
# pipeline seen failing stops the others.  Started once a chunk: GNU parallel, which ran
# them before, cost more CPU than a chunk's fetches and uploads (bench/roundtrips).
run_pipelines() {
	local part pids=() left pid ended status rc=0
	for part in "$work"/images-*.ndjson; do
		fetchimg --dir "$work/in" --max-files 8 <"$part" | shrink --out-dir "$work/out" |
			s3put --remove-files | dbrecord >"$work/outcomes-${part##*-}" &
		pids+=("$!")
	done
	# wait -n sees only jobs that end while it waits, and takes their status with it: an
	# ended job is waited for by pid (its status kept), wait -n names the one it took.
	while [ "$rc" = 0 ] && [ ${#pids[@]} -gt 0 ]; do
		running="${pids[*]}" left=()
		for pid in "${pids[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then
				left+=("$pid")
			else
				wait "$pid" || rc=$?
			fi
		done
		pids=("${left[@]}")
		if [ "$rc" != 0 ] || [ ${#pids[@]} -eq 0 ]; then
			break
		fi
		ended='' status=0
		wait -n -p ended "${pids[@]}" 2>/dev/null || status=$?
		[ -z "$ended" ] || rc=$status
		pids=()
		for pid in "${left[@]}"; do
			[ "$pid" = "$ended" ] || pids+=("$pid")
		done
	done
	running="${pids[*]}"
	[ "$rc" = 0 ] || stop_step
	running=
	rm -f "$work"/images-*.ndjson
	return "$rc"
}

# A chunk job: the chunk's images still to do, then the chunk's end (it finishes the
# batch when it is the last to end).
run_chunk() {
	if [ "$job_ended" = false ]; then
		dbrecord pending "$id" --chunk "$chunk" >"$work/images.ndjson" || temporary "database unavailable"
		log images started "$(grep -c . "$work/images.ndjson") images to do, $jobs pipelines"
	fi
	if [ -s "$work/images.ndjson" ]; then
		hold_lease
		deal_products
		run_pipelines || temporary "image pipeline stopped (exit $?)"
		count_outcomes
		log images finished "images done"
	fi
	hold_lease
	step end || temporary "database unavailable"
	[ "$finisher" != "$job" ] || finish_chunks
}
