/* imgpipe-dispatch: takes jobs from the Redis stream imgpipe:jobs and runs
 * scripts/process-batch for each, up to --jobs at once.  A job plans a batch (its rows,
 * then one job for each chunk of them) or runs one chunk, so one batch spreads over every
 * dispatcher on every host.
 *
 * Reliability comes from a Redis Streams consumer group: a job read with XREADGROUP stays
 * pending until XACK, which is sent only when process-batch says the job is done.  A run
 * holds its job's lease (queue.h), which the heartbeat renews three times per --claim-idle,
 * together with the entry's idle time.  A dispatcher that dies stops doing that, and after
 * --claim-idle any other dispatcher takes the job over with XAUTOCLAIM and a new lease.  A
 * dispatcher whose lease went to another run (it lost Redis, or was stopped, for longer than
 * --claim-idle) stops its own run and leaves the job alone; process-batch watches the lease
 * too.  A job delivered --max-attempts times without ending is given up: its batch ends
 * failed with the reason.
 *
 * A batch cancelled through the CGI is marked in Redis; the dispatcher checks the marks
 * of its jobs' batches every second and sends those runs SIGUSR1, on which process-batch
 * stops its image pipelines and ends the batch.
 *
 * The sweeper (sweep.c) re-queues batches that no job will end; the deliverer
 * (deliver.c), started every second, attempts the webhook deliveries that are due.  Both
 * run in processes of their own.  The log (log.c) is logfmt, one line an event. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff.h"
#include "deliver.h"
#include "imgpipe.h"
#include "log.h"
#include "queue.h"
#include "sweep.h"

#define MAX_JOBS 64
#define SWEEP_PERIOD_MAX_MS 60000
#define CANCEL_CHECK_MS 1000
#define DELIVER_PERIOD_MS 1000  /* a webhook waits at most about this long once it is due */
#define CHILD_POLL_MS 50        /* how soon a run that ended frees its slot, when all are busy */

static const char usage[] =
	"usage: imgpipe-dispatch [--jobs N] [--claim-idle SECONDS] [--max-attempts N]\n"
	"                        [--sweep-after SECONDS] [--script PATH]\n"
	"Runs process-batch for each job queued on the Redis stream " QUEUE_STREAM ".\n"
	"  --jobs N               jobs at once (default: the number of cores)\n"
	"  --claim-idle SECONDS   take over jobs of a dispatcher silent this long (default 30)\n"
	"  --max-attempts N       deliveries of one job before its batch is failed (default 5)\n"
	"  --sweep-after SECONDS  queue again a batch with no job, unchanged this long\n"
	"                         (default 300; 0: never)\n"
	"  --script PATH          the batch runner (default: scripts/process-batch of this install)\n"
	"Environment: REDIS_URL, MONGODB_URI (for the sweeper), IMGPIPE_WEBHOOK_RETRY_FOR (seconds a\n"
	"webhook delivery is retried, default 3600), and everything process-batch needs.\n";

struct job {
	pid_t pid;              /* 0 when the slot is free */
	struct queue_job taken;
	struct queue_lease lease;
	long lease_until;       /* monotonic ms at which the lease expires unless renewed */
	int lost;               /* the lease went to another run: this run was told to stop */
	int giving_up;          /* this run ends the batch failed: the job's attempts are spent */
	int cancelled;          /* it has been sent SIGUSR1 */
};

static struct {
	long jobs, claim_idle_ms, max_attempts, sweep_after_ms;
	const char *script;
	char consumer[128];
} opt;

static struct config cfg;
static struct job slots[MAX_JOBS];
static pid_t sweeper;           /* the running sweep, or 0 */
static pid_t deliverer;         /* the running webhook deliverer, or 0 */
static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

/* libbson's monotonic clock, in milliseconds. */
static long now_ms(void)
{
	return (long)(bson_get_monotonic_time() / 1000);
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
	log_event(NULL, NULL, "redis_error", "%s", q->error);
	queue_disconnect(q);
	return -1;
}

