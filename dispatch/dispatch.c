/* imgpipe-dispatch: takes batch jobs from the Redis stream imgpipe:jobs and runs
 * scripts/process-batch for each, up to --jobs at once.
 *
 * Reliability comes from a Redis Streams consumer group: a job read with XREADGROUP stays
 * pending until XACK, which is sent only when process-batch says the batch has ended.
 * While a job runs its entry is re-claimed three times per --claim-idle (resetting its idle time);
 * a dispatcher that dies stops doing that, and after --claim-idle seconds any other
 * dispatcher takes the job over with XAUTOCLAIM.  process-batch is idempotent, so a job
 * run twice finishes the batch once.
 *
 * A batch cancelled through the CGI is marked in Redis; the dispatcher running it checks
 * the marks of its jobs every second and sends that process-batch SIGUSR1, on which it
 * stops its image pipelines and ends the batch.
 *
 * It logs one logfmt line an event (ts, host, batch, stage, event, msg), as process-batch
 * does, so that one batch can be followed across hosts in the journal. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "imgpipe.h"
#include "queue.h"

#define MAX_JOBS 64
#define CANCEL_CHECK_MS 1000

static const char usage[] =
	"usage: imgpipe-dispatch [--jobs N] [--claim-idle SECONDS] [--max-attempts N]\n"
	"                        [--script PATH]\n"
	"Runs process-batch for each job queued on the Redis stream " QUEUE_STREAM ".\n"
	"  --jobs N              batches at once (default: the number of cores)\n"
	"  --claim-idle SECONDS  take over jobs of a dispatcher silent this long (default 30)\n"
	"  --max-attempts N      deliveries of one job before its batch is failed (default 5)\n"
	"  --script PATH         the batch runner (default: scripts/process-batch of this install)\n"
	"Environment: REDIS_URL, and everything process-batch needs.\n";

struct job {
	pid_t pid;              /* 0 when the slot is free */
	struct queue_job taken;
	int cancelled;          /* it has been sent SIGUSR1 */
};

static struct {
	long jobs, claim_idle_ms, max_attempts;
	const char *script;
	char host[64];
	char consumer[128];
} opt;

