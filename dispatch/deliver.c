/* The webhook deliverer: every dispatcher runs it in a process of its own once a second.
 * It claims each delivery that is due (queue_webhook_claim: no two deliverers on any host
 * attempt one delivery at once), makes one attempt with `notify --attempts 1` (the event
 * carries its webhook_id, so every attempt sends the same one), records the attempt on the
 * batch with dbrecord, then removes the delivery, or reschedules it with backoff until
 * IMGPIPE_WEBHOOK_RETRY_FOR after it was queued, when it is given up. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff.h"
#include "db.h"
#include "deliver.h"
#include "log.h"

#define CLAIM_MS 60000          /* an attempt's claim: notify's time limit and dbrecord, with room */
#define ATTEMPT_TIMEOUT "10"    /* seconds, notify's --timeout */
#define RETRY_FIRST_MS 1000
#define RETRY_CAP_MS 300000
#define RESULT_MAX 65536        /* notify's result record, one line */

/* Reads fd to its end into out (at most len - 1 bytes kept, NUL-terminated). */
static void read_all(int fd, char *out, size_t len)
{
	size_t have = 0;
	char skip[4096];
	ssize_t n;

	for (;;) {
		char *to = have + 1 < len ? out + have : skip;
		size_t room = have + 1 < len ? len - 1 - have : sizeof skip;
		if ((n = read(fd, to, room)) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (to == out + have)
			have += (size_t)n;
	}
	out[have] = '\0';
}

/* Runs argv (found on PATH) with the line input on its stdin, its stdout into out (see
 * read_all), or to /dev/null when out is NULL.  The input is written before the output
 * is read: the stages read a line before they answer it.  Returns the exit status
 * (128 + the signal that killed it), or -1 when it could not run. */
static int run_filter(char *const argv[], const char *input, char *out, size_t len)
{
	int in[2], res[2] = { -1, -1 }, status;
	pid_t pid;

	if (pipe(in) != 0)
		return -1;
	if (out && pipe(res) != 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	if ((pid = fork()) == 0) {
		int to = out ? res[1] : open("/dev/null", O_WRONLY);
		signal(SIGPIPE, SIG_DFL);
		if (to < 0 || dup2(in[0], 0) < 0 || dup2(to, 1) < 0)
			_exit(EX_OSERR);
		close(in[1]);
		if (out)
			close(res[0]);
		execvp(argv[0], argv);
		_exit(EX_UNAVAILABLE);
	}
	close(in[0]);
	if (out)
		close(res[1]);
	if (pid > 0 && (fd_write_all(in[1], input, strlen(input)) != 0 || fd_write_all(in[1], "\n", 1) != 0))
		log_event(NULL, NULL, "webhook_error", "%s: its input: %s", argv[0], strerror(errno));
	close(in[1]);
	if (out) {
		if (pid > 0)
			read_all(res[0], out, len);
		close(res[0]);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* What an attempt came to: done (delivered, or skipped: no URL), refused (the URL can
 * never work), to retry, or given up (its time ran out). */
enum verdict { DONE, REFUSED, RETRY, GIVE_UP };

/* The attempt's entry for the batch's webhook_deliveries: notify's result record (or,
 * when it wrote none, one saying how it ended) with the attempt's number in place of
 * notify's count of attempts (always 1), the event's ending, and gave_up on the last. */
static bson_t *attempt_entry(const bson_t *event, const struct queue_webhook *w, const char *result,
			     int rc, enum verdict v)
{
	bson_t *notified = bson_new_from_json((const uint8_t *)result, -1, NULL);
	bson_t *entry = bson_new();

	if (notified) {
		bson_copy_to_excluding_noinit(notified, entry, "attempts", NULL);
		bson_destroy(notified);
	} else {
		BSON_APPEND_UTF8(entry, "batch_id", rec_str(event, "batch_id") ? rec_str(event, "batch_id") : "");
		BSON_APPEND_UTF8(entry, "event", rec_str(event, "event") ? rec_str(event, "event") : "");
		BSON_APPEND_UTF8(entry, "delivery", w->id);
		BSON_APPEND_BOOL(entry, "delivered", false);
		if (rc < 0)
			BSON_APPEND_UTF8(entry, "error", "notify: could not run");
		else {
			char why[64];
			snprintf(why, sizeof why, "notify: exit %d, no result", rc);
			BSON_APPEND_UTF8(entry, "error", why);
		}
	}
	BSON_APPEND_INT32(entry, "attempt", (int32_t)w->attempt);
	BSON_APPEND_INT64(entry, "ending", rec_int(event, "ending", 0));
	if (v == GIVE_UP)
		BSON_APPEND_BOOL(entry, "gave_up", true);
	return entry;
}

/* Records the attempt on its batch (dbrecord's delivery kind). */
static void record_attempt(const bson_t *entry, const char *batch)
{
	char *const dbrecord[] = { "dbrecord", NULL };
	char *json = bson_as_relaxed_extended_json(entry, NULL);
	int rc;

	if (!json) {
		log_event(batch, NULL, "webhook_not_recorded", "cannot serialize the attempt");
		return;
	}
	if ((rc = run_filter(dbrecord, json, NULL, 0)) != 0)
		log_event(batch, NULL, "webhook_not_recorded", "dbrecord exited %d", rc);
	bson_free(json);
}

/* The verdict on notify's exit rc, at the delivery's deadline. */
static enum verdict judge(int rc, long long deadline_ms)
{
	if (rc == EX_OK)
		return DONE;
	if (rc == EX_DATAERR)
		return REFUSED;
	return db_now() < deadline_ms ? RETRY : GIVE_UP;
}

/* One attempt of the claimed delivery w, recorded, and its verdict carried out.  Returns
 * -1 when Redis failed (the claim then lapses: the delivery is only delayed). */
static int attempt(struct queue *q, const struct queue_webhook *w, long long retry_for_ms)
{
	char *const notify[] = { "notify", "--attempts", "1", "--timeout", ATTEMPT_TIMEOUT, NULL };
	static char result[RESULT_MAX];
	bson_t *event = bson_new_from_json((const uint8_t *)w->event, -1, NULL);
	long long deadline_ms = w->queued_at_ms + retry_for_ms, next_ms;
	const char *batch;
	bson_t *entry;
	enum verdict v;
	int rc;

	if (!event) {
		log_event(NULL, NULL, "webhook_dropped", "delivery %s: its event is not JSON", w->id);
		return queue_webhook_remove(q, w->id);
	}
	batch = rec_str(event, "batch_id");
	rc = run_filter(notify, w->event, result, sizeof result);
	v = judge(rc, deadline_ms);
	entry = attempt_entry(event, w, result, rc, v);
	record_attempt(entry, batch);
	if (v == RETRY) {
		next_ms = db_now() + backoff_ms(RETRY_FIRST_MS, RETRY_CAP_MS, (int)w->attempt);
		if (next_ms > deadline_ms)
			next_ms = deadline_ms;      /* the last attempt at the deadline */
		rc = queue_webhook_retry(q, w->id, next_ms);
		log_event(batch, NULL, "webhook_retry", "delivery %s: attempt %ld: %s; again in %lld ms",
			  w->id, w->attempt, rec_str(entry, "error"), next_ms - db_now());
	} else {
		rc = queue_webhook_remove(q, w->id);
		if (rc == 0 && v != DONE)
			rc = queue_count(q, "webhook_deliveries_failed", 1);
		log_event(batch, NULL, v == DONE ? "webhook_done" : "webhook_failed", "delivery %s: attempt %ld: %s",
			  w->id, w->attempt, rec_str(entry, "error") ? rec_str(entry, "error") : "delivered");
	}
	bson_destroy(entry);
	bson_destroy(event);
	return rc;
}

int deliver_webhooks(const struct config *cfg)
{
	long long retry_for_ms = 1000LL * cfg->webhook_retry_for;
	struct queue_webhook w;
	struct queue q;
	int got;

	signal(SIGPIPE, SIG_IGN);       /* a stage that dies early is an exit status, not our end */
	if (queue_init(&q, cfg->redis_url) || queue_connect(&q)) {
		log_event(NULL, NULL, "webhook_error", "redis: %s", q.error);
		return 1;
	}
	while ((got = queue_webhook_claim(&q, db_now(), db_now() + CLAIM_MS, &w)) == 1) {
		int rc = attempt(&q, &w, retry_for_ms);
		queue_webhook_free(&w);
		if (rc != 0) {
			got = -1;
			break;
		}
	}
	if (got < 0)
		log_event(NULL, NULL, "webhook_error", "redis: %s", q.error);
	queue_disconnect(&q);
	return got < 0;
}