/* Logs a failed queue operation; returns rc. */
static int logged(const struct queue *q, int rc)
{
	if (rc < 0)
		log_event(NULL, NULL, "redis_error", "%s", q->error);
	return rc;
}

/* Logs an event of the job in slot j. */
#define log_job(j, event, ...) log_event((j)->taken.batch, (j)->taken.chunk, event, __VA_ARGS__)

/* Tells a run to stop, as the job is no longer its own; its end is then not reported. */
static void stop_lost(struct job *j, const char *event, const char *why)
{
	kill(j->pid, SIGTERM);
	j->lost = 1;
	log_job(j, event, "%s; stopping its run %lld", why, j->lease.token);
}

/* Keeps the running jobs' leases and entries fresh so no other dispatcher takes them
 * over, and stops the runs whose lease was lost. */
static int heartbeat(struct queue *q)
{
	for (long i = 0; i < opt.jobs; i++) {
		struct job *j = &slots[i];
		int rc;

		if (!j->pid || j->lost)
			continue;
		rc = logged(q, queue_keep(q, opt.consumer, &j->taken, &j->lease, opt.claim_idle_ms));
		if (rc < 0)
			return -1;
		if (rc == 1)
			stop_lost(j, "lease_lost", "lease lost (the job was taken over)");
		else
			j->lease_until = now_ms() + opt.claim_idle_ms;
	}
	return 0;
}

/* While Redis is away no lease can be renewed: a run whose lease has expired may be
 * taken over elsewhere, so it stops. */
static void expire_leases(void)
{
	for (long i = 0; i < opt.jobs; i++)
		if (slots[i].pid && !slots[i].lost && now_ms() >= slots[i].lease_until)
			stop_lost(&slots[i], "lease_expired", "lease expired while Redis was unreachable");
}

/* Runs the job in slot j under lease: script BATCH, or script BATCH CHUNK ENDING.  With
 * give_up (the reason its attempts are spent), the run only ends the batch failed. */
static void start_job(struct job *j, const struct queue_job *taken, const struct queue_lease *lease,
		      const char *give_up)
{
	char attempt_s[32], last_s[2], token_s[32], ttl_s[32];
	const char *ending = taken->ending[0] ? taken->ending : "0";
	pid_t pid;

	snprintf(attempt_s, sizeof attempt_s, "%ld", taken->deliveries);
	snprintf(last_s, sizeof last_s, "%d", taken->deliveries >= opt.max_attempts);
	snprintf(token_s, sizeof token_s, "%lld", lease->token);
	snprintf(ttl_s, sizeof ttl_s, "%ld", opt.claim_idle_ms);
	pid = fork();
	if (pid < 0) {
		log_event(taken->batch, taken->chunk, "fork_failed", "%s", strerror(errno));
		return;
	}
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		setenv("IMGPIPE_ATTEMPT", attempt_s, 1);
		setenv("IMGPIPE_LAST_ATTEMPT", last_s, 1);
		setenv("IMGPIPE_LEASE", lease->key, 1);
		setenv("IMGPIPE_FENCE", token_s, 1);
		setenv("IMGPIPE_LEASE_MS", ttl_s, 1);
		if (give_up)
			setenv("IMGPIPE_GIVE_UP", give_up, 1);
		else
			unsetenv("IMGPIPE_GIVE_UP");
		if (taken->chunk[0])
			execl(opt.script, opt.script, taken->batch, taken->chunk, ending, (char *)NULL);
		else
			execl(opt.script, opt.script, taken->batch, (char *)NULL);
		log_event(taken->batch, taken->chunk, "exec_failed", "%s: %s", opt.script, strerror(errno));
		_exit(EX_UNAVAILABLE);
	}
	j->taken = *taken;      /* a give-up run reuses its slot's own: an exact overlap */
	j->lease = *lease;
	j->pid = pid;
	j->lease_until = now_ms() + opt.claim_idle_ms;
	j->lost = 0;
	j->giving_up = give_up != NULL;
	j->cancelled = 0;
	log_job(j, give_up ? "give_up" : "started", "job %s, attempt %ld, run %lld, pid %ld%s%s",
		taken->id, taken->deliveries, lease->token, (long)pid, give_up ? ": " : "",
		give_up ? give_up : "");
}

