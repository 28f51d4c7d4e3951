# shellcheck shell=bash
# bench/lib.sh: measuring helpers shared by the benchmarks; source it from bash.
#
#   bench_photos_start DIR        serve the twelve sample photographs from DIR/photos on
#                                 127.0.0.1 (bench_serve)
#   bench_serve DIR               serve the files of DIR on 127.0.0.1; sets BENCH_PHOTOS_URL
#                                 (no trailing slash), BENCH_PHOTOS_DIR (DIR), BENCH_PHOTOS_PID
#   bench_photos_stop
#   bench_photo_copy PHOTOS N TAG OUT   sample photograph (N-1) % 12 of the folder PHOTOS
#                                 (scripts/sample-photos) with a JPEG comment holding TAG: a
#                                 full-size photograph to compress, with bytes of its own
#   bench_photo_copies PHOTOS DIR COUNT   DIR/00001.jpg .. DIR/COUNT.jpg, each its own
#                                 bench_photo_copy (tagged with DIR's name and its number)
#   bench_small_images DIR COUNT  makes DIR/00001.jpg .. DIR/COUNT.jpg once (kept for later
#                                 runs): 480x300 product shots cut from the sample photographs,
#                                 no two alike in bytes (each its own crop offset, colour
#                                 shift and drawn serial number)
#   bench_csv FILE URL ROWS PER_ROW [distinct]   the workload: ROWS products of PER_ROW
#                                 images each, cycling through the sample photographs, or
#                                 with "distinct" each URL its own NNNNN.jpg (from 00001)
#   bench_workload_files CSV      the workload's files, one a line: its URLs with
#                                 BENCH_PHOTOS_URL replaced by BENCH_PHOTOS_DIR
#   bench_poll_interval           seconds between status polls: BENCH_POLL, default 2, as
#                                 a client or a web page polls.  Each status answer lists
#                                 every product of the batch, so the polls' cost (the
#                                 database's above all) is part of what is measured
#   bench_now                     seconds since the epoch, to the nanosecond
#   bench_since T0                seconds elapsed since bench_now printed T0
#   proc_cpu PID                  CPU seconds of PID: its user and system time, plus that of
#                                 the children it has reaped (cutime, cstime)
#   proc_rss_peak PID             its peak resident set (VmHWM) in KiB
#   proc_rss_peak_reset PID       restarts that peak from the current RSS
#   tree_cpu PID                  proc_cpu summed over PID and its live descendants
#   bench_watch NAME PID          measure PID from now on under NAME: notes its CPU and
#                                 restarts its peak RSS, so a server running since before
#                                 counts only what this run cost it
#   bench_watch_aside NAME PID    the same, but shown apart and left out of the totals
#   bench_watch_stack [SKIP...]   bench_watch every server of the stack ($IMGPIPE_HOME/run/
#                                 NAME.pid) but the SKIP ones, each with its process tree:
#                                 a server's worker processes, a PostgreSQL's backends
#                                 say, count too.  Its peak RSS is the sum of the peaks of
#                                 the tree's live processes
#   bench_measured NAME CPU_S RSS_KIB   a row measured some other way (a sampled process
#                                 tree, say), counted in the totals
#   bench_snapshot                ends the measured time: bench_report reports what the
#                                 watched processes had used by then (default: by the report)
#   bench_status_cost URL         reads URL (a status route) 5 times; prints the figures
#                                 status_ms=MEDIAN_TIME status_db_cpu_ms=DB_CPU_A_READ
#                                 status_kib=SIZE, the database being the watched
#                                 processes that bench_is_db names
#   bench_is_db NAME              whether NAME is a database server (FerretDB, PostgreSQL)
#   bench_settle_db               VACUUM ANALYZE of the stack's PostgreSQL (when FerretDB
#                                 runs on it), after bench/history: a database that grew
#                                 over days has been vacuumed and analyzed by autovacuum,
#                                 one filled a moment ago has not, and its first
#                                 autovacuum (seconds of CPU for 100,000 rows) would land
#                                 in the measured run
#   bench_report DESIGN IMAGES WALL [KEY=VALUE...]   the table of what the watched
#                                 processes used, then one line for machines:
#     figures design=D images=N wall_s=S images_per_s=R cpu_s=C cpu_ms_per_image=P rss_mib=M
#             db_cpu_s=B db_cpu_ms_per_image=Q [outside_shrink_ms_per_image=O] [KEY=VALUE...]
#             cpu_s.NAME=.. rss_mib.NAME=.. [aside.cpu_s.NAME=.. aside.rss_mib.NAME=..] other_cpu_s=O
#                                 (cpu_s and rss_mib: sums over the watched processes
#                                 not set aside; aside ones carry an "aside." prefix;
#                                 db_cpu_s: the database servers' share of cpu_s)
#                                 KEY=VALUE fields are added as given; with shrink_cpu_s=S
#                                 (shrink's own CPU for the same images) the report adds
#                                 outside_shrink_ms_per_image = (cpu_s - S) / images
#                                 other_cpu_s: CPU the rest of the machine used meanwhile
#                                 (from /proc/stat; the bench's own shell and curl included),
#                                 so a busy machine shows in the figures
#   bench_memory_start / bench_memory_stop   samples, every second from start to stop, the
#                                 sum of the proportional set size (Pss) of every live
#                                 process watched and not aside, trees whole; stop prints
#                                 pss_mib=PEAK for bench_report.  A shared page counts
#                                 once over the processes that map it: the sum of peak RSS
#                                 counts PostgreSQL's shared buffers again in each backend
#   bench_compare                 reads figures lines on stdin (two or more designs) and
#                                 prints them side by side, with each design's ratio to the first
#
# Peak RSS of reaped children is not visible in /proc; a process tree's peak is that of
# the processes watched.  Report before stopping what you watch.

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_LIB_DIR/.." && pwd)
BENCH_TICKS=$(getconf CLK_TCK)
BENCH_PHOTOS=(autumn fallenleaf path eveningglow kite colorfulcups onestandsout coldripple
	bythewater summer_1am darkesthour grey)