static struct job slots[MAX_JOBS];
static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Writes one logfmt line to stderr: ts=... host=... [batch=...] stage=dispatch event=...
 * msg="..." (batch is left out when NULL; msg is quoted, with \ and " escaped). */
__attribute__((format(printf, 3, 4)))
static void log_event(const char *batch, const char *event, const char *fmt, ...)
{
	char msg[1024], ts[32];
	struct timespec now;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	if (!gmtime_r(&now.tv_sec, &tm) || !strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(ts, sizeof ts, "%lld", (long long)now.tv_sec);
	fprintf(stderr, "ts=%s.%03ldZ host=%s", ts, now.tv_nsec / 1000000, opt.host);
	if (batch)
		fprintf(stderr, " batch=%s", batch);
	fprintf(stderr, " stage=dispatch event=%s msg=\"", event);
	for (const char *p = msg; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', stderr);
		fputc(*p == '\n' ? ' ' : *p, stderr);
	}
	fputs("\"\n", stderr);
}

static int running_jobs(void)
{
	int n = 0;
	for (long i = 0; i < opt.jobs; i++)
		n += slots[i].pid != 0;
	return n;
}

static struct job *free_slot(void)
{
	for (long i = 0; i < opt.jobs; i++)
		if (!slots[i].pid)
			return &slots[i];
	return NULL;
}

/* Connects and makes sure the group exists.  Returns -1, having logged why, when Redis
 * cannot be used. */
static int connect_queue(struct queue *q)
{
	if (queue_connect(q) == 0 && queue_join(q) == 0)
		return 0;
	log_event(NULL, "redis_error", "%s", q->error);
	queue_disconnect(q);
	return -1;
}

/* Logs a failed queue operation; returns rc. */
static int logged(const struct queue *q, int rc)
{
	if (rc < 0)
		log_event(NULL, "redis_error", "%s", q->error);
	return rc;
}

/* Keeps the running jobs' entries fresh so no other dispatcher takes them over. */
static int heartbeat(struct queue *q)
{
	for (long i = 0; i < opt.jobs; i++)
		if (slots[i].pid && logged(q, queue_keep(q, opt.consumer, slots[i].taken.id)) != 0)
			return -1;
	return 0;
}

static void start_job(struct job *j, const struct queue_job *taken)
{
	char attempt_s[32], last_s[2];
	pid_t pid;

	snprintf(attempt_s, sizeof attempt_s, "%ld", taken->deliveries);
	snprintf(last_s, sizeof last_s, "%d", taken->deliveries >= opt.max_attempts);
	pid = fork();
	if (pid < 0) {
		log_event(taken->batch, "fork_failed", "%s", strerror(errno));
		return;
	}
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		setenv("IMGPIPE_ATTEMPT", attempt_s, 1);
		setenv("IMGPIPE_LAST_ATTEMPT", last_s, 1);
		execl(opt.script, opt.script, taken->batch, (char *)NULL);
		log_event(taken->batch, "exec_failed", "%s: %s", opt.script, strerror(errno));
		_exit(EX_UNAVAILABLE);
	}
	j->pid = pid;
	j->taken = *taken;
	j->cancelled = 0;
	log_event(taken->batch, "started", "job %s, attempt %ld, pid %ld", taken->id,
		  taken->deliveries, (long)pid);
}

/* Collects finished jobs.  A job whose batch ended (exit 0) is acknowledged; any other
 * end leaves it pending, to be taken again after --claim-idle.  Returns -1 when Redis
 * failed (the unacknowledged job stays pending: nothing is lost). */
static int reap(struct queue *q)
{
	int status, rc = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (long i = 0; i < opt.jobs; i++) {
			struct job *j = &slots[i];
			if (j->pid != pid)
				continue;
			j->pid = 0;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				log_event(j->taken.batch, "ended", "job %s acknowledged", j->taken.id);
				if (q && logged(q, queue_ack(q, j->taken.id)) != 0)
					rc = -1;
			} else {
				log_event(j->taken.batch, "will_retry", "process-batch %s %d; job %s stays pending",
					  WIFEXITED(status) ? "exited" : "killed by signal",
					  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
					  j->taken.id);
			}
		}
	}
	return rc;
}

/* libbson's monotonic clock, in milliseconds. */
static long now_ms(void)
{
	return (long)(bson_get_monotonic_time() / 1000);
}

/* Sends SIGUSR1 to each running process-batch whose batch has been cancelled, once. */
static int watch_cancels(struct queue *q)
{
	for (long i = 0; i < opt.jobs; i++) {
		struct job *j = &slots[i];
		int on;

		if (!j->pid || j->cancelled)
			continue;
		if ((on = logged(q, queue_cancelled(q, j->taken.batch))) < 0)
			return -1;
		if (on && kill(j->pid, SIGUSR1) == 0) {
			j->cancelled = 1;
			log_event(j->taken.batch, "cancel", "cancelled: process-batch %ld told to stop",
				  (long)j->pid);
		}
	}
	return 0;
}

/* One pass of the loop: take a job if a slot is free (blocking a little while), keep
 * the running ones alive, collect the finished.  Returns -1 when Redis failed. */
static int step(struct queue *q, long *last_beat, long *last_cancel_check)
{
	long beat_ms = opt.claim_idle_ms / 3;
	long wait_ms = beat_ms < 1000 ? beat_ms : 1000;
	struct queue_job taken;
	struct job *slot = free_slot();
	int got;

	if (slot) {
		got = logged(q, queue_take(q, opt.consumer, opt.claim_idle_ms, wait_ms, &taken));
		if (got < 0)
			return -1;
		if (got && taken.batch[0])
			start_job(slot, &taken);
		else if (got)
			logged(q, queue_ack(q, taken.id)); /* no batch: drop */
	} else {
		usleep(200 * 1000);
	}
	if (now_ms() - *last_beat >= beat_ms) {
		*last_beat = now_ms();
		if (heartbeat(q) != 0)
			return -1;
	}
	if (now_ms() - *last_cancel_check >= CANCEL_CHECK_MS) {
		*last_cancel_check = now_ms();
		if (watch_cancels(q) != 0)
			return -1;
	}
	return reap(q);
}