/* Starts the run that ends the batch failed, with docs/design.md's "gave up after N attempts:
 * WHY" as its message. */
static void give_up(struct job *j, const struct queue_job *taken, const struct queue_lease *lease,
		    long attempts, const char *why)
{
	char msg[512], at[64] = "";

	if (taken->chunk[0])
		snprintf(at, sizeof at, " at chunk %s", taken->chunk);
	snprintf(msg, sizeof msg, "gave up after %ld attempt%s%s: %s", attempts,
		 attempts == 1 ? "" : "s", at, why);
	start_job(j, taken, lease, msg);
}

/* What became of a run that did not exit 0, for the log and a give-up message. */
static void describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "process-batch exited %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "process-batch killed by signal %d", WTERMSIG(status));
}

/* Settles the end of the run in slot j.  Exit 0: the job is done, acknowledged.  A failed
 * last attempt starts the run that gives up.  Any other failure leaves the job pending,
 * taken again after --claim-idle; a stopping dispatcher hands it back at once.  q is NULL
 * while Redis is away: the job then stays pending. */
static int settle(struct queue *q, struct job *j, int status)
{
	char why[96];
	int rc = 0;

	if (j->lost) {
		log_job(j, "run_stopped", "run %lld stopped", j->lease.token);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		if (!q)
			log_job(j, "ended", "job %s stays pending: Redis is unreachable", j->taken.id);
		else if ((rc = logged(q, queue_ack(q, &j->taken, &j->lease))) == 0)
			log_job(j, "ended", "job %s acknowledged", j->taken.id);
		else if (rc == 1)
			log_job(j, "ack_lost", "lease lost before the acknowledgement; job %s will run again",
				j->taken.id);
		return rc < 0 ? -1 : 0;
	}
	describe(status, why, sizeof why);
	if (q && !stopping && !j->giving_up && j->taken.deliveries >= opt.max_attempts) {
		log_job(j, "last_attempt_failed", "%s on the last attempt", why);
		give_up(j, &j->taken, &j->lease, j->taken.deliveries, why);
		return 0;
	}
	if (q && stopping) {
		rc = logged(q, queue_release(q, opt.consumer, &j->taken, &j->lease, opt.claim_idle_ms));
		log_job(j, rc == 0 ? "handed_back" : "will_retry", "%s; job %s %s", why, j->taken.id,
			rc == 0 ? "handed back" : "left for a take-over");
	} else {
		log_job(j, "will_retry", "%s; job %s stays pending", why, j->taken.id);
		if (q)
			rc = logged(q, queue_lease_drop(q, &j->lease));
	}
	return rc < 0 ? -1 : 0;
}

/* Collects finished runs (and the sweeper).  Returns -1 when Redis failed (an
 * unacknowledged job stays pending: nothing is lost). */
static int reap(struct queue *q)
{
	int status, rc = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == sweeper)
			sweeper = 0;
		if (pid == deliverer)
			deliverer = 0;
		for (long i = 0; i < opt.jobs; i++) {
			struct job *j = &slots[i];
			if (j->pid != pid)
				continue;
			j->pid = 0;
			if (settle(q, j, status) != 0) {
				q = NULL;       /* Redis failed: what is left stays pending */
				rc = -1;
			}
		}
	}
	return rc;
}

/* Whether a run of this job (the same batch and chunk) is still a child of this
 * dispatcher: one told to stop when its lease lapsed may not have exited yet, and its
 * lease no longer keeps the next run out. */
static int still_running(const struct queue_job *taken)
{
	for (long i = 0; i < opt.jobs; i++)
		if (slots[i].pid && strcmp(slots[i].taken.batch, taken->batch) == 0 &&
		    strcmp(slots[i].taken.chunk, taken->chunk) == 0)
			return 1;
	return 0;
}

/* Runs the job just taken, if its lease is free: a run of the same job that another
 * dispatcher started may still hold it (its job was queued twice), and then the job is
 * given back for later, its delivery not counted. */
