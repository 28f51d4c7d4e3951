/* The sweeper: a batch accepted with a 202 always reaches an end, even when its job was
 * lost (the CGI died between creating the batch and queueing it, Redis lost its last
 * writes) or all its chunk jobs were.  Each dispatcher sweeps twice in --sweep-after, but
 * a lock in Redis lets one of them a period do it.  A sweep is one query on batches by
 * status, with an index, and one pass over the stream: since acknowledged entries are
 * deleted, the stream holds only the jobs queued or running.  A batch that changed within
 * --sweep-after is left alone: its CGI may still be about to queue it. */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "queue.h"
#include "sweep.h"

#define SWEEP_LOCK "imgpipe:sweep"
#define SWEEP_MAX 1000          /* batches a sweep; the next sweep takes the rest */

/* The stale batches' ids, sorted, and which of them have a job on the stream. */
struct stale {
	char *ids[SWEEP_MAX];
	int queued[SWEEP_MAX];
	size_t n;
};

static int by_id(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int mark_queued(const struct queue_job *job, void *arg)
{
	struct stale *s = arg;
	const char *id = job->batch;
	char **hit = bsearch(&id, s->ids, s->n, sizeof *s->ids, by_id);

	if (hit)
		s->queued[hit - s->ids] = 1;
	return 0;
}

/* Reads into s the batches not ended and unchanged since before (ms since the epoch),
 * by the index on status and updatedAt (made first; a no-op when it exists). */
static int find_stale(struct db *d, int64_t before, struct stale *s, bson_error_t *err)
{
	bson_t *index = BCON_NEW("status", BCON_INT32(1), "updatedAt", BCON_INT32(1));
	bson_t *filter = BCON_NEW("status", "{", "$in", "[", BCON_UTF8("in queue"), BCON_UTF8("in progress"), "]", "}",
				  "updatedAt", "{", "$lt", BCON_DATE_TIME(before), "}");
	bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(SWEEP_MAX));
	mongoc_cursor_t *c = NULL;
	const bson_t *doc;
	const char *id;
	int rc = -1;

	if (db_create_index(d, "batches", index, "status_1_updatedAt_1", err) == 0) {
		c = mongoc_collection_find_with_opts(d->batches, filter, opts, NULL);
		while (s->n < SWEEP_MAX && mongoc_cursor_next(c, &doc))
			if ((id = rec_str(doc, "_id")))
				s->ids[s->n++] = bson_strdup(id);
		rc = mongoc_cursor_error(c, err) ? -1 : 0;
		mongoc_cursor_destroy(c);
	}
	bson_destroy(opts);
	bson_destroy(filter);
	bson_destroy(index);
	qsort(s->ids, s->n, sizeof *s->ids, by_id);
	return rc;
}

/* Queues the planning job of each stale batch with no job; returns -1 on a Redis error. */
static int requeue(struct queue *q, struct stale *s, long after_ms)
{
	if (queue_scan(q, mark_queued, s) != 0)
		return -1;
	for (size_t i = 0; i < s->n; i++) {
		if (s->queued[i])
			continue;
		if (queue_push(q, s->ids[i]) != 0)
			return -1;
		log_event(s->ids[i], NULL, "swept", "no job queued or running, unchanged for %ld s; queued again",
			  after_ms / 1000);
	}
	return 0;
}

/* Finds the stale batches and queues those without a job.  Returns -1, having logged
 * why, when a backend failed. */
static int sweep_batches(struct queue *q, const struct config *cfg, long after_ms)
{
	static struct stale s;
	struct db d;
	bson_error_t err;
	int rc = -1;

	if (db_open(&d, cfg, &err) != 0) {
		log_event(NULL, NULL, "sweep_failed", "MongoDB: %s", err.message);
		return -1;
	}
	if (find_stale(&d, db_now() - after_ms, &s, &err) != 0)
		log_event(NULL, NULL, "sweep_failed", "MongoDB: %s", err.message);
	else if (requeue(q, &s, after_ms) != 0)
		log_event(NULL, NULL, "sweep_failed", "redis: %s", q->error);
	else
		rc = 0;
	for (size_t i = 0; i < s.n; i++)
		bson_free(s.ids[i]);
	db_close(&d);
	return rc;
}

int sweep(const struct config *cfg, const char *owner, long after_ms, long period_ms)
{
	struct queue q;
	int locked, rc;

	if (queue_init(&q, cfg->redis_url) || queue_connect(&q)) {
		log_event(NULL, NULL, "sweep_failed", "redis: %s", q.error);
		return 1;
	}
	locked = queue_lock(&q, SWEEP_LOCK, owner, period_ms);
	if (locked < 0)
		log_event(NULL, NULL, "sweep_failed", "redis: %s", q.error);
	rc = locked == 1 ? sweep_batches(&q, cfg, after_ms) : locked;
	queue_disconnect(&q);
	return rc == 0 ? 0 : 1;
}

int sweep_unlock(struct queue *q, const char *owner)
{
	return queue_unlock(q, SWEEP_LOCK, owner) < 0 ? -1 : 0;
}