# One entry a watched process: how it is measured (pid or tree), its CPU at the
# start, and, once bench_snapshot has run, its CPU and peak RSS at the end.
BENCH_NAMES=() BENCH_PIDS=() BENCH_KINDS=() BENCH_CPU0=() BENCH_ASIDE=() BENCH_MEASURED=()
BENCH_CPU1=() BENCH_RSS1=() BENCH_MACHINE0="" BENCH_MACHINE1=""

bench_photos_start() {
	"$BENCH_ROOT/scripts/sample-photos" "$1/photos" || return
	bench_serve "$1/photos"
}

bench_serve() {
	local dir=$1 portfile
	portfile=$(mktemp)
	python3 "$BENCH_ROOT/tests/lib/httpd.py" --root "$dir" --port 0 >"$portfile" &
	BENCH_PHOTOS_PID=$!
	for _ in $(seq 100); do
		[ -s "$portfile" ] && break
		sleep 0.05
	done
	[ -s "$portfile" ] || { rm -f "$portfile"; echo "bench: the photo server did not start" >&2; return 69; }
	# shellcheck disable=SC2034  # for the caller
	BENCH_PHOTOS_URL=http://127.0.0.1:$(head -n1 "$portfile") BENCH_PHOTOS_DIR=$dir
	rm -f "$portfile"
}

bench_photos_stop() {
	[ -z "${BENCH_PHOTOS_PID:-}" ] || kill "$BENCH_PHOTOS_PID" 2>/dev/null || true
	BENCH_PHOTOS_PID=
}

