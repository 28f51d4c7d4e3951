/* The job queue between imgpipe.cgi and imgpipe-dispatch, on Redis through hiredis: one
 * entry a batch, with the field "batch" holding its id, on the stream imgpipe:jobs, read by
 * the consumer group "dispatchers".  A stream rather than a list, so that a job a
 * dispatcher took but did not finish stays pending until it is acknowledged, and is taken
 * again when its dispatcher falls silent.
 *   imgpipe.cgi:      queue_init, queue_connect, queue_push, queue_disconnect; for the
 *                     operators' routes queue_cancel, queue_ping, queue_stats
 *   imgpipe-dispatch: queue_init, then for each connection queue_connect, queue_join,
 *                     and queue_take, queue_keep, queue_ack, queue_cancelled as its jobs run
 * Besides the stream: a cancelled batch's key QUEUE_CANCEL_PREFIX + id, and the hash
 * QUEUE_METRICS of counters that only grow (process-batch runs HINCRBY on it).
 * Functions return 0 (queue_take: 1 or 0), or -1 with one line in q->error: the
 * connection's reason, or Redis's error reply after the command's name. */
#ifndef IMGPIPE_QUEUE_H
#define IMGPIPE_QUEUE_H

#include <hiredis.h>
#include "redisurl.h"

#define QUEUE_STREAM "imgpipe:jobs"
#define QUEUE_GROUP "dispatchers"
#define QUEUE_FIELD "batch"
#define QUEUE_CANCEL_PREFIX "imgpipe:cancel:"
#define QUEUE_CANCEL_TTL 604800         /* seconds a cancel key lives: a week */
#define QUEUE_METRICS "imgpipe:metrics"

struct queue {
	struct redis_url url;
	redisContext *redis;    /* NULL while not connected */
	long timeout_ms;        /* for both connecting and replies; 0: 2 s and 5 s */
	char error[512];
};

/* One job as the dispatcher takes it. */
struct queue_job {
	char id[64];            /* the stream entry's id */
	char batch[128];        /* its batch id; empty when the entry has none */
	long deliveries;        /* how often it has been delivered, this time included */
};

/* Reads REDIS_URL (NULL when unset); no connection yet. */
int queue_init(struct queue *q, const char *redis_url);
/* Connects, then AUTH and SELECT as the URL asks.  Waits at most 2 s for the connection
 * and 5 s for any reply (a dispatcher's blocking read waits less than that), or
 * q->timeout_ms for each when it is set. */
int queue_connect(struct queue *q);
void queue_disconnect(struct queue *q);

/* The CGI's side: queues the job of batch_id (XADD). */
int queue_push(struct queue *q, const char *batch_id);

/* Marks batch_id cancelled (on: SET with QUEUE_CANCEL_TTL), or clears the mark (DEL),
 * for the dispatcher that runs it to see. */
int queue_cancel(struct queue *q, const char *batch_id, int on);
/* One round trip (PING), for health checks. */
int queue_ping(struct queue *q);

/* What GET /metrics shows of Redis. */
struct queue_stats {
	long long waiting;      /* entries no dispatcher has taken yet (the group's lag) */
	long long pending;      /* taken, not yet acknowledged (XPENDING) */
	double oldest_pending_s;        /* age of the oldest pending entry; 0 when none */
	redisReply *counters;   /* HGETALL QUEUE_METRICS: name, value, name, value... */
};
/* Fills s; free with queue_stats_free. */
int queue_stats(struct queue *q, struct queue_stats *s);
void queue_stats_free(struct queue_stats *s);

/* The dispatcher's side.  Makes sure the group exists (XGROUP CREATE), reading the stream
 * from its start, so that jobs queued before any dispatcher ran are taken too. */
int queue_join(struct queue *q);
/* Takes one job for consumer: first one whose dispatcher has been silent for idle_ms
 * (XAUTOCLAIM), else a new one, waiting up to block_ms for it (XREADGROUP).  Returns 1
 * with job filled in, 0 when none came. */
int queue_take(struct queue *q, const char *consumer, long idle_ms, long block_ms,
	       struct queue_job *job);
/* Resets the idle time of a job consumer is running, so that nobody takes it over (XCLAIM). */
int queue_keep(struct queue *q, const char *consumer, const char *id);
/* Acknowledges a job, done with for good: it is never delivered again (XACK). */
int queue_ack(struct queue *q, const char *id);
/* Whether batch_id has been cancelled (EXISTS): 1 or 0, or -1. */
int queue_cancelled(struct queue *q, const char *batch_id);

#endif
