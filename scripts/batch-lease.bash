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
	while sleep "$(seconds "$every")"; do
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
	kill -TERM $$
	# bash runs the trap only once its foreground command returns, and a dbrecord retrying
	# for the database (up to a minute) or notify backing off would outlive the lease: they
	# are stopped too, and whatever they started (a command substitution's subshell dies of
	# SIGTERM and leaves its own children running).
	stop_descendants $$
}

# SIGTERM to every process under PID, the deepest first, but the log's and the lease's
# helpers (this watch included) and what runs under them.
stop_descendants() {
	local pid
	for pid in $(pgrep -P "$1"); do
		case $pid in "$relogger" | "${watchdog:-}" | "$BASHPID") continue ;; esac
		stop_descendants "$pid"
		kill -TERM "$pid" 2>/dev/null || true
	done
}