# A JPEG comment segment (COM, FF FE, its length counting its own two bytes) right after
# the SOI: the image decodes the same, its bytes and SHA-256 are its own.
bench_photo_copy() {
	local src=$1/${BENCH_PHOTOS[($2 - 1) % ${#BENCH_PHOTOS[@]}]}.jpg length
	printf -v length '\\x%02x' $((2 + ${#3}))
	{ head -c 2 "$src"; printf "\\xff\\xfe\\x00$length%s" "$3"; tail -c +3 "$src"; } >"$4.new"
	mv "$4.new" "$4"
}

bench_photo_copies() {
	local i name
	mkdir -p "$2"
	for ((i = 1; i <= $3; i++)); do
		printf -v name %05d "$i"
		bench_photo_copy "$1" "$i" "$(basename "$2")-$name" "$2/$name.jpg"
	done
}

# Image I is cut from photograph (I-1) % 12; K = (I-1) / 12 sets its crop offset (in a
# half-size copy, 1280x800, a 960x600 window halved again), saturation and hue, so that
# two images differ even before their serial numbers are drawn.  One convert a chunk of
# 100 images of one photograph, written aside and moved in once whole, so an interrupted
# run leaves no half-written image behind; the photographs run on every core.
bench_small_images() {
	local dir=$1 count=$2 p jobs=0
	"$BENCH_ROOT/scripts/sample-photos" "$dir/.photos" || return
	for p in "${!BENCH_PHOTOS[@]}"; do
		if [ "$jobs" -ge "$(nproc)" ]; then
			wait -n || return
			jobs=$((jobs - 1))
		fi
		small_images_of "$dir" "$p" "$count" &
		jobs=$((jobs + 1))
	done
	while [ "$jobs" -gt 0 ]; do
		wait -n || return
		jobs=$((jobs - 1))
	done
	[ -z "$(small_images_list "$count" | sed "s|^|$dir/|" | xargs md5sum | awk '{ print $1 }' | sort | uniq -d)" ] ||
		{ echo "bench: two of the small images in $dir are the same" >&2; return 70; }
}

small_images_list() { seq -f '%05g.jpg' 1 "$1"; }

small_images_of() {
	local dir=$1 p=$2 count=$3 new=$1/.new-$2 i k args=() n=0
	rm -rf "$new"
	mkdir -p "$new"
	for ((i = p + 1; i <= count; i += ${#BENCH_PHOTOS[@]})); do
		[ -s "$dir/$(printf %05d "$i").jpg" ] && continue
		k=$(((i - 1) / ${#BENCH_PHOTOS[@]}))
		args+=('(' "mpr:photo[960x600+$((k * 37 % 321))+$((k * 23 % 201))]" +repage -resize 480x300
			-modulate "100,$((95 + k % 11)),$((98 + k % 5))" -annotate +8+6 "No. $i"
			-write "$new/$(printf %05d "$i").jpg" +delete ')')
		n=$((n + 1))
		if [ "$n" -eq 100 ]; then
			small_images_convert "$dir" "$p" "${args[@]}" || return
			args=() n=0
		fi
	done
	[ "$n" -eq 0 ] || small_images_convert "$dir" "$p" "${args[@]}" || return
	rmdir "$new"
}

# -quiet: one photograph's XMP packet is malformed, a warning only; -strip drops it from
# the copies.  xc: null: gives convert the one image its command line must end with.
small_images_convert() {
	local dir=$1 p=$2; shift 2
	convert -quiet "$dir/.photos/${BENCH_PHOTOS[p]}.jpg" -strip -resize 1280x800 -write mpr:photo +delete \
		-font DejaVu-Sans -pointsize 18 -fill white -undercolor '#00000080' -gravity southeast \
		-quality 85 "$@" xc: null: || return
	mv "$dir/.new-$p"/*.jpg "$dir/"
}

# Rows cycle through the photographs, so every URL is a real 2560x1600 JPEG; or, distinct,
# each URL is an image of its own.
bench_csv() {
	local file=$1 url=$2 rows=$3 per_row=$4 distinct=${5:-}
	awk -v url="$url" -v rows="$rows" -v per="$per_row" -v names="${BENCH_PHOTOS[*]}" -v distinct="$distinct" '
	BEGIN {
		n = split(names, photo, " ")
		print "S. No.,Product Name,Input Image Urls"
		for (r = 1; r <= rows; r++) {
			line = ""
			for (i = 0; i < per; i++) {
				k = (r - 1) * per + i
				name = distinct ? sprintf("%05d", k + 1) : photo[k % n + 1]
				line = line (i ? "," : "") url "/" name ".jpg"
			}
			printf "%d,Product %d,\"%s\"\n", r, r, line
		}
	}' >"$file"
}

bench_workload_files() {
	awk -F, 'NR > 1 { gsub(/"/, ""); for (i = 3; i <= NF; i++) print $i }' "$1" |
		sed "s|^$BENCH_PHOTOS_URL/|$BENCH_PHOTOS_DIR/|"
}

bench_poll_interval() { echo "${BENCH_POLL:-2}"; }

bench_now() { date +%s.%N; }
bench_since() { awk -v t0="$1" -v t1="$(bench_now)" 'BEGIN { printf "%.3f\n", t1 - t0 }'; }

# Fields after the command name, which may hold spaces and parentheses: utime is the
# 12th, then stime, cutime, cstime; the parent is the 2nd.
proc_cpu() {
	local stat
	stat=$(cat "/proc/$1/stat") || return
	stat=${stat##*) }
	awk -v hz="$BENCH_TICKS" '{ printf "%.2f\n", ($12 + $13 + $14 + $15) / hz }' <<<"$stat"
}

# PID and CPU ticks of PID and of each of its live descendants.  A process's own time
# and that of the children it has reaped are disjoint, so the sum counts each once.  A
# process may end between the glob and its reading: cat fails then, and that is no error.
tree_stat() {
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
	{ pid = $1; sub(/.*\) /, ""); parent[pid] = $2; ticks[pid] = $12 + $13 + $14 + $15 }
	END {
		for (p in ticks) {
			for (q = p; q != root && q in parent; q = parent[q]) {}
			if (q == root) print p, ticks[p]
		}
	}'
}

tree_cpu() {
	tree_stat "$1" | awk -v hz="$BENCH_TICKS" '{ t += $2 } END { if (NR) printf "%.2f\n", t / hz; else exit 1 }'
}

tree_pids() { tree_stat "$1" | awk '{ print $1 }'; }

# CPU seconds the whole machine has been busy: user, nice, system, irq, softirq, steal.
machine_cpu() {
	awk -v hz="$BENCH_TICKS" '$1 == "cpu" { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

proc_rss_peak() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Writing 5 to clear_refs resets VmHWM (Linux 4.0 and later).
proc_rss_peak_reset() { echo 5 >"/proc/$1/clear_refs"; }

# watched_cpu KIND ID, watched_rss_peak KIND ID, watched_rss_peak_reset KIND ID: the
# three measures of a process (KIND pid) or of its tree's live processes (KIND tree).
watched_cpu() { if [ "$1" = tree ]; then tree_cpu "$2"; else proc_cpu "$2"; fi; }

watched_rss_peak() {
	local pid
	if [ "$1" = pid ]; then proc_rss_peak "$2"; return; fi
	for pid in $(tree_pids "$2"); do proc_rss_peak "$pid" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'
}

watched_rss_peak_reset() {
	local pid
	if [ "$1" = pid ]; then proc_rss_peak_reset "$2"; return; fi
	for pid in $(tree_pids "$2"); do proc_rss_peak_reset "$pid" || return; done
}

# bench_watch_as KIND ASIDE NAME PID
bench_watch_as() {
	local cpu
	cpu=$(watched_cpu "$1" "$4") || { echo "bench: no process $4 ($3)" >&2; return 69; }
	watched_rss_peak_reset "$1" "$4" 2>/dev/null || echo "bench: cannot reset the peak RSS of $3; it counts from its start" >&2
	[ -n "$BENCH_MACHINE0" ] || BENCH_MACHINE0=$(machine_cpu)
	BENCH_KINDS+=("$1") BENCH_ASIDE+=("$2") BENCH_NAMES+=("$3") BENCH_PIDS+=("$4") BENCH_CPU0+=("$cpu")
}

bench_watch() { bench_watch_as pid 0 "$1" "$2"; }

bench_watch_aside() { bench_watch_as pid 1 "$1" "$2"; }

bench_watch_stack() {
	local file name pid
	for file in "$IMGPIPE_HOME"/run/*.pid; do
		name=$(basename "$file" .pid) pid=$(cat "$file")
		[[ " $* " != *" $name "* ]] || continue
		if [ -d "/proc/$pid" ]; then
			bench_watch_as tree 0 "$name" "$pid" || return
		else
			echo "bench: $name is not running (a stale $file); not measured" >&2
		fi
	done
}

bench_measured() { BENCH_MEASURED+=("$1 0 0 0 $2 $3"); }

# The summed Pss of the watched processes now, in KiB: one read of every process's parent
# finds the trees, and one awk reads their smaps_rollup (a process gone meanwhile is
# skipped), so that a sample costs little of the machine it measures.
watched_pss() {
	local i roots=""
	for i in "${!BENCH_PIDS[@]}"; do
		[ "${BENCH_ASIDE[i]}" = 1 ] || roots+=" ${BENCH_KINDS[i]}:${BENCH_PIDS[i]}"
	done
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v roots="$roots" '
	BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) { split(r[i], kv, ":"); kind[kv[2]] = kv[1] } }
	{ pid = $1; sub(/.*\) /, ""); parent[pid] = $2 }
	END {
		for (p in parent)
			for (q = p; q in parent; q = parent[q])
				if (q in kind) { if (q == p || kind[q] == "tree") print "/proc/" p "/smaps_rollup"; break }
	}' | { xargs -r cat 2>/dev/null || true; } | awk '$1 == "Pss:" { s += $2 } END { print s + 0 }'
}

bench_memory_start() {
	BENCH_PSS_FILE=$(mktemp)
	(
		peak=0
		trap 'exit 0' TERM
		while :; do
			now=$(watched_pss)
			[ "$now" -le "$peak" ] || { peak=$now; echo "$peak" >"$BENCH_PSS_FILE"; }
			sleep 1
		done
	) &
	BENCH_PSS_SAMPLER=$!
}

bench_memory_stop() {
	kill "$BENCH_PSS_SAMPLER" 2>/dev/null || true
	wait "$BENCH_PSS_SAMPLER" 2>/dev/null || true
	awk '{ printf "pss_mib=%.1f\n", $1 / 1024 }' "$BENCH_PSS_FILE"
	rm -f "$BENCH_PSS_FILE"
}

bench_is_db() { [[ $1 == ferretdb* || $1 == postgres* ]]; }

bench_settle_db() {
	# shellcheck disable=SC2016  # expanded by that bash, with the stack's settings
	IMGPIPE_ROOT=$BENCH_ROOT bash -c '. "$IMGPIPE_ROOT/etc/imgpipe.env"
		[ "$IMGPIPE_FERRETDB_BACKEND" = postgresql ] || exit 0
		PGPASSWORD=$(cat "$IMGPIPE_HOME/data/postgresql.password") "$POSTGRESQL_BIN/psql" -q \
			-h 127.0.0.1 -p "$POSTGRESQL_PORT" -U imgpipe -c "VACUUM ANALYZE" ferretdb'
}

# CPU seconds of the watched database servers, now.
bench_db_cpu() {
	local i
	for i in "${!BENCH_NAMES[@]}"; do
		bench_is_db "${BENCH_NAMES[i]}" && watched_cpu "${BENCH_KINDS[i]}" "${BENCH_PIDS[i]}"
	done | awk '{ s += $1 } END { printf "%.2f\n", s }'
}

bench_snapshot() {
	local i
	BENCH_CPU1=() BENCH_RSS1=()
	for i in "${!BENCH_NAMES[@]}"; do
		BENCH_CPU1[i]=$(watched_cpu "${BENCH_KINDS[i]}" "${BENCH_PIDS[i]}") || BENCH_CPU1[i]=nan
		BENCH_RSS1[i]=$(watched_rss_peak "${BENCH_KINDS[i]}" "${BENCH_PIDS[i]}") || BENCH_RSS1[i]=nan
	done
	BENCH_MACHINE1=$(machine_cpu)
}

# Five reads, one at a time, as a client would make them; CPU is counted in clock ticks,
# so the database's share of one read is the five reads' total divided by five.
bench_status_cost() {
	local url=$1 db0 reads
	db0=$(bench_db_cpu)
	reads=$(for _ in 1 2 3 4 5; do
		curl -sS --fail-with-body -o /dev/null -w '%{time_total} %{size_download}\n' "$url" || exit
	done) || return
	sort -n <<<"$reads" | awk -v db="$(awk -v a="$db0" -v b="$(bench_db_cpu)" 'BEGIN { print b - a }')" '
	{ t[NR] = $1; kib = $2 / 1024 }
	END { printf "status_ms=%.1f status_db_cpu_ms=%.1f status_kib=%.1f\n", t[int((NR + 1) / 2)] * 1000, db * 1000 / NR, kib }'
}

bench_report() {
	local design=$1 images=$2 wall=$3 i db machine
	shift 3
	[ -n "$BENCH_MACHINE1" ] || bench_snapshot
	machine=$(awk -v t0="$BENCH_MACHINE0" -v t1="$BENCH_MACHINE1" 'BEGIN { printf "%.2f", t1 - t0 }')
	# one row a process: name, aside, database, CPU at the start and at the end, peak RSS
	{
		for i in "${!BENCH_NAMES[@]}"; do
			db=0
			! bench_is_db "${BENCH_NAMES[i]}" || db=1
			echo "${BENCH_NAMES[i]} ${BENCH_ASIDE[i]} $db ${BENCH_CPU0[i]} ${BENCH_CPU1[i]} ${BENCH_RSS1[i]}"
		done
		[ ${#BENCH_MEASURED[@]} -eq 0 ] || printf '%s\n' "${BENCH_MEASURED[@]}"
	} | awk -v design="$design" -v images="$images" -v wall="$wall" -v machine="$machine" -v extra="$*" '
	{ name[NR] = $1; aside[NR] = $2; isdb[NR] = $3; cpu[NR] = $5 - $4; rss[NR] = $6 / 1024 }
	END {
		n = split(extra, kv, " ")
		for (i = 1; i <= n; i++) given[substr(kv[i], 1, index(kv[i], "=") - 1)] = substr(kv[i], index(kv[i], "=") + 1)
		rate = wall > 0 ? images / wall : 0
		printf "%s: %d images in %.3f s = %.2f images/s\n", design, images, wall, rate
		printf "  %-14s %9s %13s\n", "process", "cpu_s", "peak_rss_MiB"
		for (i = 1; i <= NR; i++) if (!aside[i]) {
			printf "  %-14s %9.2f %13.1f\n", name[i], cpu[i], rss[i]
			tcpu += cpu[i]; trss += rss[i]; all += cpu[i]
			if (isdb[i]) db += cpu[i]
			line = line sprintf(" cpu_s.%s=%.2f rss_mib.%s=%.1f", name[i], cpu[i], name[i], rss[i])
		}
		printf "  %-14s %9.2f %13.1f\n", "total", tcpu, trss
		for (i = 1; i <= NR; i++) if (aside[i]) {
			all += cpu[i]
			printf "  %-14s %9.2f %13.1f   (not in the total)\n", name[i], cpu[i], rss[i]
			line = line sprintf(" aside.cpu_s.%s=%.2f aside.rss_mib.%s=%.1f", name[i], cpu[i], name[i], rss[i])
		}
		other = machine - all
		printf "  %-14s %9.2f %13s   (the rest of the machine meanwhile)\n", "other", other, "-"
		per = images > 0 ? tcpu * 1000 / images : 0
		dbper = images > 0 ? db * 1000 / images : 0
		printf "  cpu per image %.1f ms, of it the database %.1f ms", per, dbper
		figures = sprintf("db_cpu_s=%.2f db_cpu_ms_per_image=%.2f", db, dbper)
		if ("shrink_cpu_s" in given) {
			outside = images > 0 ? (tcpu - given["shrink_cpu_s"]) * 1000 / images : 0
			printf "; outside shrink %.1f ms", outside
			figures = figures sprintf(" outside_shrink_ms_per_image=%.2f", outside)
		}
		printf "\n"
		if ("status_ms" in given)
			printf "  one status read %.1f ms (%.1f KiB), database CPU %.1f ms\n",
				given["status_ms"], given["status_kib"], given["status_db_cpu_ms"]
		printf "figures design=%s images=%d wall_s=%.3f images_per_s=%.2f cpu_s=%.2f cpu_ms_per_image=%.1f rss_mib=%.1f %s%s%s other_cpu_s=%.2f\n",
			design, images, wall, rate, tcpu, per, trss, figures, n ? " " extra : "", line, other
	}'
}
bench_compare() {
	awk '
	$1 != "figures" { next }
	{
		d = ++designs
		for (i = 2; i <= NF; i++) {
			k = substr($i, 1, index($i, "=") - 1); v = substr($i, index($i, "=") + 1)
			if (!(k in seen)) { seen[k] = 1; keys[++nkeys] = k }
			val[d, k] = v
		}
	}
	END {
		if (designs < 2) { print "bench_compare: needs two figures lines" > "/dev/stderr"; exit 65 }
		for (i = 1; i <= nkeys; i++) {
			k = keys[i]
			printf "%-28s", k
			for (d = 1; d <= designs; d++) printf " %14s", ((d, k) in val) ? val[d, k] : "-"
			for (d = 2; d <= designs; d++) {
				if (k == "design") r = val[d, k] "/" val[1, k]
				else if ((d, k) in val && (1, k) in val && val[1, k] + 0 != 0) r = sprintf("x%.2f", val[d, k] / val[1, k])
				else r = "-"
				printf "   %s", r
			}
			printf "\n"
		}
	}'
}