static int run_taken(struct queue *q, struct job *slot, const struct queue_job *taken)
{
	struct queue_lease lease;
	int rc;

	if (!taken->batch[0]) {
		log_event(NULL, NULL, "dropped", "job %s has no batch", taken->id);
		return logged(q, queue_ack(q, taken, NULL));
	}
	if (still_running(taken)) {
		log_event(taken->batch, taken->chunk, "run_not_exited",
			  "an earlier run of it has not exited yet; job %s given back for later", taken->id);
		return logged(q, queue_release(q, opt.consumer, taken, NULL, 0));
	}
	rc = logged(q, queue_lease_take(q, taken, opt.claim_idle_ms, &lease));
	if (rc < 0)
		return -1;
	if (rc == 0) {
		log_event(taken->batch, taken->chunk, "lease_held",
			  "another run of it holds its lease; job %s given back for later", taken->id);
		return logged(q, queue_release(q, opt.consumer, taken, NULL, 0));
	}
	if (taken->deliveries > opt.max_attempts)
		give_up(slot, taken, &lease, taken->deliveries - 1, "no attempt ended");
	else
		start_job(slot, taken, &lease, NULL);
	return 0;
}

/* How often to sweep: twice in --sweep-after, at most a minute apart. */
static long sweep_period_ms(void)
{
	return opt.sweep_after_ms / 2 < SWEEP_PERIOD_MAX_MS ? opt.sweep_after_ms / 2 : SWEEP_PERIOD_MAX_MS;
}

/* Runs a periodic duty in a process of its own, so that a slow MongoDB or webhook
 * receiver never delays the heartbeats.  Returns its pid, or 0 when it could not start. */
static pid_t start_apart(int (*duty)(void))
{
	pid_t pid = fork();

	if (pid < 0) {
		log_event(NULL, NULL, "fork_failed", "%s", strerror(errno));
		return 0;
	}
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		_exit(duty());
	}
	return pid;
}

static int sweep_duty(void)
{
	return sweep(&cfg, opt.consumer, opt.sweep_after_ms, sweep_period_ms());
}

static int deliver_duty(void)
{
	return deliver_webhooks(&cfg);
}

/* Sends SIGUSR1 to each run whose batch has been cancelled, once. */
static int watch_cancels(struct queue *q)
{
	for (long i = 0; i < opt.jobs; i++) {
		struct job *j = &slots[i];
		int on;

		if (!j->pid || j->cancelled || j->lost)
			continue;
		if ((on = logged(q, queue_cancelled(q, j->taken.batch))) < 0)
			return -1;
		if (on && kill(j->pid, SIGUSR1) == 0) {
			j->cancelled = 1;
			log_job(j, "cancel", "cancelled: run %lld told to stop", j->lease.token);
		}
	}
	return 0;
}

/* When each periodic duty of the loop last ran (monotonic ms). */
struct duties {
	long beat, cancel_check, sweep, deliver;
};

/* Waits up to ms, or less once a child has exited (it is left for reap to collect): with
 * every slot busy, the next job starts as soon as a run ends, not a whole wait later. */
static void wait_for_child(long ms)
{
	for (long left = ms; left > 0; left -= CHILD_POLL_MS) {
		siginfo_t exited = { 0 };

		if (waitid(P_ALL, 0, &exited, WEXITED | WNOHANG | WNOWAIT) == 0 && exited.si_pid != 0)
			return;
		sleep_ms(left < CHILD_POLL_MS ? left : CHILD_POLL_MS);
	}
}

/* One pass of the loop: take a job if a slot is free (blocking a little while), keep
 * the running ones alive, pass cancels on, sweep and deliver webhooks when due, collect
 * the finished.
 * Returns -1 when Redis failed. */
