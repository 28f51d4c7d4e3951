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

# Runs one pipeline a file of deal_products, with GNU parallel started once a chunk (fed
# through --pipe, parallel itself cost more CPU than a chunk's fetches and uploads:
# bench/roundtrips), pipeline K's outcomes into outcomes-K.ndjson; the first failure
# stops the others.  The jobs of one dispatcher (this run's parent) share $jobs
# pipelines: pipeline K of a job holds the dispatcher's slot K (parallel's job slot, {%})
# for as long as any of its processes lives, so that a second chunk job's pipeline K
# starts when the first's ends, not beside it (two jobs' pipelines side by side ran
# twice the processes on the same cores, for no more images a second).  The slots are
# the dispatcher's, not the host's: the runs of a dispatcher frozen or killed never hold
# up another's.  On SIGTERM, parallel stops its pipelines (stop_step), those still
# waiting for a slot too.
run_pipelines() {
	local stages slots="${IMGPIPE_HOME:-var}/run/pipelines/$PPID" rc=0
	remove_gone_slots "${slots%/*}"
	mkdir -p "$slots"
	stages="exec 9>$(printf %q "$slots")/{%} && flock 9 && set -o pipefail &&
		fetchimg --dir $(printf %q "$work/in") --max-files 8 <{} |
		shrink --out-dir $(printf %q "$work/out") | s3put --remove-files | dbrecord >{= s/images-/outcomes-/ =}"
	parallel --jobs "$jobs" --halt now,fail=1 "$stages" ::: "$work"/images-*.ndjson &
	running=$!
	wait "$running" || rc=$?
	running=
	rm -f "$work"/images-*.ndjson
	return "$rc"
}

# Removes the slots of dispatchers no longer running from DIR (a folder a dispatcher's
# PID), so that restarts leave nothing behind.  (A run left by such a dispatcher keeps the
# lock it holds: removing its file does not release it.)
remove_gone_slots() {
	local dir
	for dir in "$1"/*/; do
		dir=${dir%/}
		[ ! -d "$dir" ] || [ -d "/proc/${dir##*/}" ] || rm -rf -- "$dir"
	done
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
