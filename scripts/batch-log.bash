# shellcheck shell=bash
# Sourced by process-batch: its log lines (logfmt, the stages' stderr too), Redis, and the
# outcomes of a run counted for GET /metrics.
# The variables and the callers are process-batch's:
# shellcheck disable=SC2154,SC2034,SC2120,SC2119

# One logfmt line: log STAGE EVENT MESSAGE, with the time in UTC to the millisecond, the
# job (batch, chunk) and the run, and ms, how long the run has gone on (so the logs show
# where a batch's time goes).
log() {
	local -x TZ=UTC
	local now=$EPOCHREALTIME ts msg=${3//\\/\\\\}
	printf -v ts '%(%Y-%m-%dT%H:%M:%S)T' "${now%.*}"
	printf 'ts=%s.%sZ host=%s batch=%s%s run=%s stage=%s event=%s ms=%d msg="%s"\n' "$ts" "${now: -6:3}" \
		"$host" "$id" "${chunk:+ chunk=$chunk}" "$run" "$1" "$2" $(( (${now/./} - started) / 1000 )) \
		"${msg//\"/\\\"}" >&2
}

# The stages' stderr as log lines: "fetchimg: HTTP 404 ..." becomes stage=fetchimg
# event=message; lines that are logfmt already pass through.
relog() {
	local line
	while IFS= read -r line; do
		if [[ $line == ts=* ]]; then
			printf '%s\n' "$line" >&2
		elif [[ $line =~ ^([A-Za-z0-9_.-]+):\ (.*)$ ]]; then
			log "${BASH_REMATCH[1]}" message "${BASH_REMATCH[2]}"
		else
			log process-batch message "$line"
		fi
	done
}

redis() { timeout 5 redis-cli -u "${REDIS_URL:?REDIS_URL is not set}" --no-auth-warning "$@"; }

# Runs Redis commands (one a line on stdin) on REDIS_URL, for the counters of GET /metrics;
# a failure is logged, never fatal: the batch matters more than its counters.
redis_commands() {
	if [ -z "${REDIS_URL:-}" ]; then
		log metrics skipped "REDIS_URL is not set"
		return
	fi
	redis >/dev/null || log metrics not_counted "Redis unavailable"
}

# Logs each failed image of this run's outcomes (each pipeline's dbrecord echoes each
# record once it is written, into outcomes-K.ndjson) under its stage, and adds them to the
# counters, once: images done (and of them reused), failed, and the errors by stage.  One
# jq for both: its "log" lines become log lines, the rest Redis commands.
count_outcomes() {
	local files=("$work"/outcomes-*.ndjson) kind stage serial index error
	# the error's "stage: " prefix, else the stage after the last one whose field it has
	local stage_of='def stage: (.error | capture("^(?<s>[a-z0-9_]+): ").s) //
		if (.error | startswith("not recorded: ")) then "dbrecord" elif .output_url then "dbrecord"
		elif .output_file then "s3put" elif .file then "shrink" else "fetchimg" end;'
	[ -e "${files[0]}" ] || return 0
	jq -n -r "$stage_of"'[inputs | select(.index != null)]
		| (.[] | select(.error) | ["log", stage, .serial_no, .index, .error] | @tsv),
		  (reduce .[] as $r ({};
			if $r.error then .images_failed += 1 | .["stage_errors:" + ($r | stage)] += 1
			elif $r.output_url then .images_done += 1 | if $r.reused == true then .images_reused += 1 else . end
			else . end)
		   | to_entries[] | "HINCRBY imgpipe:metrics \(.key) \(.value)")' "${files[@]}" |
		while IFS=$'\t' read -r kind stage serial index error; do
			if [ "$kind" = log ]; then
				log "$stage" image_failed "product $serial image $index: $error"
			else
				printf '%s\n' "$kind"
			fi
		done | redis_commands
	rm -f "${files[@]}"
}