static int step(struct queue *q, struct duties *last)
{
	long beat_ms = opt.claim_idle_ms / 3;
	long wait_ms = beat_ms / 2 < 1000 ? beat_ms / 2 : 1000;
	struct queue_job taken;
	struct job *slot = free_slot();
	int got;

	if (slot) {
		got = logged(q, queue_take(q, opt.consumer, opt.claim_idle_ms, wait_ms, &taken));
		if (got < 0 || (got && run_taken(q, slot, &taken) != 0))
			return -1;
	} else {
		wait_for_child(wait_ms);
	}
	if (now_ms() - last->beat >= beat_ms) {
		last->beat = now_ms();
		if (heartbeat(q) != 0)
			return -1;
	}
	if (now_ms() - last->cancel_check >= CANCEL_CHECK_MS) {
		last->cancel_check = now_ms();
		if (watch_cancels(q) != 0)
			return -1;
	}
	if (opt.sweep_after_ms && !sweeper && now_ms() - last->sweep >= sweep_period_ms()) {
		last->sweep = now_ms();
		sweeper = start_apart(sweep_duty);
	}
	if (!deliverer && now_ms() - last->deliver >= DELIVER_PERIOD_MS) {
		last->deliver = now_ms();
		deliverer = start_apart(deliver_duty);
	}
	return reap(q);
}

/* Stops cleanly: no new jobs; running ones are asked to stop, then handed back (or
 * acknowledged if they ended meanwhile), so another dispatcher finishes them at once;
 * the period's sweep, if this one took it, is given up too. */
static void shut_down(struct queue *q)
{
	int connected = q->redis != NULL || connect_queue(q) == 0;

	for (long i = 0; i < opt.jobs; i++)
		if (slots[i].pid)
			kill(slots[i].pid, SIGTERM);
	while (running_jobs() > 0) {
		if (reap(connected ? q : NULL) != 0)
			connected = 0;
		sleep_ms(50);
	}
	if (connected)
		logged(q, sweep_unlock(q, opt.consumer));
	queue_disconnect(q);
	log_event(NULL, NULL, "stopped", "the running jobs were handed back");
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
		{ "sweep-after", required_argument, NULL, 'w' },
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
	opt.sweep_after_ms = 300000;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j': opt.jobs = cli_long("--jobs", optarg, 1, MAX_JOBS); break;
		case 'c': opt.claim_idle_ms = 1000 * cli_long("--claim-idle", optarg, 1, 86400); break;
		case 'm': opt.max_attempts = cli_long("--max-attempts", optarg, 1, 1000); break;
		case 'w': opt.sweep_after_ms = 1000 * cli_long("--sweep-after", optarg, 0, 86400); break;
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
	struct queue q;
	struct sigaction sa = { .sa_handler = on_term };
	char host[64];
	int reconnects = 0;
	struct duties last = { .sweep = now_ms() - SWEEP_PERIOD_MAX_MS };   /* a sweep at once */

	parse_args(argc, argv);
	config_load(&cfg);
	if (queue_init(&q, config_require("REDIS_URL", cfg.redis_url)) != 0)
		errx(EX_USAGE, "%s", q.error);
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "localhost");
	snprintf(opt.consumer, sizeof opt.consumer, "%s-%ld", host, (long)getpid());
	log_init(host);
	if (cfg.webhook_retry_for < 0)
		errx(EX_USAGE, "IMGPIPE_WEBHOOK_RETRY_FOR must be a number of seconds, 1 to 2592000");
	if (!cfg.mongodb_uri && opt.sweep_after_ms) {
		log_event(NULL, NULL, "no_sweeping", "MONGODB_URI is not set");
		opt.sweep_after_ms = 0;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	log_event(NULL, NULL, "start", "consumer %s, %ld jobs at once, taking over jobs idle %ld s",
		  opt.consumer, opt.jobs, opt.claim_idle_ms / 1000);

	while (!stopping) {
		last.beat = last.cancel_check = now_ms();
		if (connect_queue(&q) == 0) {
			reconnects = 0;
			while (!stopping && step(&q, &last) == 0)
				;
			if (stopping)
				break;
			queue_disconnect(&q);
		}
		reap(NULL);
		expire_leases();
		/* Redis went away: reconnect with a growing pause, up to 5 s. */
		backoff_sleep(200, 5000, ++reconnects);
		expire_leases();
	}
	shut_down(&q);
	config_free(&cfg);
	return EX_OK;
}
