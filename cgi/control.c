/* POST /status/ID/retry and POST /status/ID/cancel: what operators ask of a batch.
 * MongoDB first, where one findAndModify checks the batch's state and changes it (so two
 * requests at once cannot both win), then Redis: a retry queues the batch's job again, a
 * cancel marks the batch for the dispatcher that runs it, which stops its process-batch
 * within a second.  Answered 202 with the batch's status; a browser (whose buttons on
 * the status page post here) is sent back to that page. */
#include <string.h>

#include "cgi.h"
#include "db.h"
#include "queue.h"
#include "ui.h"

/* 202 {"batch_id", "status", "status_url"}, or for a browser 303 to the status page. */
static void accepted(const char *id, const char *status)
{
	char path[64], location[96];
	bson_t *doc;

	snprintf(path, sizeof path, "/status/%s", id);
	if (wants_html()) {
		ui_see_other(path);
		return;
	}
	snprintf(location, sizeof location, "Location: %s\n", path);
	doc = BCON_NEW("batch_id", BCON_UTF8(id), "status", BCON_UTF8(status),
		       "status_url", BCON_UTF8(path));
	reply_json(202, location, doc);
	bson_destroy(doc);
}

/* Puts the ended batch back in queue and queues its job; undoes the first when the
 * second fails, so that the batch is never left in queue without a job. */
static void retry_batch(struct db *d, struct queue *q, const char *id)
{
	bson_t before;
	bson_error_t err;
	int rc = db_batch_retry(d, id, &before, &err);

	if (rc == 1) {
		reply_error(404, NULL, "no batch %s", id);
	} else if (rc == 2) {
		reply_error(409, NULL, "batch %s is running (in queue or in progress): retry it once it has ended", id);
	} else if (rc < 0) {
		reply_unavailable("MongoDB", "%s", err.message);
	} else {
		/* a cancel of an earlier ending must not stop this one */
		if (queue_cancel(q, id, 0) == 0 && queue_push(q, id) == 0) {
			accepted(id, "in queue");
		} else {
			reply_unavailable("Redis", "%s", q->error);
			if (db_batch_unretry(d, id, &before, &err) != 0)
				warnx("batch %s left in queue without a job: %s", id, err.message);
		}
		bson_destroy(&before);
	}
}

/* Ends a queued batch at once, or asks the running one to stop.  A queued batch is
 * marked in Redis too: its process-batch may have started in the meantime. */
static void cancel_batch(struct db *d, struct queue *q, const char *id)
{
	bson_error_t err;
	int ended, rc = db_batch_cancel(d, id, &ended, &err);

	if (rc == 1)
		reply_error(404, NULL, "no batch %s", id);
	else if (rc == 2)
		reply_error(409, NULL, "batch %s has ended: there is nothing to cancel", id);
	else if (rc < 0)
		reply_unavailable("MongoDB", "%s", err.message);
	else if (queue_cancel(q, id, 1) != 0)
		/* recorded all the same: process-batch ends the batch cancelled when its run ends */
		reply_unavailable("Redis", "%s", q->error);
	else
		accepted(id, ended ? "failed" : "in progress");
}

/* Connects to both (a backend that is down costs nothing to undo), then acts on a batch
 * of the request's token. */
static void control(const struct request *rq, const char *id,
		    void (*act)(struct db *, struct queue *, const char *))
{
	struct queue q;
	struct db d;
	bson_error_t err;

	if (!batch_id_valid(id)) {
		reply_error(404, NULL, "no such batch: a batch id is %d lowercase hex digits",
			    BATCH_ID_LEN);
		return;
	}
	if (!rq->cfg->mongodb_uri) {
		reply_unavailable("MongoDB", "MONGODB_URI is not set");
		return;
	}
	if (queue_init(&q, rq->cfg->redis_url) || queue_connect(&q)) {
		reply_unavailable("Redis", "%s", q.error);
		return;
	}
	if (db_open(&d, rq->cfg, &err)) {
		reply_unavailable("MongoDB", "%s", err.message);
	} else {
		if (batch_owned(&d, id, rq->owner))
			act(&d, &q, id);
		db_close(&d);
	}
	queue_disconnect(&q);
}

void retry(const struct request *rq, const char *id)
{
	control(rq, id, retry_batch);
}

void cancel(const struct request *rq, const char *id)
{
	control(rq, id, cancel_batch);
}
