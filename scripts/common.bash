# shellcheck shell=bash
# Sourced by bin/imgpipe and scripts/setup, stack and demo: the tree they belong to (the
# source tree, or PREFIX/lib/imgpipe once installed), the local stack's defaults, log, die.

IMGPIPE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export IMGPIPE_ROOT
# shellcheck source-path=SCRIPTDIR/.. source=etc/imgpipe.env
. "$IMGPIPE_ROOT/etc/imgpipe.env"
export PATH="$IMGPIPE_ROOT/bin:$IMGPIPE_TOOLS/bin:$PATH"

log() { printf 'imgpipe: %s\n' "$*" >&2; }
die() { log "$@"; exit "${EXIT:-1}"; }