/* Stops cleanly: no new jobs; running ones are asked to stop and stay pending (they
 * are resumable), so another dispatcher or the next start finishes them. */
static void shut_down(void)
{
	for (long i = 0; i < opt.jobs; i++)
		if (slots[i].pid)
			kill(slots[i].pid, SIGTERM);
	while (running_jobs() > 0 && wait(NULL) > 0)
		reap(NULL);
	log_event(NULL, "stopped", "the running batches stay pending");
}

/* process-batch beside this program: scripts/ in the source tree, lib/imgpipe/scripts/
 * where `make install` put it. */
static void default_script(char *buf, size_t len)
{
	static const char *const places[] = { "../scripts", "../lib/imgpipe/scripts" };
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n < 0)
		err(EX_OSERR, "/proc/self/exe");
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
		if (snprintf(buf, len, "%s/%s/process-batch", self, places[i]) >= (int)len)
			errx(EX_USAGE, "%s: path too long; use --script", self);
		if (access(buf, X_OK) == 0)
			return;
	}
	errx(EX_USAGE, "no process-batch in %s/../scripts or %s/../lib/imgpipe/scripts; use --script",
	     self, self);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "claim-idle", required_argument, NULL, 'c' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "script", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	static char script[PATH_MAX];
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int ch;

	cli_common(argc, argv, usage);
	opt.jobs = cores > 0 ? (cores < MAX_JOBS ? cores : MAX_JOBS) : 1;
	opt.claim_idle_ms = 30000;
	opt.max_attempts = 5;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j': opt.jobs = cli_long("--jobs", optarg, 1, MAX_JOBS); break;
		case 'c': opt.claim_idle_ms = 1000 * cli_long("--claim-idle", optarg, 1, 86400); break;
		case 'm': opt.max_attempts = cli_long("--max-attempts", optarg, 1, 1000); break;
		case 's': opt.script = optarg; break;
		default: cli_usage_error(usage, "unknown option");
		}
	}
	if (optind != argc)
		cli_usage_error(usage, "unexpected argument '%s'", argv[optind]);
	if (!opt.script) {
		default_script(script, sizeof script);
		opt.script = script;
	}
	if (access(opt.script, X_OK) != 0)
		err(EX_USAGE, "%s", opt.script);
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct queue q;
	struct sigaction sa = { .sa_handler = on_term };
	int reconnects = 0;

	parse_args(argc, argv);
	config_load(&cfg);
	if (queue_init(&q, config_require("REDIS_URL", cfg.redis_url)) != 0)
		errx(EX_USAGE, "%s", q.error);
	if (gethostname(opt.host, sizeof opt.host) != 0)
		snprintf(opt.host, sizeof opt.host, "localhost");
	snprintf(opt.consumer, sizeof opt.consumer, "%s-%ld", opt.host, (long)getpid());
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	log_event(NULL, "start", "consumer %s, %ld jobs at once, taking over jobs idle %ld s",
		  opt.consumer, opt.jobs, opt.claim_idle_ms / 1000);

	while (!stopping) {
		long last_beat = now_ms(), last_cancel_check = now_ms();

		if (connect_queue(&q) == 0) {
			reconnects = 0;
			while (!stopping && step(&q, &last_beat, &last_cancel_check) == 0)
				;
			queue_disconnect(&q);
		}
		if (stopping)
			break;
		reap(NULL);
		/* Redis went away: reconnect with a growing pause, up to 5 s. */
		backoff_sleep(200, 5000, ++reconnects);
	}
	shut_down();
	config_free(&cfg);
	return EX_OK;
}
