# shellcheck shell=bash
# Sourced by process-batch: the job's lease, checked before each write phase and watched
# meanwhile (docs/design.md, 12.2).
# The variables and the callers are process-batch's:
# shellcheck disable=SC2154,SC2034,SC2120,SC2119

# "TOKEN/PTTL" of this run's lease ("/-2" when it is gone).
lease_state() {
	printf 'GET %s\nPTTL %s\n' "$IMGPIPE_LEASE" "$IMGPIPE_LEASE" | redis | paste -sd /
}

# Stops unless the lease still holds this run's token (run by hand: no lease, no check).
hold_lease() {
	local state
	[ -n "${IMGPIPE_LEASE:-}" ] || return 0
	state=$(lease_state) || { log lease will_retry "Redis unavailable: the lease cannot be checked"; exit 75; }
	[ "${state%%/*}" = "$IMGPIPE_FENCE" ] || { log lease lost "the job was taken over; stopping"; exit 75; }
}

# In the background: stops this run (SIGTERM) when its lease is lost, or a quarter of the
# lease before it expires unrenewed (its dispatcher stopped, or cut off from Redis), for
# the job is taken over once it expires.  Renewed, it has two thirds of it left or more.
# It looks twelve times a lease, from every half second to every two seconds.
watch_lease() {
	local state now deadline=$(( $(now_ms) + IMGPIPE_LEASE_MS ))
	local every=$(( IMGPIPE_LEASE_MS / 12 < 500 ? 500 : IMGPIPE_LEASE_MS / 12 > 2000 ? 2000 : IMGPIPE_LEASE_MS / 12 ))
	# (the sleep holds no descriptor of the log's pipe, neither stderr nor log_fd: a sleep
	# left running when the watch is killed would hold the pipe open, and the run's exit
	# waits for the log to end, up to one sleep more)
	while sleep "$(seconds "$every")" 2>/dev/null {log_fd}>&-; do
		now=$(now_ms)
		if state=$(lease_state); then
			if [ "${state%%/*}" != "$IMGPIPE_FENCE" ]; then
				log lease lost "the job was taken over; stopping"
				break
			fi
			deadline=$(( now + ${state#*/} ))
		fi
		if (( deadline - now <= IMGPIPE_LEASE_MS / 4 )); then
			log lease expiring "about to expire unrenewed; stopping"
			break
		fi
	done
	kill -TERM $$ 2>/dev/null || true   # gone when it was killed
	# bash runs the trap only once its foreground command returns, and a dbrecord retrying
	# for the database (up to a minute) or notify backing off would outlive the lease; and
	# when process-batch itself was killed, what it started goes on: the run's whole
	# session is stopped (process-batch leads one under the dispatcher).
	stop_session
}

# SIGTERM to every process of this run's session but the log's relay and this watch.
stop_session() {
	local pid
	for pid in $(pgrep -s $$); do
		case $pid in "$relogger" | "$BASHPID") ;; *) kill -TERM "$pid" 2>/dev/null || true ;; esac
	done
}
