# shellcheck shell=bash
# bench/lib.sh: measuring helpers shared by the benchmarks; source it from bash.
#
#   bench_photos_start DIR        serve the twelve sample photographs from DIR on 127.0.0.1;
#                                 sets BENCH_PHOTOS_URL (no trailing slash), BENCH_PHOTOS_PID
#   bench_photos_stop
#   bench_csv FILE URL ROWS PER_ROW   the workload: ROWS products of PER_ROW photos each
#   bench_poll_interval IMAGES    seconds between status polls: 1 per 200 images, at least 1.
#                                 A status answer lists every product, and reading 1,000
#                                 of them costs FerretDB about 0.2 CPU seconds, so polling a
#                                 big batch every second would be most of FerretDB's work
#   bench_now                     seconds since the epoch, to the nanosecond
#   bench_since T0                seconds elapsed since bench_now printed T0
#   proc_cpu PID                  CPU seconds of PID: its user and system time, plus that of
#                                 the children it has reaped (cutime, cstime)
#   proc_rss_peak PID             its peak resident set (VmHWM) in KiB
#   proc_rss_peak_reset PID       restarts that peak from the current RSS
#   bench_watch NAME PID          measure PID from now on under NAME: notes its CPU and
#                                 restarts its peak RSS, so a server running since before
#                                 counts only what this run cost it
#   bench_watch_aside NAME PID    the same, but shown apart and left out of the totals
#   bench_measured NAME CPU_S RSS_KIB   a row measured some other way (a sampled process
#                                 tree, say), counted in the totals
#   bench_report DESIGN IMAGES WALL   the table of what the watched processes used since
#                                 bench_watch, then one line for machines:
#     figures design=D images=N wall_s=S images_per_s=R cpu_s=C cpu_ms_per_image=P rss_mib=M
#             cpu_s.NAME=.. rss_mib.NAME=.. [aside.cpu_s.NAME=.. aside.rss_mib.NAME=..] other_cpu_s=O
#                                 (cpu_s and rss_mib: sums over the watched processes
#                                 not set aside; aside ones carry an "aside." prefix)
#                                 other_cpu_s: CPU the rest of the machine used meanwhile
#                                 (from /proc/stat; the bench's own shell and curl included),
#                                 so a busy machine shows in the figures
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
BENCH_NAMES=() BENCH_PIDS=() BENCH_CPU0=() BENCH_ASIDE=() BENCH_MACHINE0="" BENCH_MEASURED=()

bench_photos_start() {
	local dir=$1 portfile=$1/photos.port
	"$BENCH_ROOT/scripts/sample-photos" "$dir/photos" || return
	rm -f "$portfile"
	python3 "$BENCH_ROOT/tests/lib/httpd.py" --root "$dir/photos" --port 0 >"$portfile" &
	BENCH_PHOTOS_PID=$!
	for _ in $(seq 100); do
		[ -s "$portfile" ] && break
		sleep 0.05
	done
	[ -s "$portfile" ] || { echo "bench: the photo server did not start" >&2; return 69; }
	# shellcheck disable=SC2034  # for the caller
	BENCH_PHOTOS_URL=http://127.0.0.1:$(head -n1 "$portfile")
}

bench_photos_stop() {
	[ -z "${BENCH_PHOTOS_PID:-}" ] || kill "$BENCH_PHOTOS_PID" 2>/dev/null || true
	BENCH_PHOTOS_PID=
}

# Rows cycle through the photographs, so every URL is a real 2560x1600 JPEG.
bench_csv() {
	local file=$1 url=$2 rows=$3 per_row=$4
	awk -v url="$url" -v rows="$rows" -v per="$per_row" -v names="${BENCH_PHOTOS[*]}" '
	BEGIN {
		n = split(names, photo, " ")
		print "S. No.,Product Name,Input Image Urls"
		for (r = 1; r <= rows; r++) {
			line = ""
			for (i = 0; i < per; i++)
				line = line (i ? "," : "") url "/" photo[((r - 1) * per + i) % n + 1] ".jpg"
			printf "%d,Product %d,\"%s\"\n", r, r, line
		}
	}' >"$file"
}

