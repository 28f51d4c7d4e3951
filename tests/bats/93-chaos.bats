#!/usr/bin/env bats
# The chaos run's short form (tests/chaos/run): two minutes of SIGKILLs of random parts of a
# stack of its own, with batches, cancels and retries meanwhile, then every invariant checked
# with independent clients.  The seed is fixed, so a failure replays with the same command.

load helpers

@test "chaos, seed 93: 30 faults over 5 batches in two minutes; nothing lost, run twice at once or announced twice" {
	IMGPIPE_CHAOS_HOME="$IMGPIPE_HOME/chaos" IMGPIPE_CHAOS_PORT_BASE=$((IMGPIPE_PORT_BASE + 50)) \
		run "$ROOT/tests/chaos/run" --seed 93 --minutes 2 --faults 30 --batches 5 --settle 240
	assert_success
	assert_line --regexp '^faults: (2[5-9]|[3-9][0-9]) injected'
	assert_line --regexp '^batches: [0-9]+ submitted, [3-9] accepted'
	assert_line 'lost = 0, duplicated = 0'
	assert_line --index $((${#lines[@]} - 1)) PASS
}