bench_poll_interval() { echo $(( $1 / 200 > 1 ? $1 / 200 : 1 )); }

bench_now() { date +%s.%N; }
bench_since() { awk -v t0="$1" -v t1="$(bench_now)" 'BEGIN { printf "%.3f\n", t1 - t0 }'; }

# Fields after the command name, which may hold spaces and parentheses: utime is the
# 12th, then stime, cutime, cstime.
proc_cpu() {
	local stat
	stat=$(cat "/proc/$1/stat") || return
	stat=${stat##*) }
	awk -v hz="$BENCH_TICKS" '{ printf "%.2f\n", ($12 + $13 + $14 + $15) / hz }' <<<"$stat"
}

# CPU seconds the whole machine has been busy: user, nice, system, irq, softirq, steal.
machine_cpu() {
	awk -v hz="$BENCH_TICKS" '$1 == "cpu" { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

proc_rss_peak() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Writing 5 to clear_refs resets VmHWM (Linux 4.0 and later).
proc_rss_peak_reset() { echo 5 >"/proc/$1/clear_refs"; }

bench_watch() {
	local cpu
	cpu=$(proc_cpu "$2") || { echo "bench: no process $2 ($1)" >&2; return 69; }
	proc_rss_peak_reset "$2" 2>/dev/null || echo "bench: cannot reset the peak RSS of $1; it counts from its start" >&2
	[ -n "$BENCH_MACHINE0" ] || BENCH_MACHINE0=$(machine_cpu)
	BENCH_NAMES+=("$1") BENCH_PIDS+=("$2") BENCH_CPU0+=("$cpu") BENCH_ASIDE+=("${3:-0}")
}

bench_watch_aside() { bench_watch "$1" "$2" 1; }

bench_measured() { BENCH_MEASURED+=("$1 0 0 $2 $3"); }

bench_report() {
	local design=$1 images=$2 wall=$3 i cpu rss machine
	machine=$(awk -v t0="$BENCH_MACHINE0" -v t1="$(machine_cpu)" 'BEGIN { printf "%.2f", t1 - t0 }')
	{
		for i in "${!BENCH_NAMES[@]}"; do
			cpu=$(proc_cpu "${BENCH_PIDS[i]}") || cpu=nan
			rss=$(proc_rss_peak "${BENCH_PIDS[i]}") || rss=nan
			echo "${BENCH_NAMES[i]} ${BENCH_ASIDE[i]} ${BENCH_CPU0[i]} $cpu $rss"
		done
		[ ${#BENCH_MEASURED[@]} -eq 0 ] || printf '%s\n' "${BENCH_MEASURED[@]}"
	} | awk -v design="$design" -v images="$images" -v wall="$wall" -v machine="$machine" '
	{ name[NR] = $1; aside[NR] = $2; cpu[NR] = $4 - $3; rss[NR] = $5 / 1024 }
	END {
		rate = wall > 0 ? images / wall : 0
		printf "%s: %d images in %.3f s = %.2f images/s\n", design, images, wall, rate
		printf "  %-14s %9s %13s\n", "process", "cpu_s", "peak_rss_MiB"
		for (i = 1; i <= NR; i++) if (!aside[i]) {
			printf "  %-14s %9.2f %13.1f\n", name[i], cpu[i], rss[i]
			tcpu += cpu[i]; trss += rss[i]; all += cpu[i]
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
		printf "  cpu per image %.1f ms\n", per
		printf "figures design=%s images=%d wall_s=%.3f images_per_s=%.2f cpu_s=%.2f cpu_ms_per_image=%.1f rss_mib=%.1f%s other_cpu_s=%.2f\n",
			design, images, wall, rate, tcpu, per, trss, line, other
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
